"""Real-time recurrent learning across time and depth: exact forward-mode gradients (MATH.md section 2).

Equation, for every pair of layers ``k >= l`` (the readout is layer ``L+1``):

    G[l,l,t] = J[l,t] @ G[l,l,t-1] + dbarM_l/dtheta_l
    G[k,l,t] = J[k,t] @ G[k,l,t-1] + D[k,t] @ G[k-1,l,t]          (k > l)
    dE/dtheta_l = sum_t dE_t/dy[t] @ G[L+1,l,t]

with the full within-layer Jacobian ``J = own + ds_dI (x) W diag(dz_prev)`` and the depth Jacobian
``D[k] = ds_dI (x) U_k diag(dz[k-1])`` (:mod:`deepeprop.jacobians`).

Cost: ``G[k,l]`` holds ``B * n_k * d_k * n_l * P_l`` numbers (``~B n^3`` per pair of layers), each step a
matrix product with ``W`` or ``U`` (``~B n^4``); constant in sequence length.

Drops: nothing: equals BPTT to rounding error. Small networks only (``max_trace_elements`` guards memory).
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .base import Engine, EngineState, forward_linearized, zero_theta_grads
from .traces import apply_block, error_contract, immediate, project_state


def _off_diagonal(W):
    return W - jnp.diag(jnp.diagonal(W))


class RTRL(Engine):
    name = "rtrl"
    max_trace_elements: int = eqx.field(static=True, default=50_000_000)

    def _influence_shapes(self, model, batch):
        layers = model.all_layers
        return [[(batch, layers[k].size, layers[k].neuron.state_size, layers[l].size, layers[l].row_size)
                 for k in range(l, len(layers))] for l in range(len(layers))]

    def check_model(self, model):
        total = sum(int(jnp.prod(jnp.array(s))) for row in self._influence_shapes(model, 1) for s in row)
        if total > self.max_trace_elements:
            raise ValueError(f"rtrl needs {total} numbers of influence matrix per batch element, above "
                             f"max_trace_elements={self.max_trace_elements}: use a smaller network, raise "
                             "max_trace_elements, or use method='deep_eprop'")

    def init(self, model, batch):
        influence = tuple(tuple(jnp.zeros(shape, model.dtype) for shape in row)
                          for row in self._influence_shapes(model, batch))
        return EngineState(net=model.init_state(batch), traces=influence, grads=zero_theta_grads(model))

    def step(self, model, state, x, target, mask, loss):
        layers = model.all_layers
        steps = forward_linearized(model, state.net, x)
        y = steps[-1].z
        loss_t, delta = jax.value_and_grad(loss)(y, target, mask)  # delta: (B, n_out)

        def apply_within(k, G):  # J[k,t] @ G
            out = apply_block(steps[k].block, G)
            if layers[k].recurrence == "dense":
                out = out + project_state(_off_diagonal(layers[k].W), steps[k].ds_dI, steps[k].dz_prev, G)
            return out

        influence, grads = [], []
        for l in range(len(layers)):
            n_l = layers[l].size
            eye = jnp.eye(n_l, dtype=model.dtype)
            fresh = immediate(steps[l])[:, :, :, None, :] * eye[None, :, None, :, None]  # (B, n, d, n, P)
            below = apply_within(l, state.traces[l][0]) + fresh
            row = [below]
            for k in range(l + 1, len(layers)):
                depth = project_state(layers[k].U, steps[k].ds_dI, steps[k - 1].dz, below)
                below = apply_within(k, state.traces[l][k - l]) + depth
                row.append(below)
            influence.append(tuple(row))
            grads.append(state.grads[l] + error_contract(delta, below))
        return EngineState(net=tuple(s.state for s in steps), traces=tuple(influence), grads=tuple(grads)), (y, loss_t)
