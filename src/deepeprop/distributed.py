"""Training over several processes (hosts) with JAX's own distributed runtime: ``deepeprop train --processes N``.

Every process runs the same program. :func:`initialize` joins the processes (``jax.distributed.initialize``: a
coordinator on process 0, a heartbeat between them); the mesh of :func:`placement` then spans ``--devices`` devices
*of every process* (``processes x devices`` in all), the model and the optimiser state are replicated on all of
them, and each batch ``(T, B, ...)`` is a global array split along ``B``. Each process builds only its own rows of
the global batch (:func:`own_rows`; ``jax.make_array_from_process_local_data``), and XLA turns the sums over the
batch into all-reduces across the processes (gloo over TCP between CPU processes, NCCL between GPUs). The result
equals a one-process run with the whole batch up to the order of floating-point sums.

Process 0 alone writes the run folder (``config.json``, ``metrics.jsonl``, ``checkpoint.eqx``, plots); the others
write nothing. A resumed run (``--resume``) reads the checkpoint on every process, so ``--out`` must be on a file
system every process sees (a cluster's shared home or scratch) for a resume.

Where the processes come from (:func:`cluster_from`):

* flags: ``--processes N --process-id I --coordinator HOST:PORT`` (the same ``N`` and coordinator everywhere, ``I``
  from 0 to ``N - 1``; the coordinator is process 0's address and a free port);
* ``--processes auto``: the job scheduler's environment, SLURM's ``SLURM_NTASKS`` and ``SLURM_PROCID`` (one
  process per task of ``srun``); the coordinator is then the first node of the job step on a port derived from the
  job id (JAX's SLURM detection; ``--coordinator`` or ``JAX_COORDINATOR_PORT`` override it), and each task sees one
  GPU (``SLURM_LOCALID``).

A process that cannot set the run up (its ``--out`` is taken, a resume finds no checkpoint) says why and stops, and
the others stop at the setup agreement (:func:`agree`) that precedes the first step.
A process that dies (killed, preempted, out of memory) makes the others fail at their next collective: they stop
with :class:`PeerFailure` (``deepeprop train`` prints it and exits with code 4 at once, without waiting for the
dead process), and the last checkpoint is intact. A process that stops answering without dying is declared dead
after ``--peer-timeout`` seconds without a heartbeat (JAX's coordination service then ends the others).
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import parallel
from .tasks import base, datasets

PEER_TIMEOUT = 100  # seconds: JAX's default heartbeat timeout
PEER_FAILURE_EXIT = 4  # exit code of `deepeprop train` when another process of the run failed
SLURM = ("SLURM_NTASKS", "SLURM_PROCID")
# an XLA runtime error is raised as "<absl status code>: message" (e.g. "UNKNOWN: Gloo all-reduce failed: ...");
# one that lost the other processes names the collectives or the coordination service (an out-of-memory error,
# also a runtime error, is this process's own and is not told as another's death)
_RUNTIME_ERROR = re.compile(r"^(UNKNOWN|UNAVAILABLE|INTERNAL|DEADLINE_EXCEEDED|ABORTED|CANCELLED|DATA_LOSS|"
                            r"FAILED_PRECONDITION): ")
_LOST_PEERS = re.compile(r"gloo|nccl|coordinat|heartbeat|connection|peer|barrier|socket|preempt|all-?reduce|"
                         r"all-?gather|collective|^UNAVAILABLE|^DEADLINE_EXCEEDED", re.IGNORECASE)


class PeerFailure(RuntimeError):
    """Another process of a multi-process run died or stopped answering (or this one could not join the run)."""


@dataclass(frozen=True)
class Cluster:
    """The processes of one run and this process's place among them.

    Attributes:
        processes: how many processes take part (>= 2).
        process_id: this process, ``0 .. processes - 1``; process 0 runs the coordinator and writes the run folder.
        coordinator: ``"HOST:PORT"`` of the coordinator, or ``None``: JAX finds it in the scheduler's environment.
        source: ``"flags"`` or ``"slurm"``: where the numbers came from.
        peer_timeout: seconds to wait for the others to join, and without a heartbeat before a process is dead.
    """

    processes: int
    process_id: int
    coordinator: str | None
    source: str = "flags"
    peer_timeout: int = PEER_TIMEOUT

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder (process 0)."""
        return self.process_id == 0


def _int(value, name: str, minimum: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_coordinator(text: str) -> str:
    """``"HOST:PORT"`` with a port in 1..65535, else a ValueError naming ``--coordinator``."""
    host, _, port = str(text).rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"--coordinator must be HOST:PORT (process 0's address and a free port, e.g. "
                         f"10.0.0.1:12345), got {text!r}")
    return f"{host}:{int(port)}"


def cluster_from(processes=None, process_id=None, coordinator=None, peer_timeout=PEER_TIMEOUT,
                 environ=None) -> Cluster | None:
    """The :class:`Cluster` of the command line's ``--processes``, ``--process-id`` and ``--coordinator``, or
    ``None`` for a one-process run.

    Args:
        processes: ``None`` or 1 (one process), an int >= 2, or ``"auto"`` (SLURM's ``SLURM_NTASKS``).
        process_id: this process's id; ``None`` reads ``SLURM_PROCID`` when present.
        coordinator: ``"HOST:PORT"``; ``None`` is allowed under SLURM only (JAX derives it from the job).
        peer_timeout: seconds (an int >= 1).
        environ: the environment to read (default ``os.environ``).

    Raises:
        ValueError: a bad or missing value, naming its flag (or the environment variable it was read from).
    """
    environ = os.environ if environ is None else environ
    peer_timeout = _int(peer_timeout, "--peer-timeout", 1)
    source = "flags"
    if processes is None:
        given = [flag for flag, value in (("--process-id", process_id), ("--coordinator", coordinator))
                 if value is not None]
        if given:
            raise ValueError(f"{' and '.join(given)} belong to a multi-process run: give --processes N (or auto) too")
        return None
    if isinstance(processes, str) and processes.strip().lower() == "auto":
        missing = [name for name in SLURM if name not in environ]
        if missing:
            raise ValueError(f"--processes auto reads the job scheduler's environment, but {', '.join(missing)} "
                             "is not set: start one process per task with srun inside a SLURM job, or give "
                             "--processes N --process-id I --coordinator HOST:PORT")
        processes, source = _int(environ["SLURM_NTASKS"], "SLURM_NTASKS", 1), "slurm"
    else:
        processes = _int(processes, "--processes", 1)
    if processes == 1:
        return None
    if process_id is None:
        if "SLURM_PROCID" not in environ:
            raise ValueError(f"--process-id is needed with --processes {processes} (this process's id, 0 to "
                             f"{processes - 1}; under SLURM it is read from SLURM_PROCID)")
        process_id = _int(environ["SLURM_PROCID"], "SLURM_PROCID", 0)
    process_id = _int(process_id, "--process-id", 0)
    if process_id >= processes:
        raise ValueError(f"--process-id must be below --processes {processes} (0 to {processes - 1}), got "
                         f"{process_id}")
    if coordinator is not None:
        coordinator = check_coordinator(coordinator)
    elif not all(name in environ for name in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_LOCALID")):
        raise ValueError(f"--coordinator HOST:PORT is needed with --processes {processes} outside a SLURM job step "
                         "(process 0's address and a free port, the same on every process)")
    return Cluster(processes, process_id, coordinator, source, peer_timeout)


def initialize(cluster: Cluster) -> None:
    """Join the run's processes (``jax.distributed.initialize``); call it before anything else uses JAX.

    CPU processes exchange their collectives over gloo (TCP); GPUs use NCCL (JAX's choice).

    Raises:
        PeerFailure: the processes did not all join within ``cluster.peer_timeout`` seconds.
    """
    try:  # an option of recent JAX versions (gloo is its default there); older ones have no CPU collectives
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:
        pass
    try:
        jax.distributed.initialize(coordinator_address=cluster.coordinator, num_processes=cluster.processes,
                                   process_id=cluster.process_id, initialization_timeout=cluster.peer_timeout,
                                   heartbeat_timeout_seconds=cluster.peer_timeout,
                                   # at the end the others wait for process 0's plots and summary
                                   shutdown_timeout_seconds=max(cluster.peer_timeout, 300))
    except Exception as err:  # noqa: BLE001 (the runtime raises several types; all mean the same here)
        where = cluster.coordinator or "the coordinator of the SLURM job step"
        raise PeerFailure(f"process {cluster.process_id} of {cluster.processes} could not join the run "
                          f"(coordinator {where}, --peer-timeout {cluster.peer_timeout} s): "
                          f"{str(err).splitlines()[0]} (are all {cluster.processes} processes started, with the "
                          "same --coordinator?)") from None
    if jax.process_count() != cluster.processes:
        raise PeerFailure(f"JAX joined {jax.process_count()} processes, the run expects {cluster.processes}")


def is_peer_failure(err: BaseException) -> bool:
    """Whether ``err`` is a failure of the runtime that lost the other processes (a collective or the coordination
    service), not of the program (a bad value, this process's own out-of-memory error)."""
    if isinstance(err, PeerFailure):
        return True
    runtime = isinstance(err, getattr(jax.errors, "JaxRuntimeError", ())) or (
        isinstance(err, (RuntimeError, ValueError)) and bool(_RUNTIME_ERROR.match(str(err))))
    return runtime and bool(_LOST_PEERS.search(str(err)))


_AGREED = {"done": False}  # whether this process has passed the setup agreement of its run


def agree(ok: bool) -> None:
    """The processes' agreement that every one of them set the run up (a gather of one flag per process): called
    once by each, when its setup is done (``ok=True``) or when its setup failed (``ok=False``, before it stops).
    A process whose setup failed thus stops the others with a clear error instead of leaving them waiting in the
    first training step.

    Raises:
        PeerFailure: on the processes whose setup worked, when another's did not (it named its error itself).
    """
    from jax.experimental import multihost_utils

    _AGREED["done"] = True
    flags = np.asarray(multihost_utils.process_allgather(np.array([int(bool(ok))], np.int32))).reshape(-1)
    failed = [int(i) for i in np.nonzero(flags == 0)[0]]
    if ok and failed:
        raise PeerFailure(f"process {jax.process_index()} of {jax.process_count()}: process(es) "
                          f"{', '.join(map(str, failed))} could not set up the run (see their error); this one stops "
                          "too, nothing was trained")


def agreed() -> bool:
    """Whether this process has passed :func:`agree` (after it, a failure is met in the collectives instead)."""
    return _AGREED["done"]


def exit_after_peer_failure(err, code: int = PEER_FAILURE_EXIT):
    """Print ``err`` and end this process at once, with ``code``: the runtime's orderly shutdown would wait for the
    dead process (up to the peer timeout) and then abort."""
    print(f"deepeprop train: error: {err}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


# ---------------------------------------------------------------------------- placing arrays
def global_mesh(devices: int, processes: int) -> Mesh:
    """The one-axis mesh (axis ``"batch"``) over the first ``devices`` local devices of every process, process 0's
    first: so each process's devices hold one contiguous block of the batch rows.

    Raises:
        ValueError: a process has fewer than ``devices`` devices.
    """
    by_process: dict[int, list] = {}
    for device in jax.devices():
        by_process.setdefault(device.process_index, []).append(device)
    if len(by_process) != processes:
        raise ValueError(f"JAX sees devices of {len(by_process)} processes, the run has {processes}")
    chosen = []
    for index in sorted(by_process):
        local = sorted(by_process[index], key=lambda d: d.id)
        if len(local) < devices:
            raise ValueError(f"--devices {devices} per process, but process {index} has {len(local)} device(s) "
                             f"({', '.join(str(d) for d in local)})")
        chosen += local[:devices]
    return Mesh(np.array(chosen), (parallel.AXIS,))


def row_range(sharding, shape) -> slice:
    """The rows (along the batch axis) that this process's devices hold of a global array of ``shape``."""
    spans = {(s.start or 0, shape[parallel.BATCH_AXIS] if s.stop is None else s.stop)
             for index in sharding.addressable_devices_indices_map(tuple(shape)).values()
             for s in [index[parallel.BATCH_AXIS]]}
    start, stop = min(a for a, _ in spans), max(b for _, b in spans)
    if sum(b - a for a, b in spans) != stop - start:
        raise ValueError(f"this process's rows of the batch are not one block: {sorted(spans)}")
    return slice(start, stop)


def own_rows(task, seed: int, batch_size: int, split: str, rows: slice):
    """Rows ``rows`` of ``task.batch(seed, batch_size, split)``, built without the others where the task allows.

    A dataset task (digits, MNIST-1D, SHD) draws the batch's example indices (cheap) and loads only the examples of
    ``rows``. A generated task draws its batch from one sequential random generator, so the rows cannot be drawn
    alone: the whole batch is drawn (numpy, on the host) and the other rows are dropped. Either way the rows are
    exactly those of the one-process batch.
    """
    if (isinstance(task, datasets.DatasetTask) and type(task)._generate is datasets.DatasetTask._generate
            and type(task).batch is base.Task.batch):
        seed, batch_size, split = base.check_seed(seed), base.check_batch_size(batch_size), task.check_split(split)
        idx = base.sample_indices(base.make_rng(seed, split), task.n_examples(split), batch_size)[rows]
        return base.to_batch(*task._assemble(split, idx), task.loss)
    batch = task.batch(seed, batch_size, split)
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[:, rows], batch)


def make_global(local, mesh: Mesh, global_rows: int | None):
    """A global array from this process's part: its rows of a batch split over ``mesh`` (``global_rows``: the
    global batch size), or, with ``global_rows=None``, a value every process holds whole (replicated)."""
    local = np.asarray(local)
    if global_rows is None:
        return jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec()), local, local.shape)
    shape = list(local.shape)
    shape[parallel.BATCH_AXIS] = global_rows
    sharding = NamedSharding(mesh, PartitionSpec(None, parallel.AXIS))
    return jax.make_array_from_process_local_data(sharding, local, tuple(shape))


class Placement:
    """Where the arrays of a run live, and which process writes: one process (``deepeprop.parallel``, any number
    of local devices) or several (:class:`Cluster`). The training loop places every array through it.

    Args:
        devices: devices per process (``--devices``).
        batch_size: the global batch size (``--batch-size``), a multiple of ``processes x devices``.
        cluster: ``None`` for one process.
    """

    def __init__(self, devices: int, batch_size: int, cluster: Cluster | None = None):
        self.cluster = cluster
        self.processes = 1 if cluster is None else cluster.processes
        total = devices * self.processes
        if batch_size % total:
            raise ValueError(f"--batch-size {batch_size} must be a multiple of the {total} devices it is split over "
                             f"(--processes {self.processes} x --devices {devices})")
        self.batch_size = batch_size
        self.mesh = parallel.batch_mesh(devices) if cluster is None else global_mesh(devices, cluster.processes)
        self.rows = None
        if cluster is not None:
            self.rows = row_range(NamedSharding(self.mesh, PartitionSpec(None, parallel.AXIS)), (1, batch_size))

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder, prints and plots."""
        return self.cluster is None or self.cluster.main

    def state(self, tree):
        """A model or ``LearnerState`` replicated on every device of the run (every process holds the same)."""
        if self.cluster is None:
            return parallel.replicate(tree, self.mesh)
        return jax.tree_util.tree_map(
            lambda a: make_global(a, self.mesh, None) if isinstance(a, (jax.Array, np.ndarray)) else a, tree)

    def train_batch(self, task, seed: int, cast, split: str = "train"):
        """The batch of ``seed`` (``batch_size`` rows) after ``cast`` (a function of a Batch), split over the run's
        devices; in a multi-process run each process builds only its own rows (:func:`own_rows`)."""
        if self.cluster is None:
            return parallel.shard_batch(cast(task.batch(seed, self.batch_size, split)), self.mesh)
        local = cast(own_rows(task, seed, self.batch_size, split, self.rows))
        return jax.tree_util.tree_map(lambda a: make_global(a, self.mesh, self.batch_size), local)

    def whole_batch(self, batch):
        """A batch every process holds whole (the evaluation batch): split over the devices when its size divides
        over them, else replicated (every device evaluates all of it)."""
        if self.cluster is None:
            return parallel.shard_if_divisible(batch, self.mesh)
        sizes = {a.shape[parallel.BATCH_AXIS] for a in jax.tree_util.tree_leaves(batch) if getattr(a, "ndim", 0) >= 2}
        if len(sizes) == 1 and next(iter(sizes)) % self.mesh.devices.size == 0:
            size = next(iter(sizes))
            rows = row_range(NamedSharding(self.mesh, PartitionSpec(None, parallel.AXIS)), (1, size))
            return jax.tree_util.tree_map(lambda a: make_global(np.asarray(a)[:, rows], self.mesh, size), batch)
        return jax.tree_util.tree_map(lambda a: make_global(a, self.mesh, None), batch)

    def host(self, tree):
        """``tree`` with every replicated global array replaced by this process's copy (for checkpoints, plots)."""
        if self.cluster is None:
            return tree
        return jax.tree_util.tree_map(
            lambda a: a.addressable_data(0) if isinstance(a, jax.Array) and not a.is_fully_addressable else a, tree)


def add_flags(parser) -> None:
    """The multi-process flags of ``deepeprop train``."""
    parser.add_argument("--processes", default=None, metavar="N|auto",
                        help="train over N processes (hosts) with jax.distributed, each building its own rows of "
                        "every batch; 'auto': from the job scheduler (SLURM_NTASKS, SLURM_PROCID; one process per "
                        "srun task) (default: one process)")
    parser.add_argument("--process-id", default=None, type=int, metavar="I",
                        help="this process's id, 0 to N-1; process 0 runs the coordinator and writes --out "
                        "(default: SLURM_PROCID)")
    parser.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                        help="process 0's address and a free port, the same on every process (default under SLURM: "
                        "the job step's first node)")
    parser.add_argument("--peer-timeout", default=PEER_TIMEOUT, type=int, metavar="SECONDS",
                        help="seconds to wait for every process to join, and without a heartbeat before a process "
                        "is declared dead")


def cluster_of_args(args) -> Cluster | None:
    """The :class:`Cluster` of parsed ``deepeprop train`` arguments (``None``: one process)."""
    return cluster_from(getattr(args, "processes", None), getattr(args, "process_id", None),
                        getattr(args, "coordinator", None), getattr(args, "peer_timeout", PEER_TIMEOUT))
