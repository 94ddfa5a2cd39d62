"""Leaky integrator readout unit: ``y[t] = k*y[t-1] + I[t]``, output ``y`` itself (docs/math.md).

A leaky readout is a one-node diagonal recurrence, treated by every engine exactly like any other node
of the graph; a linear readout is the same unit with ``k = 0``. ``k`` is one fixed number shared by all
readout units (a static field: ``k = 0`` is then known when the program is traced, so engines drop the
readout filter at no cost).
"""
from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from .base import AbstractNeuron, check_size


class Integrator(AbstractNeuron):
    """Leaky integrator units, ``y[t] = k y[t-1] + I[t]`` with output ``y`` (the readout).

    Args:
        n: the number of units.
        decay: ``k`` in ``[0, 1)``, shared by all units; ``0`` is a linear readout.
        dtype: unused (``k`` is a static number); accepted like every neuron model's.
    """

    n: int = eqx.field(static=True)
    decay: float = eqx.field(static=True)  # k, fixed (0 for a linear readout)
    state_size = 1
    spiking = False

    def __init__(self, n: int, *, decay: float = 0.0, dtype=None):
        del dtype  # no arrays: k is a static number
        self.n = check_size("n", n)
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not math.isfinite(decay) \
                or not 0.0 <= decay < 1.0:
            raise ValueError(f"decay (the readout leak k) must be a number in [0, 1), got {decay!r}")
        self.decay = float(decay)

    @property
    def size(self) -> int:
        return self.n

    @property
    def is_linear(self) -> bool:
        """``k = 0``: ``y = I`` (static)."""
        return self.decay == 0.0

    def step(self, state: Array, current: Array) -> Array:
        return (self.decay * state[..., 0] + current)[..., None]  # (B, n, 1)

    def output(self, state: Array) -> Array:
        return state[..., 0]  # (B, n)

    def constant_leak(self) -> Array:
        return jnp.asarray(self.decay)
