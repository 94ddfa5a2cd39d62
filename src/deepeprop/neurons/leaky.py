"""Leaky rate unit: ``v[t] = a*v[t-1] + I[t]``, ``z[t] = tanh(v[t])`` (docs/math.md, "The network").

State per neuron: ``d = 1`` (the potential ``v``). ``a = exp(-1/tau_m)``, fixed: one leak shared by the
node for a scalar ``tau_m``, one per neuron for an ``(n,)`` array. Capability: ``constant_leak() = a``.
"""
from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

from .base import AbstractNeuron, check_size, decay_from_tau


class LeakyRate(AbstractNeuron):
    """Leaky rate units, ``v[t] = a v[t-1] + I[t]``, ``z[t] = tanh(v[t])``.

    Args:
        n: the number of neurons.
        tau_m: time constant in time steps (``a = exp(-1/tau_m)``), a number or an ``(n,)`` array. Fixed.
        dtype: the dtype of the fixed leak.
    """

    n: int = eqx.field(static=True)
    decay: Array  # () shared or (n,) per neuron: a = exp(-1/tau_m), fixed
    state_size = 1
    spiking = False

    def __init__(self, n: int, *, tau_m=20.0, dtype=jnp.float32):
        self.n = check_size("n", n)
        self.decay = decay_from_tau("tau_m", tau_m, self.n, dtype)

    @property
    def size(self) -> int:
        return self.n

    def step(self, state: Array, current: Array) -> Array:
        a = lax.stop_gradient(self.decay)  # () or (n,)
        v = a * state[..., 0] + current  # (B, n)
        return v[..., None]  # (B, n, 1)

    def output(self, state: Array) -> Array:
        return jnp.tanh(state[..., 0])  # (B, n)

    def constant_leak(self) -> Array:
        return lax.stop_gradient(self.decay)

    def input_scale(self) -> Array:
        return jnp.broadcast_to(1.0 - self.decay, (self.n,))  # potentials O(1) at the leaky steady state
