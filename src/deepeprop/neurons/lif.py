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

**Refractory period** (``n_ref`` steps, default 0: none; LIF and ALIF). A neuron that spikes at step ``t`` cannot
spike at steps ``t+1 .. t+n_ref``, and its surrogate derivative is zero there, as in Bellec et al.'s ``EligALIF``
(``Figure_3_and_S7_e_prop_tutorials/models.py``, which also sets the pseudo-derivative to 0 while refractory). The
membrane keeps integrating meanwhile; only the spike (hence the reset) is held at zero. A counter joins the state,

    q[t] = max(q[t-1] - 1, 0) + n_ref*z[t-1]        z[t] = H(v[t] - thr) * [q[t] = 0]

(``d = 2`` for LIF, ``3`` for ALIF: the counter last). It is a float that counts down, with zero derivative (it is
computed under ``stop_gradient``, and the gate ``[q = 0]`` has none), so the own Jacobian gains a zero row and
column and ``dz/ds = psi [q = 0]``: every engine reads both from the step through ``linearize``. Convention: Bellec
et al.'s flag ``n_ref = k`` (their default 5) holds the spike at zero for the ``k - 1`` steps after one (their
counter is set to ``k - 1``), which is ``n_ref = k - 1`` here; NEST's ``t_ref / dt`` steps are ``n_ref`` here.

Capability: with ``detach_reset=True`` and no refractory period the own Jacobian is the leak ``a`` at every state,
so ``constant_leak() = a``; with the reset path kept (``False``, or ``None`` before a rule decides) it depends on
the state (``a - thr*psi``), and with ``n_ref > 0`` the neuron has two state variables: ``None`` (no factorised
trace).
"""
from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array

from ..validation import check_bool, check_int
from .base import AbstractNeuron, check_positive, check_size, check_surrogate, decay_from_tau, spike_fn


def spike_options(threshold, gamma, surrogate, detach_reset) -> tuple[float, float, int, bool]:
    """The checked ``(threshold, gamma, surrogate_id, detach_reset)`` of a spiking model (LIF, ALIF);
    ``detach_reset`` is ``True``, ``False`` or ``None`` (the rule decides)."""
    detach_reset = check_bool("detach_reset", detach_reset, optional=True)
    return (check_positive("threshold", threshold), check_positive("gamma", gamma), check_surrogate(surrogate),
            detach_reset)


def check_refractory(n_ref) -> int:
    """The refractory period in steps: an int >= 0 (0: none)."""
    return check_int("n_ref", n_ref, minimum=0)


def refractory_count(count_prev: Array, z_prev: Array, n_ref: int) -> Array:
    """``q[t] = max(q[t-1] - 1, 0) + n_ref*z[t-1]`` (B, n), with zero derivative: the steps a neuron still has to
    wait before it may spike again (a spike at ``t-1`` sets ``n_ref``, each step counts one down)."""
    return lax.stop_gradient(jnp.maximum(count_prev - 1, 0) + n_ref * z_prev)


def refractory_gate(z: Array, count: Array) -> Array:
    """``z * [q = 0]``: no spike, and no surrogate derivative, while the counter ``q`` (B, n) is running."""
    return jnp.where(count > 0.5, jnp.zeros_like(z), z)  # the counter holds integers; 0.5 is the midpoint


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
        n_ref: the refractory period in steps (an int >= 0, default 0: none): after a spike the neuron cannot spike
            for ``n_ref`` steps and its surrogate derivative is zero there; a counter joins the state (``d = 2``).
            Bellec et al.'s ``n_ref = k`` is ``k - 1`` here (module docstring).
        dtype: the dtype of the fixed leak.
    """

    n: int = eqx.field(static=True)
    decay: Array  # () shared or (n,) per neuron: a = exp(-1/tau_m), fixed
    threshold: float = eqx.field(static=True)
    gamma: float = eqx.field(static=True)
    surrogate_id: int = eqx.field(static=True)
    detach_reset: bool | None = eqx.field(static=True)  # None: the rule decides (Engine.prepare)
    n_ref: int = eqx.field(static=True)  # refractory steps after a spike (0: none)
    spiking = True

    def __init__(self, n: int, *, tau_m=20.0, threshold: float = 0.6, gamma: float = 0.3,
                 surrogate: str = "triangle", detach_reset: bool | None = None, n_ref: int = 0, dtype=jnp.float32):
        self.n = check_size("n", n)
        self.decay = decay_from_tau("tau_m", tau_m, self.n, dtype)
        self.threshold, self.gamma, self.surrogate_id, self.detach_reset = spike_options(
            threshold, gamma, surrogate, detach_reset)
        self.n_ref = check_refractory(n_ref)

    @property
    def state_size(self) -> int:
        """``d``: the potential, and the refractory counter when ``n_ref > 0``."""
        return 2 if self.n_ref else 1

    @property
    def size(self) -> int:
        return self.n

    def step(self, state: Array, current: Array) -> Array:
        z_prev = self.output(state)  # (B, n)
        v = soft_reset_potential(self.decay, state[..., 0], current, z_prev, self.threshold, self.detach_reset)
        if not self.n_ref:
            return v[..., None]  # (B, n, 1)
        return jnp.stack([v, refractory_count(state[..., 1], z_prev, self.n_ref)], axis=-1)  # (B, n, 2)

    def output(self, state: Array) -> Array:
        x = (state[..., 0] - self.threshold) / self.threshold
        z = spike_fn(x, jnp.asarray(self.gamma / self.threshold, x.dtype), self.surrogate_id)  # (B, n)
        return refractory_gate(z, state[..., 1]) if self.n_ref else z

    def constant_leak(self) -> Array | None:
        return lax.stop_gradient(self.decay) if self.detach_reset is True and not self.n_ref else None
