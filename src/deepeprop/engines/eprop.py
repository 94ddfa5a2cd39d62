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

Drops (relative to RTRL): the off-diagonal part of each within-layer Jacobian, and every path by which
a change in layer ``l`` at time ``t`` acts on the layers above at later times through their dynamics
(only the readout's own leak is kept). With one hidden layer and symmetric feedback it equals deep e-prop.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .base import Engine, EngineState, forward_linearized, zero_theta_grads
from .traces import apply_block, collapse, immediate

FEEDBACKS = ("symmetric", "random", "adaptive")


class EPropTraces(eqx.Module):
    eligibility: tuple  # per hidden layer (B, n_l, d_l, P_l)
    filtered: tuple  # per hidden layer (B, n_l, P_l): ebar
    readout_eligibility: jax.Array  # (B, n_out, 1, P_out)
    feedback: tuple  # (B_1 .. B_L, B_out) with the shapes of U_1 .. U_L, W_out; B_1 unused


class EProp(Engine):
    name = "eprop"
    feedback: str = eqx.field(static=True, default="symmetric")
    feedback_seed: int = eqx.field(static=True, default=0)

    def __post_init__(self):
        if self.feedback not in FEEDBACKS:
            raise ValueError(f"feedback must be one of {FEEDBACKS}, got {self.feedback!r}")

    def init(self, model, batch):
        dtype = model.dtype
        hidden = model.layers
        keys = jax.random.split(jax.random.PRNGKey(self.feedback_seed), len(model.all_layers))
        feedback = []
        for key, layer in zip(keys, model.all_layers):
            if self.feedback == "symmetric":
                feedback.append(jnp.zeros((0,), dtype))  # unused: the forward weights are read each step
            else:
                feedback.append(jax.random.normal(key, layer.U.shape, dtype) / jnp.sqrt(layer.n_in).astype(dtype))
        traces = EPropTraces(
            eligibility=tuple(jnp.zeros((batch, l.size, l.neuron.state_size, l.row_size), dtype) for l in hidden),
            filtered=tuple(jnp.zeros((batch, l.size, l.row_size), dtype) for l in hidden),
            readout_eligibility=jnp.zeros((batch, model.n_out, 1, model.readout.row_size), dtype),
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
        steps = forward_linearized(model, state.net, x)
        y = steps[-1].z
        loss_t, delta = jax.value_and_grad(loss)(y, target, mask)  # delta: (B, n_out)
        k = jax.lax.stop_gradient(model.readout.neuron.decay[0])  # shared readout leak

        readout_eps = apply_block(steps[-1].block, traces.readout_eligibility) + immediate(steps[-1])
        grads = [None] * len(model.all_layers)
        grads[-1] = state.grads[-1] + jnp.einsum("bo,bop->op", delta, readout_eps[:, :, 0])

        signal = delta @ self._feedback_matrix(model, traces, len(model.layers))  # (B, n_L) on z[L,t]
        eligibility, filtered = [None] * len(model.layers), [None] * len(model.layers)
        for l in reversed(range(len(model.layers))):
            step = steps[l]
            eps = apply_block(step.block, traces.eligibility[l]) + immediate(step)  # (B, n_l, d_l, P_l)
            ebar = k * traces.filtered[l] + collapse(step.dz, eps)  # (B, n_l, P_l)
            grads[l] = state.grads[l] + jnp.einsum("bj,bjp->jp", signal, ebar)
            eligibility[l], filtered[l] = eps, ebar
            if l > 0:  # down through the same-time depth Jacobian D[l]^T
                current_signal = jnp.sum(step.ds_dI * step.dz * signal[..., None], axis=-1)  # (B, n_l)
                signal = current_signal @ self._feedback_matrix(model, traces, l)  # (B, n_{l-1})
        new_traces = EPropTraces(tuple(eligibility), tuple(filtered), readout_eps, traces.feedback)
        return EngineState(net=tuple(s.state for s in steps), traces=new_traces, grads=tuple(grads)), (y, loss_t)
