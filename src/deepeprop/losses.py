"""Per-step losses. The loss of a sequence is ``E = sum_t E_t``, each ``E_t`` averaged over the batch.

``E_t`` takes the readout ``y[t]`` (B, n_out), the target at ``t`` and a mask (B,) (1 where the loss
counts); its gradient with respect to ``y[t]`` is the error every engine sends into its traces.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .registry import Registry, document


class MSE(eqx.Module):
    """``E_t = mean_b mask_b * mean_k (y[t,b,k] - target[t,b,k])**2``; targets (T, B, n_out) floats."""

    name = "mse"
    labels = False

    def __call__(self, y: Array, target: Array, mask: Array) -> Array:
        per_example = jnp.mean((y - target) ** 2, axis=-1)  # (B,)
        return jnp.sum(mask * per_example) / y.shape[0]


class CrossEntropy(eqx.Module):
    """``E_t = mean_b mask_b * -log softmax(y[t,b])[label]``; labels (T, B) ints, ``-1`` = no loss at t."""

    name = "cross_entropy"
    labels = True

    def __call__(self, y: Array, target: Array, mask: Array) -> Array:
        valid = target >= 0  # (B,)
        safe = jnp.where(valid, target, 0)
        log_p = jax.nn.log_softmax(y, axis=-1)  # (B, n_out)
        nll = -jnp.take_along_axis(log_p, safe[:, None], axis=-1)[:, 0]  # (B,)
        return jnp.sum(jnp.where(valid, nll * mask, 0.0)) / y.shape[0]


LOSSES = Registry("loss", {"mse": MSE, "cross_entropy": CrossEntropy})


def make_loss(loss):
    """The loss called ``loss``, or ``loss`` itself when it is a loss object.

    Args:
        loss: ``"mse"`` or ``"cross_entropy"`` (:data:`LOSSES`), or a :class:`MSE` / :class:`CrossEntropy` object.

    Returns:
        The loss object: called as ``E_t = loss(y (B, n_out), target, mask (B,))``, a scalar.

    Raises:
        ValueError: anything else.
    """
    if isinstance(loss, tuple(LOSSES.values())):
        return loss
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)} or a loss object (deepeprop.MSE(), "
                         f"deepeprop.CrossEntropy()), got {loss!r}")
    return LOSSES[loss]()


document(make_loss, LOSSES=LOSSES)
