"""What a :class:`~deepeprop.trainer.Trainer` does beside training: each a :class:`Callback`.

:class:`MetricsLog` appends each evaluation row to ``metrics.jsonl``; :class:`TensorBoard` writes the rows as
TensorBoard scalars; :class:`Progress` shows a progress bar and prints a line per evaluation; :class:`Plots`
writes the PNG figures at the end. A callback is told of each iteration (``on_iteration``: no values, so that
nothing waits for the device), of the training values when the trainer reads them (``on_values``: a window of
iterations at a time), of each evaluation (``on_evaluation``) and of the end (``on_end``, which may add to the
summary); ``close`` runs however the run ends.
"""
from __future__ import annotations

import json
import os

import equinox as eqx
import jax
import numpy as np

from . import early_stopping
from .config import TrainConfig
from .errors import UsageError


class Callback:
    """The hooks of a training run; each does nothing unless overridden."""

    def on_start(self, trainer, start: int) -> None:
        """Before the first iteration (``start``: the checkpoint's iteration, 0 for a fresh run)."""

    def on_iteration(self, trainer, iteration: int) -> None:
        """After iteration ``iteration`` was dispatched to the device (its values are not read yet)."""

    def on_values(self, trainer, iterations: list[int], losses: list[float], metrics: list[float]) -> None:
        """The training loss and metric of ``iterations``, read from the device together."""

    def on_evaluation(self, trainer, row: dict) -> None:
        """After an evaluation (``row``: a ``metrics.jsonl`` row), before its checkpoint is written. A callback
        given to the trainer runs before the standard ones: it may add entries to ``row`` (they are written), or
        set ``trainer.stopped_at = row["iteration"]`` to end the run after this evaluation's checkpoint."""

    def on_end(self, trainer, rows: list[dict], summary: dict) -> None:
        """After the last iteration; ``rows`` all of ``metrics.jsonl``; may add to ``summary``."""

    def close(self) -> None:
        """At the end of the run, whether it ended cleanly or not."""


class EarlyStop(Callback):
    """Bellec et al.'s early-stopping criterion (:mod:`deepeprop.early_stopping`): at an evaluation whose test error
    is below the threshold, the error on ``batches`` more test batches; below it too, the run ends there
    (``trainer.stopped_at``). Each confirmation goes into the evaluation's row; ``summary["early_stopping"]`` holds
    the threshold, the iteration where it was met (``met_at``, ``None`` if never) and every confirmation tried."""

    def __init__(self, threshold: float, batches: int):
        self.threshold, self.batches = threshold, batches
        self.stopper = None

    def on_start(self, trainer, start: int) -> None:
        self.stopper = early_stopping.EarlyStopping(
            self.threshold, self.batches, evaluate=trainer.test_metric, make_batch=trainer.test_batch,
            higher_is_better=trainer.task.higher_is_better, seed=trainer.config.run.seed)

    def on_evaluation(self, trainer, row: dict) -> None:
        checked = self.stopper.check(row["iteration"], row["test_metric"])
        if checked is None:
            return
        row["early_stopping"] = checked
        if checked["met"]:
            trainer.stopped_at = row["iteration"]
            if trainer.place.main:
                print(f"early stopping: error {checked['confirm_error']:.4f} on {self.batches} more batches, below "
                      f"{self.threshold}: stopped at iteration {row['iteration']}", flush=True)

    def on_end(self, trainer, rows: list[dict], summary: dict) -> None:
        summary["early_stopping"] = {"threshold": self.threshold, "batches": self.batches,
                                     "met_at": trainer.stopped_at,
                                     "checks": [row["early_stopping"] for row in rows if "early_stopping" in row]}


class MetricsLog(Callback):
    """Appends each evaluation row to ``OUT/metrics.jsonl`` (one JSON object a line)."""

    def __init__(self, path: str):
        self.path = path

    def on_evaluation(self, trainer, row: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")


class TensorBoard(Callback):
    """Each ``metrics.jsonl`` row as TensorBoard scalars in ``folder`` (needs ``tensorboardX``)."""

    def __init__(self, folder: str):
        try:
            from tensorboardX import SummaryWriter
        except ModuleNotFoundError:
            raise UsageError("--tensorboard needs tensorboardX: python -m pip install 'deepeprop[tensorboard]'") \
                from None
        self.writer = SummaryWriter(folder)

    def on_evaluation(self, trainer, row: dict) -> None:
        for name, value in row.items():
            if name != "iteration" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(name, value, row["iteration"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Progress(Callback):
    """A tqdm progress bar (``bar``) and one printed line per evaluation (``log``)."""

    def __init__(self, *, bar: bool = True, log: bool = True):
        self.show_bar, self.log, self.bar = bar, log, None

    def on_start(self, trainer, start: int) -> None:
        if self.show_bar:
            from tqdm import tqdm

            config = trainer.config
            self.bar = tqdm(total=config.run.iterations, initial=start, unit="it", dynamic_ncols=True,
                            desc=f"{config.engine.method} on {config.run.task}")

    def on_iteration(self, trainer, iteration: int) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_values(self, trainer, iterations, losses, metrics) -> None:
        if self.bar is not None and losses:
            rate = self.bar.format_dict.get("rate") or 0.0
            steps = rate * trainer.task.n_steps * trainer.config.run.batch_size
            self.bar.set_postfix(loss=f"{losses[-1]:.4f}", metric=f"{metrics[-1]:.3f}",
                                 **{"steps/s": f"{steps:.0f}"}, refresh=False)

    def on_evaluation(self, trainer, row: dict) -> None:
        if not self.log:
            return
        task = trainer.task
        line = (f"iteration {row['iteration']}: test loss {row['test_loss']:.4f}, test {task.metric_name} "
                f"{row['test_metric']:.4f} (chance {task.chance:.3f})")
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Plots(Callback):
    """The PNG figures at the end (:func:`write_plots`); their paths go into the summary as ``plots``."""

    def on_end(self, trainer, rows: list[dict], summary: dict) -> None:
        model = trainer.state.model if trainer.place is None else trainer.place.host(trainer.state.model)
        summary["plots"] = write_plots(trainer.config.run.out, rows, trainer.task, model, trainer.test,
                                       trainer.config)


SHOWN_CANDIDATES = 64  # the readout plot shows the first correctly classified of this many test examples


def write_plots(out: str, rows: list[dict], task, model, test, config: TrainConfig) -> list[str]:
    """Learning curves; a spike raster (spiking models) and the readout over time of one test example: the first
    correctly classified one for a classification task (its title says whether it is)."""
    from . import plots

    neuron = config.model.neuron[0] if len(set(config.model.neuron)) == 1 else list(config.model.neuron)
    title = f"{config.engine.method} on {config.run.task} ({neuron}, hidden {list(config.model.hidden)})"
    paths = [plots.learning_curves(rows, os.path.join(out, "learning_curves.png"), metric_name=task.metric_name,
                                   chance=task.chance, title=title)] if rows else []
    candidates = jax.tree_util.tree_map(lambda a: a[:, :SHOWN_CANDIDATES], test)
    _, ys, zs = eqx.filter_jit(lambda m, x: m.run(x, record=True))(model, candidates.inputs)
    classification = task.loss == "cross_entropy"
    index, label, predicted = 0, None, None
    if classification:
        index, label, predicted = shown_example(ys, candidates.targets, candidates.mask)
    if model.hidden[0].neuron.spiking:
        paths.append(plots.raster([np.asarray(z[:, index]) for z in zs], os.path.join(out, "raster.png"),
                                  title=f"spikes of one test example ({neuron})"))
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
