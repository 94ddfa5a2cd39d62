"""The interface every gradient engine implements.

An engine turns a network's steps into gradients. Online engines are used step by step:

    state = engine.init(model, batch)                                   # EngineState
    state, (y_t, loss_t) = engine.step(model, state, x_t, target_t, mask_t, loss)   # pure, scan-able
    grads = engine.grads(model, state)                                  # filter_grad's structure

``engine.sequence`` runs a chunk of steps (``lax.scan`` of ``step``) and is what
:func:`deepeprop.gradients` and the online learner call; BPTT implements ``sequence`` as autodiff through
the unrolled chunk (truncated at the chunk's start) and has no single ``step``. Accumulated gradients
carry on across chunks until :meth:`Engine.reset_grads`; network state and traces carry on regardless.
"""
from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..jacobians import LayerStep, linearize
from ..network import DeepRNN


class EngineState(eqx.Module):
    """Everything an engine carries between steps: none of it grows with sequence length."""

    net: tuple  # per layer (B, n_l, d_l), readout last
    traces: Any  # engine-specific
    grads: Any  # engine-specific accumulator of dE/dtheta


def forward_linearized(model: DeepRNN, net_state: tuple, x: Array) -> list[LayerStep]:
    """One network step with every layer's local derivatives, bottom to top (readout last)."""
    steps = []
    signal = x
    for layer, s_prev in zip(model.all_layers, net_state):
        step = linearize(layer, s_prev, signal)
        steps.append(step)
        signal = step.z
    return steps


def zero_theta_grads(model: DeepRNN) -> tuple:
    """Per layer (readout last), zeros shaped like ``theta_l`` (n_l, P_l)."""
    return tuple(jnp.zeros((layer.size, layer.row_size), model.dtype) for layer in model.all_layers)


def theta_grads_to_model(model: DeepRNN, theta_grads: tuple):
    """Per-layer ``(n_l, P_l)`` gradients -> a pytree with the structure ``equinox.filter_grad`` gives.

    Fixed constants (time constants, readout leak) get zeros, as ``filter_grad`` gives them.
    """
    grads = jax.tree_util.tree_map(jnp.zeros_like, eqx.filter(model, eqx.is_inexact_array))
    for index, theta in enumerate(theta_grads):
        layer = model.all_layers[index]
        U, W, b = layer.split_theta(theta)
        if W is not None and W.ndim == 2 and not layer.self_connections:
            W = W * (1.0 - jnp.eye(layer.size, dtype=W.dtype))  # masked: no gradient on W_jj
        if index == len(model.layers):
            where = lambda g: (g.readout.U, g.readout.b)  # noqa: E731
            grads = eqx.tree_at(where, grads, (U, b))
        elif W is None:
            grads = eqx.tree_at(lambda g, i=index: (g.layers[i].U, g.layers[i].b), grads, (U, b))
        else:
            grads = eqx.tree_at(lambda g, i=index: (g.layers[i].U, g.layers[i].W, g.layers[i].b), grads, (U, W, b))
    return grads


class Engine(eqx.Module):
    """Base class: see the module docstring. Subclasses set ``name`` and implement the methods."""

    name: ClassVar[str] = ""
    online: ClassVar[bool] = True

    def check_model(self, model: DeepRNN) -> None:
        """Raise ``ValueError`` if this engine cannot compute gradients for ``model``."""

    def init(self, model: DeepRNN, batch: int) -> EngineState:
        raise NotImplementedError

    def step(self, model: DeepRNN, state: EngineState, x: Array, target: Array, mask: Array, loss):
        """One time step: ``x`` (B, n_in), ``target`` (B, n_out) or (B,), ``mask`` (B,) ->
        ``(state, (y, loss_t))``."""
        raise NotImplementedError

    def grads(self, model: DeepRNN, state: EngineState):
        return theta_grads_to_model(model, state.grads)

    def reset_grads(self, model: DeepRNN, state: EngineState) -> EngineState:
        return eqx.tree_at(lambda s: s.grads, state, jax.tree_util.tree_map(jnp.zeros_like, state.grads))

    def sequence(self, model: DeepRNN, state: EngineState, inputs: Array, targets: Array, mask: Array, loss):
        """Run ``inputs`` (T, B, n_in) with ``targets`` and ``mask`` (T, B): -> (state, ys (T, B, n_out), losses (T,))."""
        def body(carry, xs):
            x, target, m = xs
            carry, out = self.step(model, carry, x, target, m, loss)
            return carry, out

        state, (ys, losses) = jax.lax.scan(body, state, (inputs, targets, mask))
        return state, ys, losses
