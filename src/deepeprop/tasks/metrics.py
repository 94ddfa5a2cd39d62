"""The task metrics: jit-compatible functions of a readout ``outputs`` (T, B, n_out), the targets and the mask (no
Python control flow on values). :mod:`deepeprop.tasks.base` re-exports them for the tasks."""
from __future__ import annotations

import jax
import jax.numpy as jnp


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
