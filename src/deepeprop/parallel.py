"""Data-parallel training over several devices with ``jax.sharding``: the batch axis is split, XLA reduces.

The model, the optimizer state and everything else that is not batched is *replicated* on every device of
a one-axis :class:`jax.sharding.Mesh` (axis ``"batch"``); each batch array ``(T, B, ...)`` is *sharded* along
its batch axis ``B`` (axis 1), so every device runs the engine on ``B / N`` sequences. Nothing else
changes: the jitted training step is the same program, and XLA's partitioner turns the sums over the batch
(the loss, every gradient accumulator) into all-reduces across the devices. Results equal a one-device run
up to floating-point summation order (float32: ~1e-6 relative).

    mesh = batch_mesh(2)                                   # the first 2 of jax.devices()
    state = replicate(learner.init(model), mesh)           # LearnerState on both devices
    inputs, targets, mask = shard_batch((inputs, targets, mask), mesh)   # (T, B, ...) split along B
    state, losses, ys = learner.train_sequence(state, inputs, targets, mask)

``deepeprop train --devices N`` does exactly this. Devices are GPUs (or TPUs) when JAX has them; on a CPU,
start Python with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` to split it into ``N`` devices
(useful for testing; it does not add cores). ``devices=1`` (the default) places nothing and is the plain
one-device program.

Beyond one process: :mod:`deepeprop.distributed` (``deepeprop train --processes N``) joins several processes
(hosts) with ``jax.distributed.initialize`` and spans the same kind of mesh over the devices of all of them; each
process then contributes only its own rows of the batch (``jax.make_array_from_process_local_data``), where
:func:`shard_batch` places a batch that one process holds whole.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"  # the mesh axis the batch is split along
BATCH_AXIS = 1  # batch arrays are time-major: (T, B, ...)


def batch_mesh(devices: int) -> Mesh | None:
    """A one-axis mesh over the first ``devices`` of ``jax.devices()``, or ``None`` for one device.

    Args:
        devices: the number of devices to split the batch over (an int >= 1).

    Returns:
        A :class:`jax.sharding.Mesh` with the single axis ``"batch"``, or ``None`` when ``devices == 1``
        (nothing is placed: the plain one-device program).

    Raises:
        ValueError: ``devices`` is not a positive int, or JAX has fewer devices.
    """
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"devices must be a positive int (devices to split the batch over), got {devices!r}")
    if devices == 1:
        return None
    available = jax.devices()
    if len(available) < devices:
        raise ValueError(f"devices={devices}, but JAX sees {len(available)} device(s) "
                         f"({', '.join(str(d) for d in available)}); on a CPU start Python with "
                         f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} to split it into {devices}")
    return Mesh(np.array(available[:devices]), (AXIS,))


def replicate(tree, mesh: Mesh | None):
    """Put every array leaf of ``tree`` (a model, a ``LearnerState``) on every device of ``mesh``.

    Args:
        tree: any pytree; its non-array leaves are left as they are.
        mesh: from :func:`batch_mesh`; ``None`` returns ``tree`` unchanged.

    Returns:
        The same pytree with its arrays replicated over the mesh.
    """
    if mesh is None:
        return tree
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda a: jax.device_put(a, replicated) if isinstance(a, jax.Array) else a, tree)


def shard_batch(batch, mesh: Mesh | None):
    """Split every array of ``batch`` along its batch axis (axis 1 of ``(T, B, ...)``) over ``mesh``.

    Args:
        batch: a pytree of time-major arrays with the batch on axis 1: a :class:`deepeprop.Batch`, or a tuple
            ``(inputs (T, B, n_in), targets (T, B) or (T, B, n_out), mask (T, B))``.
        mesh: from :func:`batch_mesh`; ``None`` returns ``batch`` unchanged.

    Returns:
        The same pytree, each array laid out as ``B / N`` sequences per device.

    Raises:
        ValueError: an array has fewer than 2 axes, or its batch size is not a multiple of the mesh size.
    """
    if mesh is None:
        return batch
    count = mesh.devices.size
    spec = NamedSharding(mesh, PartitionSpec(None, AXIS))

    def place(a):
        if not hasattr(a, "shape"):
            return a
        if a.ndim < 2:
            raise ValueError(f"batch arrays must be time-major (T, B, ...), got an array of shape {a.shape}")
        if a.shape[BATCH_AXIS] % count:
            raise ValueError(f"the batch size {a.shape[BATCH_AXIS]} must be a multiple of the {count} devices "
                             "it is split over")
        return jax.device_put(a, spec)

    return jax.tree_util.tree_map(place, batch)


def shard_if_divisible(batch, mesh: Mesh | None):
    """:func:`shard_batch` when the batch size divides over the mesh, else :func:`replicate` (e.g. a test
    split of any size: every device then evaluates all of it)."""
    if mesh is None:
        return batch
    sizes = {a.shape[BATCH_AXIS] for a in jax.tree_util.tree_leaves(batch) if getattr(a, "ndim", 0) >= 2}
    if all(size % mesh.devices.size == 0 for size in sizes):
        return shard_batch(batch, mesh)
    return replicate(batch, mesh)
