"""Tasks over a fixed labelled dataset, one label per sequence: :class:`DatasetTask` (any storage) and
:class:`DenseDatasetTask` (dense in-memory splits, with ``delay`` and the ``holdout`` choice of the split a run
evaluates on: the test split, or a validation split held out of train)."""
from __future__ import annotations

import abc
import functools
from typing import Any

import numpy as np

from .base import (Batch, ClassificationTask, check_choice, check_int, holdout_split, mask_from_labels, readonly_view,
                   sample_indices, to_batch, window_labels)


class DatasetTask(ClassificationTask):
    """Classification of a fixed labelled dataset, one label per sequence.

    Subclasses provide ``labels(split)`` (``(N,)`` int labels of a split),
    ``_inputs(split, idx)`` (the inputs ``(B, T, n_in)`` of examples ``idx``)
    for the train split and the fixed held-out test split (disjoint), and a
    ``label_steps`` option: the label applies on the last ``label_steps``
    steps (``None``: on every step). Train and test batches sample from their
    split (without replacement within a batch when the split is large enough).
    """

    @abc.abstractmethod
    def labels(self, split: str = "train") -> np.ndarray:
        """The labels ``(N,)`` of every example of ``split``."""

    @abc.abstractmethod
    def _inputs(self, split: str, idx: np.ndarray) -> np.ndarray:
        """The inputs ``(B, T, n_in)`` of the examples ``idx`` of ``split``."""

    def n_examples(self, split: str = "train") -> int:
        return int(self.labels(split).shape[0])

    def _window_start(self) -> int:
        return 0 if self.label_steps is None else self.n_steps - self.label_steps

    def _assemble(self, split: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Examples ``idx (B,)`` of ``split`` -> time-major ``(inputs, targets, mask)``."""
        inputs = np.swapaxes(self._inputs(split, idx), 0, 1)  # (T, B, n_in)
        labels = self.labels(split)[idx]  # (B,)
        targets = window_labels(labels, self.n_steps, self._window_start(), self.n_steps)  # (T, B)
        return inputs, targets, mask_from_labels(targets)

    def _generate(self, rng, batch_size, split):
        return self._assemble(split, sample_indices(rng, self.n_examples(split), batch_size))

    def test_set(self) -> Batch:
        """The whole held-out test split as one Batch (B = number of test examples)."""
        return self.whole_split(self.check_split("test"))

    def evaluation_set(self) -> Batch:
        """The whole split a run evaluates on (:attr:`evaluation_split`: test, or validation) as one Batch."""
        return self.whole_split(self.evaluation_split)

    def whole_split(self, split: str) -> Batch:
        """Every example of ``split``, in order, as one Batch."""
        split = self.check_split(split)
        return to_batch(*self._assemble(split, np.arange(self.n_examples(split))), self.loss)


HOLDOUTS = ("test", "validation")
VALIDATION_FRACTION = 0.2  # of the train split, held out when holdout = "validation"
VALIDATION_SEED = 1


@functools.lru_cache(maxsize=16)
def _validation_split(n_train: int) -> tuple[np.ndarray, np.ndarray]:
    return holdout_split(n_train, VALIDATION_FRACTION, VALIDATION_SEED)


class DenseDatasetTask(DatasetTask):
    """A ``DatasetTask`` whose splits are held in memory as dense arrays.

    Subclasses provide ``_examples(split)`` -> ``(x (N, T_in, n_in), y (N,))``, ``input_steps`` (``T_in``) and
    the fields ``delay`` and ``holdout``, checked by ``_validate_presentation``:

    - ``delay`` (int >= 0): zero-input steps after each example, so ``n_steps = input_steps + delay`` and the
      label (on the last ``label_steps`` steps) comes ``delay`` steps after the input ended: the example is
      presented early and asked for late.
    - ``holdout``: ``"test"`` (default) evaluates on the fixed test split; ``"validation"`` holds out a fixed
      ``VALIDATION_FRACTION`` of the train split (seeded permutation), trains on the rest and serves the
      held-out part as its ``"validation"`` split, for choosing hyper-parameters without touching the test
      split: the splits are then ``("train", "validation")`` and asking for ``"test"`` is refused, by name.
    """

    @abc.abstractmethod
    def _examples(self, split: str) -> tuple[np.ndarray, np.ndarray]: ...

    @property
    @abc.abstractmethod
    def input_steps(self) -> int: ...

    @property
    def n_steps(self) -> int:
        return self.input_steps + self.delay

    def _validate_presentation(self) -> None:
        self._set("delay", check_int("delay", self.delay, minimum=0))
        check_choice("holdout", self.holdout, HOLDOUTS)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "validation") if self.holdout == "validation" else ("train", "test")

    def check_split(self, split: Any) -> str:
        if self.holdout == "validation" and split == "test":
            raise ValueError("split 'test' is held back by holdout='validation' (this task evaluates on its "
                             "'validation' split, a held-out part of train): ask for split='validation', or build "
                             "the task with holdout='test'")
        if self.holdout == "test" and split == "validation":
            raise ValueError("split 'validation' needs holdout='validation' (a held-out part of the train split); "
                             "this task has holdout='test': its splits are ('train', 'test')")
        return super().check_split(split)

    def _split_examples(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if self.holdout == "test":
            return self._examples(split)
        x, y = self._examples("train")
        train_idx, validation_idx = _validation_split(int(y.shape[0]))
        idx = train_idx if split == "train" else validation_idx
        return x[idx], y[idx]

    def examples(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """The whole split as numpy ``(x (N, T_in, n_in), y (N,))`` (read-only views; without the delay)."""
        x, y = self._split_examples(self.check_split(split))
        return readonly_view(x), readonly_view(y)

    def labels(self, split: str = "train") -> np.ndarray:
        return self.examples(split)[1]

    def _inputs(self, split, idx):
        x = self._split_examples(split)[0][idx]  # (B, T_in, n_in)
        if self.delay:
            x = np.concatenate([x, np.zeros((x.shape[0], self.delay, x.shape[2]), x.dtype)], axis=1)
        return x  # (B, n_steps, n_in)
