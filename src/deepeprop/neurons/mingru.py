"""Minimal gated recurrent unit (Feng et al. 2024, "Were RNNs All We Needed?").

    z[t] = sigmoid(g[t])          h[t] = (1 - z[t]) * h[t-1] + z[t] * h~[t]

Two currents per neuron (``c = 2``): the gate ``g`` and the candidate ``h~``, both linear in the node's
inputs (rows ``2j`` and ``2j + 1`` of each incoming edge weight), neither depending on ``h[t-1]``. State
``d = 1`` (``h``), output ``h``. The own Jacobian ``1 - z[t]`` varies with the input but not with the
state; the recurrence is element-wise, so deep e-prop is exact on minGRU stacks.
"""
from __future__ import annotations

import equinox as eqx
import jax
from jaxtyping import Array

from .base import AbstractNeuron, check_size


class MinGRU(AbstractNeuron):
    """minGRU cells (Feng et al. 2024): ``h[t] = (1 - z) h[t-1] + z h~``, ``z = sigmoid(g)``, with a gate ``g`` and
    a candidate ``h~`` current per unit (module docstring: equations).

    Args:
        n: the number of units.
        dtype: unused (no arrays); accepted like every neuron model's.
    """

    n: int = eqx.field(static=True)
    state_size = 1
    n_currents = 2
    spiking = False

    def __init__(self, n: int, *, dtype=None):
        del dtype  # no arrays
        self.n = check_size("n", n)

    @property
    def size(self) -> int:
        return self.n

    def step(self, state: Array, current: Array) -> Array:
        gate = jax.nn.sigmoid(current[..., 0])  # (B, n)
        h = (1.0 - gate) * state[..., 0] + gate * current[..., 1]
        return h[..., None]  # (B, n, 1)

    def output(self, state: Array) -> Array:
        return state[..., 0]  # (B, n)
