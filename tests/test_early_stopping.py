"""Bellec et al.'s early-stopping criterion (deepeprop.early_stopping) as an option of ``train``."""
from __future__ import annotations

import json

import pytest

from deepeprop import cli, early_stopping, training

COPY = {"n_symbols": 3, "seq_len": 2, "delay": 2}  # delayed_copy with T = 7


def tiny_config(out, **overrides):
    explicit = dict(task="delayed_copy", task_options=dict(COPY), method="eprop", neuron="lif", hidden=[4],
                    iterations=6, batch_size=4, lr=1e-2, eval_every=2, eval_batch_size=8, dtype="float64",
                    tau_m=5.0, out=str(out))
    explicit.update(overrides)
    return training.resolve_config(explicit)


def rows_of(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("value,expected", [(None, None), (False, None), (True, 0.07), (0.05, 0.05), (1, 1.0)])
def test_threshold_values(value, expected):
    assert early_stopping.check_threshold("--early-stopping", value) == expected


@pytest.mark.parametrize("value", [0, -0.1, 1.5, "soon", float("nan")])
def test_bad_threshold_names_the_flag(value):
    with pytest.raises(ValueError, match="--early-stopping must be"):
        early_stopping.check_threshold("--early-stopping", value)


def test_confirmation_needs_the_mean_of_the_further_batches_below_the_threshold():
    seen = []

    def make_batch(seed):
        seen.append(seed)
        return seed

    accuracies = iter([0.95, 0.91, 0.95, 0.95] + [0.95, 0.95, 0.95, 0.95])
    stopper = early_stopping.EarlyStopping(0.07, 4, make_batch=make_batch, evaluate=lambda batch: next(accuracies),
                                           higher_is_better=True, seed=3)
    assert stopper.check(10, 0.90) is None and seen == []  # error 0.10: no confirmation
    first = stopper.check(20, 0.95)  # confirmation errors 0.05, 0.09, 0.05, 0.05: mean 0.06 < 0.07
    assert first["met"] and first["confirm_error"] == pytest.approx(0.06) and first["error"] == pytest.approx(0.05)
    assert seen == early_stopping.confirmation_seeds(3, 20, 4) and len(set(seen)) == 4 and 3 not in seen
    failing = early_stopping.EarlyStopping(0.07, 2, make_batch=lambda s: s, evaluate=lambda b: 0.9,
                                           higher_is_better=True, seed=0)
    assert failing.check(5, 0.99) == {"iteration": 5, "error": pytest.approx(0.01), "confirm_error":
                                      pytest.approx(0.1), "met": False}
    nmse = early_stopping.EarlyStopping(0.2, 1, make_batch=lambda s: s, evaluate=lambda b: 0.1,
                                        higher_is_better=False, seed=0)
    assert nmse.check(1, 0.3) is None and nmse.check(1, 0.1)["met"]  # lower is better: the metric is the error


def test_a_run_stops_where_the_criterion_is_met_and_records_it(tmp_path):
    # threshold 1: an error below 1 (any correct answer) meets it at the first evaluation
    config = tiny_config(tmp_path / "run", early_stopping=1.0, early_stopping_batches=3)
    summary = training.train(config, progress=False, plots=False)
    assert summary["iterations"] == 2
    assert summary["early_stopping"]["met_at"] == 2 and summary["early_stopping"]["threshold"] == 1.0
    assert summary["early_stopping"]["batches"] == 3 and summary["early_stopping"]["checks"][0]["met"]
    written = json.loads((tmp_path / "run" / "summary.json").read_text())  # the file holds it too (plots or not)
    assert written["early_stopping"] == summary["early_stopping"] and written["iterations"] == 2
    rows = rows_of(tmp_path / "run")
    assert [r["iteration"] for r in rows] == [2] and rows[0]["early_stopping"]["met"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["early_stopping"] == 1.0 and saved["early_stopping_batches"] == 3
    header = training.read_checkpoint_header(str(tmp_path / "run" / training.CHECKPOINT))[0]
    assert header["iteration"] == 2 and header["stopped_at"] == 2
    # resumed with the criterion still on, the run stays stopped
    again = training.train(dict(config, iterations=10), resume=True, progress=False, plots=False)
    assert again["iterations"] == 2 and again["early_stopping"]["met_at"] == 2 and len(rows_of(tmp_path / "run")) == 1


def test_the_criterion_does_not_change_the_training(tmp_path):
    """Unmet, the run is the run without the criterion; a stopped run resumed without it continues to the same
    weights as an uninterrupted run (the checks only evaluate)."""
    plain = tiny_config(tmp_path / "plain")
    training.train(plain, progress=False, plots=False)
    unmet = tiny_config(tmp_path / "unmet", early_stopping=1e-9)
    summary = training.train(unmet, progress=False, plots=False)
    assert summary["iterations"] == 6 and summary["early_stopping"]["met_at"] is None
    plain_losses = [r["test_loss"] for r in rows_of(tmp_path / "plain")]
    assert [r["test_loss"] for r in rows_of(tmp_path / "unmet")] == plain_losses
    stopped = tiny_config(tmp_path / "stopped", early_stopping=1.0)
    training.train(stopped, progress=False, plots=False)
    resumed = training.train(dict(stopped, early_stopping=None), resume=True, progress=False, plots=False)
    assert resumed["iterations"] == 6 and resumed["early_stopping"] is None
    assert [r["test_loss"] for r in rows_of(tmp_path / "stopped")] == plain_losses

    def payload(folder):
        return training.read_checkpoint_header(str(folder / training.CHECKPOINT))[1]

    assert payload(tmp_path / "stopped") == payload(tmp_path / "plain")


def test_flags_and_toml(tmp_path, capsys):
    out = tmp_path / "flag"
    argv = ["train", "--task", "delayed_copy", "--task-option", "n_symbols=3", "--task-option", "seq_len=2",
            "--task-option", "delay=2", "--neuron", "lif", "--hidden", "4", "--iterations", "2", "--batch-size", "4",
            "--eval-every", "2", "--no-progress", "--no-plots"]
    assert cli.main(argv + ["--out", str(out), "--early-stopping"]) == 0
    assert json.loads((out / "config.json").read_text())["early_stopping"] == 0.07
    toml = tmp_path / "run.toml"
    toml.write_text("early_stopping = 0.2\nearly_stopping_batches = 2\n")
    assert cli.main(argv + ["--out", str(tmp_path / "toml"), "--config", str(toml)]) == 0
    saved = json.loads((tmp_path / "toml" / "config.json").read_text())
    assert saved["early_stopping"] == 0.2 and saved["early_stopping_batches"] == 2
    for bad, message in ((["--early-stopping", "2"], "--early-stopping must be"),
                         (["--early-stopping-batches", "0"], "--early-stopping-batches must be")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv + ["--out", str(tmp_path / "bad")] + bad)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
