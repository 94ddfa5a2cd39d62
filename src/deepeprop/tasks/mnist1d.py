"""MNIST-1D read one value per step.

Greydanus & Kobak (2024), "Scaling down deep learning with MNIST-1D", ICML
(arXiv:2011.14439). The data set is generated locally with the package's
``mnist1d.data.make_dataset`` from its default arguments
(``get_dataset_args()``), which writes nothing; ``get_dataset`` (which downloads
and pickles to the working directory) is never called. Generating the default
5000 examples takes about 2 s and is done once per process and arguments.

Each example is a length-40 signal read one value per step (T = 40, n_in = 1),
10 classes, label on the last ``label_steps`` steps (default 1). The train/test
split is the package's own (the first 80% of its shuffled examples train, the
rest test). ``delay`` appends zero-input steps before the label; ``holdout="validation"`` trains on 80% of
the train split and evaluates on the rest (see ``DenseDatasetTask``). Options: ``num_samples`` (a multiple of 10,
default 5000 as in the
package) and ``data_seed`` (the package's generation seed, default 42).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import check_int, check_label_steps
from .datasets import DenseDatasetTask

SEQ_LENGTH = 40  # the package's final_seq_length


@functools.lru_cache(maxsize=4)
def generate_mnist1d(num_samples: int, data_seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST-1D splits ``{"train": (x (N, 40, 1) float32, y (N,) int32), "test": ...}``.

    ``make_dataset`` reseeds numpy's and Python's global generators; their
    states are restored afterwards so that callers are not affected.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = data_seed
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)

    def split(x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(data[x_key], dtype=np.float32)[..., None]  # (N, 40, 1)
        y = np.asarray(data[y_key], dtype=np.int32)  # (N,)
        return x, y

    return {"train": split("x", "y"), "test": split("x_test", "y_test")}


@dataclass(frozen=True)
class MNIST1D(DenseDatasetTask):
    name: ClassVar[str] = "mnist1d"

    label_steps: int | None = 1
    num_samples: int = 5000
    data_seed: int = 42
    delay: int = 0
    holdout: str = "test"

    def validate(self) -> None:
        self._validate_presentation()
        self._set("label_steps", check_label_steps(self.label_steps, self.n_steps))
        num_samples = check_int("num_samples", self.num_samples, minimum=10)
        if num_samples % 10:
            raise ValueError(f"num_samples must be a multiple of 10 (examples per class x 10), got {num_samples}")
        self._set("num_samples", num_samples)
        self._set("data_seed", check_int("data_seed", self.data_seed, minimum=0, maximum=2**32 - 1))

    @property
    def n_in(self) -> int:
        return 1

    @property
    def n_out(self) -> int:
        return 10

    @property
    def input_steps(self) -> int:
        return SEQ_LENGTH

    def _examples(self, split):
        return generate_mnist1d(self.num_samples, self.data_seed)[split]
