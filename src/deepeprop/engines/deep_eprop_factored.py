"""Factored deep e-prop: a deep trace at e-prop's cost (MATH.md section 5).

Equation, for each hidden layer ``l`` with the layers above it ``l+1 .. L`` and the readout ``L+1``
(leak ``a_k`` of layer ``k``; ``a_{L+1} = k``, the readout's, 0 for a linear readout):

    eps[l,t] = Jb[l,t] * eps[l,t-1] + dbarM_l/dtheta_l           e[l,t] = dz[l,t]/ds * eps[l,t]
    F[l,l+1,t] = a_{l+1} * F[l,l+1,t-1] + e[l,t]                  (exact first hop: S[l+1,l] = U_{l+1} (x) F)
    F[l,k,t]   = a_k     * F[l,k,t-1]   + F[l,k-1,t]              (k = l+2 .. L+1: carried through each leak)
    L[L,t]   = W_out^T @ dE_t/dy[t]        L[l,t] = U_{l+1}^T @ (ds_dI[l+1] * dz[l+1] * L[l+1,t])
    dE/dtheta_l ~= sum_t L[l,t] * F[l,L+1,t]

The readout's own parameters get their exact gradient (their trace factorises: ``k`` is shared).

Cost: ``eps[l]`` (``B n_l d_l P_l``, or ``B P_l`` when the layer's own Jacobian is a shared constant, see
:mod:`deepeprop.engines.eprop`) plus one ``F`` of ``B n_l P_l`` numbers per layer above with a leak
(``~B n^2`` each, ``O(L B n^2)`` per layer); ``~(L - l) B n_l P_l`` element-wise work per step plus one
contraction. No ``n^3`` trace, no ``n^4`` product. Constant in sequence length.

Drops (relative to RTRL): what e-prop drops inside each layer (the off-diagonal part of ``J[l]``), and,
beyond the first layer above ``l``, the time-varying surrogate derivatives between the layers above:
``S[k,l]`` is replaced by ``D[k,t] ... D[l+2,t] (U_{l+1} (x) F[l,k,t])`` with every ``D`` taken at the
current step. Exact (equal to deep e-prop) when at most one layer with a leak lies above ``l``, that
layer's own Jacobian being a shared constant: e.g. two hidden layers with a linear readout, or one hidden
layer with any readout. Equal to BPTT in those cases when layer ``l`` has no dense recurrence.

Supported models (``check_model`` raises ``ValueError`` otherwise): every hidden layer above the first
needs ``Jb = a`` shared and state-independent with ``ds/dI = 1``: neuron ``"leaky"``, or ``"lif"`` with
``neuron_options={"detach_reset": True}``; recurrence ``"none"`` or ``"dense"`` with
``self_connections=False``; one time constant per layer. The first layer may be any model.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .base import Engine, EngineState, forward_linearized, zero_theta_grads
from .traces import apply_block, collapse, has_constant_own_jacobian, immediate, shared_leak, shared_presynaptic


class FactoredDeepEProp(Engine):
    name = "deep_eprop_factored"

    def check_model(self, model):
        for index, layer in enumerate(model.layers[1:], start=2):
            if not has_constant_own_jacobian(layer):
                raise ValueError(
                    f"deep_eprop_factored needs every hidden layer above the first to have a shared, "
                    f"state-independent own Jacobian (Jb = a); layer {index} does not. Use neuron 'leaky', or "
                    "'lif' with neuron_options={'detach_reset': True}; recurrence 'none', or 'dense' with "
                    "self_connections=False; one scalar tau_m per layer. Otherwise use method='deep_eprop'")

    @staticmethod
    def _levels(model, l):
        """The leaks F[l] is carried through: hidden layers above ``l``, then the readout if leaky."""
        return len(model.layers) - 1 - l + (model.readout_kind != "linear")

    def init(self, model, batch):
        self.check_model(model)
        dtype = model.dtype
        traces = []
        for l, layer in enumerate(model.layers):
            if has_constant_own_jacobian(layer):
                eps = jnp.zeros((batch, layer.row_size), dtype)
            else:
                eps = jnp.zeros((batch, layer.size, layer.neuron.state_size, layer.row_size), dtype)
            filtered = tuple(jnp.zeros((layer.size, batch, layer.row_size), dtype)
                             for _ in range(self._levels(model, l)))
            traces.append((eps, filtered))
        traces.append(jnp.zeros((batch, model.readout.row_size), dtype))  # the readout's own trace
        return EngineState(net=model.init_state(batch), traces=tuple(traces), grads=zero_theta_grads(model))

    def step(self, model, state, x, target, mask, loss):
        L = len(model.layers)
        steps = forward_linearized(model, state.net, x)
        y = steps[-1].z
        loss_t, delta = jax.value_and_grad(loss)(y, target, mask)  # (B, n_out)
        k = shared_leak(model.readout)
        leaks = [shared_leak(layer) for layer in model.layers[1:]] + ([k] if model.readout_kind != "linear" else [])

        top = steps[-1]
        readout_trace = k * state.traces[-1] + shared_presynaptic(model.readout, top.z_prev, steps[-2].z)
        grads = [None] * (L + 1)
        grads[-1] = state.grads[-1] + (delta * top.ds_dI[..., 0]).T @ readout_trace

        signal = (delta * top.ds_dI[..., 0]) @ model.readout.U  # (B, n_L) on z[L,t]
        traces = [None] * L
        for l in reversed(range(L)):
            step, layer = steps[l], model.layers[l]
            eps_prev, filtered_prev = state.traces[l]
            if eps_prev.ndim == 2:  # factorised: e = psi (x) xbar
                below = x if l == 0 else steps[l - 1].z
                eps = shared_leak(layer) * eps_prev + shared_presynaptic(layer, step.z_prev, below)
                psi = step.dz[..., 0] * step.ds_dI[..., 0]
                e = psi.T[:, :, None] * eps[None, :, :]  # (n_l, B, P_l)
            else:
                eps = apply_block(step.block, eps_prev) + immediate(step)
                e = jnp.swapaxes(collapse(step.dz, eps), 0, 1)  # (n_l, B, P_l)
            filtered, carried = [], e
            for level, F_prev in enumerate(filtered_prev):
                carried = leaks[l + level] * F_prev + carried
                filtered.append(carried)
            grads[l] = state.grads[l] + jnp.einsum("jbp,jb->jp", carried, signal.T)
            traces[l] = (eps, tuple(filtered))
            if l > 0:
                signal = (jnp.sum(step.ds_dI * step.dz, axis=-1) * signal) @ layer.U  # (B, n_{l-1})
        new_state = EngineState(net=tuple(s.state for s in steps), traces=tuple(traces) + (readout_trace,),
                                grads=tuple(grads))
        return new_state, (y, loss_t)
