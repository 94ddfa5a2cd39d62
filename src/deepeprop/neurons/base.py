"""The neuron interface every gradient engine relies on.

A neuron model is a small Equinox module holding *fixed* per-neuron constants (time constants,
threshold; they are not trained: every use goes through ``lax.stop_gradient``). It declares

* ``state_size`` -- ``d``, the number of state variables per neuron (1 for leaky rate and LIF,
  2 for ALIF: potential and threshold adaptation);
* ``init_state(batch, dtype)`` -> ``(B, n, d)`` zeros;
* ``step(state, current)`` -> next state: ``s[t] = M(s[t-1], z[t-1], I[t])`` with
  ``z[t-1] = output(s[t-1])`` recomputed inside, shapes ``(B, n, d), (B, n) -> (B, n, d)``;
* ``output(state)`` -> ``z``, shape ``(B, n)``; spiking models give a Heaviside step whose
  derivative is the surrogate (``jax.custom_jvp``), so autodiff (BPTT) and the forward-mode local
  Jacobians of :mod:`deepeprop.jacobians` see the same derivative.

Contract: ``step`` and ``output`` act on each neuron independently (element-wise over ``B`` and
``n``). The local Jacobians are then read off with ``d`` forward-mode products, and a user's own
neuron model gets every engine for free.
"""
from __future__ import annotations

import functools
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array


SURROGATES = ("triangle", "fast_sigmoid")


def _triangle(x):
    # Bellec et al. 2020: psi = max(0, 1 - |x|), x = (v - A) / thr
    return jnp.maximum(0.0, 1.0 - jnp.abs(x))


def _fast_sigmoid(x):
    # Zenke & Ganguli 2018 (SuperSpike), slope 10 in units of the threshold
    return 1.0 / (1.0 + 10.0 * jnp.abs(x)) ** 2


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def spike_fn(x: Array, scale: Array, surrogate_id: int) -> Array:
    """Heaviside ``H(x)`` of the normalised distance to threshold ``x = (v - A)/thr``.

    Its derivative with respect to ``x`` is ``scale * psi(x)`` with ``psi`` the surrogate chosen by
    ``surrogate_id`` (index into :data:`SURROGATES`); ``scale`` is the dampening factor ``gamma``.
    """
    del scale, surrogate_id
    return (x > 0).astype(x.dtype)


@spike_fn.defjvp
def _spike_fn_jvp(surrogate_id, primals, tangents):
    x, scale = primals
    dx = tangents[0]
    psi = _triangle(x) if surrogate_id == 0 else _fast_sigmoid(x)
    return spike_fn(x, scale, surrogate_id), scale * psi * dx


def decay_from_tau(tau, n: int, dtype, name: str) -> Array:
    """``exp(-1/tau)`` (time step 1) for a scalar or per-neuron ``(n,)`` time constant."""
    tau_arr = jnp.asarray(tau, dtype=dtype)
    if tau_arr.ndim == 0:
        tau_arr = jnp.full((n,), tau_arr, dtype=dtype)
    if tau_arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or an array of shape ({n},), got shape {tau_arr.shape}")
    if not bool(jnp.all(jnp.isfinite(tau_arr))) or not bool(jnp.all(tau_arr > 0)):
        raise ValueError(f"{name} must be finite and > 0 (time constants in time steps)")
    return jnp.exp(-1.0 / tau_arr)


def check_positive(value, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_surrogate(surrogate: str) -> int:
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
    return SURROGATES.index(surrogate)


class NeuronModel(eqx.Module):
    """Abstract neuron model (see the module docstring for the contract)."""

    state_size: ClassVar[int] = 1
    spiking: ClassVar[bool] = False

    @property
    def size(self) -> int:
        raise NotImplementedError

    def init_state(self, batch: int, dtype) -> Array:
        return jnp.zeros((batch, self.size, self.state_size), dtype=dtype)  # (B, n, d)

    def step(self, state: Array, current: Array) -> Array:
        raise NotImplementedError

    def output(self, state: Array) -> Array:
        raise NotImplementedError
