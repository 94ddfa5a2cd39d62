"""Leaky integrate-and-fire neuron with soft reset (Bellec et al. 2020; MATH.md section 1).

    v[t] = a*v[t-1] + I[t] - thr*z[t-1]        z[t] = H(v[t] - thr)

State per neuron: ``d = 1`` (the membrane potential). ``dz/dv`` is the surrogate
``psi = gamma * max(0, 1 - |v - thr|/thr) / thr`` (``surrogate="triangle"``, the default) or a fast
sigmoid. ``detach_reset=True`` stops the gradient through the reset term ``thr*z[t-1]``, as in the
original e-prop paper (its eligibility then drops the reset path); the default keeps it, and every
engine (BPTT included) sees the same choice, so gradients stay comparable.
"""
from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

from .base import NeuronModel, check_positive, check_surrogate, decay_from_tau, spike_fn


class LIF(NeuronModel):
    decay: Array  # (n,) a = exp(-1/tau_m), fixed
    threshold: float = eqx.field(static=True)
    gamma: float = eqx.field(static=True)
    surrogate_id: int = eqx.field(static=True)
    detach_reset: bool = eqx.field(static=True)
    spiking = True

    def __init__(self, n: int, *, tau_m=20.0, threshold: float = 0.6, gamma: float = 0.3,
                 surrogate: str = "triangle", detach_reset: bool = False, dtype=jnp.float32):
        self.decay = decay_from_tau(tau_m, n, dtype, "tau_m")
        self.threshold = check_positive(threshold, "threshold")
        self.gamma = check_positive(gamma, "gamma")
        self.surrogate_id = check_surrogate(surrogate)
        self.detach_reset = bool(detach_reset)

    @property
    def size(self) -> int:
        return self.decay.shape[0]

    def _reset(self, z_prev: Array) -> Array:
        return lax.stop_gradient(z_prev) if self.detach_reset else z_prev

    def step(self, state: Array, current: Array) -> Array:
        a = lax.stop_gradient(self.decay)  # (n,)
        v_prev = state[..., 0]  # (B, n)
        z_prev = self.output(state)  # (B, n)
        v = a * v_prev + current - self.threshold * self._reset(z_prev)
        return v[..., None]  # (B, n, 1)

    def output(self, state: Array) -> Array:
        x = (state[..., 0] - self.threshold) / self.threshold
        return spike_fn(x, jnp.asarray(self.gamma / self.threshold, x.dtype), self.surrogate_id)
