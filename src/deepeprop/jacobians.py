"""The local derivatives every engine needs, from one source (docs/math.md, "Local derivatives").

For one node at time ``t`` (shapes per batch element ``b`` and neuron ``j``):

* ``own``   ``(B, n, d, d)``: ``dM/ds[t-1]`` at fixed current -- the neuron's own dynamics (leak, reset
  through ``z[t-1]``, adaptation). Block diagonal: neuron ``j`` depends only on itself.
* ``ds_dI`` ``(B, n, d)``:    ``dM/dI[t]``.
* ``dz_prev`` ``(B, n, d)``:  ``dz[t-1]/ds[t-1]`` (the surrogate for spiking models).
* ``dz``    ``(B, n, d)``:    ``dz[t]/ds[t]``.

From these, with the layer's weights:

* the within-node Jacobian ``J[t] = own + ds_dI (x) W @ diag(dz_prev)``;
* its block diagonal ``Jb[t] = own + ds_dI (x) W_jj dz_prev`` (what e-prop keeps);
* the depth Jacobian of an edge ``j -> k``: ``D[k<-j,t] = ds_dI[k] (x) U_{k<-j} @ diag(dz[j,t])``.

The neuron-level derivatives are read off with ``d`` forward-mode products of the neuron's own step
(each neuron is independent, so one tangent per state component gives every neuron's column at once):
any neuron model that follows :mod:`deepeprop.neurons.base` gets them without hand-written code.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array

from .network import Layer


class LayerStep(NamedTuple):
    """A layer's step at time t and its local derivatives."""

    state: Array  # (B, n, d) s[t]
    z: Array  # (B, n) z[t]
    z_prev: Array  # (B, n) z[t-1]
    presynaptic: Array  # (B, n, P) dI[t]/dtheta row by row
    own: Array  # (B, n, d, d) dM/ds[t-1] at fixed I
    ds_dI: Array  # (B, n, d)
    dz_prev: Array  # (B, n, d)
    dz: Array  # (B, n, d)
    block: Array  # (B, n, d, d) Jb[t] = own + ds_dI W_jj dz_prev


def _basis(state: Array) -> Array:
    """``d`` tangents, each one state component set to 1 in every neuron: (d, B, n, d)."""
    d = state.shape[-1]
    return jnp.broadcast_to(jnp.eye(d, dtype=state.dtype)[:, None, None, :], (d,) + state.shape)


def output_jacobian(layer: Layer, state: Array) -> tuple[Array, Array]:
    """``z = f(s)`` and ``dz/ds``: (B, n, d) -> (B, n), (B, n, d)."""
    def column(tangent):
        return jax.jvp(layer.neuron.output, (state,), (tangent,))

    z, dz_cols = jax.vmap(column, out_axes=(None, -1))(_basis(state))
    return z, dz_cols  # (B, n), (B, n, d)


def linearize(layer: Layer, s_prev: Array, sources: Sequence[Array]) -> LayerStep:
    """Step ``layer`` from ``s_prev`` (B, n, d) with its sources' outputs (one (B, n_j) per incoming edge)
    and return its local derivatives."""
    neuron = layer.neuron
    z_prev, dz_prev = output_jacobian(layer, s_prev)
    current = layer.current(z_prev, sources)  # (B, n)

    def own_column(tangent):
        return jax.jvp(lambda s: neuron.step(s, current), (s_prev,), (tangent,))[1]

    own = jax.vmap(own_column, out_axes=-1)(_basis(s_prev))  # (B, n, d_out, d_in)
    state, ds_dI = jax.jvp(lambda i: neuron.step(s_prev, i), (current,), (jnp.ones_like(current),))
    z, dz = output_jacobian(layer, state)
    w_diag = layer.recurrent_diagonal()  # (n,)
    block = own + ds_dI[..., :, None] * (w_diag[None, :, None, None] * dz_prev[..., None, :])
    return LayerStep(state=state, z=z, z_prev=z_prev, presynaptic=layer.presynaptic(z_prev, sources),
                     own=own, ds_dI=ds_dI, dz_prev=dz_prev, dz=dz, block=block)
