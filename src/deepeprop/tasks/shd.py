"""Spiking Heidelberg Digits (SHD), read from local HDF5 files.

Cramer, Stradmann, Schemmel & Zenke (2022), "The Heidelberg spiking data sets
for the systematic evaluation of spiking neural networks", IEEE Transactions on
Neural Networks and Learning Systems 33(7):2744 (arXiv:1910.07407).

Nothing is downloaded: ``path`` names a local file in the layout of the
published ``shd_train.h5`` / ``shd_test.h5``::

    spikes/times   variable-length float arrays, spike times in seconds
    spikes/units   variable-length int arrays, channel of each spike, 0..699
    labels         int, one per example, 0..19

The spikes of an example are binned into ``n_steps`` steps of ``dt`` seconds
(default 100 x 10 ms = 1 s): a spike at time ``t`` lands at step
``floor(t / dt)`` (with a tolerance of 1e-6 step for the rounding of the
division), spikes at or past ``n_steps * dt`` are dropped. Inputs
``(T, B, 700)`` hold the counts clipped to 1 (``counts=False``, default) or the
raw counts (``counts=True``).

The test split is the file ``test_path`` when given, otherwise a fixed
``test_fraction`` of ``path`` held out by a permutation with seed 0.

Labels: by default (``label_steps=None``) the label is given on every step,
the common choice for SHD with a leaky readout (the loss on every step), and
the accuracy is that of the readout summed over all steps; ``label_steps=k``
restricts the label (and the summed readout of the metric) to the last k steps.

Each file is read into memory once per process (spike times kept at the file's
precision). ``test_set()`` of the real test file (2264 examples) is a dense
``(100, 2264, 700)`` float32 array, about 630 MB.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .base import check_float, check_int, check_label_steps, holdout_split
from .datasets import DatasetTask

N_CHANNELS = 700
N_CLASSES = 20
SPLIT_SEED = 0
BIN_TOLERANCE = 1e-6  # in steps: absorbs the rounding of t / dt at bin edges


class SpikeFile(NamedTuple):
    """The examples of one file, concatenated (CSR layout)."""

    times: np.ndarray  # (S,) spike times in seconds, all examples one after the other
    units: np.ndarray  # (S,) channel of each spike
    offsets: np.ndarray  # (N + 1,) example i has spikes offsets[i]:offsets[i + 1]
    labels: np.ndarray  # (N,) int32


def _layout_error(path: str, problem: str) -> ValueError:
    return ValueError(
        f"{path} is not in the SHD layout ({problem}); expected datasets 'spikes/times' and "
        f"'spikes/units' (one variable-length array per example) and 'labels' (one int per example)"
    )


def _check_path(option: str, path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{option} must be a path to an SHD HDF5 file, got {path!r}")
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise ValueError(f"{option} must be an existing HDF5 file, got {path!r} (not found or not a file)")
    return path


def load_spike_file(path: str) -> SpikeFile:
    """Read an SHD file (cached per path and modification time)."""
    return _load_spike_file(path, os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_spike_file(path: str, mtime_ns: int) -> SpikeFile:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} could not be read as an HDF5 file: {error}") from error
    with handle:
        for key in ("spikes/times", "spikes/units", "labels"):
            if key not in handle or not isinstance(handle[key], h5py.Dataset):
                raise _layout_error(path, f"missing dataset {key!r}")
        times_list = handle["spikes/times"][()]
        units_list = handle["spikes/units"][()]
        labels = np.asarray(handle["labels"][()])

    if labels.ndim != 1 or times_list.ndim != 1 or units_list.ndim != 1:
        raise _layout_error(path, "datasets must be one-dimensional (one entry per example)")
    if not (len(times_list) == len(units_list) == len(labels)):
        raise _layout_error(
            path, f"{len(times_list)} spike-time arrays, {len(units_list)} unit arrays, {len(labels)} labels"
        )
    lengths = np.array([np.size(t) for t in times_list], dtype=np.int64)  # (N,)
    if any(np.size(u) != n for u, n in zip(units_list, lengths)):
        raise _layout_error(path, "an example has different numbers of spike times and units")
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES)):
        raise _layout_error(path, f"labels must be ints in [0, {N_CLASSES})")

    times = np.concatenate([np.ravel(t) for t in times_list]) if len(times_list) else np.zeros(0)  # (S,)
    units = np.concatenate([np.ravel(u) for u in units_list]) if len(units_list) else np.zeros(0, int)  # (S,)
    if units.size and (not np.issubdtype(units.dtype, np.integer) or units.min() < 0 or units.max() >= N_CHANNELS):
        raise _layout_error(path, f"units must be ints in [0, {N_CHANNELS})")
    if not np.issubdtype(times.dtype, np.floating) or not np.all(np.isfinite(times)):
        raise _layout_error(path, "spike times must be finite floats (seconds)")
    offsets = np.concatenate([[0], np.cumsum(lengths)])  # (N + 1,)
    return SpikeFile(times, units, offsets, labels.astype(np.int32))


def bin_spikes(data: SpikeFile, idx: np.ndarray, n_steps: int, dt: float, counts: bool) -> np.ndarray:
    """Dense binned spikes ``(B, T, 700)`` float32 of the examples ``idx`` of a file."""
    B = idx.shape[0]
    starts, lengths = data.offsets[idx], data.offsets[idx + 1] - data.offsets[idx]  # (B,), (B,)
    example = np.repeat(np.arange(B), lengths)  # (S_batch,) batch position of each spike
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)  # (S_batch,)
    spike = np.repeat(starts, lengths) + np.arange(example.size) - first  # (S_batch,) index into the file
    steps = np.floor(data.times[spike].astype(np.float64) / dt + BIN_TOLERANCE).astype(np.int64)  # (S_batch,)
    keep = (steps >= 0) & (steps < n_steps)
    flat = (example[keep] * n_steps + steps[keep]) * N_CHANNELS + data.units[spike[keep]].astype(np.int64)

    binned = np.zeros(B * n_steps * N_CHANNELS, dtype=np.float32)
    if counts:
        cells, count = np.unique(flat, return_counts=True)
        binned[cells] = count
    else:
        binned[flat] = 1.0
    return binned.reshape(B, n_steps, N_CHANNELS)


@dataclass(frozen=True)
class SHD(DatasetTask):
    name: ClassVar[str] = "shd"

    path: str | None = None
    test_path: str | None = None
    test_fraction: float = 0.2  # held out of `path` when test_path is None
    n_steps: int = 100
    dt: float = 0.01  # seconds per step
    counts: bool = False
    label_steps: int | None = None  # None: label on every step

    def validate(self) -> None:
        if self.path is None:
            raise ValueError("path is required: the local SHD training file (e.g. shd_train.h5)")
        self._set("path", _check_path("path", self.path))
        if self.test_path is not None:
            self._set("test_path", _check_path("test_path", self.test_path))
        self._set(
            "test_fraction",
            check_float("test_fraction", self.test_fraction, minimum=0.0, maximum=1.0,
                        exclusive_minimum=True, exclusive_maximum=True),
        )
        self._set("n_steps", check_int("n_steps", self.n_steps, minimum=1))
        self._set("dt", check_float("dt", self.dt, minimum=0.0, exclusive_minimum=True))
        if not isinstance(self.counts, (bool, np.bool_)):
            raise ValueError(f"counts must be a bool, got {self.counts!r}")
        self._set("counts", bool(self.counts))
        self._set("label_steps", check_label_steps(self.label_steps, self.n_steps))
        for split in ("train", "test"):  # read the files now: layout errors surface at construction
            if self.n_examples(split) == 0:
                raise ValueError(f"the {split} split of SHD is empty (path={self.path!r}, "
                                 f"test_path={self.test_path!r})")

    @property
    def n_in(self) -> int:
        return N_CHANNELS

    @property
    def n_out(self) -> int:
        return N_CLASSES

    def _source(self, split: str) -> tuple[SpikeFile, np.ndarray]:
        """The file of a split and the indices of its examples in that file."""
        data = load_spike_file(self.path)
        if split == "test" and self.test_path is not None:
            test = load_spike_file(self.test_path)
            return test, np.arange(test.labels.shape[0])
        if self.test_path is not None:
            return data, np.arange(data.labels.shape[0])
        n = data.labels.shape[0]
        if n < 2:
            raise ValueError(f"{self.path} holds {n} example(s); at least 2 are needed to hold out a test split")
        train_idx, test_idx = holdout_split(n, self.test_fraction, SPLIT_SEED)
        return data, (train_idx if split == "train" else test_idx)

    def split_indices(self, split: str = "train") -> np.ndarray:
        """Indices of the examples of ``split`` in its file (``path``, or ``test_path`` for test)."""
        return self._source(self.check_split(split))[1]

    def labels(self, split: str = "train") -> np.ndarray:
        data, idx = self._source(self.check_split(split))
        return data.labels[idx]

    def _inputs(self, split, idx):
        data, file_idx = self._source(split)
        return bin_spikes(data, file_idx[idx], self.n_steps, self.dt, self.counts)  # (B, T, 700)
