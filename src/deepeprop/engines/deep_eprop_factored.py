"""Factored deep e-prop: a deep trace at e-prop's cost (docs/math.md, "Factored deep traces").

Equation, for each hidden node ``l`` and each path ``p = (l, k1, ..., km = N)`` from ``l`` to the readout
``N`` (in a chain, the one path ``l, l+1, ..., L, N``), with the leak ``a_k`` of each node on it (the
readout's ``k``, or no filter for a linear readout):

    eps[l,t] = Jb[l,t] * eps[l,t-1] + dbarM_l/dtheta_l           e[l,t] = dz[l,t]/ds * eps[l,t]
    F[p,1,t] = a_k1 * F[p,1,t-1] + e[l,t]                         (exact first hop: S[k1,l] = U_{k1<-l} (x) F)
    F[p,i,t] = a_ki * F[p,i,t-1] + F[p,i-1,t]                     (carried through each leak on the path)
    g[p,N,t] = dE_t/dy[t] * ds_dI[N]    g[p,ki,t] = ds_dI[ki] dz[ki] * (U_{k(i+1)<-ki}^T g[p,k(i+1),t])
    dE/dtheta_l ~= sum_t sum_p (U_{k1<-l}^T g[p,k1,t]) * F[p,m,t]

Paths sharing a prefix share its ``F`` and paths sharing a suffix share its signal ``g``. The readout's own
parameters get their exact gradient (their trace factorises: ``k`` is shared).

Cost: ``eps[l]`` (``B n_l d_l P_l``, or ``B P_l`` when the node's own Jacobian is a shared constant, see
:mod:`deepeprop.engines.eprop`) plus one ``F`` of ``B n_l P_l`` numbers per leaky node on each path prefix
(``O(depth B n^2)`` per node in a chain); ``~B n_l P_l`` element-wise work per ``F`` and step, one
contraction per path. No ``n^3`` trace, no ``n^4`` product. Constant in sequence length.

Chunked contractions (``chunk_size``, default 64; docs/math.md, "Traces contracted per chunk"): ``sequence``
runs the steps in chunks of ``K`` during which the leaks are known constants. Along a filtered prefix ``r`` of
length ``i`` the stacked ``F = (F_1..F_i)`` (``F_j`` that of ``r[:j]``) evolves as ``F[t] = A F[t-1] + 1 e[t]``,
``A[i, j] = a_j`` for ``j <= i`` (lower triangular), so with ``h(tau) = A^tau 1`` and ``S[t]`` the summed signal
of the paths that read ``F_i``, over the chunk's steps ``t = 1..K`` (``_0``: the chunk's start)

    sum_t S[t] F_i[t] = sum_j (sum_t S[t] (A^t)[i, j]) F_j_0 + sum_s (sum_{t>=s} h_i(t-s) S[t]) e[s]
    F_i[K]            = sum_j (A^K)[i, j] F_j_0 + sum_s h_i(K-s) e[s]

For a factorised node (``e[s] = psi[s] (x) xbar[s]``) the gradient's ``e`` terms of all paths are one matrix
product over the chunk's ``(K B)`` rows, each ``F`` is read once per chunk (one pass each for its start
coefficient and its new value) and the new ``F`` of all prefixes are per-example ``(Q n_l, K) @ (K, P_l)``
products. Such nodes store their ``F`` batch-major, ``(B, n_l, P_l)``; the others ``(n_l o_l, B, R_l)``, and
run step by step inside the chunk (as with ``chunk_size=1``). The readout's own gradient is one matrix product
per chunk. Work ``~2 B n_l P_l (1 + Q_l)`` per step in matrix products (``Q_l`` filtered prefixes) plus a
``~B n_l P_l`` pass per ``F`` and chunk; extra memory the chunk's records, ``K B ((1 + G_l) n_l + P_l)``
numbers per factorised node (``G_l`` signal groups: the distinct longest filtered prefixes of its paths),
constant in ``T``. The result equals the step-by-step form (``chunk_size=1``) up to rounding.

Drops (relative to RTRL): what e-prop drops inside each node (the off-diagonal part of ``J[l]``), and,
beyond the first node above ``l``, the time-varying surrogate derivatives between the nodes above:
``S[N,l]`` is replaced by ``sum_p D_p[t] (U_{k1<-l} (x) F[p,t])`` with every ``D`` on the path taken at the
current step. Exact (equal to deep e-prop) when every path from ``l`` passes through at most one node with
a leak, that node's own Jacobian being a shared constant: e.g. two hidden layers with a linear readout,
or one hidden layer with any readout. Equal to BPTT in those cases when ``l`` has no dense recurrence.

Supported models (``check_model`` raises ``ValueError`` otherwise): every hidden node fed by another hidden
node needs ``Jb = a`` shared and state-independent with ``ds/dI = 1``: neuron ``"leaky"``, or ``"lif"`` with
``neuron_options={"detach_reset": True}``; recurrence ``"none"`` or ``"dense"`` with
``self_connections=False``; one scalar time constant per node. Nodes fed by the input only may be any model.
"""
from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ..validation import check_int
from . import paths
from .base import EngineState, forward_linearized, source_outputs, zero_theta_grads
from .chunks import ChunkedEngine, contract_batch_major, filter_backwards
from .eprop import check_readout_leak
from .plan import FactoredPlan
from .traces import (apply_block, collapse, edge_matrix, has_constant_own_jacobian, immediate, shared_leak,
                     signal_to_current)


class FactoredRecord(NamedTuple):
    """One step of a factorised node, kept for the chunk's contraction: ``e = psi (x) xbar``."""

    psi: jax.Array  # (B, n_l) dz/ds * ds/dI
    xbar: jax.Array  # (B, P_l) the filtered presynaptic vector
    signals: tuple  # per signal group (``plan.groups``): (B, n_l), the paths' signals summed


class FactoredDeepEProp(ChunkedEngine):
    """Factored deep e-prop: the deep trace at e-prop's cost (module docstring: equation, cost, supported
    models, chunks).

    Args:
        chunk_size: steps per chunk of :meth:`sequence`'s trace contractions (module docstring, "Chunked
            contractions"); ``1`` runs step by step. The gradient does not depend on it (up to rounding).
        detach_reset: the reset choice for neurons that leave it to the rule (``detach_reset=None``, the default
            of LIF and ALIF): ``None`` (default) is the rule's, drop the reset path, as e-prop; ``True`` /
            ``False`` overrides it (docs/concepts/networks.md, "The reset: a choice of the rule").
    """

    name = "deep_eprop_factored"
    regularization_paths = paths.DEEP  # a loss on hidden outputs: deepeprop.engines.paths
    chunk_size: int = eqx.field(static=True, default=64)
    reset_default = True  # drops the reset path, as e-prop (detach_reset=None: this)
    detach_reset: bool | None = eqx.field(static=True, default=None)

    def __post_init__(self):
        check_int("chunk_size", self.chunk_size, minimum=1)

    def check_model(self, model):
        check_readout_leak(model, self.name)
        graph = model.graph
        for k, layer in enumerate(model.hidden, start=1):
            if any(j > 0 for j in graph.parents[k]) and not has_constant_own_jacobian(layer):
                raise ValueError(
                    f"deep_eprop_factored needs every hidden node fed by another hidden node to have a shared, "
                    f"state-independent own Jacobian (Jb = a); node {k} does not. Use neuron 'leaky', or "
                    "'lif' with neuron_options={'detach_reset': True} (and no refractory period, n_ref=0); recurrence "
                    "'none', or 'dense' with self_connections=False; one scalar tau_m per layer. Otherwise use "
                    "method='deep_eprop'")

    def _make_plan(self, model) -> FactoredPlan:
        """The filtered path prefixes of every hidden node, their groups, and the layout of each node's ``F``
        (:class:`~deepeprop.engines.plan.FactoredPlan`); static structure only."""
        return FactoredPlan.of(model, self.chunk_size)

    def batch_major(self, model) -> tuple[bool, ...]:
        """Per hidden node, whether its ``F`` are stored batch-major, (B, n_l, P_l), and contracted once per chunk
        (``chunk_size > 1`` and a factorised node); otherwise neuron-major, (n_l o_l, B, R_l), step by step
        (``plan(model).batch_major``)."""
        return self.plan(model).batch_major

    def init(self, model, batch):
        self.check_model(model)
        dtype = model.dtype
        plan = self.plan(model)
        traces = []
        for l, (layer, major) in enumerate(zip(model.hidden, plan.batch_major)):
            if plan.factorised[l]:
                eps = jnp.zeros((batch, layer.row_size), dtype)
            else:
                eps = jnp.zeros((batch, layer.size, layer.neuron.state_size, layer.row_size), dtype)
            shape = ((batch, layer.size, layer.row_size) if major
                     else (layer.size * layer.outputs, batch, layer.row_size))
            filtered = tuple(jnp.zeros(shape, dtype) for _ in plan.prefixes[l])
            traces.append((eps, filtered))
        traces.append(jnp.zeros((batch, model.readout.row_size), dtype))  # the readout's own trace
        return EngineState(net=model.init_state(batch), traces=tuple(traces), grads=zero_theta_grads(model))

    def _contract_chunk(self, model, state, records):
        """Add a chunk's deferred terms to the gradients and bring the deferred ``F`` to the chunk's end.

        ``records``: per hidden node a :class:`FactoredRecord` or ``None`` (a node run step by step), each field
        (K, B, ...); last, the readout's ``(dE_t/dI, trace)`` ((K, B, n_out), (K, B, P_out)). Steps ``t = 1..K``;
        ``_0`` is the chunk's start. A filtered prefix ``r`` of length ``i`` is the end of the chain
        ``F_1..F_i`` (``F_j`` the ``F`` of ``r[:j]``) with ``F[t] = A F[t-1] + 1 e[t]`` (:func:`_chain_powers`).
        """
        *hidden, (top_signal, readout_trace) = records
        size = top_signal.shape[0]
        grads = list(state.grads)
        grads[-1] = grads[-1] + jnp.einsum("tbo,tbp->op", top_signal, readout_trace)  # one matmul over (K B)
        traces = list(state.traces)
        plan = self.plan(model)
        for l, record in enumerate(hidden):
            if record is None:
                continue
            eps, filtered_prev = state.traces[l]
            prefixes = plan.prefixes[l]
            start = dict(zip(prefixes, filtered_prev))  # F_0 per prefix, (B, n_l, P_l)
            # per prefix: A^t, t = 0..K, (K+1, i, i), and the response of its F to e, h(tau) = (A^tau 1)_i, (K+1,)
            powers = {r: _chain_powers(jnp.stack([shared_leak(model.node(k)) for k in r]), size) for r in prefixes}
            response = {r: powers[r][:, -1, :].sum(axis=-1) for r in prefixes}
            weight = jnp.zeros_like(record.psi)  # (K, B, n_l): sum_q Sbar_q
            start_weights = {}  # per prefix, (B, n_l): the coefficient of its F_0 in the gradient
            for group, signal in zip(plan.groups[l], record.signals):  # signal: (K, B, n_l)
                if not group:  # paths with no filter read e itself
                    weight = weight + signal
                    continue
                # sum_t S[t] F_m[t] = sum_j (sum_t S[t] (A^t)[m, j]) F_j_0 + sum_s Sbar[s] e[s],
                # Sbar[s] = sum_{t>=s} h_m(t-s) S[t]
                weight = weight + filter_backwards(response[group], signal)
                for j in range(len(group)):
                    coefficient = jnp.einsum("t,tbj->bj", powers[group][1:, -1, j], signal)
                    r = group[:j + 1]
                    start_weights[r] = start_weights[r] + coefficient if r in start_weights else coefficient
            grad = grads[l] + jnp.einsum("tbj,tbp->jp", weight * record.psi, record.xbar)  # one matmul over (K B)
            for r, coefficient in start_weights.items():
                grad = grad + contract_batch_major(start[r], coefficient)
            grads[l] = grad
            # F_i,K = sum_j (A^K)[i, j] F_j_0 + sum_s h_i(K-s) psi[s] (x) xbar[s]: per example (n_l, K) @ (K, P_l)
            if not prefixes:  # nothing filtered above (a linear readout right above)
                continue
            stacked = jnp.stack([response[r][size - 1::-1] for r in prefixes], axis=1)  # (K, Q): h_i(K-s)
            new = jnp.einsum("tbqj,tbp->bqjp", stacked[:, None, :, None] * record.psi[:, :, None], record.xbar)
            filtered = []
            for q, r in enumerate(prefixes):
                value = new[:, q]  # (B, n_l, P_l)
                for j in range(len(r)):
                    value = value + powers[r][size, -1, j] * start[r[:j + 1]]
                filtered.append(value)
            traces[l] = (eps, tuple(filtered))
        return EngineState(net=state.net, traces=tuple(traces), grads=tuple(grads))

    def _advance(self, model, state, x, target, mask, loss, *, defer: bool):
        """One time step. ``defer=True`` leaves the factorised nodes' ``F`` and gradients, and the readout's
        gradient, to :meth:`_contract_chunk` and returns what it needs; ``False`` is the step-by-step form.

        Returns ``(state, (y, loss_t), records)`` (``records`` as :meth:`_contract_chunk` takes them, or None).
        """
        nodes, graph = model.nodes, model.graph
        top = graph.readout
        steps = forward_linearized(model, state.net, x)
        y = steps[-1].z
        loss_t, delta = jax.value_and_grad(loss)(y, target, mask)  # (B, n_out)
        k = shared_leak(model.readout)

        readout_trace = k * state.traces[-1] + model.readout.shared_presynaptic(
            steps[top - 1].z_prev, source_outputs(steps, x, model.readout))
        grads = list(state.grads)
        top_signal = delta * steps[top - 1].ds_dI[:, :, 0, 0]  # (B, n_out): dE_t/dI of the readout
        records = [None] * len(model.hidden) + [(top_signal, readout_trace)]
        if not defer:
            grads[-1] = state.grads[-1] + top_signal.T @ readout_trace

        suffix_signals = {(top,): top_signal}

        def current_signal(suffix):  # dE_t/dI[suffix[0]] along the path suffix alone (memoised)
            if suffix not in suffix_signals:
                node, above = suffix[0], suffix[1:]
                weight = edge_matrix(model, above[0], graph.parents[above[0]].index(node))
                signal = current_signal(above) @ weight  # (B, n o) on z[node]
                suffix_signals[suffix] = signal_to_current(steps[node - 1], signal)  # (B, n c)
            return suffix_signals[suffix]

        def path_signal(l, path):  # (B, n_l o_l): the learning signal on z[l] along the path
            above = path[1:]
            weight = edge_matrix(model, above[0], graph.parents[above[0]].index(l))  # U_{k1<-l}
            return current_signal(above) @ weight

        traces = [None] * len(model.hidden)
        plan = self.plan(model)
        batch_major = plan.batch_major
        for l in reversed(graph.hidden):  # node ids
            i = l - 1  # its position in the per-node tuples (steps, traces, gradients, the plan's)
            step, layer = steps[i], model.hidden[i]
            eps_prev, filtered_prev = state.traces[i]
            prefixes = plan.prefixes[i]
            if eps_prev.ndim == 2:  # factorised: e = psi (x) xbar
                eps = shared_leak(layer) * eps_prev + layer.shared_presynaptic(
                    step.z_prev, source_outputs(steps, x, layer))
                psi = step.dz[:, :, 0, 0] * step.ds_dI[:, :, 0, 0]  # (B, n_l)
                if defer:  # F and the gradient left to the chunk's contraction
                    signals = {}
                    for path, group in zip(graph.paths(l), plan.longest[i]):
                        signal = path_signal(l, path)
                        signals[group] = signals[group] + signal if group in signals else signal
                    records[i] = FactoredRecord(psi, eps, tuple(signals[g] for g in plan.groups[i]))
                    traces[i] = (eps, filtered_prev)
                    continue
                if batch_major[i]:
                    e = psi[:, :, None] * eps[:, None, :]  # (B, n_l, P_l)
                else:
                    e = psi.T[:, :, None] * eps[None, :, :]  # (n_l, B, P_l)
            else:
                eps = apply_block(step.block, eps_prev) + immediate(step)
                e = jnp.swapaxes(collapse(step.dz, eps), 0, 1)  # (n_l o_l, B, R_l)
            previous = dict(zip(prefixes, filtered_prev))
            filtered = {}
            for prefix in prefixes:  # a prefix's parent prefix comes before it
                below = filtered[prefix[:-1]] if prefix[:-1] in filtered else e
                filtered[prefix] = shared_leak(nodes[prefix[-1] - 1]) * previous[prefix] + below
            grad = state.grads[i]
            for path, longest in zip(graph.paths(l), plan.longest[i]):
                carried = filtered[longest] if longest else e
                signal = path_signal(l, path)  # (B, n_l o_l) on z[l]
                if batch_major[i]:
                    grad = grad + contract_batch_major(carried, signal)
                    continue
                contribution = jnp.einsum("jbp,jb->jp", carried, signal.T)  # (n_l o_l, R_l)
                if layer.outputs > 1:  # sum each neuron's outputs
                    contribution = contribution.reshape(layer.size, layer.outputs, -1).sum(axis=1)
                grad = grad + contribution
            grads[i] = grad
            traces[i] = (eps, tuple(filtered[prefix] for prefix in prefixes))
        new_state = EngineState(net=tuple(s.state for s in steps), traces=tuple(traces) + (readout_trace,),
                                grads=tuple(grads))
        return new_state, (y, loss_t), (tuple(records) if defer else None)


def _chain_powers(leaks, size):
    """``A^t`` for ``t = 0..size``, (size+1, m, m), of a chain of filters with ``leaks`` (m,): ``F_1[t] = a_1 F_1[t-1]
    + e[t]``, ``F_i[t] = a_i F_i[t-1] + F_(i-1)[t]``. Substituting the same step's ``F_(i-1)[t]`` gives ``F[t] =
    A F[t-1] + 1 e[t]`` with ``A[i, j] = a_j`` for ``j <= i`` (lower triangular)."""
    m = leaks.shape[0]
    A = jnp.tril(jnp.broadcast_to(leaks[None, :], (m, m)))

    def power(previous, _):
        following = A @ previous
        return following, following

    identity = jnp.eye(m, dtype=leaks.dtype)
    _, rest = jax.lax.scan(power, identity, None, length=size)
    return jnp.concatenate([identity[None], rest])
