"""E-prop (Bellec et al. 2020), run layer by layer: naive multi-layer e-prop (MATH.md section 3).

Equation, for each hidden layer ``l``:

    eps[l,t] = Jb[l,t] * eps[l,t-1] + dbarM_l/dtheta_l       e[l,t] = dz[l,t]/ds * eps[l,t]
    ebar[l,t] = k * ebar[l,t-1] + e[l,t]                     (the leaky readout's filter; k = 0 if linear)
    L[L,t]   = B_out^T @ dE_t/dy[t]                          (learning signal on z[L,t])
    L[l-1,t] = B_l^T @ (ds_dI[l] * dz[l] * L[l,t])           (sent down through the same-time Jacobians)
    dE/dtheta_l ~= sum_t L[l,t] * ebar[l,t]

Feedback: ``"symmetric"`` (``B_out = W_out``, ``B_l = U_l``: the instantaneous ``dE_t/dz``), ``"random"``
(fixed random matrices of the same shapes, drawn from ``feedback_seed``; Bellec's random e-prop, extended
through depth as feedback alignment) or ``"adaptive"`` (starts random; the online learner moves ``B_out``
with ``W_out``'s update and weight decay, as in Bellec et al.). The readout's own parameters get their
exact gradient (their eligibility is filtered by the readout's leak ``k``, which must be shared by all
readout units).

Cost: ``eps[l]`` and ``ebar[l]``: ``B n_l (d_l + 1) P_l`` numbers (``~B n^2``), ``~B n^2`` work per step.
Constant in sequence length.

Factorised traces (``factorize``): when every neuron of layer ``l`` has the same state-independent own
Jacobian ``Jb = a_l`` and ``ds/dI = 1`` (leaky rate units, or LIF with ``detach_reset=True``; no diagonal
recurrence and no self-connection, ``DeepRNN(..., self_connections=False)``; a leak shared by the layer),
the presynaptic vector ``x_hat[t] = [z[l-1,t] | z[l,t-1] | 1]`` is shared by every row and

    eps[l,t,j,:] = xbar[l,t]        xbar[l,t] = a_l * xbar[l,t-1] + x_hat[l,t]       (B, P_l): one per layer
    e[l,t,j,:]   = psi[l,t,j] * xbar[l,t]

exactly (equal to the unfactorised recursion). With a linear readout (``k = 0``, known statically) the
gradient is one matrix product per step, ``grad_l += (L[l,t] * psi[l,t])^T @ xbar[l,t]``: memory
``B P_l`` per layer, work ``2 B n_l P_l`` (the cost of one forward matmul). With a leaky readout the filter
``ebar = k*ebar + psi (x) xbar`` does not factorise per presynaptic input (``ebar`` is a sum of ``t``
rank-one terms; the exact alternative, filtering the learning signal backwards in time, is not online),
so ``ebar`` stays ``(B, n_l, P_l)``: the eligibility vector is still never stored, and the work per step is
one element-wise update of ``ebar`` and one contraction. The readout's own trace always factorises
(``k`` is shared). ``factorize=None`` (default) factorises every layer that qualifies (decided from
static structure), ``True`` requires every hidden layer to qualify, ``False`` never factorises.

``readout_filter=False`` (an approximation, off by default) drops the leaky readout's filter from the hidden
layers' traces (``ebar -> e``: the learning signal acts only through the readout's same-step response), as
braintrace's online algorithms (ES-D-RTRL, D-RTRL) do; the readout's own gradient stays exact. With a
factorised layer this removes the last ``B n_l P_l`` array: memory ``B P_l``, one matmul per step.

Drops (relative to RTRL): the off-diagonal part of each within-layer Jacobian, and every path by which
a change in layer ``l`` at time ``t`` acts on the layers above at later times through their dynamics
(only the readout's own leak is kept). With one hidden layer and symmetric feedback it equals deep e-prop.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .base import Engine, EngineState, forward_linearized, zero_theta_grads
from .traces import apply_block, collapse, has_constant_own_jacobian, immediate, shared_leak, shared_presynaptic

FEEDBACKS = ("symmetric", "random", "adaptive")
_FEEDBACK_STREAM = 0xFEEDBAC  # folded into feedback_seed's key


class EPropTraces(eqx.Module):
    eligibility: tuple  # per hidden layer: (B, P_l) factorised; (n_l, B, P_l) if d_l = 1; else (B, n_l, d_l, P_l)
    filtered: tuple  # per hidden layer ebar: (n_l, B, P_l), or (B, n_l, P_l) if d_l > 1; (0,) if linear readout
    readout_eligibility: jax.Array  # (B, P_out): the readout's factorised trace
    feedback: tuple  # (B_1 .. B_L, B_out) with the shapes of U_1 .. U_L, W_out; B_1 unused


class EProp(Engine):
    name = "eprop"
    feedback: str = eqx.field(static=True, default="symmetric")
    feedback_seed: int = eqx.field(static=True, default=0)
    factorize: bool | None = eqx.field(static=True, default=None)
    readout_filter: bool = eqx.field(static=True, default=True)

    def __post_init__(self):
        if self.feedback not in FEEDBACKS:
            raise ValueError(f"feedback must be one of {FEEDBACKS}, got {self.feedback!r}")
        if self.factorize not in (None, True, False):
            raise ValueError(f"factorize must be None (automatic), True or False, got {self.factorize!r}")

    def factorised_layers(self, model) -> tuple[bool, ...]:
        """Per hidden layer, whether its eligibility is stored factorised (static structure only)."""
        if self.factorize is False:
            return tuple(False for _ in model.layers)
        return tuple(has_constant_own_jacobian(layer) for layer in model.layers)

    def check_model(self, model):
        if self.factorize is True and not all(self.factorised_layers(model)):
            raise ValueError("eprop with factorize=True needs every hidden layer to have a shared, "
                             "state-independent own Jacobian: neuron 'leaky', or 'lif' with "
                             "neuron_options={'detach_reset': True}; recurrence 'none', or 'dense' with "
                             "self_connections=False; one time constant per layer (scalar tau_m)")

    def init(self, model, batch):
        dtype = model.dtype
        hidden = model.layers
        # a key of its own (not the model's PRNGKey(seed)), else B_out would equal W_out for equal seeds
        feedback_key = jax.random.fold_in(jax.random.PRNGKey(self.feedback_seed), _FEEDBACK_STREAM)
        keys = jax.random.split(feedback_key, len(model.all_layers))
        feedback = []
        for key, layer in zip(keys, model.all_layers):
            if self.feedback == "symmetric":
                feedback.append(jnp.zeros((0,), dtype))  # unused: the forward weights are read each step
            else:
                feedback.append(jax.random.normal(key, layer.U.shape, dtype) / jnp.sqrt(layer.n_in).astype(dtype))
        factorised = self.factorised_layers(model)
        leaky = model.readout_kind != "linear" and self.readout_filter
        def eligibility_shape(layer, fact):
            if fact:
                return (batch, layer.row_size)
            if layer.neuron.state_size == 1:
                return (layer.size, batch, layer.row_size)
            return (batch, layer.size, layer.neuron.state_size, layer.row_size)

        def filtered_shape(layer, fact):
            if not leaky:
                return (0,)
            if fact or layer.neuron.state_size == 1:
                return (layer.size, batch, layer.row_size)
            return (batch, layer.size, layer.row_size)

        traces = EPropTraces(
            eligibility=tuple(jnp.zeros(eligibility_shape(l, f), dtype) for l, f in zip(hidden, factorised)),
            filtered=tuple(jnp.zeros(filtered_shape(l, f), dtype) for l, f in zip(hidden, factorised)),
            readout_eligibility=jnp.zeros((batch, model.readout.row_size), dtype),
            feedback=tuple(feedback),
        )
        return EngineState(net=model.init_state(batch), traces=traces, grads=zero_theta_grads(model))

    def _feedback_matrix(self, model, traces, index):
        """The matrix the learning signal is sent down through from layer ``index`` (readout last)."""
        if self.feedback == "symmetric":
            return model.all_layers[index].U
        return traces.feedback[index]

    def step(self, model, state, x, target, mask, loss):
        traces = state.traces
        factorised = self.factorised_layers(model)
        leaky = model.readout_kind != "linear" and self.readout_filter
        steps = forward_linearized(model, state.net, x)
        y = steps[-1].z
        loss_t, delta = jax.value_and_grad(loss)(y, target, mask)  # delta: (B, n_out)
        k = shared_leak(model.readout)  # shared readout leak

        # the readout's eligibility factorises exactly: eps_out[o, :] = k * eps_out[o, :] + [z_L | 1]
        top = steps[-1]
        readout_trace = k * traces.readout_eligibility + shared_presynaptic(model.readout, top.z_prev, steps[-2].z)
        grads = [None] * len(model.all_layers)
        grads[-1] = state.grads[-1] + (delta * top.ds_dI[..., 0]).T @ readout_trace

        signal = delta @ self._feedback_matrix(model, traces, len(model.layers))  # (B, n_L) on z[L,t]
        eligibility, filtered = [None] * len(model.layers), [None] * len(model.layers)
        for l in reversed(range(len(model.layers))):
            step, layer = steps[l], model.layers[l]
            below = x if l == 0 else steps[l - 1].z
            if factorised[l]:  # one presynaptic trace per layer: e = psi (x) xbar
                xbar = shared_leak(layer) * traces.eligibility[l] + shared_presynaptic(layer, step.z_prev, below)
                psi = step.dz[..., 0] * step.ds_dI[..., 0]  # (B, n_l)
                eligibility[l] = xbar
                if leaky:  # ebar stored neuron-major (n_l, B, P_l): the contraction over B is ~3x faster on CPU
                    ebar = k * traces.filtered[l] + psi.T[:, :, None] * xbar[None, :, :]
                    grads[l] = state.grads[l] + jnp.einsum("jbp,jb->jp", ebar, signal.T)
                else:
                    ebar = traces.filtered[l]
                    grads[l] = state.grads[l] + (signal * psi).T @ xbar
            elif step.state.shape[-1] == 1:  # d = 1: neuron-major (n_l, B, P_l) traces, fast contraction over B
                jb = step.block[..., 0, 0].T[:, :, None]  # (n_l, B, 1)
                pre = jnp.swapaxes(step.presynaptic, 0, 1)  # (n_l, B, P_l)
                eps = jb * traces.eligibility[l] + step.ds_dI[..., 0].T[:, :, None] * pre
                e = step.dz[..., 0].T[:, :, None] * eps
                eligibility[l] = eps
                ebar = k * traces.filtered[l] + e if leaky else traces.filtered[l]
                grads[l] = state.grads[l] + jnp.einsum("jbp,jb->jp", ebar if leaky else e, signal.T)
            else:
                eps = apply_block(step.block, traces.eligibility[l]) + immediate(step)  # (B, n_l, d_l, P_l)
                e = collapse(step.dz, eps)  # (B, n_l, P_l)
                eligibility[l] = eps
                if leaky:
                    ebar = k * traces.filtered[l] + e
                    grads[l] = state.grads[l] + jnp.einsum("bj,bjp->jp", signal, ebar)
                else:
                    ebar = traces.filtered[l]
                    grads[l] = state.grads[l] + jnp.einsum("bj,bjp->jp", signal, e)
            filtered[l] = ebar
            if l > 0:  # down through the same-time depth Jacobian D[l]^T
                current_signal = jnp.sum(step.ds_dI * step.dz * signal[..., None], axis=-1)  # (B, n_l)
                signal = current_signal @ self._feedback_matrix(model, traces, l)  # (B, n_{l-1})
        new_traces = EPropTraces(tuple(eligibility), tuple(filtered), readout_trace, traces.feedback)
        return EngineState(net=tuple(s.state for s in steps), traces=new_traces, grads=tuple(grads)), (y, loss_t)
