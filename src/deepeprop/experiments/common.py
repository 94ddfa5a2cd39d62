"""What the experiments share: their TOML configs, the shard of a job array, the machine record, JSON files and the
compilation cache. Imports no experiment, so every experiment module and the command (``__init__``) import it at
their tops."""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from importlib import resources

import jax

from ..errors import UsageError
from ..version import __version__

SUBCOMMANDS = ("alignment", "learning", "bellec2020", "deep_cue", "zucchet2023", "report")
DEFAULT_OUT = "results"


def load_toml(path_or_name: str) -> dict:
    """A TOML file: a path, or the name of one kept beside this module (``"alignment"``)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    if os.path.exists(path_or_name):
        with open(path_or_name, "rb") as handle:
            return tomllib.load(handle)
    if os.sep in path_or_name or path_or_name.endswith(".toml"):
        raise UsageError(f"--config: no such file {path_or_name!r}")
    text = resources.files(__package__).joinpath(f"{path_or_name}.toml").read_text()
    return tomllib.loads(text)


def read_config(kind: str, path: str | None, quick: bool) -> dict:
    """The experiment's config (the built-in ``kind.toml`` or ``path``); with ``quick``, its ``[quick]`` variant:
    its keys replace the config's, except the ``base`` table, which is merged key by key."""
    config = load_toml(path or kind)
    variant = config.pop("quick", {})
    if quick:
        for key, value in variant.items():
            if key == "base":
                config[key] = {**config[key], **value}
            else:
                config[key] = value
    return config


def methods() -> dict:
    """The compared methods: name -> ``{"method": engine name, "options": {...}, "label": text}``."""
    table = load_toml("methods")
    return {name: {"method": spec["method"], "options": dict(spec.get("options", {})), "label": spec["label"]}
            for name, spec in table.items()}


@dataclass(frozen=True)
class Shard:
    """Worker ``index`` of ``count``: it takes items ``index, index + count, index + 2 count, ...`` of a list."""

    index: int = 0
    count: int = 1

    def take(self, items: list) -> list:
        """This worker's items of ``items`` (every one when ``count == 1``)."""
        return list(items)[self.index::self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_from(text: str | None, environ=None) -> Shard:
    """The :class:`Shard` of ``--shard I/N``; without it, of a SLURM job array (``SLURM_ARRAY_TASK_ID``,
    ``SLURM_ARRAY_TASK_MIN``, ``SLURM_ARRAY_TASK_COUNT``, ``SLURM_ARRAY_TASK_STEP``); else the whole list.

    Raises:
        ValueError: a malformed ``--shard`` (or array variables), naming it and what is expected.
    """
    environ = os.environ if environ is None else environ
    if text is None:
        if "SLURM_ARRAY_TASK_ID" not in environ or "SLURM_ARRAY_TASK_COUNT" not in environ:
            return Shard()
        try:
            task, count = int(environ["SLURM_ARRAY_TASK_ID"]), int(environ["SLURM_ARRAY_TASK_COUNT"])
            low, step = int(environ.get("SLURM_ARRAY_TASK_MIN", 0)), int(environ.get("SLURM_ARRAY_TASK_STEP", 1))
        except ValueError:
            given = [environ.get(f"SLURM_ARRAY_TASK_{k}") for k in ("ID", "MIN", "STEP", "COUNT")]
            raise ValueError(f"SLURM_ARRAY_TASK_ID, _MIN, _STEP and _COUNT must be ints, got {given}") from None
        index = (task - low) // max(step, 1)
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"SLURM_ARRAY_TASK_ID {task} (min {low}, step {step}) is not one of the "
                             f"SLURM_ARRAY_TASK_COUNT {count} tasks")
        return Shard(index, count)
    parts = str(text).split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--shard must be I/N (worker I of N, I from 0 to N-1, e.g. 0/4), got {text!r}")
    index, count = int(parts[0]), int(parts[1])
    if count < 1 or index >= count:
        raise ValueError(f"--shard I/N needs N >= 1 and 0 <= I < N, got {text!r}")
    return Shard(index, count)


def root(out: str, quick: bool) -> str:
    return os.path.join(out, "quick") if quick else out


def machine() -> dict:
    """Where a result was computed."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
            "device": str(jax.devices()[0].device_kind), "deepeprop": __version__}


def write_json(path: str, data) -> None:
    """Atomically (temp file + ``os.replace``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def read_json(path: str):
    with open(path) as handle:
        return json.load(handle)


def compilation_cache(folder: str) -> None:
    """Keep compiled programs on disk under ``folder``: runs that differ only in seed compile once."""
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def machine_text(info: dict) -> str:
    """A machine record (:func:`machine`) in one line of a report."""
    if not info:
        return "unknown"
    return (f"{info.get('device', '?')} ({info.get('cpu_count', '?')} cores, {info.get('processor', '?')}), "
            f"jax {info.get('jax', '?')}, deepeprop {info.get('deepeprop', '?')}")
