"""Linear recurrent unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences").

Each neuron is one complex number ``h = h_re + i h_im`` (state ``d = 2``), driven by a complex current
``u = u_re + i u_im`` (``c = 2`` currents: the rows of the complex input projection ``B``, stored as the
node's incoming edge weights) and emitting both components (``o = 2`` outputs: the next edge is the
paper's ``C``):

    h[t] = lambda * h[t-1] + gamma * u[t]        lambda = exp(-exp(nu) + i exp(theta))
    gamma = sqrt(1 - |lambda|^2)                 (the paper's normalisation, a function of nu here)

``nu`` and ``theta`` are trained per neuron (``trainable``); every engine gives them their eligibility
like a diagonal ``W``. Ring initialisation: ``|lambda|^2`` uniform on ``[r_min^2, r_max^2]`` and the phase
uniform on ``[0, max_phase]``, so the moduli lie in ``[r_min, r_max]``.

The recurrence is element-wise (each neuron's own 2x2 rotation-and-decay block), so deep e-prop is exact
on stacks of LRUs: every within-node Jacobian is block diagonal.
"""
from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .base import AbstractNeuron, check_size


class LRU(AbstractNeuron):
    """Linear recurrent units (Orvieto et al. 2023): a complex diagonal recurrence with trained ``nu``, ``theta``
    (module docstring: equations). Two currents (real and imaginary input) and two outputs per neuron.

    Args:
        n: the number of units.
        r_min, r_max: the ring the eigenvalue moduli ``|lambda| = exp(-exp(nu))`` are drawn on.
        max_phase: the largest initial phase ``arg(lambda) = exp(theta)``.
        key: a ``jax.random`` key for the initial ``nu``, ``theta`` (default ``PRNGKey(0)``).
        dtype: the dtype of ``nu`` and ``theta``.
    """

    n: int = eqx.field(static=True)
    nu: Array  # (n,) trained: |lambda| = exp(-exp(nu))
    theta: Array  # (n,) trained: arg(lambda) = exp(theta)
    state_size = 2
    n_currents = 2
    n_outputs = 2
    spiking = False
    trainable = ("nu", "theta")

    def __init__(self, n: int, *, r_min: float = 0.0, r_max: float = 1.0, max_phase: float = 2 * math.pi,
                 key=None, dtype=jnp.float32):
        self.n = check_size("n", n)
        for name, value in (("r_min", r_min), ("r_max", r_max), ("max_phase", max_phase)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not 0.0 <= r_min < r_max <= 1.0:
            raise ValueError(f"the ring needs 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}")
        if not max_phase > 0:
            raise ValueError(f"max_phase must be > 0, got {max_phase}")
        key = jax.random.PRNGKey(0) if key is None else key
        k_r, k_p = jax.random.split(key)
        u1 = jax.random.uniform(k_r, (self.n,), dtype, minval=1e-6)
        u2 = jax.random.uniform(k_p, (self.n,), dtype, minval=1e-6)
        radius_sq = u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2
        self.nu = jnp.log(-0.5 * jnp.log(jnp.maximum(radius_sq, 1e-12)))
        self.theta = jnp.log(max_phase * u2)

    @property
    def size(self) -> int:
        return self.n

    def eigenvalues(self) -> tuple[Array, Array]:
        """``(Re lambda, Im lambda)``, each (n,)."""
        modulus = jnp.exp(-jnp.exp(self.nu))
        phase = jnp.exp(self.theta)
        return modulus * jnp.cos(phase), modulus * jnp.sin(phase)

    def step(self, state: Array, current: Array) -> Array:
        lam_re, lam_im = self.eigenvalues()  # (n,)
        gamma = jnp.sqrt(1.0 - jnp.exp(-2.0 * jnp.exp(self.nu)))  # sqrt(1 - |lambda|^2)
        h_re, h_im = state[..., 0], state[..., 1]  # (B, n)
        u_re, u_im = current[..., 0], current[..., 1]  # (B, n)
        new_re = lam_re * h_re - lam_im * h_im + gamma * u_re
        new_im = lam_re * h_im + lam_im * h_re + gamma * u_im
        return jnp.stack([new_re, new_im], axis=-1)  # (B, n, 2)

    def output(self, state: Array) -> Array:
        return state  # (B, n, 2): (Re h, Im h)

    def input_scale(self) -> float:
        return 1.0 / math.sqrt(2.0)  # the paper's B ~ N(0, 1/(2 fan_in)) for each component
