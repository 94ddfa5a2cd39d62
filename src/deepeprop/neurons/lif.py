"""Leaky integrate-and-fire neuron with soft reset (Bellec et al. 2020; docs/math.md, "The network").

    v[t] = a*v[t-1] + I[t] - thr*z[t-1]        z[t] = H(v[t] - thr)

State per neuron: ``d = 1`` (the membrane potential). ``dz/dv`` is the surrogate
``psi = gamma * max(0, 1 - |v - thr|/thr) / thr`` (``surrogate="triangle"``, the default) or a fast
sigmoid.

The reset path (docs/concepts/networks.md, "The reset: a choice of the rule"): ``detach_reset=True`` stops the
gradient through the reset term ``thr*z[t-1]`` (the e-prop rule's choice: its eligibility trace is
``psi * zbar`` with no reset path, as in Bellec et al.'s reference code and NEST's ``eprop_iaf`` models);
``detach_reset=False`` keeps it (the network as it runs: BPTT's and RTRL's choice). ``None`` (the default)
leaves it to the rule: every engine resolves an undecided neuron to its own choice (``Engine.prepare``; the
e-prop family detaches, ``bptt`` and ``rtrl`` keep, an engine option ``detach_reset`` overrides), and plain
autodiff without an engine (``Network.run`` under ``jax.grad``) keeps the path. An explicit ``True`` / ``False``
is the model's own choice, which every engine uses.

Capability: with ``detach_reset=True`` the own Jacobian is the leak ``a`` at every state, so
``constant_leak() = a``; with the reset path kept (``False``, or ``None`` before a rule decides) it depends on
the state (``a - thr*psi``): ``None``.
"""
from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

from ..validation import check_bool
from .base import AbstractNeuron, check_positive, check_size, check_surrogate, decay_from_tau, spike_fn


def spike_options(threshold, gamma, surrogate, detach_reset) -> tuple[float, float, int, bool]:
    """The checked ``(threshold, gamma, surrogate_id, detach_reset)`` of a spiking model (LIF, ALIF);
    ``detach_reset`` is ``True``, ``False`` or ``None`` (the rule decides)."""
    detach_reset = check_bool("detach_reset", detach_reset, optional=True)
    return (check_positive(threshold, "threshold"), check_positive(gamma, "gamma"), check_surrogate(surrogate),
            detach_reset)


def soft_reset_potential(decay, v_prev, current, z_prev, threshold, detach_reset):
    """``a*v[t-1] + I[t] - thr*z[t-1]``, the reset detached when ``detach_reset`` is ``True`` (``None``, no rule
    having decided, keeps it: plain autodiff): shared by LIF and ALIF."""
    reset = lax.stop_gradient(z_prev) if detach_reset is True else z_prev
    return lax.stop_gradient(decay) * v_prev + current - threshold * reset


class LIF(AbstractNeuron):
    """Leaky integrate-and-fire neurons with soft reset (module docstring: equations, surrogate, capability).

    Args:
        n: the number of neurons.
        tau_m: membrane time constant in time steps (``a = exp(-1/tau_m)``): a number (one leak for the
            node) or an ``(n,)`` array. Fixed.
        threshold: the firing threshold ``thr`` (spike when ``v > thr``; the reset subtracts it).
        gamma: the surrogate derivative's dampening factor.
        surrogate: ``"triangle"`` (Bellec et al. 2020) or ``"fast_sigmoid"`` (SuperSpike).
        detach_reset: ``True`` stops the gradient through the reset term, ``False`` keeps the reset path (the own
            Jacobian is then state-dependent, ``a - thr*psi``); ``None`` (default) lets the engine's rule decide
            (module docstring).
        dtype: the dtype of the fixed leak.
    """

    n: int = eqx.field(static=True)
    decay: Array  # () shared or (n,) per neuron: a = exp(-1/tau_m), fixed
    threshold: float = eqx.field(static=True)
    gamma: float = eqx.field(static=True)
    surrogate_id: int = eqx.field(static=True)
    detach_reset: bool | None = eqx.field(static=True)  # None: the rule decides (Engine.prepare)
    state_size = 1
    spiking = True

    def __init__(self, n: int, *, tau_m=20.0, threshold: float = 0.6, gamma: float = 0.3,
                 surrogate: str = "triangle", detach_reset: bool | None = None, dtype=jnp.float32):
        self.n = check_size(n, "n")
        self.decay = decay_from_tau(tau_m, self.n, dtype, "tau_m")
        self.threshold, self.gamma, self.surrogate_id, self.detach_reset = spike_options(
            threshold, gamma, surrogate, detach_reset)

    @property
    def size(self) -> int:
        return self.n

    def step(self, state: Array, current: Array) -> Array:
        z_prev = self.output(state)  # (B, n)
        v = soft_reset_potential(self.decay, state[..., 0], current, z_prev, self.threshold, self.detach_reset)
        return v[..., None]  # (B, n, 1)

    def output(self, state: Array) -> Array:
        x = (state[..., 0] - self.threshold) / self.threshold
        return spike_fn(x, jnp.asarray(self.gamma / self.threshold, x.dtype), self.surrogate_id)

    def constant_leak(self) -> Array | None:
        return lax.stop_gradient(self.decay) if self.detach_reset is True else None
