"""Training runs: ``deepeprop train`` and :func:`train` (an :class:`~deepeprop.online.OnlineLearner` on a task).

    deepeprop train --task digits --method deep_eprop --neuron alif --hidden 64,64 --iterations 300 --out runs/d
    deepeprop train --config run.toml --lr 3e-3          # flags given explicitly override the file
    deepeprop train --out runs/d --resume --iterations 600   # continue from runs/d/checkpoint.eqx

The output folder holds ``config.json`` (every resolved option and the package version: enough to rerun),
``metrics.jsonl`` (one line per evaluation), ``summary.json``, ``checkpoint.eqx`` and PNG plots. A run locks
its folder while it writes, and a fresh run refuses a folder that holds files unless ``--overwrite``
(:mod:`deepeprop.runfolder`); a resume refuses options other than :data:`RESUMABLE` that differ from the
checkpoint's run.

The parts: the options are a :class:`~deepeprop.config.TrainConfig` (:mod:`deepeprop.config`), the loop is
:class:`~deepeprop.trainer.Trainer` with :mod:`deepeprop.callbacks`, the folder's files (checkpoints included) are
:mod:`deepeprop.runfolder`'s. This module is the command and the functions of earlier versions (:func:`train`,
:func:`resolve_config`, :func:`build`, ...), which take a ``TrainConfig`` or a flat mapping of options.
``--dtype float64`` switches JAX's float64 on; a caller of :func:`train` switches it on itself
(``jax.config.update("jax_enable_x64", True)``).
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

import jax

from . import runfolder  # noqa: F401  (training.runfolder as before)
from .callbacks import SHOWN_CANDIDATES, shown_example, write_plots  # noqa: F401  (as before)
from .config import (DATA_STRIDE, DEFAULTS, OPTIMIZERS, RESUMABLE, TrainConfig, explicit_options,  # noqa: F401
                     load_toml, parse_options, parse_value, upgrade)
from .errors import CheckpointError, TrainingDiverged, UsageError  # noqa: F401  (training.CheckpointError as before)
from .registry import names
from .runfolder import (CHECKPOINT, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, load_checkpoint,  # noqa: F401
                        read_checkpoint_header, save_checkpoint)
from .trainer import (Steps, Trainer, as_config, build, cast, check_loss_counts, eval_batch,  # noqa: F401
                      make_steps, train_batch)
from .trainer import check_resumable as _check_resumable  # noqa: F401  (as before)

parse_task_options = parse_options  # the name of earlier versions


def resolve_config(explicit: dict, config_file: str | None = None) -> TrainConfig:
    """Defaults, then the TOML file, then the explicitly given options; checked (:meth:`TrainConfig.resolve`)."""
    return TrainConfig.resolve(explicit, config_file)


def validate_config(config) -> TrainConfig:
    """A flat mapping of options checked into a :class:`TrainConfig`."""
    return as_config(config)


def train(config, *, resume: bool = False, overwrite: bool = False, progress: bool = True,
          plots: bool = True, fault: Any = None, tensorboard: bool = False, log: bool | None = None) -> dict:
    """Run (or resume) the training described by ``config``; returns the summary dict.

    ``config``: a :class:`~deepeprop.config.TrainConfig` or a flat mapping of options (checked into one). The
    run holds a lock on its ``out`` folder while it writes: a second run into the same folder is refused
    (:class:`~deepeprop.errors.RunFolderError`, naming the other process). A fresh run into a folder that
    already holds files is refused unless ``overwrite=True`` (``--overwrite``), which replaces the run files
    there. ``resume=True`` continues from the checkpoint; only the options in :data:`RESUMABLE`
    (``iterations``, ``eval_every``, ``out``, ``devices``, ``evaluation``) may differ from the checkpoint's run:
    any other difference is refused with a :class:`CheckpointError` listing the options. Temporary files left by
    a killed run are deleted, and a torn last line of ``metrics.jsonl`` is repaired.

    ``progress``: show a progress bar. ``log``: print one line per evaluation (test loss and metric); ``None``
    (default) prints them with the progress bar only (``deepeprop train --no-progress`` keeps them).

    ``tensorboard=True`` also writes every ``metrics.jsonl`` row as TensorBoard scalars to ``OUT/tensorboard``
    (needs ``tensorboardX``: ``pip install 'deepeprop[tensorboard]'``; imported only then).

    ``fault``: for tests, a function ``(iteration, state) -> state`` applied after each step (e.g. to
    inject a NaN). Raises :class:`TrainingDiverged` on a non-finite loss or parameters (the checkpoint
    of the last evaluation stays intact) and :class:`CheckpointError` on a bad checkpoint.
    """
    return Trainer(config, fault=fault).run(resume=resume, overwrite=overwrite, progress=progress, plots=plots,
                                            tensorboard=tensorboard, log=log)


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
    "regularization": ("--regularization", dict(help=lambda: "firing-rate regularisation of the spiking hidden "
                                                "layers toward --target-rate: "
                                                f"{_registry('.regularization', 'REGULARIZATIONS')()} (Bellec et "
                                                "al.'s two forms; default: none)")),
    "regularization_strength": ("--regularization-strength", dict(type=float, help="weight of the firing-rate "
                                                                  "penalty (Bellec's reg_f times the number of "
                                                                  "loss steps)")),
    "target_rate": ("--target-rate", dict(type=float, help="target firing rate in spikes per time step (0.01 = "
                                          "10 Hz with 1 ms steps)")),
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


def _resume_config(explicit: dict, config_file) -> TrainConfig:
    """The config of a resumed run: its own ``config.json`` (upgraded), with the resumable options given."""
    out = explicit.get("out", DEFAULTS["out"])
    path = os.path.join(out, "config.json")
    if not os.path.exists(path):
        raise UsageError(f"--resume: no run to resume in {out!r} (no config.json); give --out DIR of an earlier run")
    if config_file:
        raise UsageError("--resume reads the run's own config.json; do not give --config with it")
    with open(path) as handle:
        saved = upgrade(json.load(handle))
    given = {key: value for key, value in explicit.items() if key not in RESUMABLE}
    if given:  # compare the normalised forms: the saved run with the given options over it
        options = given.pop("task_options", None)
        if options is not None:
            given["task_options"] = {**saved.run.task_options, **options}
        for key in saved.replace(**given).differences(saved):
            raise UsageError(f"--resume: {'--' + key.replace('_', '-')} {explicit.get(key)!r} differs from the "
                             f"run's {saved[key]!r}; only {', '.join('--' + k.replace('_', '-') for k in RESUMABLE)} "
                             f"may change on resume")
    return saved.replace(**{key: value for key, value in explicit.items() if key in RESUMABLE})


def _main(args) -> int:
    import sys

    explicit = explicit_options(args)
    config = _resume_config(explicit, args.config) if args.resume else resolve_config(explicit, args.config)
    if config.model.dtype == "float64":  # the command's choice (--dtype); the library never switches it
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
          f"iterations, {summary['seconds']:.1f} s; results in {config.run.out}")
    return 0
