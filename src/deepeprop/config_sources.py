"""Where the values of a :class:`~deepeprop.config.TrainConfig` come from: TOML files and command-line flags.

Parsing only (text to values); the checks are the config's. Imports nothing of the package but its errors.
"""
from __future__ import annotations

import ast

from .errors import UsageError


def parse_value(text: str):
    """An option value from the command line: int, float, bool, None, list, or else the string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_options(items, flag_name: str = "--task-option") -> dict:
    """``["delay_steps=20", "n_cues=3"]`` -> ``{"delay_steps": 20, "n_cues": 3}``."""
    options = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"{flag_name} must look like NAME=VALUE (e.g. delay_steps=20), got {item!r}")
        name, value = item.split("=", 1)
        options[name.strip()] = parse_value(value)
    return options


def load_toml(path: str, keys) -> dict:
    """The options of a TOML config file (``keys``: the valid ones; a ``[task]`` or ``[task_options]`` table)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"--config: no such file {path!r}") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"--config: {path} is not valid TOML: {err}") from None
    data = {key.replace("-", "_"): value for key, value in data.items()}
    if isinstance(data.get("task"), dict):  # [task] name = "...", other keys are task options
        table = dict(data.pop("task"))
        if "name" in table:
            data["task"] = table.pop("name")
        data["task_options"] = {**table, **data.get("task_options", {})}
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise UsageError(f"--config: unknown key(s) {unknown} in {path}; valid keys: {sorted(keys)}")
    return data


def explicit_options(args, keys) -> dict:
    """The options among ``keys`` given explicitly on the command line (argparse's defaults are SUPPRESS)."""
    given = {name: getattr(args, name) for name in keys if hasattr(args, name)}
    for attribute, key in (("task_option", "task_options"), ("method_option", "method_options"),
                           ("neuron_option", "neuron_options")):
        if getattr(args, attribute, None):
            given[key] = parse_options(getattr(args, attribute), "--" + attribute.replace("_", "-"))
    return given
