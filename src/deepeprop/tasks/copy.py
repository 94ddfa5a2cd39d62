"""Copy task of Zucchet et al. (2023), "Online learning of long-range dependencies", NeurIPS.

A pattern of ``pattern_length`` tokens (uniform over ``n_symbols``, one-hot, one per step), ``delay`` blank
steps, one go step, then the network must reproduce the pattern in order, one token per step. Labels on
the recall window only; the metric is the per-token accuracy there (chance ``1 / n_symbols``). The
paper's setup is four layers and a pattern of 20 tokens; widths on CPU are reduced (say so in a report).

This is :class:`~deepeprop.tasks.delayed_copy.DelayedCopy` with one step per token, under the paper's names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax

from .base import Batch, ClassificationTask, check_int
from .delayed_copy import DelayedCopy


@dataclass(frozen=True)
class Copy(ClassificationTask):
    name: ClassVar[str] = "copy"

    pattern_length: int = 20
    n_symbols: int = 8
    delay: int = 10

    def validate(self) -> None:
        self._set("pattern_length", check_int("pattern_length", self.pattern_length, minimum=1))
        self._set("n_symbols", check_int("n_symbols", self.n_symbols, minimum=2))
        self._set("delay", check_int("delay", self.delay, minimum=0))

    @property
    def _trial(self) -> DelayedCopy:
        return DelayedCopy(n_symbols=self.n_symbols, seq_len=self.pattern_length, symbol_steps=1, delay=self.delay)

    @property
    def n_in(self) -> int:
        return self._trial.n_in

    @property
    def n_out(self) -> int:
        return self._trial.n_out

    @property
    def n_steps(self) -> int:
        return self._trial.n_steps

    def _generate(self, rng, batch_size, split):
        return self._trial._generate(rng, batch_size, split)

    def _metric(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return self._trial._metric(outputs, batch)
