"""Running an engine's sequence in chunks of steps (docs/math.md, "Traces contracted per chunk").

An engine that defers part of each step's work to once per chunk (``eprop``, ``immediate``,
``deep_eprop_factored``) subclasses :class:`ChunkedEngine`: it declares a static ``chunk_size`` field and
implements ``_advance`` (one step; with ``defer=True`` it leaves the deferred terms as per-step records) and
``_contract_chunk`` (the chunk's deferred terms, from the records stacked over the chunk).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .base import Engine
from .evaluation import Chunked, Step


class ChunkedEngine(Engine):
    """``step`` is ``_advance(defer=False)``; ``sequence`` runs :func:`run_in_chunks` (``chunk_size == 1``: the
    step-by-step :meth:`Engine.sequence`). Subclasses define ``chunk_size``, ``_advance`` and ``_contract_chunk``."""

    evaluations = (Step, Chunked)

    def step(self, model, state, x, target, mask, loss):
        state, out, _ = self._advance(model, state, x, target, mask, loss, defer=False)
        return state, out

    def sequence(self, model, state, inputs, targets, mask, loss):
        """Run ``inputs`` (T, B, n_in): step by step when ``chunk_size == 1``, else chunk by chunk: the same
        gradient, the deferred traces touched once per chunk."""
        if self.chunk_size == 1:
            return super().sequence(model, state, inputs, targets, mask, loss)
        return run_in_chunks(self.chunk_size,
                             lambda s, x, t, m: self._advance(model, s, x, t, m, loss, defer=True),
                             lambda s, records: self._contract_chunk(model, s, records),
                             state, inputs, targets, mask)

    def _advance(self, model, state, x, target, mask, loss, *, defer: bool):
        raise NotImplementedError

    def _contract_chunk(self, model, state, records):
        raise NotImplementedError


def run_in_chunks(chunk_size, advance, contract, state, inputs, targets, mask):
    """Run ``inputs`` (T, B, n_in) in chunks of ``chunk_size`` steps (a shorter last chunk if it does not divide
    ``T``): ``advance(state, x, target, mask) -> (state, (y, loss_t), records)`` one deferred step,
    ``contract(state, records) -> state`` once per chunk with the records stacked (K, ...).

    Returns ``(state, ys (T, B, n_out), losses (T,))``, as :meth:`Engine.sequence`."""
    def run_chunk(carry, xs):  # xs: (K, B, ...) -> the state after the chunk, its (ys, losses)
        def body(inner, xs_t):
            inner, out, records = advance(inner, *xs_t)
            return inner, (out, records)

        carry, (out, records) = jax.lax.scan(body, carry, xs)
        return contract(carry, records), out

    return run_chunked(chunk_size, run_chunk, state, inputs, targets, mask)


def run_chunked(chunk_size, run_chunk, state, inputs, targets, mask):
    """Run ``inputs`` (T, B, n_in) in chunks of ``chunk_size`` steps (a shorter last chunk if it does not divide
    ``T``): ``run_chunk(state, (inputs, targets, mask) of the chunk, each (K, B, ...)) -> (state, (ys, losses))``.

    Returns ``(state, ys (T, B, n_out), losses (T,))``, as :meth:`Engine.sequence`."""
    T = inputs.shape[0]
    size = min(chunk_size, T)
    full, rest = divmod(T, size)
    xs = (inputs, targets, mask)

    def full_chunk(carry, _):  # read in place: slicing and reshaping xs up front would copy them
        carry, index = carry
        carry, out = run_chunk(carry, tuple(jax.lax.dynamic_slice_in_dim(a, index * size, size) for a in xs))
        return (carry, index + 1), out

    (state, _), (ys, losses) = jax.lax.scan(full_chunk, (state, jnp.zeros((), jnp.int32)), None, length=full)
    ys, losses = ys.reshape((full * size,) + ys.shape[2:]), losses.reshape(-1)
    if rest:  # the last, shorter chunk
        state, (ys_rest, losses_rest) = run_chunk(state, tuple(a[full * size:] for a in xs))
        ys, losses = jnp.concatenate([ys, ys_rest]), jnp.concatenate([losses, losses_rest])
    return state, ys, losses


def contract_batch_major(trace, signal):
    """``sum_b signal[b, j] trace[b, j, p]``: (B, n, P), (B, n) -> (n, P), one pass over the trace (an einsum
    would transpose it to put ``j`` first)."""
    return jnp.sum(signal[:, :, None] * trace, axis=0)


def filter_backwards(response, signal):
    """``Sbar[s] = sum_{t>=s} h(t-s) S[t]`` within a chunk: ``response`` ``h`` (K+1,) or longer, ``signal``
    ``S`` (K, B, n) -> (K, B, n), as one (K, K) triangular matrix product."""
    size = signal.shape[0]
    lag = jnp.arange(size)[None, :] - jnp.arange(size)[:, None]  # lag[s, t] = t - s
    future = jnp.where(lag >= 0, response[jnp.clip(lag, 0, size)], 0)  # (K, K): h(t-s) for t >= s
    return jnp.einsum("st,tbj->sbj", future, signal)
