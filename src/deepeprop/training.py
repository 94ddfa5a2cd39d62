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

import json
import os
from typing import Any

import jax

from . import runfolder  # noqa: F401  (training.runfolder as before)
from .callbacks import SHOWN_CANDIDATES, shown_example, write_plots  # noqa: F401  (as before)
from . import config_sources
from .config import DATA_STRIDE, DEFAULTS, OPTIMIZERS, RESUMABLE, TrainConfig, upgrade  # noqa: F401
from .config_sources import parse_options, parse_value  # noqa: F401  (as before)
from .errors import CheckpointError, TrainingDiverged, UsageError, usage_errors  # noqa: F401  (as before)
from .runfolder import (CHECKPOINT, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, load_checkpoint,  # noqa: F401
                        read_checkpoint_header, save_checkpoint)
from .trainer import (Steps, Trainer, as_config, build, cast, check_loss_counts, eval_batch,  # noqa: F401
                      make_steps, train_batch)
from .trainer import check_resumable as _check_resumable  # noqa: F401  (as before)

parse_task_options = parse_options  # the name of earlier versions
_write_json = runfolder.write_json  # (as before)


def explicit_options(args) -> dict:
    """The options given explicitly as ``deepeprop train`` flags, by flat key."""
    return config_sources.explicit_options(args, DEFAULTS)


def load_toml(path: str) -> dict:
    """The options of a TOML config file (keys as in :data:`DEFAULTS`)."""
    return config_sources.load_toml(path, DEFAULTS)


def resolve_config(explicit: dict, config_file: str | None = None) -> TrainConfig:
    """Defaults, then the TOML file, then the explicitly given options; checked (:meth:`TrainConfig.resolve`)."""
    return TrainConfig.resolve(explicit, config_file)


def validate_config(config) -> TrainConfig:
    """A flat mapping of options checked into a :class:`TrainConfig`."""
    return as_config(config)


def train(config, *, resume: bool = False, overwrite: bool = False, progress: bool = True,
          plots: bool = True, fault: Any = None, tensorboard: bool = False, log: bool | None = None,
          cluster: Any = None) -> dict:
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

    ``cluster``: a :class:`deepeprop.distributed.Cluster` (already joined with
    :func:`deepeprop.distributed.initialize`) to train over several processes; process 0 alone locks and writes
    the ``out`` folder, the others write nothing. ``None``: this process alone.

    ``fault``: for tests, a function ``(iteration, state) -> state`` applied after each step (e.g. to
    inject a NaN). Raises :class:`TrainingDiverged` on a non-finite loss or parameters (the checkpoint
    of the last evaluation stays intact) and :class:`CheckpointError` on a bad checkpoint.
    """
    return Trainer(config, fault=fault, cluster=cluster).run(resume=resume, overwrite=overwrite, progress=progress,
                                                             plots=plots, tensorboard=tensorboard, log=log)


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
    from . import distributed

    with usage_errors():  # the cluster flags' own checks (e.g. --coordinator is needed)
        cluster = distributed.cluster_of_args(args)  # None: one process
    if cluster is None:
        return _run(args, None)
    # several processes: join them before anything starts JAX's backend; an error on any process ends it at once
    # (an orderly exit would wait for the others at the runtime's shutdown barrier), the others then fail too
    try:
        distributed.initialize(cluster)
        return _run(args, cluster)
    except Exception as err:  # noqa: BLE001
        if not distributed.agreed() and not isinstance(err, distributed.PeerFailure):
            try:  # this process's setup failed: tell the others, waiting at the agreement, before it stops
                distributed.agree(False)
            except Exception:  # noqa: BLE001 (the others may be gone already)
                pass
        code = (distributed.PEER_FAILURE_EXIT if distributed.is_peer_failure(err) else
                3 if isinstance(err, TrainingDiverged) else 2 if isinstance(err, ValueError) else 1)
        where = "" if distributed.is_peer_failure(err) else f"process {cluster.process_id} of {cluster.processes}: "
        distributed.exit_after_peer_failure(f"{where}{err}", code)


def _run(args, cluster) -> int:
    import sys

    explicit = explicit_options(args)
    config = _resume_config(explicit, args.config) if args.resume else resolve_config(explicit, args.config)
    if config.model.dtype == "float64":  # the command's choice (--dtype); the library never switches it
        jax.config.update("jax_enable_x64", True)
    try:
        summary = train(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
                        plots=not args.no_plots, tensorboard=args.tensorboard, log=True, cluster=cluster)
    except TrainingDiverged as err:
        print(f"deepeprop train: error: {err}", file=sys.stderr)
        return 3
    except CheckpointError as err:
        if cluster is not None:
            raise  # several processes: the caller ends this one at once
        print(f"deepeprop train: error: {err}", file=sys.stderr)
        return 2
    if cluster is not None and not cluster.main:
        print(f"process {cluster.process_id} of {cluster.processes}: {summary['iterations']} iterations done, "
              f"{summary['seconds']:.1f} s (process 0 writes the results)")
        return 0
    print(f"{summary['method']} on {summary['task']}: final test {summary['metric_name']} "
          f"{summary['final_metric']:.4f} (chance {summary['chance']:.4f}) after {summary['iterations']} "
          f"iterations, {summary['seconds']:.1f} s; results in {config.run.out}")
    return 0
