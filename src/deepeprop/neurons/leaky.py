"""Leaky rate unit: ``v[t] = a*v[t-1] + I[t]``, ``z[t] = tanh(v[t])`` (MATH.md section 1).

State per neuron: ``d = 1`` (the potential ``v``). ``a = exp(-1/tau_m)`` per neuron, fixed.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

from .base import NeuronModel, decay_from_tau


class LeakyRate(NeuronModel):
    decay: Array  # (n,) a = exp(-1/tau_m), fixed

    def __init__(self, n: int, *, tau_m=20.0, dtype=jnp.float32):
        self.decay = decay_from_tau(tau_m, n, dtype, "tau_m")

    @property
    def size(self) -> int:
        return self.decay.shape[0]

    def step(self, state: Array, current: Array) -> Array:
        a = lax.stop_gradient(self.decay)  # (n,)
        v = a * state[..., 0] + current  # (B, n)
        return v[..., None]  # (B, n, 1)

    def output(self, state: Array) -> Array:
        return jnp.tanh(state[..., 0])  # (B, n)
