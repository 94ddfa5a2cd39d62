"""Training runs: ``deepeprop train`` and :func:`train` (an :class:`~deepeprop.online.OnlineLearner` on a task).

    deepeprop train --task digits --method deep_eprop --neuron alif --hidden 64,64 --iterations 300 --out runs/d
    deepeprop train --config run.toml --lr 3e-3          # flags given explicitly override the file
    deepeprop train --out runs/d --resume --iterations 600   # continue from runs/d/checkpoint.eqx

The output folder holds ``config.json`` (every resolved option and the package version: enough to rerun),
``metrics.jsonl`` (one line per evaluation), ``summary.json``, ``checkpoint.eqx`` and PNG plots. A run locks
its folder while it writes, and a fresh run refuses a folder that holds files unless ``--overwrite``
(:mod:`deepeprop.runfolder`); a resume refuses options other than :data:`RESUMABLE` that differ from the
checkpoint's run.

Reproducibility: the training batch of iteration ``i`` (1-based) is ``task.batch(seed * 1_000_003 + i, B)``,
a pure function of ``(seed, i)``, and the model is initialised from ``seed``; a resumed run therefore
reaches the same parameters as an uninterrupted one (bitwise on CPU). Evaluation uses the task's test
split: ``task.test_set()`` for dataset tasks, else the fixed batch ``task.batch(seed, eval_batch_size,
"test")``.

Checkpoints (``checkpoint.eqx``): one JSON header line (format, version, iteration, seed, elapsed seconds,
payload size and SHA-256) followed by ``equinox.tree_serialise_leaves`` of ``(model, optimizer state,
feedback matrices)``. They are written to a temporary file in the same folder and moved into place with
``os.replace``; loading checks the header, size and checksum before anything is deserialised, so a
truncated or corrupted file raises :class:`CheckpointError` and leaves no partial state.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import runfolder
from .architecture import layer_sizes
from .errors import CheckpointError, TrainingDiverged, UsageError, usage_errors  # noqa: F401  (as before)
from .network import SELF_CONNECTIONS
from .neurons import NEURONS
from .registry import names

CHECKPOINT = "checkpoint.eqx"
CHECKPOINT_FORMAT = "deepeprop-checkpoint"
CHECKPOINT_VERSION = 1
DATA_STRIDE = 1_000_003  # batch seed of iteration i: seed * DATA_STRIDE + i
OPTIMIZERS = ("adam", "sgd")

# Every option of a run, with its default. ``deepeprop train`` flags and TOML keys use these names
# (flags with dashes: --batch-size).
DEFAULTS: dict[str, Any] = {
    "task": "digits",
    "task_options": {},
    "method": "deep_eprop",
    "method_options": {},
    "evaluation": None,  # the engine's own; else "step", "chunked:K" or "reverse" (deepeprop.engines.evaluation)
    "neuron": "alif",
    "neuron_options": {},
    "hidden": [64, 64],
    "recurrence": "dense",
    "skip": [],
    "residual": [],
    "readout": "leaky",
    "tau_m": 20.0,
    "tau_a": 200.0,
    "tau_out": 20.0,
    "input_gain": 1.0,
    "recurrent_gain": 1.0,
    "self_connections": SELF_CONNECTIONS,  # DeepRNN's default; detach_reset: the method's (explicit_reset)
    "iterations": 200,
    "batch_size": 32,
    "optimizer": "adam",
    "lr": 1e-3,
    "update_every": None,
    "feedback": None,
    "feedback_decay": 1e-4,
    "seed": 0,
    "eval_every": 50,
    "eval_batch_size": 256,
    "dtype": "float32",
    "out": "deepeprop-run",
    "devices": 1,  # split the batch over this many devices (deepeprop.parallel); same results to rounding
}
# options that may change when a run is resumed (the others must match the saved config.json); ``devices`` and
# ``evaluation`` change only the floating-point summation order (the gradient is the same), not the run
RESUMABLE = ("iterations", "eval_every", "out", "devices", "evaluation")


# ---------------------------------------------------------------------------- configuration
def parse_value(text: str):
    """A task-option value from the command line: int, float, bool, None, list, or else the string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_task_options(items, flag: str = "--task-option") -> dict:
    """``["delay_steps=20", "n_cues=3"]`` -> ``{"delay_steps": 20, "n_cues": 3}``."""
    options = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"{flag} must look like NAME=VALUE (e.g. delay_steps=20), got {item!r}")
        name, value = item.split("=", 1)
        options[name.strip()] = parse_value(value)
    return options


def load_toml(path: str) -> dict:
    """The options of a TOML config file (keys as in :data:`DEFAULTS`; ``[task]`` or ``[task_options]`` table)."""
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
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise UsageError(f"--config: unknown key(s) {unknown} in {path}; valid keys: {sorted(DEFAULTS)}")
    return data


def resolve_config(explicit: dict, config_file: str | None = None) -> dict:
    """Defaults, then the TOML file, then the explicitly given flags; validated. Returns a JSON-able dict."""
    config = {key: (dict(v) if isinstance(v, dict) else v) for key, v in DEFAULTS.items()}
    if config_file:
        from_file = load_toml(config_file)
        options = from_file.pop("task_options", {})
        config.update(from_file)
        config["task_options"] = dict(options)
    explicit = dict(explicit)
    options = explicit.pop("task_options", None)
    config.update(explicit)
    if options:
        config["task_options"] = {**config["task_options"], **options}
    return validate_config(config)


def validate_config(config: dict) -> dict:
    """Check every option, naming the flag of a bad one. Returns the normalised config."""
    from .engines import ENGINES
    from .engines.eprop import FEEDBACKS
    from .architecture import (neuron_names, per_layer_flag, per_layer_number, per_layer_options, recurrences,
                               residual_edges, skip_edges)
    from .network import DTYPES, READOUTS
    from .tasks import TASKS, get_task

    c = dict(config)
    if c["task"] not in TASKS:
        raise UsageError(f"--task must be one of {sorted(TASKS)}, got {c['task']!r}")
    for name, choices in (("method", ENGINES), ("readout", READOUTS), ("dtype", DTYPES), ("optimizer", OPTIMIZERS)):
        if not isinstance(c[name], str) or c[name] not in choices:
            raise UsageError(f"--{name} must be one of {sorted(choices)}, got {c[name]!r}")
    try:
        c["hidden"] = layer_sizes(c["hidden"], "--hidden")  # then one value or one per hidden layer
        c["neuron"] = neuron_names(c["neuron"], len(c["hidden"]))
        c["recurrence"] = recurrences(c["recurrence"], len(c["hidden"]))
        c["residual"] = residual_edges(c["residual"], len(c["hidden"]))
        c["skip"] = skip_edges(c["skip"], len(c["hidden"]), residual=c["residual"])
        for name in ("tau_m", "tau_a"):  # one number, or one per hidden layer
            c[name] = per_layer_number(c[name], len(c["hidden"]), f"--{name.replace('_', '-')}")
        c["self_connections"] = per_layer_flag(c["self_connections"], len(c["hidden"]), "self_connections")
        c["neuron_options"] = per_layer_options(c["neuron_options"], len(c["hidden"]), "--neuron-option")
    except ValueError as err:
        raise UsageError(str(err)) from None
    try:
        check_config_neuron_options(c)
    except ValueError as err:
        raise UsageError(f"--neuron-option: {err}") from None
    for name, minimum in (("iterations", 1), ("batch_size", 1), ("eval_every", 1), ("eval_batch_size", 1),
                          ("seed", 0), ("devices", 1)):
        value = c[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise UsageError(f"--{name.replace('_', '-')} must be an int >= {minimum}, got {value!r}")
    if c["batch_size"] % c["devices"]:
        raise UsageError(f"--batch-size {c['batch_size']} must be a multiple of --devices {c['devices']}")
    if c["update_every"] is not None:
        value = c["update_every"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"--update-every must be a positive int (time steps between updates), got {value!r}")
    for name in ("lr", "tau_out", "input_gain", "recurrent_gain"):
        value = c[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value!r}")
        c[name] = float(value)
    decay = c["feedback_decay"]
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
        raise UsageError(f"--feedback-decay must be a number in [0, 1), got {decay!r}")
    if c["feedback"] is not None:
        if c["method"] not in ("eprop", "immediate"):
            raise UsageError(f"--feedback applies to --method eprop or immediate only, got --method {c['method']}")
        if c["feedback"] not in FEEDBACKS:
            raise UsageError(f"--feedback must be one of {list(FEEDBACKS)}, got {c['feedback']!r}")
    if not isinstance(c["method_options"], dict):
        raise UsageError("--method-option: engine options must be a table of NAME = VALUE, "
                         f"got {c['method_options']!r}")
    if c["feedback"] is not None and "feedback" in c["method_options"]:
        raise UsageError("give the feedback once: --feedback or --method-option feedback=..., not both")
    try:
        engine = make_engine_from_config(c)
    except ValueError as err:
        raise UsageError(f"--method-option: {err}") from None
    c["evaluation"] = _checked_evaluation(c, engine)
    try:  # the reset choice written out: the neurons' explicit one, else the method's (recorded in config.json)
        c["neuron_options"] = explicit_reset(c, missing_means=engine.reset_choice,
                                             given=c["method_options"].get("detach_reset"))
    except ValueError as err:
        raise UsageError(f"--neuron-option: {err}") from None
    if not isinstance(c["task_options"], dict):
        raise UsageError(f"task options must be a table of NAME = VALUE, got {c['task_options']!r}")
    try:
        get_task(c["task"], **c["task_options"])
    except ValueError as err:
        raise UsageError(f"--task-option: {err}") from None
    c["out"] = str(c["out"])
    return c


def _checked_evaluation(config: dict, engine) -> str | None:
    """``config["evaluation"]`` as its explicit name (``"chunked"`` -> ``"chunked:64"``, so that a later change
    of the default size cannot change a saved run), refused as the learner would refuse it."""
    from .engines import make_evaluation
    from .online import OnlineLearner

    value = config.get("evaluation")
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"--evaluation must be a name like 'step', 'chunked:32' or 'reverse', got {value!r}")
    if "chunk_size" in config["method_options"]:
        raise UsageError("give the chunk size once: --evaluation chunked:K or --method-option chunk_size=K, not both")
    try:
        evaluation = make_evaluation(value)
        OnlineLearner(engine, optax.sgd(1.0), update_every=config["update_every"], evaluation=evaluation)
    except ValueError as err:
        raise UsageError(f"--evaluation {value}: {err}") from None
    return str(evaluation)


# ---------------------------------------------------------------------------- building a run
def make_engine_from_config(config: dict):
    """The engine of a config: ``method`` with ``method_options`` (and eprop's ``feedback`` shorthand)."""
    from .engines import make_engine

    options = dict(config["method_options"])
    # the feedback seed differs from the model's: with equal seeds eprop's "random" readout feedback would
    # be drawn exactly like W_out (same key, same distribution), i.e. symmetric
    if config["feedback"] is not None:
        options["feedback"] = config["feedback"]
    if "feedback" in options and "feedback_seed" not in options:
        options["feedback_seed"] = config["seed"] + 1
    return make_engine(config["method"], **options)


def build(config: dict):
    """``(task, model, learner)`` of a validated config; the model is initialised from ``config["seed"]``."""
    from .network import DTYPES, DeepRNN
    from .online import OnlineLearner
    from .tasks import get_task

    task = get_task(config["task"], **config["task_options"])
    model = DeepRNN(task.n_in, config["hidden"], task.n_out, neuron=config["neuron"],
                    recurrence=config["recurrence"], readout=config["readout"],
                    skip=[tuple(edge) for edge in config["skip"]],
                    residual=[tuple(edge) for edge in config["residual"]],
                    key=jax.random.PRNGKey(config["seed"]), dtype=DTYPES[config["dtype"]],
                    tau_m=config["tau_m"], tau_a=config["tau_a"], tau_out=config["tau_out"],
                    input_gain=config["input_gain"], recurrent_gain=config["recurrent_gain"],
                    self_connections=config["self_connections"], neuron_options=config["neuron_options"] or None)
    engine = make_engine_from_config(config)
    optimizer = optax.adam(config["lr"]) if config["optimizer"] == "adam" else optax.sgd(config["lr"])
    learner = OnlineLearner(engine, optimizer, loss=task.loss, update_every=config["update_every"],
                            evaluation=config.get("evaluation"),
                            feedback_decay=config["feedback_decay"] if getattr(engine, "feedback", None) == "adaptive"
                            else 0.0)
    return task, model, learner


def train_batch(task, config: dict, iteration: int, dtype):
    """The training batch of ``iteration`` (1-based): a pure function of ``(seed, iteration)``."""
    batch = task.batch(config["seed"] * DATA_STRIDE + iteration, config["batch_size"], "train")
    return _cast(batch, dtype)


def _cast(batch, dtype):
    """Inputs (and regression targets) in the model's dtype; labels stay int32."""
    targets = batch.targets
    if jnp.issubdtype(targets.dtype, jnp.floating):
        targets = jnp.asarray(targets, dtype)
    return batch._replace(inputs=jnp.asarray(batch.inputs, dtype), targets=targets)


def eval_batch(task, config: dict, dtype):
    """The fixed evaluation batch: the whole test split of a dataset task, else a seeded test batch."""
    batch = task.test_set() if hasattr(task, "test_set") else task.batch(
        config["seed"], config["eval_batch_size"], "test")
    return _cast(batch, dtype)


def check_loss_counts(batch, task, what: str) -> None:
    """Refuse a batch in which the loss counts nowhere (labels all ``-1`` or the mask all zero): every gradient
    would be exactly zero and the run would train nothing, without a word. A host-side check of concrete values
    (``dp.gradients`` accepts such a batch and returns zeros: it is a valid, empty loss)."""
    counts = np.asarray(batch.mask) > 0
    if task.loss == "cross_entropy":
        counts &= np.asarray(batch.targets) >= 0
    if not counts.any():
        raise UsageError(f"targets: {what} of task {task.name!r} has no step where the loss counts (every label is -1 "
                     "or the mask is zero everywhere), so every gradient would be zero; check the task's options "
                     "(e.g. its delay or recall window) or its batch()")


@dataclass
class Steps:
    """The run's two compiled functions; ``traces`` counts how often each was traced (compiled)."""

    train: Any
    evaluate: Any
    traces: dict = field(default_factory=lambda: {"train": 0, "evaluate": 0})


def make_steps(task, learner) -> Steps:
    from .online import is_finite_tree

    steps = Steps(None, None)

    @eqx.filter_jit
    def train_step(state, batch):
        steps.traces["train"] += 1  # runs only when traced
        new, losses, ys = learner.sequence_update(state, batch.inputs, batch.targets, batch.mask)
        loss = jnp.sum(losses)
        ok = jnp.isfinite(loss) & is_finite_tree(new.model)
        return new, jnp.stack([loss, task.metric(ys, batch).astype(loss.dtype)]), ok

    @eqx.filter_jit
    def evaluate(model, batch):
        steps.traces["evaluate"] += 1
        _, ys = model.run(batch.inputs)  # (T, B, n_out)
        loss = jnp.sum(jax.vmap(learner.loss)(ys, batch.targets, batch.mask))
        return jnp.stack([loss, task.metric(ys, batch).astype(loss.dtype)])

    steps.train, steps.evaluate = train_step, evaluate
    return steps


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str, state, meta: dict) -> None:
    """Write ``state`` (a LearnerState) and ``meta`` atomically (temp file in the same folder + os.replace)."""
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, state)
    payload = buffer.getvalue()
    header = dict(meta, format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION, payload_bytes=len(payload),
                  sha256=hashlib.sha256(payload).hexdigest())
    runfolder.write_atomic(path, json.dumps(header, sort_keys=True).encode() + b"\n" + payload)


def read_checkpoint_header(path: str) -> tuple[dict, bytes]:
    """``(header, payload)`` after checking the format, the size and the checksum."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    newline = data.find(b"\n")
    try:
        header = json.loads(data[:newline].decode()) if newline > 0 else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a deepeprop checkpoint (bad or missing header): corrupted?")
    if header.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {header.get('version')}, "
                              f"this deepeprop reads version {CHECKPOINT_VERSION}")
    payload = data[newline + 1:]
    if len(payload) != header.get("payload_bytes"):
        raise CheckpointError(f"{path} is truncated or corrupted: payload has {len(payload)} bytes, "
                              f"the header says {header.get('payload_bytes')}")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CheckpointError(f"{path} is corrupted: its SHA-256 checksum does not match the header")
    return header, payload


def load_checkpoint(path: str, like) -> tuple[Any, dict]:
    """``(state, header)``: the checkpoint's LearnerState with the structure of ``like``. Nothing is
    returned (or changed) unless the whole file is valid."""
    header, payload = read_checkpoint_header(path)
    try:
        state = eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    except Exception as err:  # shapes/dtypes that do not fit this run's model
        raise CheckpointError(f"{path} does not match this run's model or optimizer: {err}") from None
    return state, header


# ---------------------------------------------------------------------------- the loop
def _write_json(path: str, data: dict) -> None:
    runfolder.write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def train(config: dict, *, resume: bool = False, overwrite: bool = False, progress: bool = True,
          plots: bool = True, fault: Any = None, tensorboard: bool = False, log: bool | None = None) -> dict:
    """Run (or resume) the training described by a validated ``config``; returns the summary dict.

    The run holds a lock on ``config["out"]`` while it writes: a second run into the same folder is refused
    (:class:`~deepeprop.runfolder.RunFolderError`, naming the other process). A fresh run into a folder that
    already holds files is refused unless ``overwrite=True`` (``--overwrite``), which replaces the run files
    there. ``resume=True`` continues from the checkpoint; only the options in :data:`RESUMABLE`
    (``iterations``, ``eval_every``, ``out``, ``devices``) may differ from the checkpoint's run: any other difference is
    refused with a :class:`CheckpointError` listing the options. Temporary files left by a killed run are
    deleted, and a torn last line of ``metrics.jsonl`` is repaired.

    ``progress``: show a progress bar. ``log``: print one line per evaluation (test loss and metric); ``None``
    (default) prints them with the progress bar only (``deepeprop train --no-progress`` keeps them).

    ``tensorboard=True`` also writes every ``metrics.jsonl`` row as TensorBoard scalars to ``OUT/tensorboard``
    (needs ``tensorboardX``: ``pip install 'deepeprop[tensorboard]'``; imported only then).

    ``fault``: for tests, a function ``(iteration, state) -> state`` applied after each step (e.g. to
    inject a NaN). Raises :class:`TrainingDiverged` on a non-finite loss or parameters (the checkpoint
    of the last evaluation stays intact) and :class:`CheckpointError` on a bad checkpoint.
    """
    if resume and overwrite:
        raise UsageError("--overwrite starts the run afresh and --resume continues it: give one of them")
    with runfolder.RunFolder(config["out"], resume=resume, overwrite=overwrite):
        return _train(config, resume=resume, progress=progress, plots=plots, fault=fault, tensorboard=tensorboard,
                      log=progress if log is None else log)


def _check_resumable(header: dict, config: dict, path: str) -> None:
    """The checkpoint's run and this one may differ only in :data:`RESUMABLE` options."""
    if "fingerprint" not in header:  # a checkpoint from before fingerprints: the seed at least
        if header.get("seed") != config["seed"]:
            raise CheckpointError(f"{path} is from seed {header.get('seed')}, this run has seed {config['seed']}")
        return
    digest, current = runfolder.fingerprint(config, RESUMABLE)
    if digest == header["fingerprint"]:
        return
    saved = _upgrade_saved(header.get("config", {}))
    changed = runfolder.differences(saved, current, DEFAULTS)
    if changed:
        listed = "; ".join(f"{key}: {saved.get(key, DEFAULTS.get(key))!r} in the checkpoint, "
                           f"{current.get(key, DEFAULTS.get(key))!r} now" for key in changed)
        raise CheckpointError(f"{path} was written by a run with other options ({listed}); only "
                              f"{', '.join(RESUMABLE)} may change on resume: give the run's own options, or start "
                              "a fresh run in another --out")


def _train(config: dict, *, resume: bool, progress: bool, plots: bool, fault: Any, tensorboard: bool,
           log: bool) -> dict:
    """The training loop of :func:`train`, inside the locked run folder."""
    from . import __version__, parallel
    from .online import is_finite_tree

    out = config["out"]
    with usage_errors():  # the library's constructors check the config's values (e.g. a neuron option's)
        task, model, learner = build(config)
    test = eval_batch(task, config, model.dtype)
    check_loss_counts(test, task, "its evaluation batch")  # host-side, before anything is written
    check_loss_counts(train_batch(task, config, 1, model.dtype), task, "its first training batch")
    state = learner.init(model)
    ckpt_path = os.path.join(out, CHECKPOINT)
    metrics_path = os.path.join(out, "metrics.jsonl")
    start, elapsed, loss_sum, loss_count, metric_sum = 0, 0.0, 0.0, 0, 0.0
    if resume:
        state, header = load_checkpoint(ckpt_path, state)  # validated before anything is replaced
        _check_resumable(header, config, ckpt_path)
        start, elapsed = int(header["iteration"]), float(header["elapsed"])
        if start > config["iterations"]:
            raise UsageError(f"--iterations {config['iterations']} is below the checkpoint's iteration {start}; "
                         f"give --iterations >= {start} to resume")
        loss_sum, loss_count, metric_sum = header["loss_sum"], header["loss_count"], header["metric_sum"]
        runfolder.repair_metrics(metrics_path, start)  # rows up to the checkpoint; a torn last line dropped
    else:
        with open(metrics_path, "w"):
            pass
    mesh = parallel.batch_mesh(config["devices"])  # None for one device: nothing is placed
    state = parallel.replicate(state, mesh)
    resolved = dict(config, package_version=__version__, jax_version=jax.__version__,
                    n_steps=task.n_steps, loss=task.loss, metric_name=task.metric_name)
    _write_json(os.path.join(out, "config.json"), resolved)

    digest, fingerprinted = runfolder.fingerprint(config, RESUMABLE)

    def meta(iteration):
        return {"iteration": iteration, "seed": config["seed"], "elapsed": elapsed, "loss_sum": loss_sum,
                "loss_count": loss_count, "metric_sum": metric_sum, "task": config["task"],
                "method": config["method"], "data_stride": DATA_STRIDE, "fingerprint": digest,
                "config": fingerprinted}

    if not resume:
        save_checkpoint(ckpt_path, state, meta(0))
    steps = make_steps(task, learner)
    test = parallel.shard_if_divisible(test, mesh)
    total, eval_every = config["iterations"], config["eval_every"]
    last_good = start
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, desc=f"{config['method']} on {config['task']}", unit="it",
                   dynamic_ncols=True)
    writer = _tensorboard_writer(os.path.join(out, "tensorboard")) if tensorboard else None
    t0 = time.perf_counter()
    try:
        for iteration in range(start + 1, total + 1):
            batch = parallel.shard_batch(train_batch(task, config, iteration, model.dtype), mesh)
            new_state, values, ok = steps.train(state, batch)
            if fault is not None:
                new_state = fault(iteration, new_state)
                ok = ok & is_finite_tree(new_state.model)
            loss, metric = (float(v) for v in np.asarray(values))  # one device->host transfer
            if not bool(ok):
                raise TrainingDiverged(
                    f"training diverged at iteration {iteration}: loss = {loss} (non-finite loss or parameters; "
                    f"try a smaller --lr). The last good checkpoint (iteration {last_good}) is kept in {ckpt_path}")
            state = new_state
            loss_sum, loss_count, metric_sum = loss_sum + loss, loss_count + 1, metric_sum + metric
            if bar is not None:
                rate = bar.format_dict.get("rate") or 0.0
                bar.set_postfix(loss=f"{loss:.4f}", metric=f"{metric:.3f}",
                                **{"steps/s": f"{rate * task.n_steps * config['batch_size']:.0f}"}, refresh=False)
                bar.update(1)
            if iteration % eval_every == 0 or iteration == total:
                test_loss, test_metric = (float(v) for v in np.asarray(steps.evaluate(state.model, test)))
                elapsed_now = elapsed + time.perf_counter() - t0
                row = {"iteration": iteration, "train_loss": loss_sum / max(loss_count, 1),
                       "train_metric": metric_sum / max(loss_count, 1), "test_loss": test_loss,
                       "test_metric": test_metric, "wall_time": elapsed_now}
                with open(metrics_path, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
                if writer is not None:
                    for name, value in row.items():
                        if name != "iteration":
                            writer.add_scalar(name, value, iteration)
                    writer.flush()
                loss_sum, loss_count, metric_sum = 0.0, 0, 0.0
                elapsed, t0 = elapsed_now, time.perf_counter()
                save_checkpoint(ckpt_path, state, meta(iteration))
                last_good = iteration
                if log:
                    line = (f"iteration {iteration}: test loss {test_loss:.4f}, test {task.metric_name} "
                            f"{test_metric:.4f} (chance {task.chance:.3f})")
                    if bar is not None:
                        bar.write(line)
                    else:
                        print(line, flush=True)
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    elapsed += time.perf_counter() - t0
    rows = runfolder.read_metrics(metrics_path)
    final = rows[-1] if rows else None
    summary = {
        "task": config["task"], "task_options": task.options, "method": config["method"],
        "metric_name": task.metric_name, "higher_is_better": task.higher_is_better, "chance": task.chance,
        "final_metric": None if final is None else final["test_metric"],
        "final_test_loss": None if final is None else final["test_loss"],
        "iterations": total, "seconds": elapsed, "compilations": dict(steps.traces),
        "package_version": __version__,
    }
    _write_json(os.path.join(out, "summary.json"), summary)
    if plots:
        summary["plots"] = write_plots(out, rows, task, state.model, test, config)
        _write_json(os.path.join(out, "summary.json"), summary)
    return summary


def _tensorboard_writer(folder: str):
    """A ``tensorboardX.SummaryWriter`` on ``folder``, with a clear error when tensorboardX is missing."""
    try:
        from tensorboardX import SummaryWriter
    except ModuleNotFoundError:
        raise UsageError("--tensorboard needs tensorboardX: python -m pip install 'deepeprop[tensorboard]'") from None
    return SummaryWriter(folder)


SHOWN_CANDIDATES = 64  # the readout plot shows the first correctly classified of this many test examples


def write_plots(out: str, rows: list[dict], task, model, test, config: dict) -> list[str]:
    """Learning curves; a spike raster (spiking models) and the readout over time of one test example: the first
    correctly classified one for a classification task (its title says whether it is)."""
    from . import plots

    title = f"{config['method']} on {config['task']} ({config['neuron']}, hidden {config['hidden']})"
    paths = [plots.learning_curves(rows, os.path.join(out, "learning_curves.png"), metric_name=task.metric_name,
                                   chance=task.chance, title=title)] if rows else []
    candidates = jax.tree_util.tree_map(lambda a: a[:, :SHOWN_CANDIDATES], test)
    _, ys, zs = eqx.filter_jit(lambda m, x: m.run(x, record=True))(model, candidates.inputs)
    classification = task.loss == "cross_entropy"
    index, label, predicted = 0, None, None
    if classification:
        index, label, predicted = shown_example(ys, candidates.targets, candidates.mask)
    if model.layers[0].neuron.spiking:
        paths.append(plots.raster([np.asarray(z[:, index]) for z in zs], os.path.join(out, "raster.png"),
                                  title=f"spikes of one test example ({config['neuron']})"))
    if label is None:
        caption = "readout of one test example"
    else:
        verdict = "correct" if predicted == label else "misclassified: no shown candidate was classified correctly"
        caption = f"readout of one test example (label {label}, predicted {predicted}: {verdict})"
    paths.append(plots.readout_over_time(np.asarray(ys[:, index]), os.path.join(out, "readout.png"),
                                         mask=np.asarray(candidates.mask[:, index]), label=label,
                                         classification=classification, title=caption))
    return paths


def shown_example(ys, targets, mask) -> tuple[int, int | None, int | None]:
    """``(index, label, predicted)`` of the example a readout plot shows: the first whose loss window has one label
    and whose prediction (argmax of the readout summed over the window, as the accuracy counts it) is that label;
    else the first with one label (misclassified); else ``(0, None, None)``. ``ys`` (T, B, n_out)."""
    ys, targets, window = np.asarray(ys), np.asarray(targets).astype(np.int64), np.asarray(mask) > 0
    highest = np.where(window, targets, -1).max(axis=0)  # (B,)
    lowest = np.where(window, targets, np.iinfo(np.int64).max).min(axis=0)
    labelled = window.any(axis=0) & (highest == lowest) & (highest >= 0)
    predicted = np.argmax(np.sum(ys * window[..., None], axis=0), axis=-1)  # (B,)
    for chosen in (np.nonzero(labelled & (predicted == highest))[0], np.nonzero(labelled)[0]):
        if chosen.size:
            index = int(chosen[0])
            return index, int(highest[index]), int(predicted[index])
    return 0, None, None


# ---------------------------------------------------------------------------- command line
def _registry(module: str, name: str):
    """A help text callable: the names of registry ``module.name``, read when the parser is built (so a newly
    registered engine, task or neuron model appears in ``--help`` by itself)."""
    def text() -> str:
        import importlib

        return names(getattr(importlib.import_module(module, __package__), name))

    return text


# option -> (flag, argparse kwargs); every default is SUPPRESS so that only given flags count. A help given as a
# function is called when the parser is built ({} in it: the registry's names); "(default: ...)" is added from
# DEFAULTS unless the help states the default itself.
FLAGS = {
    "task": ("--task", dict(help=lambda: f"task: {_registry('.tasks', 'TASKS')()}")),
    "method": ("--method", dict(help=lambda: f"gradient engine: {_registry('.engines', 'ENGINES')()}")),
    "evaluation": ("--evaluation", dict(help=lambda: "how the engine evaluates its rule: "
                                        f"{', '.join(_evaluation_names())}; the same "
                                        "gradient up to rounding, so it may change on resume; reverse needs one "
                                        "update per sequence (no --update-every) (default: the engine's own, its "
                                        "fastest online one)")),
    "neuron": ("--neuron", dict(help=lambda: f"neuron model: {_registry('.neurons', 'NEURONS')()}, or one per "
                                "layer comma-separated, e.g. lif,alif")),
    "hidden": ("--hidden", dict(help="hidden layer sizes, comma-separated")),
    "recurrence": ("--recurrence", dict(help=lambda: f"{_registry('.network', 'RECURRENCES')()}, or one per layer "
                                        "comma-separated")),
    "skip": ("--skip", dict(help="extra same-time edges I:J, comma-separated (0 = input, 1..L hidden, L+1 = "
                            "readout), e.g. 1:3,0:2 (TOML: skip = [[1, 3]]; default: none)")),
    "residual": ("--residual", dict(help="fixed identity edges I:J, comma-separated (equal widths; one on a chain "
                                    "edge replaces it), e.g. 2:3,0:3 (default: none)")),
    "readout": ("--readout", dict(help=lambda: _registry(".network", "READOUTS")())),
    "method_options": None,  # --method-option NAME=VALUE (below)
    "neuron_options": None,  # --neuron-option NAME=VALUE (below)
    "tau_m": ("--tau-m", dict(help="membrane time constant in steps, or one per hidden layer comma-separated, e.g. "
                              "2,50 (fast below, slow above)")),
    "tau_a": ("--tau-a", dict(help="ALIF adaptation time constant in steps, or one per layer")),
    "tau_out": ("--tau-out", dict(type=float, help="leaky readout time constant in steps")),
    "input_gain": ("--input-gain", dict(type=float, help="scale of the initial input weights")),
    "recurrent_gain": ("--recurrent-gain", dict(type=float, help="scale of the initial recurrent weights")),
    "self_connections": ("--self-connections", dict(type=lambda text: parse_bool(text, "--self-connections"),
                                                    help="dense recurrence: false (W's diagonal masked to zero) or "
                                                    "true; true with --neuron-option detach_reset=false is the "
                                                    "exact-reset model")),
    "iterations": ("--iterations", dict(type=int, help="training batches")),
    "batch_size": ("--batch-size", dict(type=int, help="sequences per batch")),
    "optimizer": ("--optimizer", dict(help=lambda: names_of(OPTIMIZERS))),
    "lr": ("--lr", dict(type=float, help="learning rate")),
    "update_every": ("--update-every", dict(type=int, help="update the weights every K time steps during the "
                                            "sequence (default: once per sequence)")),
    "feedback": ("--feedback", dict(help=lambda: "eprop and immediate only: "
                                    f"{_registry('.engines.eprop', 'FEEDBACKS')()} (default: the engine's own, "
                                    "symmetric)")),
    "feedback_decay": ("--feedback-decay", dict(type=float, help="adaptive feedback: weight decay of W_out and "
                                                "B_out per update")),
    "seed": ("--seed", dict(type=int, help="model and data seed")),
    "eval_every": ("--eval-every", dict(type=int, help="evaluate and checkpoint every N iterations")),
    "eval_batch_size": ("--eval-batch-size", dict(type=int, help="test batch of generated tasks")),
    "dtype": ("--dtype", dict(help=lambda: _registry(".network", "DTYPES")())),
    "out": ("--out", dict(help="output folder")),
    "devices": ("--devices", dict(type=int, help="split each batch over N devices (data parallel, jax.sharding; "
                                  "on a CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N)")),
}


def _evaluation_names() -> list[str]:
    """``step``, ``chunked``, ``chunked:K``, ``reverse``: the names of ``EVALUATIONS`` and the sized form."""
    from .engines import EVALUATIONS, Chunked

    return [text for name, cls in EVALUATIONS.items()
            for text in ((name, f"{name}:K (chunks of K steps)") if issubclass(cls, Chunked) else (name,))]


def names_of(choices) -> str:
    return names(choices)


def _show_default(value) -> str | None:
    """A default as a command line would give it (``[64, 64]`` -> ``64,64``, ``False`` -> ``false``)."""
    if value is None or value == {} or value == []:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(_show_default(v) or "" for v in value)
    return str(value)


def flag_help(name: str) -> str:
    """The ``--help`` text of option ``name``: generated from the registries and :data:`DEFAULTS` now."""
    text = FLAGS[name][1]["help"]
    text = text() if callable(text) else text
    shown = _show_default(DEFAULTS[name])
    if "default" not in text.lower() and shown is not None:
        text += f" (default: {shown})"
    return text.replace("%", "%%")


def parse_bool(text: str, name: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"{name} must be true or false, got {text!r}")
    return lowered == "true"


def add_run_flags(parser) -> None:
    for name, spec in FLAGS.items():
        if spec is None:
            continue
        flag, kwargs = spec
        parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, **dict(kwargs, help=flag_help(name)))
    parser.add_argument("--method-option", dest="method_option", action="append", default=None,
                        metavar="NAME=VALUE", help="an engine option, repeatable (e.g. --method-option "
                        "readout_filter=false, --method-option feedback=random)")
    parser.add_argument("--neuron-option", dest="neuron_option", action="append", default=None,
                        metavar="NAME=VALUE", help="a neuron-model option for every hidden layer, repeatable (e.g. "
                        "--neuron-option detach_reset=false: keep the reset path, default true); per layer in a "
                        "TOML config")
    parser.add_argument("--task-option", dest="task_option", action="append", default=None, metavar="NAME=VALUE",
                        help="a task option, repeatable (e.g. --task-option delay_steps=20)")


def _resumable_flags() -> str:
    return names("--" + key.replace("_", "-") for key in RESUMABLE)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a network on a task, online",
        description="Train a network on a task with one gradient engine; writes config.json, metrics.jsonl, "
                    "summary.json, checkpoint.eqx and plots to --out. Options come from the defaults, then "
                    "--config FILE (TOML), then the flags given explicitly.")
    parser.add_argument("--config", default=None, help="TOML file of options (flags given explicitly override it)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.eqx (only "
                        f"{_resumable_flags()} may change)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run files in a non-empty --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (the line of each evaluation "
                        "is still printed)")
    parser.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    parser.add_argument("--tensorboard", action="store_true", help="also log the metrics for TensorBoard to "
                        "OUT/tensorboard (needs tensorboardX: pip install 'deepeprop[tensorboard]')")
    add_run_flags(parser)
    parser.set_defaults(func=_main)


def explicit_options(args) -> dict:
    given = {name: getattr(args, name) for name in FLAGS if hasattr(args, name)}
    if getattr(args, "task_option", None):
        given["task_options"] = parse_task_options(args.task_option)
    if getattr(args, "method_option", None):
        given["method_options"] = parse_task_options(args.method_option, "--method-option")
    if getattr(args, "neuron_option", None):
        given["neuron_options"] = parse_task_options(args.neuron_option, "--neuron-option")
    return given


def check_config_neuron_options(config: dict) -> None:
    """Every layer's neuron options are ones its neuron takes (the error lists those it does)."""
    from .network import check_neuron_options

    depth = len(config["hidden"])
    names = config["neuron"] if isinstance(config["neuron"], list) else [config["neuron"]] * depth
    options = config["neuron_options"]
    per_layer = options if isinstance(options, list) else [options] * depth
    for name, layer_options in zip(names, per_layer):
        check_neuron_options(NEURONS[name], layer_options, name)


def explicit_reset(config: dict, missing_means: bool, given: bool | None = None):
    """``config["neuron_options"]`` with ``detach_reset`` written out for every layer whose neuron takes it.

    A config records the choice explicitly, so that a change of a default cannot change a saved run's model. A new
    run fills in its method's choice (``missing_means=engine.reset_choice``: the rule's default, or the engine's
    ``detach_reset`` option, ``given``, which an explicit neuron option must not contradict); ``False`` reads a
    missing entry as the default of the versions before the standard e-prop model became the default (a run saved
    then kept the reset path). Runs saved since record the entry, so they keep their model too.
    """
    import inspect

    depth = len(config["hidden"])
    names = config["neuron"] if isinstance(config["neuron"], list) else [config["neuron"]] * depth
    options = config["neuron_options"]
    per_layer = [dict(o) for o in options] if isinstance(options, list) else [dict(options) for _ in range(depth)]
    takes = []
    for index, (name, layer_options) in enumerate(zip(names, per_layer)):
        parameter = inspect.signature(NEURONS[name].__init__).parameters.get("detach_reset")
        takes.append(parameter is not None)
        if parameter is None:
            continue
        if layer_options.get("detach_reset") is None:
            layer_options["detach_reset"] = bool(missing_means)
        elif not isinstance(layer_options["detach_reset"], bool):
            raise ValueError(f"detach_reset must be true or false, got {layer_options['detach_reset']!r}")
        elif given is not None and bool(layer_options["detach_reset"]) != bool(given):
            raise ValueError(f"detach_reset is given twice and disagrees: detach_reset={layer_options['detach_reset']} "
                             f"for layer {index + 1} ({name}), --method-option detach_reset={given}; give it once")
    if not any(takes):
        return options
    if not isinstance(options, list) and all(takes):  # one table for every layer stays one table
        return per_layer[0]
    return per_layer


def _upgrade_saved(saved: dict) -> dict:
    """A saved config as this version reads it: ``detach_reset`` missing means the reset path was kept."""
    if not all(key in saved for key in ("hidden", "neuron", "neuron_options")):
        return saved
    return {**saved, "neuron_options": explicit_reset(saved, missing_means=False)}


def _resume_config(explicit: dict, config_file) -> dict:
    out = explicit.get("out", DEFAULTS["out"])
    path = os.path.join(out, "config.json")
    if not os.path.exists(path):
        raise UsageError(f"--resume: no run to resume in {out!r} (no config.json); give --out DIR of an earlier run")
    with open(path) as handle:
        saved = json.load(handle)
    # a key the run's version did not know (e.g. skip) had its default's meaning then
    saved = {key: saved[key] if key in saved else DEFAULTS[key] for key in DEFAULTS}
    saved = _upgrade_saved(saved)
    if config_file:
        raise UsageError("--resume reads the run's own config.json; do not give --config with it")
    for key, value in explicit.items():
        if key in RESUMABLE:
            continue
        merged = {**saved["task_options"], **value} if key == "task_options" else value
        if key in ("hidden", "neuron", "recurrence", "skip", "residual", "tau_m", "tau_a", "self_connections",
                   "neuron_options"):  # compare the normalised forms
            merged = validate_config({**saved, key: value})[key]
        if merged != saved.get(key):
            raise UsageError(f"--resume: --{key.replace('_', '-')} {value!r} differs from the run's "
                         f"{saved.get(key)!r}; only {', '.join('--' + k.replace('_', '-') for k in RESUMABLE)} "
                         f"may change on resume")
    return validate_config({**saved, **{k: v for k, v in explicit.items() if k in RESUMABLE}})


def _main(args) -> int:
    import sys

    explicit = explicit_options(args)
    config = _resume_config(explicit, args.config) if args.resume else resolve_config(explicit, args.config)
    if config["dtype"] == "float64":  # the command's choice (--dtype); the library never switches it
        jax.config.update("jax_enable_x64", True)
    try:
        summary = train(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
                        plots=not args.no_plots, tensorboard=args.tensorboard, log=True)
    except TrainingDiverged as err:
        print(f"deepeprop train: error: {err}", file=sys.stderr)
        return 3
    except CheckpointError as err:
        print(f"deepeprop train: error: {err}", file=sys.stderr)
        return 2
    print(f"{summary['method']} on {summary['task']}: final test {summary['metric_name']} "
          f"{summary['final_metric']:.4f} (chance {summary['chance']:.4f}) after {summary['iterations']} "
          f"iterations, {summary['seconds']:.1f} s; results in {config['out']}")
    return 0
