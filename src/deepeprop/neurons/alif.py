"""Adaptive LIF neuron (Bellec et al. 2020; docs/math.md, "The network").

    v[t] = a*v[t-1] + I[t] - thr*z[t-1]        b[t] = r*b[t-1] + z[t-1]
    A[t] = thr + beta*b[t]                      z[t] = H(v[t] - A[t])

State per neuron: ``d = 2`` (``v``, ``b``). The surrogate acts on ``(v - A)/thr``, so
``dz/dv = psi`` and ``dz/db = -beta*psi``. ``a = exp(-1/tau_m)``, ``r = exp(-1/tau_a)``, shared (scalar
time constant) or per neuron, fixed. ``detach_reset`` as for :class:`~deepeprop.neurons.lif.LIF` (default
``None``: the rule decides; it stops the gradient of the reset term only; the adaptation path is always kept, as in the
eligibility of Bellec et al. and NEST's ``eprop_iaf_adapt``). No constant leak: the adaptation couples the
two state variables.
"""
from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

from .base import AbstractNeuron, check_positive, check_size, decay_from_tau, spike_fn
from .lif import soft_reset_potential, spike_options


class ALIF(AbstractNeuron):
    """Adaptive LIF neurons: LIF with a threshold raised by recent spikes (module docstring: equations).

    Args:
        n: the number of neurons.
        tau_m: membrane time constant in time steps, a number or an ``(n,)`` array.
        tau_a: adaptation time constant in time steps (``r = exp(-1/tau_a)``), same forms.
        beta: the threshold increase per unit of adaptation ``b`` (``A = thr + beta b``).
        threshold, gamma, surrogate, detach_reset: as for :class:`~deepeprop.LIF`.
        dtype: the dtype of the fixed leaks.
    """

    n: int = eqx.field(static=True)
    decay: Array  # () or (n,): a = exp(-1/tau_m), fixed
    adaptation_decay: Array  # () or (n,): r = exp(-1/tau_a), fixed
    threshold: float = eqx.field(static=True)
    gamma: float = eqx.field(static=True)
    surrogate_id: int = eqx.field(static=True)
    detach_reset: bool | None = eqx.field(static=True)  # None: the rule decides (Engine.prepare)
    beta: float = eqx.field(static=True)
    state_size = 2
    spiking = True

    def __init__(self, n: int, *, tau_m=20.0, tau_a=200.0, beta: float = 0.07, threshold: float = 0.6,
                 gamma: float = 0.3, surrogate: str = "triangle", detach_reset: bool | None = None,
                 dtype=jnp.float32):
        self.n = check_size(n, "n")
        self.decay = decay_from_tau(tau_m, self.n, dtype, "tau_m")
        self.adaptation_decay = decay_from_tau(tau_a, self.n, dtype, "tau_a")
        self.threshold, self.gamma, self.surrogate_id, self.detach_reset = spike_options(
            threshold, gamma, surrogate, detach_reset)
        self.beta = check_positive(beta, "beta")

    @property
    def size(self) -> int:
        return self.n

    def step(self, state: Array, current: Array) -> Array:
        r = lax.stop_gradient(self.adaptation_decay)  # () or (n,)
        v_prev, b_prev = state[..., 0], state[..., 1]  # (B, n) each
        z_prev = self.output(state)  # (B, n)
        v = soft_reset_potential(self.decay, v_prev, current, z_prev, self.threshold, self.detach_reset)
        b = r * b_prev + z_prev
        return jnp.stack([v, b], axis=-1)  # (B, n, 2)

    def output(self, state: Array) -> Array:
        v, b = state[..., 0], state[..., 1]
        x = (v - self.threshold - self.beta * b) / self.threshold
        return spike_fn(x, jnp.asarray(self.gamma / self.threshold, x.dtype), self.surrogate_id)
