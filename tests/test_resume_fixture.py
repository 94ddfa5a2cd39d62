"""A run folder written by an earlier version (``tests/data/resume_run_v0``) resumes and continues bitwise.

The folder was written by the code before the tooling redesign (issue 19), on ``main`` at 54549a2:

    deepeprop train --task digits --method deep_eprop --neuron lif,alif --tau-m 5,20 --skip 0:2 --hidden 8,8 \\
        --batch-size 4 --iterations 4 --eval-every 2 --out fx/run --no-progress --no-plots --seed 3

(its ``config.json`` keeps that version's untyped forms: ``recurrence`` one string, ``neuron_options`` one
table, ``skip`` lists). Resuming it to iteration 6 must give the same bytes of parameters and optimiser state as
an uninterrupted 6-iteration run of the same options, and keep the saved rows of ``metrics.jsonl``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

FIXTURE = Path(__file__).parent / "data" / "resume_run_v0"
OPTIONS = ["--task", "digits", "--method", "deep_eprop", "--neuron", "lif,alif", "--tau-m", "5,20", "--skip", "0:2",
           "--hidden", "8,8", "--batch-size", "4", "--eval-every", "2", "--seed", "3", "--no-progress", "--no-plots"]


def payload(folder: Path) -> bytes:
    """The checkpoint's serialised state (model, optimiser state, feedback), without its JSON header line."""
    data = (folder / "checkpoint.eqx").read_bytes()
    return data[data.index(b"\n") + 1:]


def train(*argv: str) -> None:
    """``deepeprop train ARGV`` in a fresh process with a user's settings: XLA's default optimisations and float32
    (the fixture was written so; this test module's process has conftest's XLA flags and float64 switched on,
    which round differently)."""
    env = {key: value for key, value in os.environ.items() if key not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "deepeprop", "train", *argv], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_a_run_folder_from_before_the_redesign_resumes_bitwise(tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(FIXTURE, resumed)
    saved_rows = rows(resumed)
    assert [row["iteration"] for row in saved_rows] == [2, 4]
    train("--out", str(resumed), "--resume", "--iterations", "6", "--no-progress", "--no-plots")
    fresh = tmp_path / "fresh"
    train(*OPTIONS, "--iterations", "6", "--out", str(fresh))
    header = json.loads((resumed / "checkpoint.eqx").read_bytes().split(b"\n", 1)[0])
    assert header["iteration"] == 6
    assert payload(resumed) == payload(fresh)  # bitwise: the same parameters and optimiser state
    resumed_rows, fresh_rows = rows(resumed), rows(fresh)
    assert [row["iteration"] for row in resumed_rows] == [2, 4, 6]
    assert resumed_rows[:2] == saved_rows  # the earlier version's rows are kept as they were
    assert resumed_rows[2]["test_loss"] == fresh_rows[2]["test_loss"]
    assert resumed_rows[2]["test_metric"] == fresh_rows[2]["test_metric"]
    assert payload(FIXTURE) != payload(fresh)  # (the check can fail: 4 iterations are not 6)
