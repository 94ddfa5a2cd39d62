"""Adaptive LIF neuron (Bellec et al. 2020; docs/math.md, "The network").

    v[t] = a*v[t-1] + I[t] - thr*z[t-1]        b[t] = r*b[t-1] + z[t-1]
    A[t] = thr + beta*b[t]                      z[t] = H(v[t] - A[t])

State per neuron: ``d = 2`` (``v``, ``b``). The surrogate acts on ``(v - A)/thr``, so
``dz/dv = psi`` and ``dz/db = -beta*psi``. ``a = exp(-1/tau_m)``, ``r = exp(-1/tau_a)``, shared (scalar
time constant) or per neuron, fixed. ``detach_reset`` as for :class:`~deepeprop.neurons.lif.LIF` (default
``None``: the rule decides; it stops the gradient of the reset term only; the adaptation path is always kept, as in the
eligibility of Bellec et al. and NEST's ``eprop_iaf_adapt``). No constant leak: the adaptation couples the
two state variables.

**Per-neuron adaptation strength.** ``beta`` is one number for the node or one per neuron (an ``(n,)`` array),
fixed like the time constants. A neuron with ``beta = 0`` is a LIF neuron (its ``b`` is carried but never read),
so one node holds LIF and ALIF neurons side by side, as Bellec et al.'s cue-accumulation network (50 LIF + 50
ALIF). The shorthands: ``n_lif=k`` makes the first ``k`` neurons LIF (``beta = 0``), and ``beta="bellec"`` is
Bellec et al.'s heuristic per neuron, :func:`bellec_beta` (``1.7 (1 - r) / (1 - a)``, from ``tau_m`` and
``tau_a``): ``ALIF(100, tau_m=20, tau_a=2000, beta="bellec", n_lif=50)`` is their network's neuron layer.

**Refractory period** ``n_ref`` as for :class:`~deepeprop.neurons.lif.LIF` (its module docstring): a counter ``q``
joins the state (``d = 3``: ``v``, ``b``, ``q``), ``z = H(v - A) [q = 0]``, and the adaptation counts only the
spikes there are (``b[t] = r b[t-1] + z[t-1]``).
"""
from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array

from .. import validation
from .base import AbstractNeuron, check_size, check_time_constant, decay_from_tau, spike_fn
from .lif import check_refractory, refractory_count, refractory_gate, soft_reset_potential, spike_options

BELLEC_BETA_SCALE = 1.7  # Bellec et al. 2020, tutorial_evidence_accumulation_with_alif.py: "a heuristic value"


def bellec_beta(tau_m=20.0, tau_a=2000.0, *, scale: float = BELLEC_BETA_SCALE):
    """Bellec et al. 2020's heuristic adaptation strength: ``scale * (1 - exp(-1/tau_a)) / (1 - exp(-1/tau_m))``.

    It scales ``beta`` so that an adaptive neuron's threshold increase, summed over the adaptation's time
    constant, compares with the membrane's integration (their cue-accumulation network: ``tau_m = 20``,
    ``tau_a = 2000``, ``scale = 1.7``, giving ``beta ~ 0.0174``).

    Args:
        tau_m: the membrane time constant in time steps, a number or an array.
        tau_a: the adaptation time constant in time steps, a number or an array (broadcast with ``tau_m``).
        scale: the factor (Bellec et al.: 1.7), a finite number > 0.

    Returns:
        ``beta``: a float for scalar time constants, else a NumPy array of their broadcast shape.
    """
    tau_m = np.asarray(check_time_constant("tau_m", tau_m), np.float64)
    tau_a = np.asarray(check_time_constant("tau_a", tau_a), np.float64)
    scale = validation.check_number("scale", scale, minimum=0, exclusive_minimum=True)
    beta = scale * (1.0 - np.exp(-1.0 / tau_a)) / (1.0 - np.exp(-1.0 / tau_m))
    return float(beta) if beta.ndim == 0 else beta


def adaptation_strength(beta, n_lif, n: int, tau_m, tau_a, dtype) -> Array:
    """The checked ``beta`` of an ALIF node of ``n`` neurons: shape ``()`` (one for the node) or ``(n,)``.

    ``beta`` is a number >= 0, an ``(n,)`` array of numbers >= 0, or ``"bellec"`` (:func:`bellec_beta` of the
    node's time constants); ``n_lif`` (``0 <= n_lif <= n``) sets the first ``n_lif`` neurons' ``beta`` to 0, and
    goes with a number or ``"bellec"`` only (an array states every neuron's value itself)."""
    n_lif = validation.check_int("n_lif", n_lif, minimum=0, maximum=n)
    expected = f"a number >= 0, an array of shape ({n},) of numbers >= 0 (one per neuron), or 'bellec'"
    if isinstance(beta, str):
        if beta != "bellec":
            raise validation.fail("beta", expected, beta)
        beta = bellec_beta(tau_m, tau_a)
        if np.ndim(beta) not in (0, 1) or np.shape(beta) not in ((), (n,)):  # (n,) tau_m with (n,) tau_a
            raise ValueError(f"beta='bellec' needs tau_m and tau_a of shape () or ({n},), got {np.shape(beta)}")
    elif isinstance(beta, bool) or getattr(beta, "dtype", None) == bool:  # noqa: E721 (a numpy dtype equals bool)
        raise validation.fail("beta", expected, beta)
    else:
        given = validation.as_array("beta", beta)
        if given.shape not in ((), (n,)):
            raise ValueError(f"beta must be {expected}, got shape {given.shape}")
        if not bool(jnp.all(jnp.isfinite(given))) or not bool(jnp.all(given >= 0)):
            raise ValueError("beta must be finite and >= 0 (beta = 0 makes a neuron LIF), got "
                             f"{validation.describe(beta)}")
        if given.ndim == 1 and n_lif:
            raise ValueError(f"n_lif={n_lif} goes with a number or 'bellec' for beta; beta is an array of shape "
                             f"({n},): write its first {n_lif} entries as 0 instead")
        beta = given
    beta = jnp.asarray(beta, dtype)
    if n_lif:
        beta = jnp.broadcast_to(beta, (n,)).at[:n_lif].set(0.0)
    return beta


class ALIF(AbstractNeuron):
    """Adaptive LIF neurons: LIF with a threshold raised by recent spikes (module docstring: equations).

    Args:
        n: the number of neurons.
        tau_m: membrane time constant in time steps, a number or an ``(n,)`` array.
        tau_a: adaptation time constant in time steps (``r = exp(-1/tau_a)``), same forms.
        beta: the threshold increase per unit of adaptation ``b`` (``A = thr + beta b``): a number >= 0 (one for
            the node), an ``(n,)`` array of numbers >= 0 (per neuron; ``beta = 0`` makes a neuron LIF), or
            ``"bellec"`` (:func:`bellec_beta` of ``tau_m`` and ``tau_a``, per neuron where they are). Fixed.
        n_lif: the first ``n_lif`` neurons are LIF (``beta = 0``); with a number or ``"bellec"`` for ``beta``.
        threshold, gamma, surrogate, detach_reset, n_ref: as for :class:`~deepeprop.LIF` (``n_ref > 0``: a
            refractory period of ``n_ref`` steps; the counter makes ``d = 3``).
        dtype: the dtype of the fixed leaks and ``beta``.
    """

    n: int = eqx.field(static=True)
    decay: Array  # () or (n,): a = exp(-1/tau_m), fixed
    adaptation_decay: Array  # () or (n,): r = exp(-1/tau_a), fixed
    # the adaptation strength, fixed (0: a LIF neuron): one number for the node is a static field (no array leaf,
    # so checkpoints of networks with one beta per node keep the layout they had), per-neuron values an (n,) array
    beta_value: float | None = eqx.field(static=True)  # one beta for the node, else None
    beta_array: Array | None  # (n,) per-neuron beta, else None
    threshold: float = eqx.field(static=True)
    gamma: float = eqx.field(static=True)
    surrogate_id: int = eqx.field(static=True)
    detach_reset: bool | None = eqx.field(static=True)  # None: the rule decides (Engine.prepare)
    n_ref: int = eqx.field(static=True)  # refractory steps after a spike (0: none)
    spiking = True

    def __init__(self, n: int, *, tau_m=20.0, tau_a=200.0, beta=0.07, n_lif: int = 0, threshold: float = 0.6,
                 gamma: float = 0.3, surrogate: str = "triangle", detach_reset: bool | None = None, n_ref: int = 0,
                 dtype=jnp.float32):
        self.n = check_size("n", n)
        self.decay = decay_from_tau("tau_m", tau_m, self.n, dtype)
        self.adaptation_decay = decay_from_tau("tau_a", tau_a, self.n, dtype)
        self.threshold, self.gamma, self.surrogate_id, self.detach_reset = spike_options(
            threshold, gamma, surrogate, detach_reset)
        strength = adaptation_strength(beta, n_lif, self.n, tau_m, tau_a, dtype)
        if strength.ndim == 0:
            self.beta_value, self.beta_array = float(strength), None
        else:
            self.beta_value, self.beta_array = None, strength
        self.n_ref = check_refractory(n_ref)

    @property
    def beta(self) -> Array:
        """The adaptation strength: shape ``()`` (one for the node) or ``(n,)`` (per neuron)."""
        if self.beta_array is not None:
            return self.beta_array
        return jnp.asarray(self.beta_value, self.decay.dtype)

    @property
    def state_size(self) -> int:
        """``d``: the potential, the adaptation, and the refractory counter when ``n_ref > 0``."""
        return 3 if self.n_ref else 2

    @property
    def size(self) -> int:
        return self.n

    def step(self, state: Array, current: Array) -> Array:
        r = lax.stop_gradient(self.adaptation_decay)  # () or (n,)
        v_prev, b_prev = state[..., 0], state[..., 1]  # (B, n) each
        z_prev = self.output(state)  # (B, n)
        v = soft_reset_potential(self.decay, v_prev, current, z_prev, self.threshold, self.detach_reset)
        b = r * b_prev + z_prev
        if not self.n_ref:
            return jnp.stack([v, b], axis=-1)  # (B, n, 2)
        return jnp.stack([v, b, refractory_count(state[..., 2], z_prev, self.n_ref)], axis=-1)  # (B, n, 3)

    def output(self, state: Array) -> Array:
        v, b = state[..., 0], state[..., 1]  # (B, n) each
        x = (v - self.threshold - lax.stop_gradient(self.beta) * b) / self.threshold
        z = spike_fn(x, jnp.asarray(self.gamma / self.threshold, x.dtype), self.surrogate_id)  # (B, n)
        return refractory_gate(z, state[..., 2]) if self.n_ref else z
