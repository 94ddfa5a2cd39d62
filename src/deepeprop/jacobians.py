"""The local derivatives every engine needs, from one source (docs/math.md, "Local derivatives").

For one node at time ``t`` (shapes per batch element ``b`` and neuron ``j``):

* ``own``   ``(B, n, d, d)``: ``dM/ds[t-1]`` at fixed current -- the neuron's own dynamics (leak, reset
  through ``z[t-1]``, adaptation). Block diagonal: neuron ``j`` depends only on itself.
* ``ds_dI`` ``(B, n, d, c)``:    ``dM/dI[t]`` for each of the neuron's ``c`` currents.
* ``dz_prev`` ``(B, n, o, d)``:  ``dz[t-1]/ds[t-1]`` for each of its ``o`` outputs (the surrogate for spiking models).
* ``dz``    ``(B, n, o, d)``:    ``dz[t]/ds[t]``.
* ``ds_dparams`` ``(B, n, d, q)``: ``dM/dphi`` for the neuron's ``q`` trained per-neuron parameters.

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

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .network import Node


class LayerStep(NamedTuple):
    """A node's step at time t and its local derivatives (``c`` currents, ``o`` outputs, ``q`` trained
    neuron parameters per neuron)."""

    state: Array  # (B, n, d) s[t]
    z: Array  # (B, n o) z[t], flattened neuron-major as edges read it
    z_prev: Array  # (B, n o) z[t-1]
    presynaptic: Array  # (B, n, P) dI[t]/dtheta row by row (shared by a neuron's currents)
    own: Array  # (B, n, d, d) dM/ds[t-1] at fixed I
    ds_dI: Array  # (B, n, d, c)
    dz_prev: Array  # (B, n, o, d)
    dz: Array  # (B, n, o, d)
    block: Array  # (B, n, d, d) Jb[t] = own + ds_dI W_jj dz_prev
    ds_dparams: Array  # (B, n, d, q) dM/dphi for the neuron's trained parameters (q may be 0)


def _basis(shape, dtype) -> Array:
    """``k`` tangents for an array of ``shape`` (..., k): each sets one last-axis component to 1: (k, *shape)."""
    k = shape[-1]
    return jnp.broadcast_to(jnp.eye(k, dtype=dtype).reshape((k,) + (1,) * (len(shape) - 1) + (k,)), (k,) + shape)


def output_jacobian(layer: Node, state: Array) -> tuple[Array, Array]:
    """``z = f(s)`` flattened and ``dz/ds``: (B, n, d) -> (B, n o), (B, n, o, d)."""
    def column(tangent):
        return jax.jvp(layer.neuron.output, (state,), (tangent,))

    z, dz_cols = jax.vmap(column, out_axes=(None, -1))(_basis(state.shape, state.dtype))
    batch, n, d = state.shape
    return z.reshape(batch, -1), dz_cols.reshape(batch, n, layer.outputs, d)


def linearize(layer: Node, s_prev: Array, sources: Sequence[Array]) -> LayerStep:
    """Step ``layer`` from ``s_prev`` (B, n, d) with its sources' outputs (one (B, n_j o_j) per incoming edge)
    and return its local derivatives."""
    neuron = layer.neuron
    z_prev, dz_prev = output_jacobian(layer, s_prev)
    current = layer.neuron_current(layer.current(z_prev, sources))  # (B, n) or (B, n, c)

    def own_column(tangent):
        return jax.jvp(lambda s: neuron.step(s, current), (s_prev,), (tangent,))[1]

    own = jax.vmap(own_column, out_axes=-1)(_basis(s_prev.shape, s_prev.dtype))  # (B, n, d_out, d_in)
    if layer.currents == 1:  # one tangent of ones gives every neuron's column, and the step itself
        state, ds_dI = jax.jvp(lambda i: neuron.step(s_prev, i), (current,), (jnp.ones_like(current),))
        ds_dI = ds_dI[..., None]  # (B, n, d, 1)
    else:
        def current_column(tangent):
            return jax.jvp(lambda i: neuron.step(s_prev, i), (current,), (tangent,))

        state, ds_dI = jax.vmap(current_column, out_axes=(None, -1))(_basis(current.shape, current.dtype))
    columns = []
    for name in layer.trained_neuron_parameters:  # per-neuron parameters: one tangent each, all neurons at once
        value = getattr(neuron, name)

        def with_param(v, name=name):
            return eqx.tree_at(lambda m: getattr(m, name), neuron, v).step(s_prev, current)

        columns.append(jax.jvp(with_param, (value,), (jnp.ones_like(value),))[1])  # (B, n, d)
    ds_dparams = jnp.stack(columns, axis=-1) if columns else jnp.zeros(state.shape + (0,), state.dtype)
    z, dz = output_jacobian(layer, state)
    w_diag = layer.recurrent_diagonal()  # (n,); recurrence needs c = o = 1
    coupling = ds_dI[..., :, :1] * (w_diag[None, :, None, None] * dz_prev[:, :, 0, None, :])  # (B, n, d, d)
    block = own + coupling if layer.recurrence != "none" else own
    return LayerStep(state=state, z=z, z_prev=z_prev, presynaptic=layer.presynaptic(z_prev, sources),
                     own=own, ds_dI=ds_dI, dz_prev=dz_prev, dz=dz, block=block, ds_dparams=ds_dparams)
