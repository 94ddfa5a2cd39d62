"""Bellec et al. (2020)'s early-stopping criterion, an option of :func:`deepeprop.training.train`.

Their rule (IGITUGraz/eligibility_propagation, ``tutorial_evidence_accumulation_with_alif.py``): when the error
on a validation batch falls below ``stop_crit`` (0.07), evaluate 8 further fresh batches; if their mean error is
below ``stop_crit`` too, stop training at that iteration (the iteration they report), else go on.

Here the check runs at every evaluation of the run (``eval_every``): when the error of the run's evaluation batch
is below the threshold, ``batches`` further evaluation batches are drawn (``eval_batch_size`` sequences each, from
the task's test split, seeded by the run's seed and the iteration, so the check is reproducible) and the run stops
when their mean error is below the threshold as well. The error is ``1 - metric`` for a metric where higher is
better (accuracy), else the metric itself (NMSE). Bellec et al. check the latest validation error at every
iteration (a new one is computed every 10), so their confirmation can also run between two validations; with
``eval_every = 10`` this rule confirms at the validations only.

Config keys (``deepeprop train`` flags): ``early_stopping`` (``--early-stopping [ERROR]``): ``None``/``false`` off,
``true`` the threshold :data:`DEFAULT_THRESHOLD`, or a threshold in ``(0, 1]``; ``early_stopping_batches``
(``--early-stopping-batches``, default 8). The criterion changes nothing but when the run stops (the checks only
evaluate), so both may change when a run is resumed.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

DEFAULT_THRESHOLD = 0.07  # Bellec et al.'s stop_crit
DEFAULT_BATCHES = 8  # their confirmation batches
CONFIRM_STRIDE = 1_000_003  # batch seed of confirmation j at iteration i: seed * STRIDE + i * batches + j


def check_threshold(flag: str, value: Any) -> float | None:
    """The threshold of an ``early_stopping`` value: ``None``/``False`` -> ``None`` (off), ``True`` -> 0.07, else
    a number in ``(0, 1]``. Raises ``ValueError`` naming ``flag`` otherwise."""
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_THRESHOLD
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and 0 < value <= 1:
        return float(value)
    raise ValueError(f"{flag} must be true, false or an error threshold in (0, 1] (e.g. 0.07), got {value!r}")


def check_batches(flag: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{flag} must be an int >= 1 (confirmation batches), got {value!r}")
    return value


def error_of(metric: float, higher_is_better: bool) -> float:
    """The error of a task metric: ``1 - metric`` (accuracy) or the metric itself (NMSE)."""
    return 1.0 - metric if higher_is_better else metric


def confirmation_seeds(seed: int, iteration: int, batches: int) -> list[int]:
    """The batch seeds of the confirmation at ``iteration``: distinct from the evaluation batch's seed (``seed``)
    and from the other iterations' confirmations."""
    return [seed * CONFIRM_STRIDE + iteration * batches + j for j in range(batches)]


class EarlyStopping:
    """The criterion of one run.

    Args:
        threshold: the error below which the run stops (checked, then confirmed).
        batches: confirmation batches.
        make_batch: ``seed -> Batch``, a confirmation batch (the run's evaluation batch size, test split).
        evaluate: ``Batch -> metric`` of the current model.
        higher_is_better: the task's metric direction.
        seed: the run's seed.
    """

    def __init__(self, threshold: float, batches: int, *, make_batch: Callable, evaluate: Callable,
                 higher_is_better: bool, seed: int):
        self.threshold, self.batches = threshold, batches
        self.make_batch, self.evaluate = make_batch, evaluate
        self.higher_is_better, self.seed = higher_is_better, seed

    def check(self, iteration: int, metric: float) -> dict | None:
        """At an evaluation with test ``metric``: ``None`` when the error is not below the threshold, else the
        confirmation ``{"iteration", "error", "confirm_error", "met"}``."""
        error = error_of(metric, self.higher_is_better)
        if not error < self.threshold:
            return None
        errors = [error_of(float(self.evaluate(self.make_batch(s))), self.higher_is_better)
                  for s in confirmation_seeds(self.seed, iteration, self.batches)]
        confirm = float(np.mean(errors))
        return {"iteration": iteration, "error": error, "confirm_error": confirm, "met": confirm < self.threshold}
