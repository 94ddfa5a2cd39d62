"""Instantaneous (memoryless) layers: the state is the current, ``s[t] = I[t]``, ``z[t] = f(s[t])``.

``gelu``, ``relu``, ``tanh`` and ``identity`` (a summing node for residual blocks). Their own Jacobian is zero
(``constant_leak() = 0``, shared), so a trace passes through such a node by its depth Jacobian alone, and the
factorised paths apply to it.
"""
from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .base import AbstractNeuron, check_size


class AbstractInstantaneous(AbstractNeuron):
    """A memoryless node: ``s[t] = I[t]``, ``z[t] = f(s[t])``; subclasses give only the nonlinearity ``activation``.

    Args:
        n: the number of units.
        dtype: unused (no arrays); accepted like every neuron model's.
    """

    n: int = eqx.field(static=True)
    state_size = 1
    spiking = False

    def __init__(self, n: int, *, dtype=None):
        del dtype  # no arrays
        self.n = check_size("n", n)

    @property
    def size(self) -> int:
        return self.n

    @abc.abstractmethod
    def activation(self, x: Array) -> Array:
        """The element-wise nonlinearity."""

    def step(self, state: Array, current: Array) -> Array:
        return current[..., None]  # (B, n, 1)

    def output(self, state: Array) -> Array:
        return self.activation(state[..., 0])  # (B, n)

    def constant_leak(self) -> Array:
        return jnp.asarray(0.0)


class GELU(AbstractInstantaneous):
    """Memoryless ``z = GELU(I)`` units (Args as :class:`AbstractInstantaneous`)."""

    def activation(self, x: Array) -> Array:
        return jax.nn.gelu(x)


class ReLU(AbstractInstantaneous):
    """Memoryless ``z = ReLU(I)`` units (Args as :class:`AbstractInstantaneous`)."""

    def activation(self, x: Array) -> Array:
        return jax.nn.relu(x)


class Tanh(AbstractInstantaneous):
    """Memoryless ``z = tanh(I)`` units (Args as :class:`AbstractInstantaneous`)."""

    def activation(self, x: Array) -> Array:
        return jnp.tanh(x)


class Identity(AbstractInstantaneous):
    """``z = I``: a summing node, e.g. the output of a residual block (its inputs arrive by identity edges)."""

    def activation(self, x: Array) -> Array:
        return x
