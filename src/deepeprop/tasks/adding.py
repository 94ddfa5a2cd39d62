"""The adding problem.

Hochreiter & Schmidhuber (1997), "Long short-term memory", Neural Computation
9(8), experiment 4; in the form of Le, Jaitly & Hinton (2015), "A simple way to
initialize recurrent networks of rectified linear units", arXiv:1504.00941.

Two input channels over ``n_steps`` steps: channel 0 holds values uniform in
[0, 1], channel 1 is a marker with exactly two ones, one at a uniform step of
the first half ``[0, n_steps // 2)`` and one in the second half
``[n_steps // 2, n_steps)``. The target, on the last step only, is the sum of
the two marked values (targets are 0 and the mask 0 on all other steps).
Loss mse, metric nmse (1.0 = always predicting the mean, about 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import RegressionTask, check_int

VALUE, MARKER = 0, 1  # input channels


@dataclass(frozen=True)
class Adding(RegressionTask):
    name: ClassVar[str] = "adding"

    n_steps: int = 100

    def validate(self) -> None:
        self._set("n_steps", check_int("n_steps", self.n_steps, minimum=2))

    @property
    def n_in(self) -> int:
        return 2

    @property
    def n_out(self) -> int:
        return 1

    def _generate(self, rng, batch_size, split):
        T, B, half = self.n_steps, batch_size, self.n_steps // 2
        values = rng.random((T, B)).astype(np.float32)  # (T, B)
        first = rng.integers(0, half, size=B)  # (B,)
        second = rng.integers(half, T, size=B)  # (B,)
        columns = np.arange(B)

        inputs = np.zeros((T, B, 2), dtype=np.float32)  # (T, B, n_in)
        inputs[:, :, VALUE] = values
        inputs[first, columns, MARKER] = 1.0
        inputs[second, columns, MARKER] = 1.0

        targets = np.zeros((T, B, 1), dtype=np.float32)  # (T, B, n_out)
        targets[-1, :, 0] = values[first, columns] + values[second, columns]
        mask = np.zeros((T, B), dtype=np.float32)  # (T, B)
        mask[-1] = 1.0
        return inputs, targets, mask
