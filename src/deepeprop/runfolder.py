"""Run folders of ``deepeprop train`` and their files: one writer at a time, no mixed results, checked resumes.

All the reading and writing of a run folder is here: the lock, ``config.json`` and ``summary.json``
(:func:`write_json`), ``metrics.jsonl`` (:func:`read_metrics`, :func:`repair_metrics`) and the checkpoint.

* **Lock.** A run holds ``fcntl.flock`` on ``OUT/.deepeprop.lock`` (its pid written inside) from start to
  end; a second run into the same folder is refused with an error naming the holder's pid. The OS
  releases the lock when the holder exits or is killed, so a crashed run never blocks the next one. A run
  that ends (cleanly or with an error) deletes the lock file while it still holds the lock; a run that took
  the lock checks that the file it locked is still the one at ``OUT/.deepeprop.lock`` and else starts over, so
  the deletion cannot let two runs in. Only a killed run leaves the file behind (harmless: the next run takes
  it and deletes it in turn).
* **Fresh runs** into a folder that already holds files are refused unless ``overwrite`` (``--overwrite``),
  which deletes the files a run writes (:data:`RUN_FILES`) and leaves any other file alone.
* **Stale temporary files** (``.NAME.PID.tmp``, left by a process killed while writing) are deleted at
  start, under the lock, when process ``PID`` no longer exists (or is this one: it has written none yet).
* **Fingerprint.** The checkpoint records the SHA-256 of the canonical JSON of the run's configuration
  without the options that may change on resume (``RESUMABLE`` in :mod:`deepeprop.training`); a resume
  with another configuration is refused, listing the differing options.
* **Metrics.** On resume, ``metrics.jsonl`` is cut back to the rows at or below the checkpoint's iteration;
  a torn last line (a run killed while appending) is dropped; any other unreadable line is named with a fix.

* **Checkpoints** (``checkpoint.eqx``): one JSON header line (format, version, iteration, seed, elapsed seconds,
  payload size and SHA-256) followed by ``equinox.tree_serialise_leaves`` of ``(model, optimizer state,
  feedback matrices)``. They are written to a temporary file in the same folder and moved into place with
  ``os.replace``; loading checks the header, size and checksum before anything is deserialised, so a truncated or
  corrupted file raises :class:`~deepeprop.errors.CheckpointError` and leaves no partial state.

Errors are :class:`~deepeprop.errors.RunFolderError` (a ``DeepEPropError``: the command line prints
``deepeprop train: error: ...`` and
exits with code 2).
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import re
from typing import Any

import equinox as eqx

from .errors import CheckpointError, RunFolderError

CHECKPOINT = "checkpoint.eqx"
CHECKPOINT_FORMAT = "deepeprop-checkpoint"
CHECKPOINT_VERSION = 1

LOCK = ".deepeprop.lock"
# every file a run writes (removed by overwrite); temporary files are ".NAME.PID.tmp"
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoint.eqx", "learning_curves.png",
             "raster.png", "readout.png")
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def temp_path(path: str) -> str:
    """The temporary file next to ``path`` that this process writes before ``os.replace``: ``.NAME.PID.tmp``."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}.tmp")


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, fsync, ``os.replace``)."""
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunFolder:
    """The output folder of one run, locked while the run writes (a context manager).

    ``with RunFolder(out, resume=False, overwrite=False) as folder: ...``. On entry: create the folder,
    take the lock, delete stale temporary files, and for a fresh run check that the folder is empty (or
    clear the run files with ``overwrite``). The lock is released on exit (and by the OS if the process dies).
    """

    def __init__(self, path: str, *, resume: bool = False, overwrite: bool = False, flag: str = "--out"):
        self.path = str(path)
        self.resume = resume
        self.overwrite = overwrite
        self.flag = flag
        self.removed: list[str] = []  # stale temporary files deleted on entry
        self._fd: int | None = None

    def _error(self, reason: str) -> RunFolderError:
        return RunFolderError(f"{self.flag} {self.path!r} {reason}")

    def __enter__(self) -> "RunFolder":
        if self.resume and not os.path.isdir(self.path):
            raise self._error("does not exist: there is no run to resume there")
        try:
            os.makedirs(self.path, exist_ok=True)
        except FileExistsError:
            raise self._error("is a file, not a folder: give a folder for the results") from None
        except NotADirectoryError:
            raise self._error("cannot be created: a parent of it is a file, not a folder") from None
        except OSError as err:
            raise self._error(f"cannot be created: {err.strerror}") from None
        if not os.path.isdir(self.path):
            raise self._error("is not a folder: give a folder for the results")
        for _ in range(100):  # a run ending between our open and our flock deletes the file we opened: again
            fd = self._lock()
            if _same_file(fd, self._lock_path):
                break
            os.close(fd)
        else:
            raise self._error("cannot be locked: its lock file keeps being replaced")
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._remove_stale_temp_files()
            if not self.resume:
                self._check_empty()
        except BaseException:
            self.release()
            raise
        return self

    @property
    def _lock_path(self) -> str:
        return os.path.join(self.path, LOCK)

    def _lock(self) -> int:
        """Open (or create) the lock file and take its lock; an error names the holder's pid."""
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise self._error(f"is not writable ({err.strerror}): give a folder you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise self._error(f"is in use by another deepeprop run (pid {holder}); wait for it to end, or "
                                  "give another --out") from None
            raise self._error(f"cannot be locked ({err.strerror})") from None
        return fd

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Delete the lock file, then release the lock (in this order: a run that takes the lock of the deleted
        file sees that it is no longer the folder's and starts over; module docstring)."""
        if self._fd is not None:
            if _same_file(self._fd, self._lock_path):
                try:
                    os.remove(self._lock_path)
                except OSError:  # gone or not removable: the lock still goes
                    pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def _remove_stale_temp_files(self) -> None:
        for name in sorted(os.listdir(self.path)):
            match = _TEMP.match(name)
            pid = int(match["pid"]) if match else 0
            if match and (pid == os.getpid() or not pid_alive(pid)):  # under the lock, ours are stale too
                os.remove(os.path.join(self.path, name))
                self.removed.append(name)

    def _check_empty(self) -> None:
        present = sorted(name for name in os.listdir(self.path) if name != LOCK)
        if not present:
            return
        if not self.overwrite:
            shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
            raise self._error(f"already holds files ({shown}): give --overwrite (overwrite=True) to replace the run "
                              "there, --resume to continue it, or another --out")
        for name in RUN_FILES:
            path = os.path.join(self.path, name)
            if os.path.isfile(path):
                os.remove(path)


def _same_file(fd: int, path: str) -> bool:
    """Whether the open file ``fd`` is the file at ``path`` (same device and inode)."""
    try:
        there = os.stat(path)
    except OSError:
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str, state, meta: dict) -> None:
    """Write ``state`` (a LearnerState) and ``meta`` atomically (temp file in the same folder + os.replace)."""
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, state)
    payload = buffer.getvalue()
    header = dict(meta, format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION, payload_bytes=len(payload),
                  sha256=hashlib.sha256(payload).hexdigest())
    write_atomic(path, json.dumps(header, sort_keys=True).encode() + b"\n" + payload)


def read_checkpoint_header(path: str) -> tuple[dict, bytes]:
    """``(header, payload)`` after checking the format, the size and the checksum."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    newline = data.find(b"\n")
    try:
        header = json.loads(data[:newline].decode()) if newline > 0 else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a deepeprop checkpoint (bad or missing header): corrupted?")
    if header.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {header.get('version')}, "
                              f"this deepeprop reads version {CHECKPOINT_VERSION}")
    payload = data[newline + 1:]
    if len(payload) != header.get("payload_bytes"):
        raise CheckpointError(f"{path} is truncated or corrupted: payload has {len(payload)} bytes, "
                              f"the header says {header.get('payload_bytes')}")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CheckpointError(f"{path} is corrupted: its SHA-256 checksum does not match the header")
    return header, payload


def load_checkpoint(path: str, like) -> tuple[Any, dict]:
    """``(state, header)``: the checkpoint's LearnerState with the structure of ``like``. Nothing is
    returned (or changed) unless the whole file is valid."""
    header, payload = read_checkpoint_header(path)
    try:
        state = eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    except Exception as err:  # shapes/dtypes that do not fit this run's model
        raise CheckpointError(f"{path} does not match this run's model or optimizer: {err}") from None
    return state, header


# ---------------------------------------------------------------------------- configuration fingerprint
def canonical(config: dict) -> dict:
    """``config`` as JSON would give it back (tuples become lists, keys strings)."""
    return json.loads(json.dumps(config, sort_keys=True))


def fingerprint(config: dict, resumable) -> tuple[str, dict]:
    """``(sha256 hex, fingerprinted options)``: the canonical JSON of ``config`` without the ``resumable`` keys."""
    kept = canonical({key: value for key, value in config.items() if key not in resumable})
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest(), kept


def differences(saved: dict, current: dict, defaults: dict) -> list[str]:
    """The keys whose values differ; a key missing on one side counts as its default (an option that a
    later version added has its default's meaning in an earlier run)."""
    missing = object()
    out = []
    for key in sorted(set(saved) | set(current)):
        default = canonical({"v": defaults[key]})["v"] if key in defaults else missing
        if saved.get(key, default) != current.get(key, default):
            out.append(key)
    return out


# ---------------------------------------------------------------------------- metrics.jsonl
def write_json(path: str, data: dict) -> None:
    """``data`` (a mapping: a dict, a :class:`~deepeprop.config.TrainConfig`) as indented, sorted JSON at ``path``,
    atomically."""
    write_atomic(path, (json.dumps(dict(data), indent=2, sort_keys=True) + "\n").encode())


def read_metrics(path: str) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (``[]`` when there is none)."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def repair_metrics(path: str, upto: int) -> list[dict]:
    """Cut ``metrics.jsonl`` back to its rows with ``iteration <= upto`` and return them.

    A torn last line (no newline, or not JSON: the run was killed while appending) is dropped; an unreadable
    line elsewhere raises :class:`RunFolderError` naming the file, the line and the fix.
    """
    if not os.path.exists(path):
        return []
    with open(path, "rb") as handle:
        data = handle.read()
    lines = data.split(b"\n")
    complete = data.endswith(b"\n")
    if complete:
        lines = lines[:-1]  # the empty string after the last newline
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        last = number == len(lines)
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode())
            if not isinstance(row, dict) or not isinstance(row.get("iteration"), int):
                raise ValueError("no iteration")
        except (UnicodeDecodeError, ValueError):
            if last:  # torn: the run stopped while writing it
                break
            raise RunFolderError(f"{path} line {number} is not a metrics row (JSON with an 'iteration'): the file "
                                 f"is damaged; delete that line (or the file, losing the curves so far) and "
                                 f"resume again") from None
        rows.append(row)
    rows = [row for row in rows if row["iteration"] <= upto]
    write_atomic(path, b"".join(json.dumps(row).encode() + b"\n" for row in rows))
    return rows
