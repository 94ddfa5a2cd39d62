"""Backpropagation through time: the reference.

Equation: ``dE/dtheta = sum_t dE_t/dtheta`` by reverse-mode autodiff through the ``lax.scan`` unroll of
the network (the same :meth:`DeepRNN.step` every engine runs).

Cost: memory ``O(T * B * sum_l n_l * d_l)`` -- the whole forward trajectory is stored, so it grows with
sequence length; compute ``O(T * B * sum_l n_l * (n_l + n_{l-1}))`` per sequence, about 3x the forward pass.

Drops: nothing (exact). Online, it runs per sequence or per truncation window: ``sequence`` on a
chunk starts the backward pass at the chunk's first step (truncated BPTT when chunks are shorter than
the sequence).
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from . import paths
from .base import Engine, EngineState
from .evaluation import Reverse
from .plan import BPTTPlan


class BPTT(Engine):
    """Backpropagation through time by autodiff through the scan: the exact reference.

    Args:
        detach_reset: the reset choice for neurons that leave it to the rule (``detach_reset=None``, the default
            of LIF and ALIF): ``None`` (default) is the rule's, keep the reset path (the network as it runs); ``True`` /
            ``False`` overrides it (docs/concepts/networks.md, "The reset: a choice of the rule").
    """

    name = "bptt"
    regularization_paths = paths.EXACT  # a loss on hidden outputs: deepeprop.engines.paths
    exact = True
    online = False
    evaluations = (Reverse,)  # BPTT is the reverse evaluation of the exact rule (RTRL is its step form)
    detach_reset: bool | None = eqx.field(static=True, default=None)  # None: keep (reset_default)

    def _make_plan(self, model):
        return BPTTPlan()

    @property
    def evaluation(self):
        return Reverse()

    def init(self, model, batch):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, eqx.filter(model, eqx.is_inexact_array))
        return EngineState(net=model.init_state(batch), traces=None, grads=zeros)

    def step(self, model, state, x, target, mask, loss):
        raise TypeError("bptt is not an online engine: it has no single step; use sequence() on a "
                        "whole sequence or a truncation window")

    def grads(self, model, state):
        return state.grads

    def reverse(self, model, state, inputs, targets, mask, loss):
        return self.sequence(model, state, inputs, targets, mask, loss)

    def sequence(self, model, state, inputs, targets, mask, loss):
        net0 = jax.lax.stop_gradient(state.net)

        @eqx.filter_value_and_grad(has_aux=True)
        def chunk_loss(m):
            final, ys = m.run(inputs, net0)
            losses = jax.vmap(loss)(ys, targets, mask)  # (T,)
            return jnp.sum(losses), (final, ys, losses)

        (_, (final, ys, losses)), grads = chunk_loss(model)
        accumulated = jax.tree_util.tree_map(jnp.add, state.grads, grads)
        return EngineState(net=jax.lax.stop_gradient(final), traces=None, grads=accumulated), ys, losses
