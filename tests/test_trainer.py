"""The trainer (issue 19, item 2): callbacks, windowed reads of the training values, divergence found in a window."""
from __future__ import annotations

import json

import equinox as eqx
import jax.numpy as jnp
import pytest

from deepeprop import runfolder
from deepeprop.callbacks import Callback
from deepeprop.config import TrainConfig
from deepeprop.errors import TrainingDiverged
from deepeprop.trainer import Trainer

TINY = dict(task="delayed_copy", task_options=dict(n_symbols=3, seq_len=2, delay=2), method="eprop", neuron="leaky",
            hidden=[3], iterations=6, batch_size=2, lr=1e-2, eval_every=3, eval_batch_size=4, dtype="float64")


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_start(self, trainer, start):
        self.events.append(("start", start))

    def on_iteration(self, trainer, iteration):
        self.events.append(("iteration", iteration))

    def on_values(self, trainer, iterations, losses, metrics):
        assert len(iterations) == len(losses) == len(metrics)
        self.events.append(("values", tuple(iterations)))

    def on_evaluation(self, trainer, row):
        self.events.append(("evaluation", row["iteration"]))

    def on_end(self, trainer, rows, summary):
        summary["recorded"] = len(rows)
        self.events.append(("end", len(rows)))

    def close(self):
        self.events.append(("close",))


def test_callbacks_see_each_iteration_and_the_values_once_per_window(tmp_path):
    config = TrainConfig.from_dict(dict(TINY, out=str(tmp_path / "run")))
    recorder = Recorder()
    trainer = Trainer(config, callbacks=(recorder,))
    trainer.read_every = 2
    summary = trainer.run(progress=False, plots=False)
    assert summary["recorded"] == 2 and summary["iterations"] == 6
    assert recorder.events[0] == ("start", 0) and recorder.events[-2:] == [("end", 2), ("close",)]
    reads = [event[1] for event in recorder.events if event[0] == "values"]
    assert reads == [(1, 2), (3,), (4, 5), (6,)]  # a window of read_every, and every evaluation reads what is left
    assert [e[1] for e in recorder.events if e[0] == "iteration"] == [1, 2, 3, 4, 5, 6]
    rows = runfolder.read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
    assert [row["iteration"] for row in rows] == [3, 6]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final_metric"] == rows[-1]["test_metric"]


def test_windowed_reads_give_the_same_run_as_reading_every_iteration(tmp_path):
    payloads, rows = [], []
    for read_every in (1, 16):
        out = tmp_path / f"every{read_every}"
        trainer = Trainer(TrainConfig.from_dict(dict(TINY, out=str(out))))
        trainer.read_every = read_every
        trainer.run(progress=False, plots=False)
        payloads.append(runfolder.read_checkpoint_header(str(out / runfolder.CHECKPOINT))[1])
        rows.append(runfolder.read_metrics(str(out / "metrics.jsonl")))
    assert payloads[0] == payloads[1]
    assert [{k: v for k, v in r.items() if k != "wall_time"} for r in rows[0]] == \
        [{k: v for k, v in r.items() if k != "wall_time"} for r in rows[1]]


def test_divergence_inside_a_window_names_its_iteration_and_keeps_the_checkpoint(tmp_path):
    config = TrainConfig.from_dict(dict(TINY, out=str(tmp_path / "run")))

    def inject_nan(iteration, state):
        if iteration == 4:
            return eqx.tree_at(lambda s: s.model.readout.U, state, state.model.readout.U * jnp.nan)
        return state

    trainer = Trainer(config, fault=inject_nan)
    with pytest.raises(TrainingDiverged, match="diverged at iteration 4.*iteration 3"):
        trainer.run(progress=False, plots=False)
    header = runfolder.read_checkpoint_header(str(tmp_path / "run" / runfolder.CHECKPOINT))[0]
    assert header["iteration"] == 3
    assert [row["iteration"] for row in runfolder.read_metrics(str(tmp_path / "run" / "metrics.jsonl"))] == [3]


class StopAt(Callback):
    """Adds an entry to each row and ends the run at an iteration (the hooks a stopping criterion uses)."""

    def __init__(self, iteration):
        self.iteration = iteration

    def on_evaluation(self, trainer, row):
        row["note"] = {"checked": row["iteration"]}
        if row["iteration"] == self.iteration:
            trainer.stopped_at = row["iteration"]


def test_a_callback_may_add_to_the_row_and_end_the_run(tmp_path):
    config = TrainConfig.from_dict(dict(TINY, eval_every=2, out=str(tmp_path / "run")))
    summary = Trainer(config, callbacks=(StopAt(4),)).run(progress=False, plots=False)
    assert summary["iterations"] == 4
    rows = runfolder.read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
    assert [row["iteration"] for row in rows] == [2, 4] and rows[1]["note"] == {"checked": 4}
    assert runfolder.read_checkpoint_header(str(tmp_path / "run" / runfolder.CHECKPOINT))[0]["iteration"] == 4
