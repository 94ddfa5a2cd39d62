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
import functools
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import validation

DT = 1e-3  # seconds per step of the spiking tasks (1 ms, as in Bellec et al. 2020)
SPLITS = ("train", "test")
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


def check_split(split: Any) -> str:
    return check_choice("split", split, SPLITS)


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
    return np.random.default_rng([seed, SPLITS.index(split)])


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
# Metrics (jit-compatible: no Python control flow on values)
# --------------------------------------------------------------------------------------


def sequence_accuracy(outputs: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """Accuracy of one prediction per sequence.

    The prediction of a sequence is the argmax of the readout summed over the
    steps where ``mask == 1``; its label is the (constant) label of those steps.
    Sequences without any masked step are ignored.

    outputs (T, B, n_out), labels (T, B) int (-1 off the window), mask (T, B) -> scalar.
    """
    summed = jnp.sum(outputs * mask[..., None], axis=0)  # (B, n_out)
    prediction = jnp.argmax(summed, axis=-1)  # (B,)
    label = jnp.max(labels, axis=0)  # (B,) the window label (-1 elsewhere)
    counted = jnp.any(mask > 0, axis=0)  # (B,)
    correct = jnp.sum((prediction == label) & counted)
    return correct / jnp.maximum(jnp.sum(counted), 1)


def step_accuracy(outputs: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """Fraction of masked steps whose readout argmax equals the label of that step.

    outputs (T, B, n_out), labels (T, B) int, mask (T, B) -> scalar.
    """
    correct = (jnp.argmax(outputs, axis=-1) == labels) * mask  # (T, B)
    return jnp.sum(correct) / jnp.maximum(jnp.sum(mask), 1.0)


def nmse(outputs: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """Normalised mean squared error over the masked steps.

    ``mean((y_hat - y)^2) / var(y)``, both over the masked (step, example)
    entries and averaged over the output channels (the variance about each
    channel's own mean). Predicting each channel's masked mean gives exactly
    1.0 (chance). A zero variance is replaced by the smallest positive float.

    outputs (T, B, n_out), targets (T, B, n_out), mask (T, B) -> scalar.
    """
    m = mask[..., None]  # (T, B, 1)
    count = jnp.maximum(jnp.sum(mask), 1.0)
    mse = jnp.sum(m * (outputs - targets) ** 2, axis=(0, 1)) / count  # (n_out,)
    mean = jnp.sum(m * targets, axis=(0, 1)) / count  # (n_out,)
    var = jnp.sum(m * (targets - mean) ** 2, axis=(0, 1)) / count  # (n_out,)
    tiny = jnp.finfo(jnp.result_type(var)).tiny
    return jnp.sum(mse) / jnp.maximum(jnp.sum(var), tiny)


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

    def batch(self, seed: int, batch_size: int, split: str = "train") -> Batch:
        """A batch drawn from ``seed``; deterministic per ``(seed, batch_size, split)``."""
        seed, batch_size, split = check_seed(seed), check_batch_size(batch_size), check_split(split)
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
        return to_batch(*self._assemble("test", np.arange(self.n_examples("test"))), self.loss)


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
      held-out part as its ``"test"`` split, for choosing hyper-parameters without touching the test split.
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

    def _split_examples(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if self.holdout == "test":
            return self._examples(split)
        x, y = self._examples("train")
        train_idx, validation_idx = _validation_split(int(y.shape[0]))
        idx = train_idx if split == "train" else validation_idx
        return x[idx], y[idx]

    def examples(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """The whole split as numpy ``(x (N, T_in, n_in), y (N,))`` (read-only views; without the delay)."""
        x, y = self._split_examples(check_split(split))
        return readonly_view(x), readonly_view(y)

    def labels(self, split: str = "train") -> np.ndarray:
        return self.examples(split)[1]

    def _inputs(self, split, idx):
        x = self._split_examples(split)[0][idx]  # (B, T_in, n_in)
        if self.delay:
            x = np.concatenate([x, np.zeros((x.shape[0], self.delay, x.shape[2]), x.dtype)], axis=1)
        return x  # (B, n_steps, n_in)
