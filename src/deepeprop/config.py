"""The typed, frozen configuration of a training run (``deepeprop train``, :class:`~deepeprop.trainer.Trainer`).

A :class:`TrainConfig` holds four sections, each a frozen dataclass: :class:`RunConfig` (task, iterations,
batches, seed, output), :class:`ModelConfig` (the network), :class:`EngineConfig` (the gradient engine and its
evaluation) and :class:`OptimizerConfig`. Per-layer fields are always tuples with one entry per hidden layer.
Every check runs once, when a section is constructed (the scalar checks are :mod:`deepeprop.validation`'s); a
value that cannot be used raises :class:`~deepeprop.errors.UsageError` naming its flag.

One flat JSON form (:meth:`TrainConfig.to_json`, the ``config.json`` of a run folder) names each field by its
flag's name (``method_options``, ``batch_size``); a per-layer tuple whose entries are equal is written as that
one value. Ways in: :meth:`TrainConfig.from_dict` (the flat form, missing keys at their defaults),
:meth:`TrainConfig.from_toml`, :meth:`TrainConfig.from_args` (the parsed ``deepeprop train`` flags) and
:func:`upgrade` (a ``config.json`` written by an earlier version). Field metadata marks the options that may
change on resume (:data:`RESUMABLE`): the fingerprint of a checkpoint and the differences a refused resume lists
come from it.

A ``TrainConfig`` also reads as a mapping of its flat JSON form (``config["lr"]``, ``dict(config, lr=0.5)``), for
code written against the dictionaries of earlier versions; the training path reads the typed fields.

Why this file is long: it is the one typed configuration of ``deepeprop train``. The four sections declare their
fields, checks and resumability together, and :class:`TrainConfig`'s JSON, TOML and flag forms, its fingerprint and
differences, and ``upgrade`` of older run folders all read the same field metadata; apart, a new option would again
be edited in several places. Reading TOML and parsing ``KEY=VALUE`` options are :mod:`deepeprop.config_sources`
already.
"""
# Over 400 lines: the four sections, their checks and the one flat form they share belong together (the text
# sources are config_sources.py).
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import optax

from .architecture import (layer_sizes, neuron_names, per_layer_flag, per_layer_number, per_layer_options,
                           recurrences, residual_edges, skip_edges)
from . import early_stopping as stopping_rule
from .config_sources import explicit_options, load_toml
from .engines import ENGINES, make_engine, make_evaluation
from .errors import UsageError, usage_errors
from .builders import READOUTS, SELF_CONNECTIONS, check_neuron_options
from .network import DTYPES
from .neurons import NEURONS
from .online import OnlineLearner
from .regularization import REGULARIZATIONS, make_regularization
from .tasks import TASKS, get_task
from .validation import check_choice, check_number

DATA_STRIDE = 1_000_003  # batch seed of iteration i: seed * DATA_STRIDE + i
OPTIMIZERS = ("adam", "sgd")


def option(default: Any, key: str | None = None, *, resumable: bool = False, factory: bool = False):
    """A config field: ``key`` its flat (JSON and flag) name where it differs from the field's, ``resumable`` whether
    it may change when a run is resumed (it changes the summation order or the schedule, not the run)."""
    metadata = {"key": key, "resumable": resumable}
    if factory:
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _frozen(table: Mapping) -> Mapping:
    return MappingProxyType(dict(table))


def _check_int(key: str, value, minimum: int) -> int:
    # (not validation.check_int: its "a positive int" would change the wording these flags have always had)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{flag(key)} must be an int >= {minimum}, got {value!r}")
    return value


def _check_positive(key: str, value) -> float:
    with usage_errors():
        return check_number(flag(key), value, minimum=0, exclusive_minimum=True)


def _check_choice(key: str, value, choices) -> str:
    with usage_errors():
        return check_choice(flag(key), value, sorted(choices))


def _check_table(what: str, value) -> Mapping:
    if not isinstance(value, Mapping):
        raise UsageError(f"{what} must be a table of NAME = VALUE, got {value!r}")
    return _frozen(value)


class _Section:
    """Shared by the sections: ``_set`` (a frozen field normalised in ``__post_init__``)."""

    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)


@dataclass(frozen=True)
class RunConfig(_Section):
    """What is trained on, for how long, and where the results go."""

    task: str = option("digits")
    task_options: Mapping = option(dict, factory=True)
    iterations: int = option(200, resumable=True)
    batch_size: int = option(32)
    seed: int = option(0)
    eval_every: int = option(50, resumable=True)
    eval_batch_size: int = option(256)
    out: str = option("deepeprop-run", resumable=True)
    devices: int = option(1, resumable=True)  # split the batch over this many devices (deepeprop.parallel)
    # Bellec et al.'s early-stopping criterion (deepeprop.early_stopping): None off, else the error threshold
    early_stopping: float | None = option(None, resumable=True)
    early_stopping_batches: int = option(stopping_rule.DEFAULT_BATCHES, resumable=True)  # confirmation batches

    def __post_init__(self):
        _check_choice("task", self.task, TASKS)
        with usage_errors():
            self._set("early_stopping", stopping_rule.check_threshold("--early-stopping", self.early_stopping))
            self._set("early_stopping_batches",
                      stopping_rule.check_batches("--early-stopping-batches", self.early_stopping_batches))
        for key, minimum in (("iterations", 1), ("batch_size", 1), ("eval_every", 1), ("eval_batch_size", 1),
                             ("seed", 0), ("devices", 1)):
            _check_int(key, getattr(self, key), minimum)
        if self.batch_size % self.devices:
            raise UsageError(f"--batch-size {self.batch_size} must be a multiple of --devices {self.devices}")
        self._set("task_options", _check_table("task options", self.task_options))
        self._set("out", str(self.out))


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The network (:func:`deepeprop.DeepRNN`'s arguments); per-layer fields one entry per hidden layer."""

    hidden: tuple = option((64, 64))
    neuron: tuple = option("alif")
    recurrence: tuple = option("dense")
    skip: tuple = option(())
    residual: tuple = option(())
    readout: str = option("leaky")
    tau_m: tuple = option(20.0)
    tau_a: tuple = option(200.0)
    tau_out: float = option(20.0)
    input_gain: float = option(1.0)
    recurrent_gain: float = option(1.0)
    self_connections: tuple = option(SELF_CONNECTIONS)
    neuron_options: tuple = option(dict, factory=True)  # the reset choice written out by TrainConfig
    dtype: str = option("float32")

    def __post_init__(self):
        _check_choice("readout", self.readout, READOUTS)
        _check_choice("dtype", self.dtype, DTYPES)
        with usage_errors():  # one value or one per hidden layer; skip edges checked against the chain
            given = list(self.hidden) if isinstance(self.hidden, tuple) else self.hidden
            hidden = tuple(layer_sizes("--hidden", given))
            depth = len(hidden)
            self._set("hidden", hidden)
            self._set("neuron", per_layer(neuron_names("--neuron", _listed(self.neuron), depth), depth))
            self._set("recurrence", per_layer(recurrences("--recurrence", _listed(self.recurrence), depth), depth))
            residual = residual_edges("--residual", _listed(self.residual), depth)
            self._set("skip", tuple(map(tuple, skip_edges("--skip", _listed(self.skip), depth, residual=residual))))
            self._set("residual", tuple(map(tuple, residual)))
            for name in ("tau_m", "tau_a"):
                self._set(name, per_layer(per_layer_number(flag(name), _listed(getattr(self, name)), depth), depth))
            self._set("self_connections", per_layer(per_layer_flag("self_connections", _listed(self.self_connections),
                                                                   depth), depth))
            options = per_layer_options("--neuron-option", _listed(self.neuron_options, tables=True), depth)
            self._set("neuron_options", tuple(_frozen(o) for o in per_layer(options, depth)))
        for name in ("tau_out", "input_gain", "recurrent_gain"):
            self._set(name, _check_positive(name, getattr(self, name)))
        for name, options in zip(self.neuron, self.neuron_options):
            with usage_errors("--neuron-option: "):
                check_neuron_options(NEURONS[name], dict(options), name)

    @property
    def depth(self) -> int:
        return len(self.hidden)

    def takes_reset_choice(self) -> tuple[bool, ...]:
        """Per hidden layer: whether its neuron model takes ``detach_reset``."""
        return tuple(inspect.signature(NEURONS[name].__init__).parameters.get("detach_reset") is not None
                     for name in self.neuron)


@dataclass(frozen=True)
class EngineConfig(_Section):
    """The gradient engine (:func:`deepeprop.make_engine`), its evaluation and the learner's update schedule."""

    method: str = option("deep_eprop")
    options: Mapping = option(dict, "method_options", factory=True)
    evaluation: str | None = option(None, resumable=True)  # None: the engine's own; "step", "chunked:K", "reverse"
    feedback: str | None = option(None)
    feedback_decay: float = option(1e-4)
    update_every: int | None = option(None)
    regularization: str | None = option(None)  # firing-rate penalty: None, "simple" or "running"
    regularization_strength: float = option(1.0)
    target_rate: float = option(0.01)  # spikes per step (10 Hz with 1 ms steps)

    def __post_init__(self):
        _check_choice("method", self.method, ENGINES)
        if self.update_every is not None and (isinstance(self.update_every, bool)
                                              or not isinstance(self.update_every, int) or self.update_every < 1):
            raise UsageError(f"--update-every must be a positive int (time steps between updates), "
                             f"got {self.update_every!r}")
        decay = self.feedback_decay
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise UsageError(f"--feedback-decay must be a number in [0, 1), got {decay!r}")
        self._set("feedback_decay", float(decay))
        if self.feedback is not None:  # the engines that take a feedback declare their choices (Engine.feedbacks)
            choices = ENGINES[self.method].feedbacks
            if not choices:
                takers = " or ".join(name for name, cls in ENGINES.items() if cls.feedbacks)
                raise UsageError(f"--feedback applies to --method {takers} only, got --method {self.method}")
            if self.feedback not in choices:
                raise UsageError(f"--feedback must be one of {list(choices)}, got {self.feedback!r}")
        self._set("options", _check_table("--method-option: engine options", self.options))
        if self.regularization is not None and self.regularization not in REGULARIZATIONS:
            raise UsageError(f"--regularization must be one of {sorted(REGULARIZATIONS)} (or left out), "
                             f"got {self.regularization!r}")
        for key in ("regularization_strength", "target_rate"):
            number = getattr(self, key)
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                raise UsageError(f"{flag(key)} must be a finite number, got {number!r}")
        if self.regularization_strength < 0:
            raise UsageError(f"--regularization-strength must be >= 0, got {self.regularization_strength!r}")
        if not 0 <= self.target_rate <= 1:
            raise UsageError(f"--target-rate must be a rate per time step in [0, 1], got {self.target_rate!r}")
        if self.feedback is not None and "feedback" in self.options:
            raise UsageError("give the feedback once: --feedback or --method-option feedback=..., not both")
        if self.evaluation is not None:
            if not isinstance(self.evaluation, str):
                raise UsageError(f"--evaluation must be a name like 'step', 'chunked:32' or 'reverse', "
                                 f"got {self.evaluation!r}")
            if "chunk_size" in self.options:
                raise UsageError("give the chunk size once: --evaluation chunked:K or --method-option chunk_size=K, "
                                 "not both")


@dataclass(frozen=True)
class OptimizerConfig(_Section):
    """The optimiser of the weights (optax)."""

    name: str = option("adam", "optimizer")
    lr: float = option(1e-3)

    def __post_init__(self):
        _check_choice("optimizer", self.name, OPTIMIZERS)
        self._set("lr", _check_positive("lr", self.lr))


SECTIONS = {"run": RunConfig, "model": ModelConfig, "engine": EngineConfig, "optimizer": OptimizerConfig}


def key_of(f: dataclasses.Field) -> str:
    return f.metadata.get("key") or f.name


# flat key -> (section, field name); flat key -> default (the JSON form); the keys that may change on resume
FIELDS = {key_of(f): (section, f.name) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
RESUMABLE = tuple(key_of(f) for cls in SECTIONS.values() for f in dataclasses.fields(cls) if f.metadata["resumable"])


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


DEFAULTS: dict[str, Any] = {key_of(f): _default(f) for cls in SECTIONS.values() for f in dataclasses.fields(cls)}
DEFAULTS["hidden"] = [64, 64]
DEFAULTS["skip"], DEFAULTS["residual"] = [], []


def per_layer(value, depth: int) -> tuple:
    """One value or a list of ``depth`` -> a tuple of ``depth`` entries."""
    return tuple(value) if isinstance(value, list) else (value,) * depth


def _listed(value, tables: bool = False):
    """A tuple as a list (the architecture parsers take lists), anything else as it is; ``tables``: mappings as
    dicts."""
    if isinstance(value, (tuple, list)):
        return [dict(v) if tables and isinstance(v, Mapping) else v for v in value]
    return dict(value) if tables and isinstance(value, Mapping) else value


def compact(values: tuple):
    """A per-layer tuple as JSON writes it: its one value when all entries are equal, else a list."""
    plain = [dict(v) if isinstance(v, Mapping) else v for v in values]
    return plain[0] if plain and all(v == plain[0] for v in plain) else plain


@dataclass(frozen=True)
class TrainConfig(Mapping):
    """The whole configuration of a training run: the four sections, checked together (module docstring)."""

    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)

    def __post_init__(self):
        with usage_errors("--method-option: "):
            engine = self.make_engine()
        if self.engine.evaluation is not None:
            with usage_errors(f"--evaluation {self.engine.evaluation}: "):
                evaluation = make_evaluation(self.engine.evaluation)
                OnlineLearner(engine, optax.sgd(1.0), update_every=self.engine.update_every, evaluation=evaluation)
            # its explicit name ("chunked" -> "chunked:64"), so that a later default size cannot change a saved run
            object.__setattr__(self, "engine", dataclasses.replace(self.engine, evaluation=str(evaluation)))
        with usage_errors("--neuron-option: "):
            options = explicit_reset(self.model, missing_means=engine.reset_choice,
                                     given=self.engine.options.get("detach_reset"))
        object.__setattr__(self, "model", dataclasses.replace(self.model, neuron_options=options))
        with usage_errors("--task-option: "):
            get_task(self.run.task, **self.run.task_options)

    def make_engine(self):
        """The engine: ``method`` with its options (and eprop's ``feedback`` shorthand)."""
        options = dict(self.engine.options)
        # the feedback seed differs from the model's: with equal seeds eprop's "random" readout feedback would
        # be drawn exactly like W_out (same key, same distribution), i.e. symmetric
        if self.engine.feedback is not None:
            options["feedback"] = self.engine.feedback
        if "feedback" in options and "feedback_seed" not in options:
            options["feedback_seed"] = self.run.seed + 1
        return make_engine(self.engine.method, **options)

    def make_regularization(self):
        """The firing-rate regulariser (``None``: none)."""
        if self.engine.regularization is None:
            return None
        return make_regularization(self.engine.regularization, strength=self.engine.regularization_strength,
                                   target_rate=self.engine.target_rate)

    # ------------------------------------------------------------------------ ways in
    @classmethod
    def from_dict(cls, values: Mapping) -> "TrainConfig":
        """The config of a flat mapping (keys as in :data:`DEFAULTS`; missing keys at their defaults)."""
        unknown = sorted(set(values) - set(FIELDS) - set(_RECORDED))
        if unknown:
            raise UsageError(f"unknown option(s) {unknown}; valid: {sorted(FIELDS)}")
        parts: dict[str, dict] = {section: {} for section in SECTIONS}
        for key, value in values.items():
            if key in FIELDS:
                section, name = FIELDS[key]
                parts[section][name] = value
        return cls(**{section: SECTIONS[section](**kwargs) for section, kwargs in parts.items()})

    @classmethod
    def resolve(cls, explicit: Mapping, config_file: str | None = None) -> "TrainConfig":
        """Defaults, then the TOML file, then the explicitly given options (task options merged)."""
        values = load_toml(config_file, DEFAULTS) if config_file else {}
        explicit = dict(explicit)
        options = {**values.get("task_options", {}), **explicit.pop("task_options", {})}
        values.update(explicit)
        values["task_options"] = options
        return cls.from_dict(values)

    @classmethod
    def from_toml(cls, path: str, **overrides) -> "TrainConfig":
        return cls.resolve(overrides, path)

    @classmethod
    def from_args(cls, args) -> "TrainConfig":
        """The config of parsed ``deepeprop train`` flags (only those given count; ``--config`` below them)."""
        return cls.resolve(explicit_options(args, DEFAULTS), getattr(args, "config", None))

    def replace(self, **values) -> "TrainConfig":
        """This config with some flat options changed (checked again)."""
        return TrainConfig.from_dict({**self.to_json(), **values})

    # ------------------------------------------------------------------------ ways out
    def to_json(self) -> dict:
        """The flat JSON form (``config.json``): per-layer tuples written compactly, tables as dicts."""
        out = {}
        for section in SECTIONS:
            part = getattr(self, section)
            for f in dataclasses.fields(part):
                value = getattr(part, f.name)
                if isinstance(value, tuple) and f.name in ("skip", "residual"):
                    value = [list(edge) for edge in value]
                elif f.name == "hidden":
                    value = list(value)
                elif isinstance(value, tuple):
                    value = compact(value)
                elif isinstance(value, Mapping):
                    value = dict(value)
                out[key_of(f)] = value
        return json.loads(json.dumps(out))

    def fingerprint(self) -> tuple[str, dict]:
        """``(sha256 hex, fingerprinted options)``: the canonical JSON without the :data:`RESUMABLE` options."""
        kept = {key: value for key, value in self.to_json().items() if key not in RESUMABLE}
        text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest(), kept

    def differences(self, other: "TrainConfig", resumable: bool = False) -> list[str]:
        """The flat keys whose values differ (without the :data:`RESUMABLE` ones unless ``resumable``)."""
        mine, theirs = self.to_json(), other.to_json()
        return [key for key in sorted(mine) if mine[key] != theirs[key] and (resumable or key not in RESUMABLE)]

    # ------------------------------------------------------------------------ the mapping of the flat form
    def __getitem__(self, key: str):
        return self.to_json()[key]

    def __iter__(self):
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(FIELDS)


# keys a run writes beside its options in config.json (read back and ignored)
_RECORDED = ("package_version", "jax_version", "n_steps", "loss", "metric_name", "processes")


def explicit_reset(model: ModelConfig, missing_means: bool, given: bool | None = None) -> tuple:
    """``model.neuron_options`` with ``detach_reset`` written out for every layer whose neuron takes it.

    A config records the choice explicitly, so that a change of a default cannot change a saved run's model. A new
    run fills in its method's choice (``missing_means=engine.reset_choice``: the rule's default, or the engine's
    ``detach_reset`` option, ``given``, which an explicit neuron option must not contradict); ``False`` reads a
    missing entry as the default of the versions before the standard e-prop model became the default (a run saved
    then kept the reset path). Runs saved since record the entry, so they keep their model too.
    """
    out = []
    for index, (name, takes, options) in enumerate(zip(model.neuron, model.takes_reset_choice(),
                                                        model.neuron_options)):
        options = dict(options)
        if takes:
            if options.get("detach_reset") is None:
                options["detach_reset"] = bool(missing_means)
            elif not isinstance(options["detach_reset"], bool):
                raise ValueError(f"detach_reset must be true or false, got {options['detach_reset']!r}")
            elif given is not None and options["detach_reset"] != bool(given):
                raise ValueError(f"detach_reset is given twice and disagrees: detach_reset={options['detach_reset']} "
                                 f"for layer {index + 1} ({name}), --method-option detach_reset={given}; give it once")
        out.append(_frozen(options))
    return tuple(out)


def upgrade(saved: Mapping, **current) -> TrainConfig:
    """A ``config.json`` written by this or an earlier version as this version reads it, with ``current`` (e.g. the
    resumable options of the run that resumes it) over it.

    A key the saved run's version did not know (e.g. ``skip``) had its default's meaning then; a missing
    ``detach_reset`` means the reset path was kept (the default before the standard e-prop model became it).
    """
    values = {key: saved[key] for key in FIELDS if key in saved}
    values.update(current)
    if "neuron_options" in saved or "neuron" in saved:  # read a missing detach_reset as the old default: kept
        model = ModelConfig(**{name: values[key] for key, (section, name) in FIELDS.items()
                               if section == "model" and key in values})
        values["neuron_options"] = list(explicit_reset(model, missing_means=False))
    return TrainConfig.from_dict(values)
