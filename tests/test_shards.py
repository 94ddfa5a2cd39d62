"""``deepeprop experiment alignment|learning --shard I/N``: workers split the independent runs, write only their own
results into one folder, and together produce the folder one worker would; ``report`` lists what is missing."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from deepeprop.experiments import Shard, shard_from

ALIGNMENT = """
seeds = [0]
methods = ["deep_eprop", "eprop"]
dtype = "float32"
[base]
depth = 2
width = 5
n_in = 8
n_out = 4
batch = 4
T = 12
neuron = "leaky"
recurrence = "none"
profile = "fast_below"
tau_fast = 1.0
tau_mid = 5.0
tau_slow = 30.0
loss_timing = "end"
readout = "leaky"
tau_out = 5.0
[sweeps]
profile = ["uniform", "fast_below", "slow_below"]  # one compiled program for the 3 points
"""

LEARNING = """
seeds = [0]
sweep_seed = 100
learning_rates = [1e-2]
methods = ["bptt", "eprop"]
[tasks.delayed_digits]
description = "tiny"
task = "digits"
task_options = { delay = 2 }
neuron = "leaky"
hidden = [4, 6]
tau_m = [1.0, 30.0]
recurrence = "none"
readout = "linear"
self_connections = true
iterations = 4
batch_size = 8
eval_every = 2
"""

# values that depend on when and where a run ran, not on what it computed
VOLATILE = {"seconds", "machine", "wall_time", "seconds_per_iteration", "elapsed"}


def _experiment(args, cwd) -> subprocess.Popen:
    env = dict(os.environ, JAX_ENABLE_X64="0")
    env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    script = ("import sys; from deepeprop.cli import main\n"
              "for line in sys.argv[1:]:\n"
              "    code = main(['experiment', *line.split()])\n"
              "    assert code == 0, line\n")
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _contents(folder: str) -> dict:
    """Every result file under ``folder`` (the compilation cache aside), with its time- and machine-free content."""
    found = {}
    for where, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".jax-cache"]
        for name in files:
            path = os.path.join(where, name)
            key = os.path.relpath(path, folder)
            if name.endswith(".json"):
                found[key] = _stable(json.load(open(path)))
            elif name.endswith(".jsonl"):
                found[key] = [_stable(json.loads(line)) for line in open(path) if line.strip()]
            elif name == "checkpoint.eqx":
                header = json.loads(open(path, "rb").readline())
                found[key] = (header["iteration"], header["sha256"])  # the weights, bit for bit
            else:
                found[key] = open(path, "rb").read()
    return found


@pytest.mark.slow  # about 15-40 s of two cores: run with -m slow
def test_two_shards_make_the_folder_of_one_run(tmp_path):
    for name, text in (("alignment.toml", ALIGNMENT), ("learning.toml", LEARNING)):
        (tmp_path / name).write_text(text)
    steps = [f"alignment --config {tmp_path / 'alignment.toml'} --out res --no-progress",
             f"learning --config {tmp_path / 'learning.toml'} --out res --no-progress"]
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    workers = [_experiment(steps, one)] + [_experiment([f"{s} --shard {i}/2" for s in steps], two) for i in (0, 1)]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    assert "alignment: shard 0/2 takes 2 of the 3 points" in outputs[1][0]  # each worker did only its share
    assert "alignment: shard 1/2 takes 1 of the 3 points" in outputs[2][0]
    assert "learning: shard 1/2 takes 1 of the 2 (task, method) units" in outputs[2][0]
    assert "(shard 1/2)" in outputs[2][0]
    single, sharded = _contents(str(one / "res")), _contents(str(two / "res"))
    assert sum(k.startswith("alignment") for k in single) == 4  # config.json + 3 points
    assert sum(k.endswith("choice.json") for k in single) == 2
    assert sorted(single) == sorted(sharded)
    for key in single:
        assert single[key] == sharded[key], key

    # report merges what is there and names what is missing
    os.remove(two / "res" / "learning" / "delayed_digits" / "eprop" / "choice.json")
    point = next(k for k in sharded if k.startswith("alignment") and not k.endswith("config.json"))
    os.remove(two / "res" / point)
    from deepeprop.experiments.report import build_report, missing_text

    said = missing_text(str(two / "res"))
    assert "alignment: 1 of 3 points missing" in said
    assert "learning: 1 of 2 (task, method) units missing (delayed_digits/eprop)" in said
    text = open(build_report(str(two / "res"), str(two / "report.md"))).read()
    assert "## Completeness" in text and "delayed_digits/eprop" in text and "| bptt |" in text


def test_shard_take_splits_a_list_into_disjoint_covering_parts():
    items = list(range(11))
    parts = [Shard(i, 3).take(items) for i in range(3)]
    assert sorted(x for part in parts for x in part) == items
    assert parts[0] == [0, 3, 6, 9] and Shard().take(items) == items


def test_shard_from_the_flag_and_a_slurm_job_array():
    assert shard_from(None, environ={}) == Shard(0, 1)
    assert shard_from("2/5", environ={}) == Shard(2, 5)
    array = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}
    assert shard_from(None, environ=array) == Shard(3, 4)
    assert shard_from(None, environ=dict(array, SLURM_ARRAY_TASK_ID="4", SLURM_ARRAY_TASK_MIN="1")) == Shard(3, 4)
    assert shard_from("0/2", environ=array) == Shard(0, 2)  # the flag wins


@pytest.mark.parametrize("text, message", [("3", "--shard must be I/N"), ("a/b", "--shard must be I/N"),
                                           ("2/2", "0 <= I < N"), ("0/0", "N >= 1")])
def test_bad_shards_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        shard_from(text, environ={})
    with pytest.raises(ValueError, match="is not one of the SLURM_ARRAY_TASK_COUNT 2 tasks"):
        shard_from(None, environ={"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "2"})
