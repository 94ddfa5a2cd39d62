"""Run folders: one writer at a time, no silent mixing, checked resumes, no leftovers (issue "Reliability")."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from deepeprop import cli, runfolder, training

COPY = {"n_symbols": 3, "seq_len": 2, "delay": 2}
TINY = ["--task", "delayed_copy", "--hidden", "2", "--iterations", "1", "--batch-size", "1", "--eval-batch-size", "2",
        "--no-progress", "--no-plots"]  # (a run the code before the fix would finish quickly)


def tiny_config(out, **overrides):
    explicit = dict(task="delayed_copy", task_options=dict(COPY), method="eprop", neuron="leaky", hidden=[3],
                    iterations=2, batch_size=2, lr=1e-2, eval_every=1, eval_batch_size=4, dtype="float64",
                    out=str(out))
    explicit.update(overrides)
    return training.resolve_config(explicit)


def run(config, **kwargs):
    return training.train(config, progress=False, plots=False, **kwargs)


def cli_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "deepeprop" in err and "error:" in err
    return err


def test_resume_refuses_another_configuration(tmp_path):
    """Found: --resume checked only seed, method and task: it continued a checkpoint trained with another lr."""
    config = tiny_config(tmp_path / "run")
    run(config)
    with pytest.raises(training.CheckpointError, match=r"other options \(lr: 0.01 in the checkpoint, 0.5 now.*only "
                                                       r"iterations, eval_every, out, devices, early_stopping, "
                                                       r"early_stopping_batches, evaluation may change"):
        run(dict(config, lr=0.5, iterations=3), resume=True)
    with pytest.raises(training.CheckpointError, match=r"batch_size: 2 in the checkpoint, 3 now; feedback_decay"):
        run(dict(config, batch_size=3, feedback_decay=0.5, iterations=3), resume=True)
    header = training.read_checkpoint_header(str(tmp_path / "run" / training.CHECKPOINT))[0]
    assert header["iteration"] == 2 and header["config"]["lr"] == 0.01 and len(header["fingerprint"]) == 64
    # the resumable options may change; an option this version added at its default is the same run
    del header  # (the saved config lacks no key here; differences() treats a missing key as its default)
    assert runfolder.differences({"lr": 0.01}, {"lr": 0.01, "recurrent_gain": 1.0}, {"recurrent_gain": 1.0}) == []
    assert run(dict(config, iterations=4, eval_every=2), resume=True)["iterations"] == 4


def test_fresh_run_into_a_used_folder_needs_overwrite(tmp_path, capsys):
    config = tiny_config(tmp_path / "run")
    run(config)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(runfolder.RunFolderError, match=r"already holds files \(checkpoint.eqx, config.json, "
                                                       r"metrics.jsonl, notes.txt, summary.json\): give --overwrite"):
        run(dict(config, lr=0.5))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 0.01  # untouched
    err = cli_error(["train", "--out", str(tmp_path / "run"), *TINY], capsys)
    assert "already holds files" in err
    run(dict(config, lr=0.5), overwrite=True)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 0.5
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # not a run file: left alone
    with pytest.raises(ValueError, match="give one of them"):
        run(config, overwrite=True, resume=True)


def test_unusable_out_is_named(tmp_path, capsys):
    """Found: a parent that is a file, an --out that is a file, an unwritable path ended in raw tracebacks."""
    (tmp_path / "file").write_text("x")
    cases = {str(tmp_path / "file" / "run"): "a parent of it is a file",
             str(tmp_path / "file"): "is a file, not a folder",
             "/proc/deepeprop-run": "cannot be created"}
    for out, message in cases.items():
        err = cli_error(["train", "--out", out, *TINY], capsys)
        assert f"--out {out!r}" in err and message in err, err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        err = cli_error(["train", "--out", str(locked), *TINY], capsys)
        assert "is not writable" in err


def test_second_run_into_the_same_folder_is_refused(tmp_path, capsys):
    """Found: two train runs into one --out both exited 0, leaving interleaved metrics, one run's config and the
    other's checkpoint."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from deepeprop.runfolder import RunFolder\n"
         "with RunFolder(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = cli_error(["train", "--out", str(out), *TINY], capsys)
        assert f"is in use by another deepeprop run (pid {holder.pid})" in err
        with pytest.raises(runfolder.RunFolderError, match=f"pid {holder.pid}"):
            run(tiny_config(out))
        assert sorted(os.listdir(out)) == [runfolder.LOCK]  # nothing written by the refused runs
    finally:
        holder.kill()
        holder.wait()
    run(tiny_config(out))  # the OS released the dead holder's lock
    assert (out / training.CHECKPOINT).exists()


def test_torn_metrics_line_is_repaired_on_resume(tmp_path):
    """Found: a torn last line of metrics.jsonl blocked --resume with a message naming neither file nor fix."""
    config = tiny_config(tmp_path / "run")
    run(config)
    metrics = tmp_path / "run" / "metrics.jsonl"
    complete = metrics.read_text()
    metrics.write_text(complete + '{"iteration": 3, "train_lo')  # killed while appending
    run(dict(config, iterations=3), resume=True)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    lines = metrics.read_text().splitlines()
    metrics.write_text(lines[0] + "\n" + "garbage\n" + lines[2] + "\n")  # damage in the middle: named, with a fix
    with pytest.raises(runfolder.RunFolderError, match=r"metrics.jsonl line 2 is not a metrics row.*delete that "
                                                       "line"):
        run(dict(config, iterations=4), resume=True)


def test_stale_temp_files_are_removed_and_failed_writes_leave_none(tmp_path, monkeypatch):
    """Found: interrupted checkpoint writes left .checkpoint.eqx.<pid>.tmp files behind."""
    out = tmp_path / "run"
    out.mkdir()
    dead = _dead_pid()
    (out / f".checkpoint.eqx.{dead}.tmp").write_bytes(b"half a checkpoint")
    (out / f".summary.json.{dead}.tmp").write_text("{")
    alive = out / f".checkpoint.eqx.{os.getppid()}.tmp"  # a live process's: not touched
    alive.write_bytes(b"in flight")
    with runfolder.RunFolder(str(out), resume=True) as folder:
        assert folder.removed == [f".checkpoint.eqx.{dead}.tmp", f".summary.json.{dead}.tmp"]
    assert sorted(os.listdir(out)) == [alive.name]
    alive.unlink()

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        training.save_checkpoint(str(out / training.CHECKPOINT), {"a": 1}, {"iteration": 0})
    assert sorted(os.listdir(out)) == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _env() -> dict:
    """The environment of a child process that imports this deepeprop (the source tree under test)."""
    import deepeprop

    src = os.path.dirname(os.path.dirname(os.path.abspath(deepeprop.__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([src] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


def _payload(path):
    return training.read_checkpoint_header(str(path))[1]


def test_killed_run_resumes_to_the_uninterrupted_checkpoint(tmp_path):
    """A train subprocess killed with SIGKILL mid-run, resumed with --resume, reaches the bitwise-same checkpoint
    payload as an uninterrupted run and leaves no temporary file behind."""
    total = 120
    flags = ["--task", "delayed_copy", "--task-option", "n_symbols=3", "--task-option", "seq_len=2",
             "--task-option", "delay=2", "--method", "deep_eprop", "--neuron", "lif", "--hidden", "4,4",
             "--batch-size", "4", "--lr", "0.01", "--eval-every", "5", "--eval-batch-size", "8", "--dtype", "float64",
             "--no-plots", "--no-progress"]
    killed = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-m", "deepeprop", "train", *flags, "--iterations", "100000",
                              "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    checkpoint = killed / training.CHECKPOINT
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and child.poll() is None:
            try:
                if training.read_checkpoint_header(str(checkpoint))[0]["iteration"] > 0:
                    break
            except training.CheckpointError:
                pass
            time.sleep(0.005)
        assert child.poll() is None, child.stderr.read()
    finally:
        child.kill()  # SIGKILL: no cleanup runs
        child.wait()
    at_kill = training.read_checkpoint_header(str(checkpoint))[0]["iteration"]
    assert 0 < at_kill < total
    # what a kill during a checkpoint write leaves (the loop writes one every 5 iterations)
    (killed / f".checkpoint.eqx.{child.pid}.tmp").write_bytes(b"torn")
    assert cli.main(["train", "--resume", "--out", str(killed), "--iterations", str(total), "--no-progress",
                     "--no-plots"]) == 0
    whole = tmp_path / "whole"
    assert cli.main(["train", *flags, "--iterations", str(total), "--out", str(whole)]) == 0
    assert training.read_checkpoint_header(str(checkpoint))[0]["iteration"] == total
    assert _payload(checkpoint) == _payload(whole / training.CHECKPOINT)
    assert not [name for name in os.listdir(killed) if name.endswith(".tmp")]
    assert runfolder.LOCK not in os.listdir(killed)  # the killed run's lock file went with the resumed run
    rows = [json.loads(line)["iteration"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(5, total + 1, 5))


def test_lock_file_is_removed_when_the_run_ends(tmp_path, monkeypatch):
    """Found (issue 21): .deepeprop.lock stayed in the run folder after a clean exit. It goes now when the run ends,
    with an error too; a run that locked a lock file deleted meanwhile by an ending run takes a fresh one."""
    out = tmp_path / "run"
    with runfolder.RunFolder(str(out)):  # as train() holds it (test_killed_run_... checks a whole run)
        assert os.listdir(out) == [runfolder.LOCK]
    assert os.listdir(out) == []
    with pytest.raises(RuntimeError, match="inside the run"):
        with runfolder.RunFolder(str(out), resume=True):
            assert runfolder.LOCK in os.listdir(out)
            raise RuntimeError("inside the run")
    assert runfolder.LOCK not in os.listdir(out)

    taken = []
    lock = runfolder.RunFolder._lock

    def lock_then_lose_it(self):  # the run holding the file ended (deleting it) just before we locked it
        fd = lock(self)
        if not taken:
            os.remove(os.path.join(self.path, runfolder.LOCK))
        taken.append(fd)
        return fd

    monkeypatch.setattr(runfolder.RunFolder, "_lock", lock_then_lose_it)
    with runfolder.RunFolder(str(out), resume=True) as folder:
        assert len(taken) == 2 and runfolder._same_file(folder._fd, os.path.join(out, runfolder.LOCK))
    assert runfolder.LOCK not in os.listdir(out)
