"""Leaky integrator readout unit: ``y[t] = k*y[t-1] + I[t]``, output ``y`` itself (MATH.md section 1).

A leaky readout is a one-layer diagonal recurrence, treated by every engine exactly like a layer
``L+1`` above the hidden layers; a linear readout is the same unit with ``k = 0``.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

from .base import NeuronModel


class Integrator(NeuronModel):
    decay: Array  # (n,) k, fixed (0 for a linear readout)

    def __init__(self, n: int, *, decay=0.0, dtype=jnp.float32):
        k = jnp.asarray(decay, dtype=dtype)
        self.decay = jnp.broadcast_to(k, (n,)) if k.ndim == 0 else k

    @property
    def size(self) -> int:
        return self.decay.shape[0]

    def step(self, state: Array, current: Array) -> Array:
        k = lax.stop_gradient(self.decay)  # (n,)
        return (k * state[..., 0] + current)[..., None]  # (B, n, 1)

    def output(self, state: Array) -> Array:
        return state[..., 0]  # (B, n)
