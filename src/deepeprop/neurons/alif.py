"""Adaptive LIF neuron (Bellec et al. 2020; MATH.md section 1).

    v[t] = a*v[t-1] + I[t] - thr*z[t-1]        b[t] = r*b[t-1] + z[t-1]
    A[t] = thr + beta*b[t]                      z[t] = H(v[t] - A[t])

State per neuron: ``d = 2`` (``v``, ``b``). The surrogate acts on ``(v - A)/thr``, so
``dz/dv = psi`` and ``dz/db = -beta*psi``. ``a = exp(-1/tau_m)``, ``r = exp(-1/tau_a)``, per neuron,
fixed. ``detach_reset`` as for :class:`~deepeprop.neurons.lif.LIF` (it stops the gradient of the
reset term only; the adaptation path is always kept).
"""
from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

from .base import check_positive, decay_from_tau, spike_fn
from .lif import LIF


class ALIF(LIF):
    adaptation_decay: Array  # (n,) r = exp(-1/tau_a), fixed
    beta: float = eqx.field(static=True)
    state_size = 2

    def __init__(self, n: int, *, tau_m=20.0, tau_a=200.0, beta: float = 0.07, threshold: float = 0.6,
                 gamma: float = 0.3, surrogate: str = "triangle", detach_reset: bool = False,
                 dtype=jnp.float32):
        super().__init__(n, tau_m=tau_m, threshold=threshold, gamma=gamma, surrogate=surrogate,
                         detach_reset=detach_reset, dtype=dtype)
        self.adaptation_decay = decay_from_tau(tau_a, n, dtype, "tau_a")
        self.beta = check_positive(beta, "beta")

    def step(self, state: Array, current: Array) -> Array:
        a = lax.stop_gradient(self.decay)  # (n,)
        r = lax.stop_gradient(self.adaptation_decay)  # (n,)
        v_prev, b_prev = state[..., 0], state[..., 1]  # (B, n) each
        z_prev = self.output(state)  # (B, n)
        v = a * v_prev + current - self.threshold * self._reset(z_prev)
        b = r * b_prev + z_prev
        return jnp.stack([v, b], axis=-1)  # (B, n, 2)

    def output(self, state: Array) -> Array:
        v, b = state[..., 0], state[..., 1]
        x = (v - self.threshold - self.beta * b) / self.threshold
        return spike_fn(x, jnp.asarray(self.gamma / self.threshold, x.dtype), self.surrogate_id)
