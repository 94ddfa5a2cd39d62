"""Operations on eligibility and influence traces shared by the forward-mode engines.

A trace of node ``k`` with respect to the parameters of node ``l`` has shape
``(B, n_k, d_k, *rest)``; for the full influence ``G[k,l]`` and the deep trace ``S[k,l]``,
``rest = (n_l, R_l)`` (the rows and columns of ``theta_l``, see :mod:`deepeprop.network`). An
e-prop eligibility vector ``eps[l]`` is row-sparse (neuron ``j`` depends only on row ``j``) and is
stored compactly as ``(B, n_l, d_l, R_l)``; its output trace ``e[l]`` as ``(B, n_l o_l, R_l)``.
"""
from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array

from ..jacobians import LayerStep


def edge_matrix(model, k: int, slot: int) -> Array:
    """The matrix of incoming edge ``slot`` of node ``k`` (an id): its weight, or the identity (a residual edge)."""
    node = model.node(k)
    return node.inputs[slot].matrix(node.size * node.currents, model.dtype)


def apply_block(block: Array, trace: Array) -> Array:
    """``Jb @ trace`` with the block diagonal ``Jb`` (B, n, d, d): acts on axis 2 of ``trace`` (B, n, d, ...)."""
    batch, n, d = trace.shape[:3]
    if d == 1:
        return block[..., 0, 0].reshape((batch, n, 1) + (1,) * (trace.ndim - 3)) * trace
    if d <= 3:  # element-wise products, which XLA fuses with what reads the result (one pass over a big trace)
        coefficient = lambda a, c: block[:, :, a, c].reshape((batch, n) + (1,) * (trace.ndim - 3))  # noqa: E731
        rows = [sum(coefficient(a, c) * trace[:, :, c] for c in range(d)) for a in range(d)]
        return jnp.stack(rows, axis=2)
    flat = trace.reshape(batch, n, d, -1)
    return jnp.einsum("bnac,bncr->bnar", block, flat).reshape(trace.shape)


def collapse(dz: Array, trace: Array) -> Array:
    """``sum_a dz[b,j,q,a] * trace[b,j,a,...]``: from a state trace to an output trace.

    ``dz`` (B, n, o, d), ``trace`` (B, n, d, ...) -> (B, n o, ...), outputs flattened neuron-major.
    """
    batch, n, o, d = dz.shape
    if d == 1 and o == 1:
        return dz[:, :, 0, 0].reshape((batch, n) + (1,) * (trace.ndim - 3)) * trace[:, :, 0]
    out = jnp.einsum("bjqa,bja...->bjq...", dz, trace)
    return out.reshape((batch, n * o) + trace.shape[3:])


def current_gain(step: LayerStep) -> Array:
    """``dz/dI`` within a neuron at the same step, ``sum_a dz[q,a] ds_dI[a,i]``: (B, n, o, c)."""
    return jnp.einsum("bjqa,bjai->bjqi", step.dz, step.ds_dI)


def signal_to_current(step: LayerStep, signal: Array) -> Array:
    """A learning signal on a node's outputs (B, n o) -> on its currents (B, n c), through ``dz/dI``."""
    batch, n, o, d = step.dz.shape
    c = step.ds_dI.shape[-1]
    if o == 1 and c == 1:
        return jnp.sum(step.ds_dI[..., 0] * step.dz[:, :, 0, :], axis=-1) * signal
    return jnp.einsum("bjq,bjqi->bji", signal.reshape(batch, n, o), current_gain(step)).reshape(batch, n * c)


def contract_rows(signal: Array, trace: Array, outputs: int) -> Array:
    """``sum_b sum_q signal[b, (j,q)] trace[b, (j,q), r]`` -> (n, R): a learning signal on the outputs (B, n o)
    times a row-sparse output trace (B, n o, R), summed over each neuron's outputs."""
    grad = jnp.einsum("bj,bjr->jr", signal, trace)  # (n o, R)
    if outputs == 1:
        return grad
    return grad.reshape(-1, outputs, grad.shape[-1]).sum(axis=1)


def project(weights: Array, ds_dI: Array, output_trace: Array) -> Array:
    """``sum_i ds_dI[..., i] (x) (weights @ output_trace)[current i]``: a matrix product across neurons.

    ``weights`` (n_k c_k, W_j), ``ds_dI`` (B, n_k, d_k, c_k), ``output_trace`` (B, W_j, ...) -> (B, n_k, d_k, ...).
    Used for the depth Jacobian ``D[k<-j] = ds_dI[k] (x) U_{k<-j} diag(dz[j])`` and, in exact RTRL, for the
    off-diagonal part of the within-node Jacobian ``ds_dI (x) W diag(dz_prev)``.
    """
    batch, width = output_trace.shape[:2]
    rest = output_trace.shape[2:]
    n_k, d_k, c_k = ds_dI.shape[1:]
    mixed = jnp.matmul(weights, output_trace.reshape(batch, width, -1))  # (B, n_k c_k, R)
    if c_k == 1:
        mixed = mixed.reshape((batch, n_k) + rest)
        return ds_dI[..., 0].reshape(ds_dI.shape[:3] + (1,) * len(rest)) * mixed[:, :, None]
    mixed = mixed.reshape(batch, n_k, c_k, -1)
    return jnp.einsum("bkai,bkir->bkar", ds_dI, mixed).reshape((batch, n_k, d_k) + rest)


def project_eligibility(weights: Array, ds_dI: Array, eligibility_trace: Array, outputs: int = 1) -> Array:
    """``D[k<-l] @ S[l,l]`` for the row-sparse eligibility: an element-wise product, no matrix product.

    ``weights`` = ``U_{k<-l}`` (n_k c_k, n_l o_l), ``ds_dI`` (B, n_k, d_k, c_k), ``eligibility_trace`` ``e``
    (B, n_l o_l, R) with ``outputs = o_l`` -> (B, n_k, d_k, n_l, R) with entries
    ``sum_{i,q} ds_dI[b,m,a,i] * U[(m,i),(j,q)] * e[b,(j,q),r]``.
    """
    n_k, d_k, c_k = ds_dI.shape[1:]
    if c_k == 1 and outputs == 1:
        return ((ds_dI[:, :, :, 0, None, None] * weights[None, :, None, :, None])
                * eligibility_trace[:, None, None, :, :])
    batch, width, R = eligibility_trace.shape
    n_l = width // outputs
    U = weights.reshape(n_k, c_k, n_l, outputs)
    mixing = jnp.einsum("bmai,mijq->bmajq", ds_dI, U)  # (B, n_k, d_k, n_l, o_l)
    return jnp.einsum("bmajq,bjqr->bmajr", mixing, eligibility_trace.reshape(batch, n_l, outputs, R))


def immediate(step: LayerStep) -> Array:
    """``dbarM/dtheta`` row by row, (B, n, d, R): ``ds_dI[b,j,a,i] * presynaptic[b,j,p]`` for current ``i``'s
    parameters ``p``, then the trained neuron parameters' ``ds_dparams``."""
    batch, n, d, c = step.ds_dI.shape
    if c == 1 and step.ds_dparams.shape[-1] == 0:
        return step.ds_dI[..., 0][..., None] * step.presynaptic[:, :, None, :]
    synaptic = step.ds_dI[..., None] * step.presynaptic[:, :, None, None, :]  # (B, n, d, c, P)
    return jnp.concatenate([synaptic.reshape(batch, n, d, -1), step.ds_dparams], axis=-1)


def error_contract(delta: Array, top_trace: Array) -> Array:
    """``sum_b sum_o delta[b,o] * top_trace[b,o,0,...]``: the gradient from the readout's trace."""
    batch, n_out = delta.shape
    flat = top_trace[:, :, 0].reshape(batch * n_out, -1)
    return (delta.reshape(1, batch * n_out) @ flat).reshape(top_trace.shape[3:])


# ---------------------------------------------------------------------------- factorised traces
def has_constant_own_jacobian(layer) -> bool:
    """True when every neuron of ``layer`` has the same, state-independent ``Jb = a`` and ``ds/dI = 1``.

    Asked of the node as it is (:meth:`~deepeprop.network.Node.shared_leak`): the neuron declares a constant
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

    ``weights`` (n_k c_k, n_j o_j), ``ds_dI`` (B, n_k, d_k, c_k), ``dz`` (B, n_j, o_j, d_j), ``state_trace``
    (B, n_j, d_j, ...) -> (B, n_k, d_k, ...). For ``d_j = o_j = c_k = 1`` the diagonal ``dz`` (and ``ds_dI``
    when ``d_k = 1``) is folded into a per-example ``(n_k, n_j)`` matrix (``B n^2`` numbers), so the ``B n^3``
    trace is read once by a batched matrix product instead of being scaled element-wise before and after it.
    """
    batch, n_j, d_j = state_trace.shape[:3]
    rest = state_trace.shape[3:]
    if d_j != 1 or dz.shape[2] != 1 or ds_dI.shape[-1] != 1:
        return project(weights, ds_dI, collapse(dz, state_trace))
    mixing = weights[None] * dz[:, None, :, 0, 0]  # (B, n_k, n_j)
    d_k = ds_dI.shape[2]
    if d_k == 1:
        mixing = ds_dI[:, :, 0, 0][:, :, None] * mixing
    mixed = jnp.matmul(mixing, state_trace.reshape(batch, n_j, -1)).reshape((batch, weights.shape[0]) + rest)
    if d_k == 1:
        return mixed[:, :, None]
    return ds_dI[..., 0].reshape(ds_dI.shape[:3] + (1,) * len(rest)) * mixed[:, :, None]


def factored_hop(ds_dI, M, F, outputs: int):
    """``ds_dI[k] M (x) F`` summed over the source's outputs: ``ds_dI`` (B, n_k, d_k, c_k), ``M`` (B, n_k c_k,
    n_l o_l), ``F`` (B, n_l o_l, R) -> (B, n_k, d_k, n_l, R)."""
    batch, n_k, d_k, c_k = ds_dI.shape
    if c_k == 1:
        mixing = ds_dI[:, :, :, 0, None] * M[:, :, None, :]  # (B, n_k, d_k, n_l o_l)
    else:
        mixing = jnp.einsum("bkai,bkiw->bkaw", ds_dI, M.reshape(batch, n_k, c_k, -1))
    if outputs == 1:
        return mixing[..., None] * F[:, None, None]
    width, R = F.shape[1:]
    return jnp.einsum("bkajq,bjqr->bkajr", mixing.reshape(batch, n_k, d_k, width // outputs, outputs),
                      F.reshape(batch, width // outputs, outputs, R))
