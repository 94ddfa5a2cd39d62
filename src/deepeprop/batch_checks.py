"""Checks of a model and of the batch or step given to it (the API boundary of engines, learner and ``gradients``).

Apart from :mod:`deepeprop.validation` (scalars, names, arrays; imported by the network and the neurons) because
these checks need the network and the losses: with them in ``validation`` the two modules would import each other.
The wording and the checks under ``jit`` are :mod:`deepeprop.validation`'s.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .losses import make_loss
from .network import Network
from .validation import as_array, check_finite, check_values, is_traced


def check_model(model) -> None:
    """A :class:`~deepeprop.Network` (from ``DeepRNN`` or ``build_network``)."""
    if not isinstance(model, Network):
        raise ValueError(f"model must be a deepeprop.DeepRNN or build_network result (a deepeprop.Network), "
                         f"got {type(model).__name__}")


def _check_targets(model, targets, loss_fn, lead: tuple, lead_names: str, name: str):
    """``targets`` of one step (``lead = (B,)``) or a sequence (``(T, B)``), converted (shared wording)."""
    targets = as_array(name, targets)
    if loss_fn.labels:
        if targets.shape != lead:
            raise ValueError(f"{name} for loss 'cross_entropy' must be integer labels of shape {lead_names} = {lead}, "
                             f"got shape {targets.shape}")
        if not jnp.issubdtype(targets.dtype, jnp.integer):
            raise ValueError(f"{name} for loss 'cross_entropy' must be integer labels, got dtype {targets.dtype}")
        n_out = model.n_out

        def out_of_range(t):
            return jnp.any((t < -1) | (t >= n_out))

        if is_traced(targets):
            message = f"{name} (labels) must be in [0, {n_out - 1}] or -1 (no loss at that step)"
        else:
            with jax.ensure_compile_time_eval():
                low, high = int(jnp.min(targets)), int(jnp.max(targets))
            message = (f"{name} (labels) must be in [0, {n_out - 1}] or -1 (no loss at that step), "
                       f"got values in [{low}, {high}]")
        return check_values(targets, out_of_range, message).astype(jnp.int32)
    shape = lead + (model.n_out,)
    if targets.shape != shape:
        raise ValueError(f"{name} for loss 'mse' must have shape {lead_names.rstrip(',)')}, n_out) = {shape}, "
                         f"got shape {targets.shape}")
    return check_finite(name, targets.astype(model.dtype))


def _check_mask(model, mask, lead: tuple, lead_names: str):
    if mask is None:
        return jnp.ones(lead, model.dtype)
    mask = as_array("mask", mask)
    if mask.shape != lead:
        raise ValueError(f"mask must have shape {lead_names} = {lead}, got shape {mask.shape}")
    mask = check_finite("mask", mask.astype(model.dtype))
    return check_values(mask, lambda m: jnp.any(m < 0), "mask must be >= 0 (1 where the loss counts, 0 elsewhere)")


def check_step(model, batch: int | None, x, target, loss, mask=None):
    """Validate and convert one time step at ``engine.step``: ``(x, target, mask)`` in the model's dtype (labels
    int32). ``x`` (B, n_in) real, finite, ``B`` the state's ``batch``; ``target`` (B, n_out) for a regression loss
    or (B,) integer labels in ``[0, n_out)`` or ``-1``; ``mask`` (B,) ``>= 0`` (``None``: ones)."""
    check_model(model)
    loss_fn = make_loss(loss)
    x = as_array("x", x)
    if x.ndim != 2 or x.shape[1] != model.n_in or (batch is not None and x.shape[0] != batch):
        expected = f"(B, n_in) = {(batch, model.n_in)}" if batch is not None else f"(B, n_in) = (B, {model.n_in})"
        raise ValueError(f"x must have shape {expected} (the state's batch B and the model's n_in), "
                         f"got shape {x.shape}")
    lead = (x.shape[0],)
    x = check_finite("x", x.astype(model.dtype))
    return x, _check_targets(model, target, loss_fn, lead, "(B,)", "target"), _check_mask(model, mask, lead, "(B,)")


def check_batch(model, inputs, targets, loss, mask=None):
    """Validate and convert one batch at the API boundary: ``(inputs, targets, mask)`` in the model's dtype
    (labels int32). Static checks raise at once; value checks work under ``jit`` (see the module docstring).

    ``inputs`` (T, B, n_in) real, finite; ``targets`` (T, B, n_out) real and finite for a regression loss,
    (T, B) integer labels in ``[0, n_out)`` or ``-1`` for a label loss; ``mask`` (T, B), finite and ``>= 0``.
    """
    check_model(model)
    loss_fn = make_loss(loss)
    inputs = as_array("inputs", inputs)
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
    inputs = check_finite("inputs", inputs.astype(model.dtype))

    targets = _check_targets(model, targets, loss_fn, (T, B), "(T, B)", "targets")
    mask = _check_mask(model, mask, (T, B), "(T, B)")
    return inputs, targets, mask
