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

Factorised first hop (exact, decided from static structure): when every neuron of layer ``l+1`` has the
same state-independent own Jacobian ``Jb = a_{l+1}`` with ``ds_dI = 1`` (leaky rate units or LIF with
``detach_reset=True``; no diagonal recurrence, no self-connection; a shared leak -- the readout always
qualifies), ``S[l+1,l][m,j,:] = U_{l+1}[m,j] * F[l,t][j,:]`` with ``F[l,t] = a_{l+1} * F[l,t-1] + e[l,t]``
(MATH.md section 5): ``B n_l P_l`` numbers instead of ``B n_{l+1} n_l P_l``. The next hop is then
``S[l+2,l] = Jb * S[l+2,l] + M[t] (x) F[t]`` with the per-example ``M = ds_dI[l+2] * (U_{l+2} diag(dz[l+1]) U_{l+1})``
(``~B n^3`` work, element-wise ``B n^3``): no ``n^4`` product for that hop. Further hops as above.

Drops (relative to RTRL): the off-diagonal part of each within-layer Jacobian, ``W_l`` between distinct
neurons. Exact (equal to BPTT) with no or diagonal recurrence, at any depth; equal to e-prop for one layer.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .base import Engine, EngineState, forward_linearized, zero_theta_grads
from .traces import (apply_block, collapse, error_contract, has_constant_own_jacobian, immediate,
                     project_eligibility, project_state, shared_leak)


class DeepEProp(Engine):
    name = "deep_eprop"
    factorize: bool = eqx.field(static=True, default=True)  # False: never factorise the first hop

    def __post_init__(self):
        if self.factorize not in (True, False):
            raise ValueError(f"factorize must be True or False, got {self.factorize!r}")

    def factorised_hops(self, model) -> tuple[bool, ...]:
        """Per layer ``l`` (readout last), whether ``S[l+1,l]`` is stored as ``F`` (static structure only)."""
        layers = model.all_layers
        return tuple(self.factorize and l + 1 < len(layers) and has_constant_own_jacobian(layers[l + 1])
                     for l in range(len(layers)))

    def init(self, model, batch):
        layers = model.all_layers
        dtype = model.dtype
        factorised = self.factorised_hops(model)
        traces = []
        for l, layer in enumerate(layers):
            eps = jnp.zeros((batch, layer.size, layer.neuron.state_size, layer.row_size), dtype)
            deep = tuple(jnp.zeros((batch, layer.size, layer.row_size) if (factorised[l] and k == l + 1) else
                                   (batch, above.size, above.neuron.state_size, layer.size, layer.row_size), dtype)
                         for k, above in enumerate(layers[l + 1:], start=l + 1))
            traces.append((eps, deep))
        return EngineState(net=model.init_state(batch), traces=tuple(traces), grads=zero_theta_grads(model))

    def step(self, model, state, x, target, mask, loss):
        layers = model.all_layers
        steps = forward_linearized(model, state.net, x)
        y = steps[-1].z
        loss_t, delta = jax.value_and_grad(loss)(y, target, mask)  # delta: (B, n_out)

        factorised = self.factorised_hops(model)
        traces, grads = [], []
        for l in range(len(layers)):
            eps_prev, deep_prev = state.traces[l]
            eps = apply_block(steps[l].block, eps_prev) + immediate(steps[l])  # (B, n_l, d_l, P_l)
            deep = []
            below = None
            top_F = None
            for k in range(l + 1, len(layers)):
                if k == l + 1 and factorised[l]:  # S[l+1,l] = U_{l+1} (x) F, F = a F + e (exact)
                    F = shared_leak(layers[k]) * deep_prev[0] + collapse(steps[l].dz, eps)  # (B, n_l, P_l)
                    deep.append(F)
                    top_F = F
                    continue
                if top_F is not None:  # hop from the factorised S[l+1,l]: M[b] (x) F, M = ds_dI U_k dz U_{l+1}
                    mid = steps[k - 1].dz[..., 0] * steps[k - 1].ds_dI[..., 0]  # (B, n_{l+1})
                    M = jnp.matmul(layers[k].U[None] * mid[:, None, :], layers[k - 1].U)  # (B, n_k, n_l)
                    depth = (steps[k].ds_dI[:, :, :, None, None] * M[:, :, None, :, None]) * top_F[:, None, None]
                    top_F = None
                elif below is None:  # first hop from the row-sparse eligibility: element-wise
                    depth = project_eligibility(layers[k].U, steps[k].ds_dI, collapse(steps[l].dz, eps))
                else:
                    depth = project_state(layers[k].U, steps[k].ds_dI, steps[k - 1].dz, below)
                below = apply_block(steps[k].block, deep_prev[k - l - 1]) + depth  # (B, n_k, d_k, n_l, P_l)
                deep.append(below)
            if top_F is not None:  # F is the top trace: dE/dtheta = sum_b (delta ds_dI W_out)[b, j] F[b, j, :]
                signal = (delta * steps[-1].ds_dI[..., 0]) @ layers[-1].U  # (B, n_l)
                grad = jnp.einsum("bj,bjp->jp", signal, top_F)
            elif below is None:  # the readout's own parameters: its eligibility is its top trace
                grad = jnp.einsum("bo,bop->op", delta, eps[:, :, 0])
            else:
                grad = error_contract(delta, below)
            traces.append((eps, tuple(deep)))
            grads.append(state.grads[l] + grad)
        return EngineState(net=tuple(s.state for s in steps), traces=tuple(traces), grads=tuple(grads)), (y, loss_t)
