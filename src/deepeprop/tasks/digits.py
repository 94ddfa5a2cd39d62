"""Sequential 8x8 digits: scikit-learn's bundled ``load_digits`` read as a sequence.

The data are the UCI optical recognition of handwritten digits set (Alpaydin &
Kaynak 1998) as shipped with scikit-learn (1797 images of 8x8 pixels, 10
classes; no download). Reading an image step by step follows sequential MNIST
(Le, Jaitly & Hinton 2015, arXiv:1504.00941), at a size a CPU trains in minutes.

Pixels are scaled to [0, 1]. ``read="rows"``: one row per step (T = 8, n_in = 8);
``read="pixels"``: one pixel per step in row-major order (T = 64, n_in = 1).
The label applies on the last ``label_steps`` steps (default 1), after ``delay`` steps of zero input
(default 0) appended to each image; ``holdout="validation"`` trains on 80% of the train split and evaluates
on the rest (see ``DenseDatasetTask``). A fixed
``test_fraction`` of the images (default 0.2) is held out by a permutation with
seed 0 (the same split for every task instance); train batches sample the
other images, test batches and ``test_set()`` the held-out ones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import check_choice, check_float, check_label_steps, holdout_split
from .datasets import DenseDatasetTask

READS = ("rows", "pixels")
SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All images ``(1797, 8, 8)`` float32 in [0, 1] and labels ``(1797,)`` int32 (read-only)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (np.asarray(data.images, dtype=np.float32) / 16.0)  # (N, 8, 8)
    labels = np.asarray(data.target, dtype=np.int32)  # (N,)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@functools.lru_cache(maxsize=8)
def _digits_split(read: str, test_fraction: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    images, labels = load_digits_arrays()
    n = labels.shape[0]
    x = images.reshape(n, 8, 8) if read == "rows" else images.reshape(n, 64, 1)  # (N, T, n_in)
    train_idx, test_idx = holdout_split(n, test_fraction, SPLIT_SEED)
    return {"train": (x[train_idx], labels[train_idx]), "test": (x[test_idx], labels[test_idx])}


@dataclass(frozen=True)
class Digits(DenseDatasetTask):
    name: ClassVar[str] = "digits"

    read: str = "rows"
    label_steps: int | None = 1
    test_fraction: float = 0.2
    delay: int = 0
    holdout: str = "test"

    def validate(self) -> None:
        check_choice("read", self.read, READS)
        self._validate_presentation()
        self._set("label_steps", check_label_steps(self.label_steps, self.n_steps))
        self._set(
            "test_fraction",
            check_float("test_fraction", self.test_fraction, minimum=0.0, maximum=1.0,
                        exclusive_minimum=True, exclusive_maximum=True),
        )

    @property
    def n_in(self) -> int:
        return 8 if self.read == "rows" else 1

    @property
    def n_out(self) -> int:
        return 10

    @property
    def input_steps(self) -> int:
        return 8 if self.read == "rows" else 64

    def split_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(train, test)`` into ``load_digits()`` of the two splits (disjoint)."""
        return holdout_split(load_digits_arrays()[1].shape[0], self.test_fraction, SPLIT_SEED)

    def _examples(self, split):
        return _digits_split(self.read, self.test_fraction)[split]
