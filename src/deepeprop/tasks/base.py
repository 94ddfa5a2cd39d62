"""Common interface and shared helpers of the benchmark tasks.

Every task is a frozen dataclass whose fields are its options. It produces
time-major batches from an integer seed::

    task = CueAccumulation(n_cues=3, cue_steps=10, gap_steps=5, delay_steps=20, recall_steps=10)
    batch = task.batch(seed=0, batch_size=32)        # Batch(inputs, targets, mask)
    score = task.metric(outputs, batch)              # outputs: (T, B, n_out) readout

Conventions (shared by all tasks):

* ``inputs``  ``(T, B, n_in)`` float32.
* ``targets`` ``(T, B, n_out)`` float32 when ``loss == "mse"``;
  ``(T, B)`` int32 class labels when ``loss == "cross_entropy"``, ``-1`` at the
  steps that carry no loss.
* ``mask``    ``(T, B)`` float32, 1.0 where the loss counts (for cross_entropy
  exactly where ``targets >= 0``).
* ``batch(seed, batch_size, split)`` is a pure function of its arguments and
  of the task options; the array shapes depend only on the options and
  ``batch_size`` (the trainer compiles once). Random draws use numpy's
  ``default_rng`` seeded by ``(seed, split)``, so train and test draws differ.
* Spiking inputs are Bernoulli approximations of Poisson processes on a
  ``DT = 1 ms`` grid: a channel at ``rate`` Hz spikes with probability
  ``rate * DT`` per step.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import validation
from .metrics import nmse, sequence_accuracy, step_accuracy  # noqa: F401  (tasks import them from here)

DT = 1e-3  # seconds per step of the spiking tasks (1 ms, as in Bellec et al. 2020)
SPLITS = ("train", "test", "validation")  # "validation": a held-out part of train (holdout="validation")
# The random stream of each split: the held-out split, test or validation, draws from one stream (as before the
# validation split had a name of its own, so that runs seeded then draw the same batches).
_STREAMS = {"train": 0, "test": 1, "validation": 1}
LOSSES = ("mse", "cross_entropy")


class Batch(NamedTuple):
    """One batch, time-major. A NamedTuple, hence a JAX pytree.

    Attributes:
        inputs: ``(T, B, n_in)`` float32.
        targets: ``(T, B, n_out)`` float32 for the ``"mse"`` loss; ``(T, B)`` int32 labels for
            ``"cross_entropy"``, ``-1`` at steps without loss.
        mask: ``(T, B)`` float32, 1 where the loss counts.
    """

    inputs: jax.Array  # (T, B, n_in) float32
    targets: jax.Array  # (T, B, n_out) float32 for "mse"; (T, B) int32 labels for "cross_entropy"
    mask: jax.Array  # (T, B) float32


# --------------------------------------------------------------------------------------
# Argument validation
# --------------------------------------------------------------------------------------


# the shared checks (one wording everywhere): deepeprop.validation
check_int = validation.check_int
check_float = validation.check_number


def check_rate(name: str, value: Any) -> float:
    """A Poisson rate in Hz; at most ``1 / DT`` (one spike per step)."""
    return check_float(name, value, minimum=0.0, maximum=1.0 / DT)


check_choice = validation.check_choice


def check_seed(seed: Any) -> int:
    return check_int("seed", seed, minimum=0)


def check_batch_size(batch_size: Any) -> int:
    return check_int("batch_size", batch_size, minimum=1)


def check_label_steps(label_steps: Any, n_steps: int) -> int | None:
    """``None`` (label on every step) or an int in ``[1, n_steps]``."""
    if label_steps is None:
        return None
    return check_int("label_steps", label_steps, minimum=1, maximum=n_steps)


# --------------------------------------------------------------------------------------
# Random draws and target builders
# --------------------------------------------------------------------------------------


def make_rng(seed: int, split: str) -> np.random.Generator:
    """The generator of one batch: seeded by ``(seed, split)`` so that splits differ."""
    return np.random.default_rng([seed, _STREAMS[split]])


def poisson_spikes(rng: np.random.Generator, rates_hz: np.ndarray | float, shape: tuple[int, ...]) -> np.ndarray:
    """0/1 float32 spikes of the given shape: Bernoulli(``rates_hz * DT``) per step.

    ``rates_hz`` broadcasts against ``shape`` (a scalar or an array of rates).
    """
    return (rng.random(shape, dtype=np.float32) < np.asarray(rates_hz, dtype=np.float32) * DT).astype(np.float32)


def window_labels(labels: np.ndarray, n_steps: int, start: int, stop: int) -> np.ndarray:
    """Labels ``(B,)`` held on steps ``[start, stop)``, ``-1`` elsewhere -> ``(T, B)`` int32."""
    targets = np.full((n_steps, labels.shape[0]), -1, dtype=np.int32)  # (T, B)
    targets[start:stop] = labels.astype(np.int32)[None, :]
    return targets


def mask_from_labels(targets: np.ndarray) -> np.ndarray:
    """The loss mask of cross-entropy targets: ``(T, B)`` float32, 1.0 where ``targets >= 0``."""
    return (targets >= 0).astype(np.float32)


def to_batch(inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray, loss: str) -> Batch:
    """Cast to the documented dtypes and move to JAX arrays."""
    target_dtype = jnp.int32 if loss == "cross_entropy" else jnp.float32
    return Batch(
        inputs=jnp.asarray(inputs, dtype=jnp.float32),
        targets=jnp.asarray(targets, dtype=target_dtype),
        mask=jnp.asarray(mask, dtype=jnp.float32),
    )


def holdout_split(n_examples: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed train/test split of ``range(n_examples)`` by a seeded permutation.

    Returns sorted ``(train_idx, test_idx)``, disjoint, covering every example,
    each non-empty (``round(test_fraction * n)`` test examples, at least 1).
    """
    if n_examples < 2:
        raise ValueError(f"need at least 2 examples to hold out a test split, got {n_examples}")
    n_test = min(max(int(round(test_fraction * n_examples)), 1), n_examples - 1)
    perm = np.random.default_rng(seed).permutation(n_examples)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def readonly_view(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array`` (to hand out cached data safely)."""
    view = array.view()
    view.flags.writeable = False
    return view


def sample_indices(rng: np.random.Generator, n_examples: int, batch_size: int) -> np.ndarray:
    """``batch_size`` example indices: without replacement when possible, else with."""
    return rng.choice(n_examples, size=batch_size, replace=batch_size > n_examples)


# --------------------------------------------------------------------------------------
# Task base classes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task(abc.ABC):
    """Abstract task. Subclasses are frozen dataclasses whose fields are the options.

    Attributes every task provides (class constants or properties of the options):
    ``name``, ``n_in``, ``n_out``, ``n_steps``, ``loss`` ("mse" or
    "cross_entropy"), ``metric_name``, ``higher_is_better``, ``chance`` (the
    metric at chance level).

    Subclasses validate and normalise their options in ``validate`` (called
    after ``__init__``); use ``self._set`` to store a normalised value.
    """

    name: ClassVar[str]
    loss: ClassVar[str]
    metric_name: ClassVar[str]
    higher_is_better: ClassVar[bool]

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # noqa: B027 (a hook: tasks without options keep this default)
        """Check the options; raise ``ValueError`` naming the bad one."""

    def _set(self, field_name: str, value: Any) -> None:
        object.__setattr__(self, field_name, value)

    @property
    def options(self) -> dict[str, Any]:
        """The task options as a dict (for logging and ``get_task(name, **options)``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    @abc.abstractmethod
    def n_in(self) -> int: ...

    @property
    @abc.abstractmethod
    def n_out(self) -> int: ...

    @property
    @abc.abstractmethod
    def n_steps(self) -> int: ...

    @property
    @abc.abstractmethod
    def chance(self) -> float: ...

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits :meth:`batch` serves: ``("train", "test")``; a task with a validation hold-out serves
        ``("train", "validation")`` instead (its test split held back)."""
        return ("train", "test")

    @property
    def evaluation_split(self) -> str:
        """The split a run evaluates on: ``"test"``, or ``"validation"`` under ``holdout="validation"``."""
        return self.splits[-1]

    def check_split(self, split: Any) -> str:
        """``split`` if this task serves it (:attr:`splits`), else a ``ValueError`` naming the ones it serves."""
        return check_choice("split", split, self.splits)

    def batch(self, seed: int, batch_size: int, split: str = "train") -> Batch:
        """A batch drawn from ``seed``; deterministic per ``(seed, batch_size, split)``."""
        seed, batch_size, split = check_seed(seed), check_batch_size(batch_size), self.check_split(split)
        inputs, targets, mask = self._generate(make_rng(seed, split), batch_size, split)
        return to_batch(inputs, targets, mask, self.loss)

    @abc.abstractmethod
    def _generate(
        self, rng: np.random.Generator, batch_size: int, split: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Numpy ``(inputs, targets, mask)`` of one batch from a ``(seed, split)`` generator."""

    def metric(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """The task metric (scalar) of a readout ``outputs`` (T, B, n_out) on ``batch``."""
        self._check_outputs(outputs, batch)
        return self._metric(outputs, batch)

    @abc.abstractmethod
    def _metric(self, outputs: jax.Array, batch: Batch) -> jax.Array: ...

    def _check_outputs(self, outputs: jax.Array, batch: Batch) -> None:
        expected = (*batch.mask.shape, self.n_out)
        if tuple(outputs.shape) != expected:
            raise ValueError(f"outputs must have shape (T, B, n_out) = {expected}, got {tuple(outputs.shape)}")


class RegressionTask(Task):
    """MSE loss, NMSE metric (lower is better, 1.0 = predicting the target mean)."""

    loss: ClassVar[str] = "mse"
    metric_name: ClassVar[str] = "nmse"
    higher_is_better: ClassVar[bool] = False

    @property
    def chance(self) -> float:
        return 1.0

    def _metric(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return nmse(outputs, batch.targets, batch.mask)


class ClassificationTask(Task):
    """Cross-entropy loss; accuracy of the window-summed readout (``sequence_accuracy``).

    Chance is ``1 / n_out`` (balanced classes).
    """

    loss: ClassVar[str] = "cross_entropy"
    metric_name: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True

    @property
    def chance(self) -> float:
        return 1.0 / self.n_out

    def _metric(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return sequence_accuracy(outputs, batch.targets, batch.mask)
