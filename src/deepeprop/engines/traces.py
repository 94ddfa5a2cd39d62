"""Operations on eligibility and influence traces shared by the forward-mode engines.

A trace of layer ``k`` with respect to the parameters of layer ``l`` has shape
``(B, n_k, d_k, *rest)``; for the full influence ``G[k,l]`` and the deep trace ``S[k,l]``,
``rest = (n_l, P_l)`` (the rows and columns of ``theta_l``, see :mod:`deepeprop.network`). An
e-prop eligibility vector ``eps[l]`` is row-sparse (neuron ``j`` depends only on row ``j``) and is
stored compactly as ``(B, n_l, d_l, P_l)``.
"""
from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array

from ..jacobians import LayerStep


def apply_block(block: Array, trace: Array) -> Array:
    """``Jb @ trace`` with the block diagonal ``Jb`` (B, n, d, d): acts on axis 2 of ``trace`` (B, n, d, ...)."""
    batch, n, d = trace.shape[:3]
    if d == 1:
        return block[..., 0, 0].reshape((batch, n, 1) + (1,) * (trace.ndim - 3)) * trace
    flat = trace.reshape(batch, n, d, -1)
    return jnp.einsum("bnac,bncr->bnar", block, flat).reshape(trace.shape)


def collapse(dz: Array, trace: Array) -> Array:
    """``sum_c dz[b,j,c] * trace[b,j,c,...]``: from a state trace to an output trace, (B, n, d, ...) -> (B, n, ...)."""
    if trace.shape[2] == 1:
        return dz[..., 0].reshape(dz.shape[:2] + (1,) * (trace.ndim - 3)) * trace[:, :, 0]
    return jnp.einsum("bjc,bjc...->bj...", dz, trace)


def project(weights: Array, ds_dI: Array, output_trace: Array) -> Array:
    """``ds_dI (x) (weights @ output_trace)``: a matrix product across neurons.

    ``weights`` (n_k, n_j), ``ds_dI`` (B, n_k, d_k), ``output_trace`` (B, n_j, ...) -> (B, n_k, d_k, ...).
    Used for the depth Jacobian ``D[k] = ds_dI (x) U_k diag(dz[k-1])`` and, in exact RTRL, for the
    off-diagonal part of the within-layer Jacobian ``ds_dI (x) W diag(dz_prev)``.
    """
    batch, n_j = output_trace.shape[:2]
    rest = output_trace.shape[2:]
    mixed = jnp.matmul(weights, output_trace.reshape(batch, n_j, -1))  # (B, n_k, R)
    mixed = mixed.reshape((batch, weights.shape[0]) + rest)
    return ds_dI.reshape(ds_dI.shape + (1,) * len(rest)) * mixed[:, :, None]


def project_eligibility(weights: Array, ds_dI: Array, eligibility_trace: Array) -> Array:
    """``D[k] @ S[l,l]`` for the row-sparse eligibility: an element-wise product, no matrix product.

    ``weights`` = ``U_k`` (n_k, n_l), ``ds_dI`` (B, n_k, d_k), ``eligibility_trace`` ``e`` (B, n_l, P)
    -> (B, n_k, d_k, n_l, P) with entries ``ds_dI[b,m,a] * U[m,j] * e[b,j,p]``.
    """
    return (ds_dI[:, :, :, None, None] * weights[None, :, None, :, None]) * eligibility_trace[:, None, None, :, :]


def immediate(step: LayerStep) -> Array:
    """``dbarM/dtheta`` row by row: ``ds_dI[b,j,a] * presynaptic[b,j,p]``, (B, n, d, P)."""
    return step.ds_dI[..., None] * step.presynaptic[:, :, None, :]


def error_contract(delta: Array, top_trace: Array) -> Array:
    """``sum_b sum_o delta[b,o] * top_trace[b,o,0,...]``: the gradient from the readout's trace."""
    batch, n_out = delta.shape
    flat = top_trace[:, :, 0].reshape(batch * n_out, -1)
    return (delta.reshape(1, batch * n_out) @ flat).reshape(top_trace.shape[3:])


# ---------------------------------------------------------------------------- factorised traces
def has_constant_own_jacobian(layer) -> bool:
    """True when every neuron of ``layer`` has the same, state-independent ``Jb = a`` and ``ds/dI = 1``.

    Asked of the node as it is (:meth:`~deepeprop.network.Layer.shared_leak`): the neuron declares a constant
    leak (:meth:`~deepeprop.AbstractNeuron.constant_leak`; leaky rate units, LIF with ``detach_reset=True``,
    the readout's integrator) that is one scalar for the node (a scalar time constant), and no recurrence
    acts inside a neuron (no diagonal ``W``, no self-connection). Decided from shapes and static fields, so
    it is known when the program is traced and cannot go stale when a model is edited.
    """
    return layer.shared_leak() is not None


def shared_leak(layer) -> Array:
    """The node's shared leak ``a`` as a scalar (the node must have one; see :func:`has_constant_own_jacobian`)."""
    leak = layer.shared_leak()
    if leak is None:
        raise ValueError("this node has no shared constant leak (its own Jacobian is not one scalar)")
    return leak


def project_state(weights: Array, ds_dI: Array, dz: Array, state_trace: Array) -> Array:
    """``project(weights, ds_dI, collapse(dz, state_trace))`` with one pass over the big trace.

    ``weights`` (n_k, n_j), ``ds_dI`` (B, n_k, d_k), ``dz`` (B, n_j, d_j), ``state_trace`` (B, n_j, d_j, ...)
    -> (B, n_k, d_k, ...). For ``d_j = 1`` the diagonal ``dz`` (and ``ds_dI`` when ``d_k = 1``) is folded
    into a per-example ``(n_k, n_j)`` matrix (``B n^2`` numbers), so the ``B n^3`` trace is read once by a
    batched matrix product instead of being scaled element-wise before and after it.
    """
    batch, n_j, d_j = state_trace.shape[:3]
    rest = state_trace.shape[3:]
    if d_j != 1:
        return project(weights, ds_dI, collapse(dz, state_trace))
    mixing = weights[None] * dz[:, None, :, 0]  # (B, n_k, n_j)
    d_k = ds_dI.shape[-1]
    if d_k == 1:
        mixing = ds_dI[..., 0][:, :, None] * mixing
    mixed = jnp.matmul(mixing, state_trace.reshape(batch, n_j, -1)).reshape((batch, weights.shape[0]) + rest)
    if d_k == 1:
        return mixed[:, :, None]
    return ds_dI.reshape(ds_dI.shape + (1,) * len(rest)) * mixed[:, :, None]
