"""The training loop: ``Trainer(config).run(resume=...)`` (``deepeprop train`` and :func:`deepeprop.training.train`).

The trainer builds the task, the model and the :class:`~deepeprop.online.OnlineLearner` from a
:class:`~deepeprop.config.TrainConfig`, holds the run folder's lock while it writes, and runs the compiled
training step once per batch; what it does beside training is :mod:`deepeprop.callbacks` (metrics JSONL,
TensorBoard, progress, plots).

Host and device overlap. JAX dispatches a step and returns at once; the trainer then makes the next batch on the
host (the task's generator, the cast and the transfer) while the device runs the step, and it reads the step's
loss, metric and finite flag from the device only once per window of iterations (:attr:`Trainer.read_every`, and
at every evaluation), all of the window in one transfer. A non-finite loss or parameters is found there: the run
stops with :class:`~deepeprop.errors.TrainingDiverged` naming the first bad iteration, before the evaluation and
the checkpoint that would follow it, so the last good checkpoint stays intact.

Reproducibility: the training batch of iteration ``i`` (1-based) is ``task.batch(seed * 1_000_003 + i, B)``, a pure
function of ``(seed, i)``, and the model is initialised from ``seed``; a resumed run therefore reaches the same
parameters as an uninterrupted one (bitwise on CPU). Evaluation uses the task's evaluation split
(``task.evaluation_split``: test, or validation under ``holdout="validation"``): ``task.evaluation_set()`` for
dataset tasks, else the fixed batch ``task.batch(seed, eval_batch_size, task.evaluation_split)``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import distributed, parallel, runfolder
from .callbacks import Callback, EarlyStop, MetricsLog, Plots, Progress, TensorBoard
from .config import DATA_STRIDE, RESUMABLE, TrainConfig, upgrade
from .errors import CheckpointError, TrainingDiverged, UsageError, usage_errors
from .builders import DeepRNN
from .network import DTYPES
from .online import OnlineLearner, is_finite_tree
from .runfolder import CHECKPOINT
from .tasks import get_task
from .version import __version__

READ_EVERY = 16  # iterations between the reads of the training values (a blocking device->host transfer)


# ---------------------------------------------------------------------------- building a run
def build(config: TrainConfig):
    """``(task, model, learner)`` of a config; the model is initialised from its seed."""
    config = as_config(config)
    run, m = config.run, config.model
    task = get_task(run.task, **run.task_options)
    model = DeepRNN(task.n_in, list(m.hidden), task.n_out, neuron=list(m.neuron), recurrence=list(m.recurrence),
                    readout=m.readout, skip=list(m.skip), residual=list(m.residual),
                    key=jax.random.PRNGKey(run.seed), dtype=DTYPES[m.dtype], tau_m=list(m.tau_m),
                    tau_a=list(m.tau_a), tau_out=m.tau_out, input_gain=m.input_gain,
                    recurrent_gain=m.recurrent_gain, self_connections=list(m.self_connections),
                    neuron_options=[dict(o) for o in m.neuron_options])
    engine = config.make_engine()
    optimizer = optax.adam(config.optimizer.lr) if config.optimizer.name == "adam" else optax.sgd(config.optimizer.lr)
    learner = OnlineLearner(engine, optimizer, loss=task.loss, update_every=config.engine.update_every,
                            evaluation=config.engine.evaluation, regularization=config.make_regularization(),
                            feedback_decay=config.engine.feedback_decay if engine.adaptive_feedback else 0.0)
    return task, model, learner


def as_config(config) -> TrainConfig:
    """A :class:`TrainConfig` as it is; a flat mapping (the dictionaries of earlier versions) checked into one."""
    return config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)


def train_batch(task, config: TrainConfig, iteration: int, dtype):
    """The training batch of ``iteration`` (1-based): a pure function of ``(seed, iteration)``."""
    batch = task.batch(config.run.seed * DATA_STRIDE + iteration, config.run.batch_size, "train")
    return cast(batch, dtype)


def cast(batch, dtype):
    """Inputs (and regression targets) in the model's dtype; labels stay int32."""
    targets = batch.targets
    if jnp.issubdtype(targets.dtype, jnp.floating):
        targets = jnp.asarray(targets, dtype)
    return batch._replace(inputs=jnp.asarray(batch.inputs, dtype), targets=targets)


def eval_batch(task, config: TrainConfig, dtype):
    """The fixed evaluation batch: the whole evaluation split of a dataset task (test, or validation under
    ``holdout="validation"``), else a seeded batch of the task's evaluation split."""
    batch = task.evaluation_set() if hasattr(task, "evaluation_set") else task.batch(
        config.run.seed, config.run.eval_batch_size, task.evaluation_split)
    return cast(batch, dtype)


def check_loss_counts(batch, task, what: str) -> None:
    """Refuse a batch in which the loss counts nowhere (labels all ``-1`` or the mask all zero): every gradient
    would be exactly zero and the run would train nothing, without a word. A host-side check of concrete values
    (``dp.gradients`` accepts such a batch and returns zeros: it is a valid, empty loss)."""
    counts = np.asarray(batch.mask) > 0
    if task.loss == "cross_entropy":
        counts &= np.asarray(batch.targets) >= 0
    if not counts.any():
        raise UsageError(f"targets: {what} of task {task.name!r} has no step where the loss counts (every label is "
                         "-1 or the mask is zero everywhere), so every gradient would be zero; check the task's "
                         "options (e.g. its delay or recall window) or its batch()")


@dataclass
class Steps:
    """The run's two compiled functions; ``traces`` counts how often each was traced (compiled)."""

    train: Any
    evaluate: Any
    traces: dict = field(default_factory=lambda: {"train": 0, "evaluate": 0})


def make_steps(task, learner) -> Steps:
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


def check_resumable(header: dict, config: TrainConfig, path: str) -> None:
    """The checkpoint's run and this one may differ only in :data:`~deepeprop.config.RESUMABLE` options."""
    config = as_config(config)
    if "fingerprint" not in header:  # a checkpoint from before fingerprints: the seed at least
        if header.get("seed") != config.run.seed:
            raise CheckpointError(f"{path} is from seed {header.get('seed')}, this run has seed {config.run.seed}")
        return
    digest, current = config.fingerprint()
    if digest == header["fingerprint"]:
        return
    resumable = {key: value for key, value in config.to_json().items() if key in RESUMABLE}
    try:
        saved = upgrade(header.get("config", {}), **resumable).fingerprint()[1]
    except ValueError:  # a saved config this version refuses: compare it as it is
        saved = header.get("config", {})
    changed = sorted(key for key in set(saved) | set(current) if saved.get(key) != current.get(key))
    if changed:
        listed = "; ".join(f"{key}: {saved.get(key)!r} in the checkpoint, {current.get(key)!r} now"
                           for key in changed)
        raise CheckpointError(f"{path} was written by a run with other options ({listed}); only "
                              f"{', '.join(RESUMABLE)} may change on resume: give the run's own options, or start "
                              "a fresh run in another --out")


# ---------------------------------------------------------------------------- the trainer
class Trainer:
    """One training run of ``config`` (module docstring). ``callbacks``: extra :class:`Callback` objects, called
    after the standard ones; ``fault``: for tests, a function ``(iteration, state) -> state`` applied after each
    step (e.g. to inject a NaN)."""

    read_every = READ_EVERY
    overlap = True  # False: wait for each step before making the next batch (the loop of earlier versions)

    def __init__(self, config, *, callbacks: tuple[Callback, ...] = (), fault: Callable | None = None,
                 cluster=None):
        self.config = as_config(config)
        self.cluster = cluster  # a deepeprop.distributed.Cluster: several processes, process 0 writes
        self.extra_callbacks = tuple(callbacks)
        self.fault = fault
        self.task = self.model = self.learner = self.state = self.test = None
        self.place = None  # the run's deepeprop.distributed.Placement, once it runs
        self.stopped_at: int | None = None  # set by a callback's on_evaluation to end the run there

    def test_batch(self, seed: int):
        """A test batch of the run's evaluation size drawn from ``seed``, in the model's dtype (early stopping's
        confirmation batches)."""
        return cast(self.task.batch(seed, self.config.run.eval_batch_size, self.task.evaluation_split),
                    self.model.dtype)

    def test_metric(self, batch) -> float:
        """The task metric of the current model on ``batch`` (placed as the evaluation batch is)."""
        return float(self.steps.evaluate(self.state.model, self.place.whole_batch(batch))[1])

    def run(self, *, resume: bool = False, overwrite: bool = False, progress: bool = True, plots: bool = True,
            tensorboard: bool = False, log: bool | None = None) -> dict:
        """Run (or resume) the training; returns the summary dict (:func:`deepeprop.training.train`)."""
        if resume and overwrite:
            raise UsageError("--overwrite starts the run afresh and --resume continues it: give one of them")
        out = self.config.run.out
        stopping = [] if self.config.run.early_stopping is None else [
            EarlyStop(self.config.run.early_stopping, self.config.run.early_stopping_batches)]
        if self.cluster is not None and not self.cluster.main:  # distributed: only process 0 writes the folder
            return self._run(resume, [*stopping, *self.extra_callbacks])  # (every process stops at the same place)
        # the extra callbacks first: they may add to an evaluation's row (or stop the run) before it is written
        callbacks: list[Callback] = [*stopping, *self.extra_callbacks, MetricsLog(os.path.join(out, "metrics.jsonl"))]
        log = progress if log is None else log
        if progress or log:
            callbacks.append(Progress(bar=progress, log=log))
        with runfolder.RunFolder(out, resume=resume, overwrite=overwrite):
            if tensorboard:
                callbacks.append(TensorBoard(os.path.join(out, "tensorboard")))
            if plots:
                callbacks.append(Plots())
            try:
                return self._run(resume, callbacks)
            finally:
                for callback in callbacks:
                    callback.close()

    def _run(self, resume: bool, callbacks: list[Callback]) -> dict:
        config, out = self.config, self.config.run.out
        with usage_errors():  # the library's constructors check the config's values (e.g. a neuron option's)
            task, model, learner = self.task, self.model, self.learner = build(config)
            # where the arrays live (devices, and processes), and whether this process writes
            place = self.place = distributed.Placement(config.run.devices, config.run.batch_size, self.cluster)
        main = place.main
        test = eval_batch(task, config, model.dtype)
        check_loss_counts(test, task, "its evaluation batch")  # host-side, before anything is written
        first = train_batch(task, config, 1, model.dtype)
        check_loss_counts(first, task, "its first training batch")
        state = learner.init(model)
        ckpt_path, metrics_path = os.path.join(out, CHECKPOINT), os.path.join(out, "metrics.jsonl")
        start, elapsed, sums = 0, 0.0, [0.0, 0, 0.0]  # loss sum, count, metric sum since the last evaluation
        if resume:
            state, header = runfolder.load_checkpoint(ckpt_path, state)  # validated before anything is replaced
            check_resumable(header, config, ckpt_path)
            start, elapsed = int(header["iteration"]), float(header["elapsed"])
            if start > config.run.iterations:
                raise UsageError(f"--iterations {config.run.iterations} is below the checkpoint's iteration "
                                 f"{start}; give --iterations >= {start} to resume")
            sums = [header["loss_sum"], header["loss_count"], header["metric_sum"]]
            if config.run.early_stopping is not None and header.get("stopped_at") is not None:
                self.stopped_at = int(header["stopped_at"])  # the run had met its criterion: it stays stopped
            if main:
                runfolder.repair_metrics(metrics_path, start)  # rows up to the checkpoint; a torn last line dropped
        elif main:
            with open(metrics_path, "w"):
                pass
        state = place.state(state)  # replicated on every device (of every process)
        if main:
            runfolder.write_json(os.path.join(out, "config.json"), dict(
                config.to_json(), package_version=__version__, jax_version=jax.__version__, n_steps=task.n_steps,
                loss=task.loss, metric_name=task.metric_name, processes=place.processes))
        digest, fingerprinted = config.fingerprint()

        def meta(iteration):
            return {"iteration": iteration, "seed": config.run.seed, "elapsed": elapsed, "loss_sum": sums[0],
                    "loss_count": sums[1], "metric_sum": sums[2], "task": config.run.task,
                    "method": config.engine.method, "data_stride": DATA_STRIDE, "fingerprint": digest,
                    "config": fingerprinted, "stopped_at": self.stopped_at}

        if not resume and main:
            runfolder.save_checkpoint(ckpt_path, place.host(state), meta(0))
        self.steps = steps = make_steps(task, learner)
        test_local, test = test, place.whole_batch(test)
        self.test = test if self.cluster is None else test_local  # (for the plots: this process's copy)
        if self.cluster is not None:
            distributed.agree(True)  # every process is set up (a failed one stops the others here, with a message)
        total, eval_every = config.run.iterations, config.run.eval_every
        last_good, pending = start, []  # pending: (iteration, values, ok) not read from the device yet
        for callback in callbacks:
            callback.on_start(self, start)

        def read_pending():
            """One transfer of the pending values; a non-finite one stops the run (the checkpoint stays)."""
            if not pending:
                return
            iterations = [item[0] for item in pending]
            values, oks = jax.device_get(([item[1] for item in pending], [item[2] for item in pending]))
            pending.clear()
            losses = [float(v[0]) for v in values]
            metrics = [float(v[1]) for v in values]
            for iteration, loss, metric, ok in zip(iterations, losses, metrics, oks):
                if not bool(ok):
                    raise TrainingDiverged(
                        f"training diverged at iteration {iteration}: loss = {loss} (non-finite loss or parameters; "
                        f"try a smaller --lr). The last good checkpoint (iteration {last_good}) is kept in "
                        f"{ckpt_path}")
                sums[0], sums[1], sums[2] = sums[0] + loss, sums[1] + 1, sums[2] + metric
            for callback in callbacks:
                callback.on_values(self, iterations, losses, metrics)

        def make_batch(iteration):
            if self.cluster is None:
                return parallel.shard_batch(train_batch(task, config, iteration, model.dtype), place.mesh)
            # several processes: each builds only its own rows of the batch
            return place.train_batch(task, config.run.seed * DATA_STRIDE + iteration, lambda b: cast(b, model.dtype))

        t0 = time.perf_counter()
        batch = parallel.shard_batch(first, place.mesh) if start == 0 and self.cluster is None else None
        iteration = start
        try:
            for iteration in range(start + 1, total + 1):
                if self.stopped_at is not None:  # a resumed run that had met its stopping criterion
                    break
                if batch is None:
                    batch = make_batch(iteration)
                state, values, ok = steps.train(state, batch)  # dispatched: the device runs it while the host goes on
                if self.fault is not None:
                    state = self.fault(iteration, state)
                    ok = ok & is_finite_tree(state.model)
                pending.append((iteration, values, ok))
                if not self.overlap:
                    jax.block_until_ready(values)
                evaluate = iteration % eval_every == 0 or iteration == total
                # the next batch, made on the host while the device runs this step
                batch = make_batch(iteration + 1) if iteration < total else None
                for callback in callbacks:
                    callback.on_iteration(self, iteration)
                if evaluate or len(pending) >= self.read_every:
                    read_pending()
                if evaluate:
                    test_loss, test_metric = (float(v) for v in np.asarray(steps.evaluate(state.model, test)))
                    elapsed_now = elapsed + time.perf_counter() - t0
                    count = max(sums[1], 1)
                    row = {"iteration": iteration, "train_loss": sums[0] / count, "train_metric": sums[2] / count,
                           "test_loss": test_loss, "test_metric": test_metric, "wall_time": elapsed_now}
                    sums[:] = [0.0, 0, 0.0]
                    elapsed, t0 = elapsed_now, time.perf_counter()
                    self.state = state
                    for callback in callbacks:  # the row before the checkpoint: a resume keeps rows up to it
                        callback.on_evaluation(self, row)
                    if main:
                        runfolder.save_checkpoint(ckpt_path, place.host(state), meta(iteration))
                    last_good = iteration
                    if self.stopped_at is not None:  # a callback ended the run (e.g. a stopping criterion was met)
                        break
        except Exception as err:
            if self.cluster is not None and distributed.is_peer_failure(err):  # another process died: say so
                raise distributed.PeerFailure(
                    f"process {self.cluster.process_id} of {self.cluster.processes}: a collective with the other "
                    f"processes failed at iteration {iteration} ({str(err).splitlines()[0][:300]}): another process "
                    f"of the run died or stopped answering. The last good checkpoint (iteration {last_good}) is kept "
                    f"in {ckpt_path}; continue with --resume") from None
            raise
        self.state = state
        elapsed += time.perf_counter() - t0
        if not main:
            return {"task": config.run.task, "method": config.engine.method, "iterations": total, "seconds": elapsed,
                    "process_id": self.cluster.process_id}
        rows = runfolder.read_metrics(metrics_path)
        final = rows[-1] if rows else None
        summary = {
            "task": config.run.task, "task_options": task.options, "method": config.engine.method,
            "metric_name": task.metric_name, "higher_is_better": task.higher_is_better, "chance": task.chance,
            "final_metric": None if final is None else final["test_metric"],
            "final_test_loss": None if final is None else final["test_loss"],
            "iterations": total if self.stopped_at is None else self.stopped_at, "seconds": elapsed,
            "compilations": dict(steps.traces),
            "early_stopping": None,  # the criterion's record when it is on (callbacks.EarlyStop)
            "package_version": __version__,
        }
        summary_path = os.path.join(out, "summary.json")
        runfolder.write_json(summary_path, summary)  # written before the callbacks' ends (plots may fail) ...
        for callback in callbacks:
            callback.on_end(self, rows, summary)
        runfolder.write_json(summary_path, summary)  # ... and again with what they added (early stopping, plots)
        return summary
