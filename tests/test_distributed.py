"""Multi-process training (deepeprop.distributed, ``deepeprop train --processes N``): two CPU processes joined by
``jax.distributed`` (coordinator on 127.0.0.1, gloo collectives) train the same weights as one process with the
whole batch, resume, and stop with a clear error when the other process is killed."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from deepeprop.distributed import Cluster, cluster_from, is_peer_failure, own_rows

RUN = ["--task", "delayed_copy", "--hidden", "6,5", "--neuron", "lif", "--method", "deep_eprop", "--batch-size", "8",
       "--eval-batch-size", "16", "--lr", "3e-3", "--seed", "3", "--no-progress", "--no-plots"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(cache: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.pop("JAX_ENABLE_X64", None)  # float32, as a training run is by default
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=src + os.pathsep + env.get("PYTHONPATH", ""),
               JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **extra)
    return env


def _train(args, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deepeprop", "train", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"a training process hung for {timeout} s:\n{err[-3000:]}")
    return process.returncode, out, err


def _weights(folder: str) -> list[np.ndarray]:
    import equinox as eqx
    import jax

    from deepeprop.training import CHECKPOINT, build, load_checkpoint, resolve_config

    config = json.load(open(os.path.join(folder, "config.json")))
    config = resolve_config({k: config[k] for k in ("task", "hidden", "neuron", "method", "batch_size", "lr", "seed")},
                            None)
    _, model, learner = build(config)
    state, _ = load_checkpoint(os.path.join(folder, CHECKPOINT), learner.init(model))
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(state.model, eqx.is_inexact_array))]


def test_two_processes_equal_one_process_and_resume(tmp_path):
    """2 processes x 4 rows = 1 process x 8 rows, to float32 rounding; the 2-process run resumes (from SLURM's
    variables this time) to the same weights as the uninterrupted 1-process run."""
    cache = str(tmp_path / "cache")
    two, one = str(tmp_path / "two"), str(tmp_path / "one")
    port = _free_port()
    flags = ["--processes", "2", "--coordinator", f"127.0.0.1:{port}", "--peer-timeout", "60"]
    # process 1 is given its own --out (the run's numbers do not depend on it): it must not even create it
    elsewhere = str(tmp_path / "process1")
    started = [_train([*RUN, "--iterations", "4", "--eval-every", "2", "--out", folder, *flags, "--process-id", str(i)],
                      _env(cache)) for i, folder in ((1, elsewhere), (0, two))]
    reference = _train([*RUN, "--iterations", "6", "--eval-every", "2", "--out", one], _env(cache))
    results = [_finish(p) for p in started + [reference]]
    for code, _, err in results:
        assert code == 0, err[-3000:]
    assert "process 1 of 2: 4 iterations done" in results[0][1] and "results in" in results[1][1]
    # process 0 alone wrote the folder: one set of run files, no stray temporary file; process 1 wrote nothing
    assert not os.path.exists(elsewhere)
    assert sorted(os.listdir(two)) == ["checkpoint.eqx", "config.json", "metrics.jsonl", "summary.json"]
    assert json.load(open(os.path.join(two, "config.json")))["processes"] == 2
    rows_two = [json.loads(line) for line in open(os.path.join(two, "metrics.jsonl"))]
    assert [r["iteration"] for r in rows_two] == [2, 4]

    # resume to 6 iterations; the processes are found in the scheduler's environment (as under srun)
    port = _free_port()
    slurm = dict(SLURM_JOB_ID="4242", SLURM_STEP_NODELIST="127.0.0.1", SLURM_NTASKS="2", JAX_COORDINATOR_PORT=str(port))
    resumed = [_train(["--resume", "--iterations", "6", "--out", two, "--processes", "auto", "--no-progress",
                       "--no-plots", "--peer-timeout", "60"],
                      _env(cache, SLURM_PROCID=str(i), SLURM_LOCALID=str(i), **slurm)) for i in (1, 0)]
    for code, _, err in [_finish(p) for p in resumed]:
        assert code == 0, err[-3000:]
    rows_two = [json.loads(line) for line in open(os.path.join(two, "metrics.jsonl"))]
    rows_one = [json.loads(line) for line in open(os.path.join(one, "metrics.jsonl"))]
    assert [r["iteration"] for r in rows_two] == [2, 4, 6]
    for a, b in zip(rows_two, rows_one):
        for key in ("train_loss", "test_loss", "test_metric"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), (key, a, b)
    initial = _weights_initial(one)
    final_two, final_one = _weights(two), _weights(one)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(final_one, initial)) > 1e-4  # training moved them
    for a, b in zip(final_two, final_one):
        assert np.max(np.abs(a - b)) <= 1e-5 * (np.max(np.abs(b)) + 1e-30), "2 processes differ from 1"


def _weights_initial(folder: str) -> list[np.ndarray]:
    import equinox as eqx
    import jax

    from deepeprop.training import build, resolve_config

    config = json.load(open(os.path.join(folder, "config.json")))
    _, model, _ = build(resolve_config({k: config[k] for k in ("task", "hidden", "neuron", "method", "seed")}, None))
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))]


@pytest.mark.slow  # about 15-40 s of two cores: run with -m slow
def test_a_killed_process_stops_the_other_with_a_clear_error(tmp_path):
    """Process 1 is killed (SIGKILL) mid-run: process 0 stops within seconds (not at a timeout) with exit code 4 and
    a message naming the failure, and its last checkpoint is intact."""
    from deepeprop.training import CHECKPOINT, read_checkpoint_header

    out = str(tmp_path / "run")
    port = _free_port()
    args = [*RUN, "--method", "bptt", "--iterations", "100000", "--eval-every", "2", "--out", out, "--processes", "2",
            "--coordinator", f"127.0.0.1:{port}", "--peer-timeout", "60"]
    env = _env(str(tmp_path / "cache"))
    victim = _train([*args, "--process-id", "1"], env)
    survivor = _train([*args, "--process-id", "0"], env)
    deadline = time.monotonic() + 120
    metrics = os.path.join(out, "metrics.jsonl")
    while not (os.path.exists(metrics) and open(metrics).read().count("\n") >= 1):
        if time.monotonic() > deadline or survivor.poll() is not None or victim.poll() is not None:
            victim.kill()
            survivor.kill()
            pytest.fail(f"the run did not reach its first evaluation:\n{survivor.communicate()[1][-3000:]}")
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    code, _, err = _finish(survivor, timeout=60)
    victim.wait()
    assert code == 4, err[-3000:]
    assert time.monotonic() - killed < 30  # the collective failed at once: no wait for the 60 s heartbeat timeout
    assert "another process of the run died or stopped answering" in err and "continue with --resume" in err
    header, _ = read_checkpoint_header(os.path.join(out, CHECKPOINT))  # size and checksum checked
    assert header["iteration"] >= 2 and header["iteration"] % 2 == 0


def test_a_process_that_cannot_set_up_stops_the_others(tmp_path):
    """Process 0 refuses its --out (it holds another file): it says why, and process 1, which set up fine, stops at
    the setup agreement with a message naming process 0, instead of waiting in the first training step."""
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("not a run")
    port = _free_port()
    args = [*RUN, "--iterations", "4", "--out", str(out), "--processes", "2", "--coordinator", f"127.0.0.1:{port}",
            "--peer-timeout", "60"]
    env = _env(str(tmp_path / "cache"))
    processes = [_train([*args, "--process-id", str(i)], env) for i in (1, 0)]
    (code_1, _, err_1), (code_0, _, err_0) = [_finish(p, timeout=90) for p in processes]
    assert code_0 == 2 and "process 0 of 2: --out" in err_0 and "already holds files (notes.txt)" in err_0, err_0
    assert code_1 == 4 and "process(es) 0 could not set up the run" in err_1, err_1
    assert sorted(os.listdir(out)) == ["notes.txt"]


def test_cluster_from_flags_and_slurm():
    assert cluster_from() is None and cluster_from(1) is None
    cluster = cluster_from(2, 1, "127.0.0.1:1234", environ={})
    assert cluster == Cluster(2, 1, "127.0.0.1:1234", "flags") and not cluster.main
    slurm = {"SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[01-02]",
             "SLURM_LOCALID": "0"}
    cluster = cluster_from("auto", environ=slurm)
    assert (cluster.processes, cluster.process_id, cluster.coordinator, cluster.source, cluster.main) == \
        (4, 0, None, "slurm", True)  # JAX finds the coordinator (first node of the step)
    assert cluster_from("auto", coordinator="node01:9999", environ=slurm).coordinator == "node01:9999"
    assert cluster_from(4, environ=slurm).process_id == 0  # the id from SLURM_PROCID


@pytest.mark.parametrize("kwargs, message", [
    (dict(processes="auto", environ={}), "SLURM_NTASKS, SLURM_PROCID is not set"),
    (dict(processes=2, coordinator="127.0.0.1:1", environ={}), "--process-id is needed with --processes 2"),
    (dict(processes=2, process_id=2, coordinator="127.0.0.1:1", environ={}), "--process-id must be below"),
    (dict(processes=2, process_id=0, environ={}), "--coordinator HOST:PORT is needed"),
    (dict(processes=2, process_id=0, coordinator="localhost", environ={}), "--coordinator must be HOST:PORT"),
    (dict(processes=2, process_id=0, coordinator="h:70000", environ={}), "--coordinator must be HOST:PORT"),
    (dict(processes=0, environ={}), "--processes must be an int >= 1"),
    (dict(processes="two", environ={}), "--processes must be an int >= 1"),
    (dict(process_id=1, environ={}), "--process-id belong to a multi-process run"),
    (dict(processes=2, process_id=0, coordinator="h:1", peer_timeout=0, environ={}), "--peer-timeout"),
])
def test_bad_cluster_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        cluster_from(**kwargs)


def test_bad_cluster_flags_on_the_command_line(tmp_path, capsys):
    from deepeprop.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--processes", "2", "--process-id", "0", "--out", str(tmp_path)])
    assert "--coordinator HOST:PORT is needed" in capsys.readouterr().err


@pytest.mark.parametrize("name, options", [("digits", {}), ("delayed_copy", {})])
def test_own_rows_are_the_rows_of_the_whole_batch(name, options):
    from deepeprop.tasks import get_task

    task = get_task(name, **options)
    whole = task.batch(11, 8, "train")
    for rows in (slice(0, 4), slice(4, 8), slice(2, 6)):
        part = own_rows(task, 11, 8, "train", rows)
        for a, b in zip(part, whole):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[:, rows])


def test_peer_failures_are_told_from_program_errors():
    assert is_peer_failure(ValueError("UNKNOWN: Gloo all-reduce failed: Connection closed by peer"))
    assert is_peer_failure(RuntimeError("UNAVAILABLE: Task 1 heartbeat timeout"))
    assert not is_peer_failure(ValueError("--batch-size 8 must be a multiple of --devices 3"))
    assert not is_peer_failure(RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 4 GiB"))  # its own
