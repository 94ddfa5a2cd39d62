"""Delayed copy task: recall a sequence of symbols, in order, after a delay.

The copy / "copying memory" problem of Hochreiter & Schmidhuber (1997), "Long
short-term memory", Neural Computation 9(8), in the form of Arjovsky, Shah &
Bengio (2016), "Unitary evolution recurrent neural networks", ICML.

Inputs have ``n_symbols + 1`` channels: one-hot symbols and a go channel. A trial::

    seq_len symbols, each shown for symbol_steps | delay blank steps | 1 go step | recall

``seq_len`` symbols are drawn uniformly from ``n_symbols`` classes and shown
one-hot, one per ``symbol_steps`` steps. After ``delay`` blank steps the go
channel is on for one step; during the following ``seq_len * symbol_steps``
recall steps (blank input) the network must output the symbols in order (each
for ``symbol_steps`` steps). Labels are given on the recall window only;
the metric is the per-step accuracy there (chance ``1 / n_symbols``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import numpy as np

from .base import Batch, ClassificationTask, check_int, mask_from_labels, step_accuracy


@dataclass(frozen=True)
class DelayedCopy(ClassificationTask):
    name: ClassVar[str] = "delayed_copy"

    n_symbols: int = 8
    seq_len: int = 5
    symbol_steps: int = 1
    delay: int = 20

    def validate(self) -> None:
        self._set("n_symbols", check_int("n_symbols", self.n_symbols, minimum=2))
        self._set("seq_len", check_int("seq_len", self.seq_len, minimum=1))
        self._set("symbol_steps", check_int("symbol_steps", self.symbol_steps, minimum=1))
        self._set("delay", check_int("delay", self.delay, minimum=0))

    @property
    def n_in(self) -> int:
        return self.n_symbols + 1

    @property
    def n_out(self) -> int:
        return self.n_symbols

    @property
    def go_channel(self) -> int:
        return self.n_symbols

    @property
    def go_step(self) -> int:
        return self.seq_len * self.symbol_steps + self.delay

    @property
    def n_steps(self) -> int:
        return self.go_step + 1 + self.seq_len * self.symbol_steps

    def _generate(self, rng, batch_size, split):
        T, B, span = self.n_steps, batch_size, self.seq_len * self.symbol_steps
        symbols = rng.integers(0, self.n_symbols, size=(B, self.seq_len))  # (B, seq_len)
        per_step = np.repeat(symbols.T, self.symbol_steps, axis=0)  # (span, B)

        inputs = np.zeros((T, B, self.n_in), dtype=np.float32)  # (T, B, n_in)
        inputs[:span] = np.eye(self.n_in, dtype=np.float32)[per_step]
        inputs[self.go_step, :, self.go_channel] = 1.0

        targets = np.full((T, B), -1, dtype=np.int32)  # (T, B)
        targets[self.go_step + 1:] = per_step
        return inputs, targets, mask_from_labels(targets)

    def _metric(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return step_accuracy(outputs, batch.targets, batch.mask)
