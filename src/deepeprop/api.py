"""The one entry point: :func:`gradients` (and :func:`loss_and_gradients`)."""
from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .engines import make_engine
from .losses import make_loss
from .network import Network


def _check_finite(array, name):
    if not bool(jnp.all(jnp.isfinite(array))):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")


def check_batch(model: Network, inputs, targets, loss: str, mask=None):
    """Validate and convert one batch at the API boundary. Returns ``(inputs, targets, mask)`` arrays."""
    if not isinstance(model, Network):
        raise ValueError("model must be a deepeprop.DeepRNN or build_network result (a deepeprop.Network), "
                         f"got {type(model).__name__}")
    loss_fn = make_loss(loss)
    inputs = jnp.asarray(inputs)
    if inputs.ndim != 3:
        raise ValueError(f"inputs must have shape (T, B, n_in) = (T, B, {model.n_in}), got shape {inputs.shape}")
    T, B, n_in = inputs.shape
    if T == 0:
        raise ValueError("inputs must have at least one time step (T >= 1), got T = 0")
    if B == 0:
        raise ValueError("inputs must have a batch of at least one sequence (B >= 1), got B = 0")
    if n_in != model.n_in:
        raise ValueError(f"inputs must have shape (T, B, n_in) with n_in = {model.n_in} (the model's), "
                         f"got {inputs.shape}")
    if not (jnp.issubdtype(inputs.dtype, jnp.floating) or jnp.issubdtype(inputs.dtype, jnp.integer)
            or inputs.dtype == jnp.bool_):
        raise ValueError(f"inputs must be a real array, got dtype {inputs.dtype}")
    inputs = inputs.astype(model.dtype)
    _check_finite(inputs, "inputs")

    targets = jnp.asarray(targets)
    if loss_fn.labels:
        if targets.shape != (T, B):
            raise ValueError(f"targets for loss 'cross_entropy' must be integer labels of shape (T, B) = {(T, B)}, "
                             f"got shape {targets.shape}")
        if not jnp.issubdtype(targets.dtype, jnp.integer):
            raise ValueError(f"targets for loss 'cross_entropy' must be integer labels, got dtype {targets.dtype}")
        low, high = int(jnp.min(targets)), int(jnp.max(targets))
        if low < -1 or high >= model.n_out:
            raise ValueError(f"targets (labels) must be in [0, {model.n_out - 1}] or -1 (no loss at that step), "
                             f"got values in [{low}, {high}]")
        targets = targets.astype(jnp.int32)
    else:
        if targets.shape != (T, B, model.n_out):
            raise ValueError(f"targets for loss 'mse' must have shape (T, B, n_out) = {(T, B, model.n_out)}, "
                             f"got shape {targets.shape}")
        if not jnp.issubdtype(targets.dtype, jnp.number):
            raise ValueError(f"targets must be a real array, got dtype {targets.dtype}")
        targets = targets.astype(model.dtype)
        _check_finite(targets, "targets")

    if mask is None:
        mask = jnp.ones((T, B), model.dtype)
    else:
        mask = jnp.asarray(mask)
        if mask.shape != (T, B):
            raise ValueError(f"mask must have shape (T, B) = {(T, B)}, got shape {mask.shape}")
        mask = mask.astype(model.dtype)
        _check_finite(mask, "mask")
        if bool(jnp.any(mask < 0)):
            raise ValueError("mask must be >= 0 (1 where the loss counts, 0 elsewhere)")
    return inputs, targets, mask


@eqx.filter_jit
def _run(engine, loss_fn, model, inputs, targets, mask):
    state = engine.init(model, inputs.shape[1])
    state, _, losses = engine.sequence(model, state, inputs, targets, mask, loss_fn)
    return jnp.sum(losses), engine.grads(model, state)


def loss_and_gradients(model: Network, inputs, targets, *, method, loss="mse", mask=None, **options):
    """Like :func:`gradients`, also returning the loss ``E`` of the sequence.

    Args:
        model, inputs, targets, method, loss, mask, **options: as for :func:`gradients`.

    Returns:
        ``(E, grads)``: the scalar loss ``E = sum_t E_t`` and the gradients (``equinox.filter_grad``'s structure).
    """
    engine = make_engine(method, **options)
    inputs, targets, mask = check_batch(model, inputs, targets, loss, mask)
    engine.check_model(model)
    return _run(engine, make_loss(loss), model, inputs, targets, mask)


def gradients(model: Network, inputs, targets, *, method, loss="mse", mask=None, **options):
    """Gradients of ``E = sum_t E_t`` (each ``E_t`` averaged over the batch) computed by one engine.

    Args:
        model: a :class:`~deepeprop.Network` (from :func:`~deepeprop.DeepRNN` or :func:`~deepeprop.build_network`).
        inputs: ``(T, B, n_in)``.
        targets: ``(T, B, n_out)`` for ``loss="mse"``; ``(T, B)`` integer labels for ``"cross_entropy"``
            with ``-1`` meaning no loss at that step.
        method: an engine object (``dp.DeepEProp()``, ``dp.EProp(feedback="random")``) or its name: ``"bptt"``,
            ``"rtrl"``, ``"eprop"``, ``"deep_eprop"``, ``"deep_eprop_factored"`` (:data:`deepeprop.ENGINES`).
        loss: a loss object (``dp.MSE()``, ``dp.CrossEntropy()``) or its name, ``"mse"`` or ``"cross_entropy"``.
        mask: optional ``(T, B)`` weights of the per-step loss (1 where it counts).
        **options: the options of an engine given by name (e.g. ``feedback="random"`` for ``eprop``).

    Returns:
        A pytree with the structure ``equinox.filter_grad`` gives for ``model`` (zeros for the fixed
        constants). ``method="bptt"`` equals ``equinox.filter_grad`` of the same loss.
    """
    return loss_and_gradients(model, inputs, targets, method=method, loss=loss, mask=mask, **options)[1]
