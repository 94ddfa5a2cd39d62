"""Deep e-prop (Millidge 2025; MATH.md section 4).

Equation: e-prop's block-diagonal approximation inside every layer, the exact recursion across depth:

    eps[l,t]   = Jb[l,t] * eps[l,t-1] + dbarM_l/dtheta_l          (S[l,l], row-sparse)
    S[l+1,l,t] = Jb[l+1,t] * S[l+1,l,t-1] + ds_dI[l+1] (x) U_{l+1} * e[l,t]      (element-wise)
    S[k,l,t]   = Jb[k,t] * S[k,l,t-1] + D[k,t] @ S[k-1,l,t]        (k >= l+2, a matrix product)
    dE/dtheta_l ~= sum_t dE_t/dy[t] @ S[L+1,l,t]

with ``e[l,t] = dz[l,t]/ds * eps[l,t]`` and the readout as layer ``L+1``.

Cost: ``eps[l]`` holds ``B n_l d_l P_l`` numbers (``~B n^2``); each deep trace ``S[k,l]`` holds
``B n_k d_k n_l P_l`` (``~B n^3``). The first hop is element-wise (``~B n^3`` per step); each further hop
a matrix product with ``U_k`` (``~B n^4`` per step). Constant in sequence length.

Drops (relative to RTRL): the off-diagonal part of each within-layer Jacobian, ``W_l`` between distinct
neurons. Exact (equal to BPTT) with no or diagonal recurrence, at any depth; equal to e-prop for one layer.
"""
from __future__ import annotations

import jax

from .base import Engine, EngineState, forward_linearized, zero_theta_grads
from .traces import apply_block, collapse, error_contract, immediate, project, project_eligibility
import jax.numpy as jnp


class DeepEProp(Engine):
    name = "deep_eprop"

    def init(self, model, batch):
        layers = model.all_layers
        dtype = model.dtype
        traces = []
        for l, layer in enumerate(layers):
            eps = jnp.zeros((batch, layer.size, layer.neuron.state_size, layer.row_size), dtype)
            deep = tuple(jnp.zeros((batch, above.size, above.neuron.state_size, layer.size, layer.row_size), dtype)
                         for above in layers[l + 1:])
            traces.append((eps, deep))
        return EngineState(net=model.init_state(batch), traces=tuple(traces), grads=zero_theta_grads(model))

    def step(self, model, state, x, target, mask, loss):
        layers = model.all_layers
        steps = forward_linearized(model, state.net, x)
        y = steps[-1].z
        loss_t, delta = jax.value_and_grad(loss)(y, target, mask)  # delta: (B, n_out)

        traces, grads = [], []
        for l in range(len(layers)):
            eps_prev, deep_prev = state.traces[l]
            eps = apply_block(steps[l].block, eps_prev) + immediate(steps[l])  # (B, n_l, d_l, P_l)
            deep = []
            below = None
            for k in range(l + 1, len(layers)):
                if below is None:  # first hop from the row-sparse eligibility: element-wise
                    depth = project_eligibility(layers[k].U, steps[k].ds_dI, collapse(steps[l].dz, eps))
                else:
                    depth = project(layers[k].U, steps[k].ds_dI, collapse(steps[k - 1].dz, below))
                below = apply_block(steps[k].block, deep_prev[k - l - 1]) + depth  # (B, n_k, d_k, n_l, P_l)
                deep.append(below)
            if below is None:  # the readout's own parameters: its eligibility is its top trace
                grad = jnp.einsum("bo,bop->op", delta, eps[:, :, 0])
            else:
                grad = error_contract(delta, below)
            traces.append((eps, tuple(deep)))
            grads.append(state.grads[l] + grad)
        return EngineState(net=tuple(s.state for s in steps), traces=tuple(traces), grads=tuple(grads)), (y, loss_t)
