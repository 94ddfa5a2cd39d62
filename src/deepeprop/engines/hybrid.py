"""Deep e-prop's chunk-hybrid evaluation: reverse inside chunks of ``K`` steps through the surrogate network of
:mod:`deepeprop.engines.surrogate`, the deep traces carried across chunks (docs/math.md, "Rules and their
evaluations").

**Chunk hybrid** (:func:`hybrid_chunk`, Schmidhuber 1992): for a chunk ``t0 < t <= t0+K`` with fixed weights,
with ``S(t) = ds(t)/dtheta`` on the surrogate (per example; ``S[l,l] = eps[l]`` row-sparse, ``S[k,l]`` for the
descendants ``k`` of ``l``, the step form's layout),

    grad    += dE_chunk/dtheta |_(s(t0) fixed) + lambda(t0)^T S(t0),      lambda(t0) = dE_chunk/ds(t0)
    S(t0+K)  = Phi S(t0) + Psi,   Phi = ds(t0+K)/ds(t0),   Psi = ds(t0+K)/dtheta |_(s(t0) fixed)

One linearisation of the chunk (a BPTT of ``K`` steps through the surrogate) serves every cotangent: the loss
(giving the first line), ``d`` basis vectors per node set on every neuron at once (the own propagator ``Phi_kk``,
per neuron, and ``Psi_kk``: neurons of a node are independent in the surrogate), and the ``n_k d_k`` basis
vectors of each node that has ancestors (``Phi_kj`` and ``Psi_kl``: rows of the deep traces). The adjoints
with respect to each step's state are contracted with that step's immediate derivative
``ds_dI (x) presynaptic + ds_dparams`` over the chunk's ``K`` rows: matrix products, per example for the traces.

**Direct nodes** (``direct``, decided by the plan): when every ancestor of ``k`` is a parent of ``k`` and no parent
descends from another, the only path from ``s_l`` to ``s_k`` is the edge ``l -> k``, and unrolling the step form's
``S[k,l,t] = Jb[k,t] S[k,l,t-1] + D[k<-l,t] eps[l,t]`` over the chunk gives, per example,

    S[k,l](t0+K) = Phi_kk S[k,l](t0) + sum_t sum_c delta_k[t][m,a,c] U_{k<-l}[(m,c),(j,q)] e_l[t][(j,q),:]

with ``delta_k[t] = (ds_k(t0+K)/ds_k[t]) ds_dI[k,t]`` (from the ``d_k`` own cotangents, every neuron at once) and
``e_l[t] = dz[l,t] eps[l,t]`` the eligibility run forward through the chunk from the carried ``eps_l(t0)`` (which
covers ``Phi_kl eps_l``). No cotangent per neuron of ``k`` is pulled back through the network: that pullback
multiplies a one-hot adjoint by ``U_{k<-l}^T`` (``n_k``-fold wasted work). The product over the chunk is the same
``(n_k d_k c, K) @ (K, n_l o_l R_l)`` per example as ``Psi_kl``; the eligibility run costs ``K B n_l o_l R_l``
numbers of memory.

**Factorised pairs** (``factorised``, the plan's ``factorised_hops``, the step form's condition: a child ``k`` of
``l`` with a shared constant leak ``a_k``, ``ds_dI = 1``, one edge from ``l``): ``S[k,l] = U_{k<-l} (x) F`` is
carried as ``F`` (B, n_l o_l, R_l), and

    F(t0+K) = a_k^K F(t0) + sum_t a_k^(t0+K-t) e_l[t]

where the sum, linear in ``eps_l``, is the pullback of the cotangents ``a_k^(t0+K-t) dz_l[t]`` on every step's
state of ``l`` (one per output of ``l``, every pair in one batch) contracted with the steps' immediate
derivatives, plus the start adjoint times ``eps_l(t0)`` (:func:`filtered_eligibilities`). Its gradient term
``lambda_k . S[k,l]`` is ``(lambda_k U) . F``, a hop from it into the rows of a node above is ``(Phi U) (x) F``
(the step form's :func:`~deepeprop.engines.traces.factored_hop`); no ``Psi_kl``, no cotangent per neuron of ``k``
for ``l``.

Cost per step, per pair (``k`` a descendant of ``l``): ``~2 B n_k d_k n_l P_l`` in matrix products for
``Psi_kl``, ``~B n_k d_k (sum_j n_j d_j)`` for the adjoints, plus, once per chunk, the hops ``Phi_kj S[j,l]``
(``~B n_k d_k n_j d_j n_l P_l``, the ``n^4`` of the step form, divided by ``K``). Memory: the traces of the step
form, plus the chunk's linearisation (``K`` steps of states) and one basis batch of adjoints
(``K B sum_j n_j d_j`` numbers per basis vector in the batch); constant in ``T``. Exact for every ``K``
(a shorter last chunk included); ``K = 1`` is the step form.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..jacobians import linearize
from .surrogate import surrogate_run
from .traces import apply_block, collapse, contract_rows, edge_matrix, factored_hop, immediate, shared_leak


class ChunkRecord(eqx.Module):
    """A node's immediate derivative over a chunk, in the pieces its contraction reads (each (K, B, ...))."""

    ds_dI: jax.Array  # (K, B, n, d, c)
    ds_dparams: jax.Array  # (K, B, n, d, q)
    presynaptic: jax.Array  # (K, B, P) shared by the rows; with diagonal recurrence the inputs (K, B, n_in)
    recurrent: jax.Array | None  # diagonal recurrence: z_prev (K, B, n), each row's own W_jj factor; else None
    dz: jax.Array  # (K, B, n, o, d) dz[t]/ds[t] of each step's new state


def chunk_records(model, s0, states, inputs) -> list[ChunkRecord]:
    """Per node, the immediate derivatives of each step of the chunk (``states`` per node (K, B, n, d))."""
    K, B = inputs.shape[:2]
    flat = lambda a: a.reshape((K * B,) + a.shape[2:])  # noqa: E731
    outputs = [flat(inputs)] + [flat(jax.vmap(node.output)(s)) for node, s in zip(model.nodes, states)]
    records = []
    for index, node in enumerate(model.nodes):
        previous = jnp.concatenate([s0[index][None], states[index][:-1]])  # (K, B, n, d)
        sources = [outputs[source] for source in node.sources]
        step = linearize(node, flat(previous), sources)
        unflat = lambda a: a.reshape((K, B) + a.shape[1:])  # noqa: E731
        if node.recurrence == "diagonal":
            trained = node.trained_sources(sources)
            presynaptic = (jnp.concatenate(trained, axis=-1) if trained
                           else jnp.zeros((K * B, 0), step.z_prev.dtype))
            recurrent = unflat(step.z_prev)
        else:
            presynaptic, recurrent = node.shared_presynaptic(step.z_prev, sources), None
        records.append(ChunkRecord(unflat(step.ds_dI), unflat(step.ds_dparams), unflat(presynaptic), recurrent,
                                   unflat(step.dz)))
    return records


def contract(record: ChunkRecord, adjoint):
    """``sum_b sum_s adjoint[s, b] . dbarM/dtheta[s, b]`` over the chunk and the batch: ``adjoint`` (K, B, n, d) ->
    (n, R), rows in theta's layout (current by current, then neuron parameters)."""
    current = jnp.einsum("kbjd,kbjdc->kbjc", adjoint, record.ds_dI)  # the adjoint of each current
    synaptic = jnp.einsum("kbjc,kbp->jcp", current, record.presynaptic)  # (n, c, P)
    if record.recurrent is not None:  # diagonal recurrence: each row's own W_jj factor z_j[t-1], then the bias
        own = jnp.einsum("kbjc,kbj->jc", current, record.recurrent)
        synaptic = jnp.concatenate([synaptic, own[..., None], jnp.sum(current, axis=(0, 1))[..., None]], axis=-1)
    params = jnp.einsum("kbjd,kbjdq->jq", adjoint, record.ds_dparams)
    return jnp.concatenate([synaptic.reshape(synaptic.shape[0], -1), params], axis=-1)


def contract_rows_per_example(record: ChunkRecord, adjoint):
    """:func:`contract` per example (not summed over the batch) for a batch of cotangents: ``adjoint``
    (r, K, B, n, d) -> (B, r, n, R), the contraction over the chunk's ``K`` steps as one batched matrix product per
    example, ``(r n c, K) @ (K, P)``."""
    r, size, batch, n = adjoint.shape[:4]
    current = jnp.einsum("rkbjd,kbjdc->brjck", adjoint, record.ds_dI)  # the adjoint of each current, K last
    c = current.shape[3]
    presynaptic = jnp.swapaxes(record.presynaptic, 0, 1)  # (B, K, P)
    synaptic = jnp.matmul(current.reshape(batch, r * n * c, size), presynaptic).reshape(batch, r, n, c, -1)
    if record.recurrent is not None:  # diagonal recurrence: each row's own W_jj factor z_j[t-1], then the bias
        own = jnp.einsum("brjck,kbj->brjc", current, record.recurrent)
        synaptic = jnp.concatenate([synaptic, own[..., None], jnp.sum(current, axis=-1)[..., None]], axis=-1)
    params = jnp.einsum("rkbjd,kbjdq->brjq", adjoint, record.ds_dparams)
    return jnp.concatenate([synaptic.reshape(batch, r, n, -1), params], axis=-1)


def chunk_eligibility(model, l, eps0, s0, states, inputs):
    """Node ``l``'s output eligibility ``e_l[t] = dz[l,t] eps[l,t]`` at every step of the chunk, ``eps`` run forward
    from ``eps0`` (B, n_l, d_l, R_l) as the step form runs it: -> (K, B, n_l o_l, R_l)."""
    node = model.nodes[l]
    outputs = [inputs] + [jax.vmap(n.output)(s) for n, s in zip(model.nodes, states)]  # per node (K, B, n o)
    sources = [outputs[source] for source in node.sources]
    previous = jnp.concatenate([s0[l][None], states[l][:-1]])  # (K, B, n_l, d_l)

    def body(eps, xs):
        s_prev, inputs_t = xs
        step = linearize(node, s_prev, list(inputs_t))
        eps = apply_block(step.block, eps) + immediate(step)  # (B, n_l, d_l, R_l)
        return eps, collapse(step.dz, eps)

    _, e = jax.lax.scan(body, eps0, (previous, tuple(sources)))
    return e


def direct_rows(delta, weight, e, outputs: int):
    """``sum_t sum_c delta[b,m,a,c,t] U[(m,c),(j,q)] e[t,b,(j,q),r]`` -> (B, n_k, d_k, n_l, R): ``delta`` (B, n_k,
    d_k, c_k, K), ``weight`` ``U_{k<-l}`` (n_k c_k, n_l o_l), ``e`` (K, B, n_l o_l, R)."""
    batch, m, d_k, c_k, _ = delta.shape
    size, _, width, R = e.shape
    n_l = width // outputs
    if c_k == 1 and outputs == 1:
        mixed = jnp.einsum("bmak,kbjr->bmajr", delta[:, :, :, 0], e)  # (B, n_k, d_k, n_l, R)
        return mixed * weight[None, :, None, :, None]
    mixed = jnp.einsum("bmack,kbwr->bmacwr", delta, e).reshape(batch, m, d_k, c_k, n_l, outputs, R)
    return jnp.einsum("bmacjqr,mcjq->bmajr", mixed, weight.reshape(m, c_k, n_l, outputs))


def filtered_eligibilities(model, pairs, records, state, adjoints, zeros, size: int) -> dict:
    """For each factorised pair ``(k, l)`` (positions), ``sum_t a_k^(t0+K-t) e_l[t]`` over the chunk (B, n_l o_l,
    R_l), ``e_l`` the output eligibility run from the carried ``eps_l(t0)``, without running it: the sum is linear
    in ``eps_l``, so it is the gradient of ``sum_t a_k^(t0+K-t) z_l[t]`` through ``l``'s own dynamics, one cotangent
    per output of ``l`` on every step's state (``a_k^(t0+K-t) dz_l[t]``) pulled back through the chunk, contracted
    with the steps' immediate derivatives and, at the chunk's start, with ``eps_l(t0)``. Every pair's cotangents
    are pulled back in one batch (no other path of the surrogate leads back into ``l``)."""
    combos = [(pair, q) for pair in pairs for q in range(model.nodes[pair[1]].outputs)]
    if not combos:
        return {}
    dtype = zeros[0].dtype
    cotangents = []
    for node in range(len(model.nodes)):
        per_combo = []
        for (k, l), q in combos:
            if node != l:
                per_combo.append(zeros[node])
                continue
            decay = shared_leak(model.nodes[k]) ** jnp.arange(size - 1, -1, -1, dtype=dtype)  # (K,)
            per_combo.append(decay[:, None, None, None] * records[l].dz[:, :, :, q])  # (K, B, n_l, d_l)
        cotangents.append(jnp.stack(per_combo))  # (combos, K, B, n, d)
    start, steps = jax.vmap(lambda on: adjoints(None, None, 0.0, on))(tuple(cotangents))
    out = {}
    for index, ((k, l), _) in enumerate(combos):
        rows = contract_rows_per_example(records[l], steps[l][index][None])[:, 0]  # (B, n_l, R_l)
        rows = rows + jnp.einsum("bjd,bjdr->bjr", start[l][index], state.traces[l][0])  # from eps_l(t0)
        out.setdefault((k, l), []).append(rows)
    return {pair: jnp.stack(rows, axis=2).reshape(rows[0].shape[0], -1, rows[0].shape[-1])
            for pair, rows in out.items()}  # (B, n_l o_l, R_l), outputs neuron-major


def hybrid_chunk(model, state, xs, loss, *, basis_batch: int, direct: tuple[bool, ...] | None = None,
                 factorised: tuple[tuple[int, ...], ...] | None = None):
    """One chunk of the hybrid evaluation (module docstring): ``state`` an :class:`EngineState` whose traces are
    per node ``(eps (B, n_l, d_l, R_l), per descendant k of l S[k,l] (B, n_k, d_k, n_l, R_l))``, or ``F``
    (B, n_l o_l, R_l) for a factorised pair (the step form's layout), ``xs`` the
    chunk's ``(inputs (K, B, n_in), targets, mask)`` -> ``(state, (ys (K, B, n_out), losses (K,)))``.
    ``direct[k]``: node ``k``'s deep traces are updated by the direct-node formula (module docstring; the plan's
    ``direct_nodes``); ``None``: by a cotangent per neuron for every node. ``factorised[l]``: the ids of the
    descendants ``k`` of node ``l`` (position) whose ``S[k,l] = U_{k<-l} (x) F`` is stored as ``F`` (the plan's
    ``factorised_hops``; module docstring, "Factorised pairs"); ``None``: none."""
    inputs, targets, mask = xs
    graph = model.graph
    # every per-node tuple here (states, records, traces, gradients) is by position (id - 1): so are these
    descendants = tuple(tuple(k - 1 for k in graph.descendants[l]) for l in graph.nodes)
    factored = set() if factorised is None else {(k - 1, l) for l, ids in enumerate(factorised) for k in ids}
    s0 = tuple(state.net)
    size = inputs.shape[0]

    def chunk(start, added):
        final, states, ys = surrogate_run(model, inputs, start, added)
        losses = jax.vmap(loss)(ys, targets, mask)  # (K,)
        return (final, jnp.sum(losses), states), (ys, losses)

    zeros = tuple(jnp.zeros((size,) + s.shape, s.dtype) for s in s0)
    (final, _, states), pullback, (ys, losses) = jax.vjp(chunk, s0, zeros, has_aux=True)
    records = chunk_records(model, s0, states, inputs)
    no_state = tuple(jnp.zeros_like(s) for s in final)

    def adjoints(node, cotangent, on_loss=0.0, on_steps=zeros):
        """The adjoints of the chunk's start state and of every step's state, for a cotangent on node's end
        state (or on the loss, or on every step's state: ``on_steps`` per node (K, B, n, d)): (per node (B, n, d),
        per node (K, B, n, d))."""
        end = no_state if node is None else tuple(cotangent if k == node else z for k, z in enumerate(no_state))
        return pullback((end, jnp.asarray(on_loss, losses.dtype), on_steps))

    # the gradient: the chunk's own terms (s(t0) fixed) and lambda(t0)^T S(t0)
    start_adjoint, step_adjoints = adjoints(None, None, 1.0)
    grads = []
    for l, (eps, _) in enumerate(state.traces):
        grad = state.grads[l] + contract(records[l], step_adjoints[l])
        grads.append(grad + jnp.einsum("bjd,bjdr->jr", start_adjoint[l], eps))  # lambda_l . S[l,l]; the deep
        # traces' lambda_k . S[k,l] are added below, while each row batch of S[k,l] is read anyway

    # the own propagators Phi_ll (per neuron, d x d) and Psi_ll: d cotangents per node, every neuron at once
    own_propagator, eligibility, own_steps = [], [], []
    for l, (eps, _) in enumerate(state.traces):
        d = s0[l].shape[2]

        def own(a, l=l, d=d):
            start, steps = adjoints(l, jnp.broadcast_to(jax.nn.one_hot(a, d, dtype=s0[l].dtype), s0[l].shape))
            return start[l], steps[l]  # (B, n, d), (K, B, n, d)

        phi, steps = jax.vmap(own)(jnp.arange(d))  # (d, B, n, d), (d, K, B, n, d)
        phi = jnp.moveaxis(phi, 0, 2)  # (B, n, a, a'): d s_l(t0+K)[j, a] / d s_l(t0)[j, a']
        own_propagator.append(phi)
        own_steps.append(steps)
        psi = contract_rows_per_example(records[l], steps)  # (B, a, n, R): neuron j's rows from its own cotangent
        eligibility.append(apply_block(phi, eps) + jnp.swapaxes(psi, 1, 2))

    # the factorised pairs' sums sum_t a_k^(t0+K-t) e_l[t], for every pair at once (module docstring)
    filtered = filtered_eligibilities(model, sorted(factored), records, state, adjoints, zeros, size)

    # the deep traces: one cotangent per state component of each node that has ancestors, in batches of whole
    # neurons; each batch reads its rows of S[k,l] once (the new rows are joined at the end)
    deep_new, chunk_e = {}, {}

    def run_eligibility(l):  # e_l over the chunk (K, B, n_l o_l, R_l), once per node that needs it
        if l not in chunk_e:
            chunk_e[l] = chunk_eligibility(model, l, state.traces[l][0], s0, states, inputs)
        return chunk_e[l]

    def edge(k, l):  # U_{k<-l}, nodes by position
        return edge_matrix(model, k + 1, graph.parents[k + 1].index(l + 1))

    for k in range(len(model.nodes)):
        ancestors = [l for l in range(len(model.nodes)) if k in descendants[l]]
        if not ancestors:
            continue
        batch, n_k, d_k = s0[k].shape
        old = {(j, l): state.traces[l][1][descendants[l].index(j)] for l in ancestors for j in descendants[l]}
        for l in ancestors:  # factorised pairs: F = a_k F + e_l summed over the chunk, no cotangent per row
            if (k, l) in factored:
                F = old[(k, l)]  # (B, n_l o_l, R_l)
                signal = start_adjoint[k][:, :, 0] @ edge(k, l)  # lambda_k . S[k,l] = (lambda_k U) . F
                grads[l] = grads[l] + contract_rows(signal, F, model.nodes[l].outputs)
                deep_new[(k, l)] = shared_leak(model.nodes[k]) ** size * F + filtered[(k, l)]
        ancestors = [l for l in ancestors if (k, l) not in factored]  # the pairs stored in full
        if not ancestors:
            continue
        neurons = max(size for size in range(1, max(1, min(basis_batch // d_k, n_k)) + 1) if n_k % size == 0)
        rows = neurons * d_k  # cotangents per batch
        phi_k = own_propagator[k]  # (B, n_k, d_k, d_k)
        if direct is not None and direct[k]:  # every ancestor a parent, none below another: no cotangent per row
            # delta_k[t] = (ds_k(t0+K)/ds_k[t]) ds_dI[k,t], every neuron at once: (B, n_k, d_k, c_k, K)
            delta = jnp.einsum("akbjd,kbjdc->bjack", own_steps[k], records[k].ds_dI)
            for l in ancestors:  # one pass over S[k,l]: its share of the gradient, then its new value
                mine = old[(k, l)]  # (B, n_k, d_k, n_l, R_l)
                grads[l] = grads[l] + jnp.tensordot(start_adjoint[k], mine, axes=3)  # lambda_k . S[k,l]
                deep_new[(k, l)] = apply_block(phi_k, mine) + direct_rows(delta, edge(k, l), run_eligibility(l),
                                                                          model.nodes[l].outputs)
            continue

        def write_rows(g, k=k, ancestors=ancestors, old=old, n_k=n_k, d_k=d_k, neurons=neurons, rows=rows,
                       phi_k=phi_k, batch=batch):
            first = g * rows
            basis = jax.nn.one_hot(first + jnp.arange(rows), n_k * d_k, dtype=s0[k].dtype)
            cotangents = jnp.broadcast_to(basis.reshape(rows, 1, n_k, d_k), (rows,) + s0[k].shape)
            start, steps = jax.vmap(lambda c: adjoints(k, c))(cotangents)  # (r, B, n, d), (r, K, B, n, d)
            phi = jax.lax.dynamic_slice_in_dim(phi_k, g * neurons, neurons, axis=1)  # (B, neurons, d_k, d_k)
            lam = jax.lax.dynamic_slice_in_dim(start_adjoint[k], g * neurons, neurons, axis=1)  # (B, neurons, d_k)
            out, grad = [], []
            for l in ancestors:
                mine = jax.lax.dynamic_slice_in_dim(old[(k, l)], g * neurons, neurons, axis=1)
                grad.append(jnp.tensordot(lam, mine, axes=3))  # lambda_k . S[k,l], these rows
                value = apply_block(phi, mine)  # Phi_kk S[k,l]: (B, neurons, d_k, n_l, R_l)
                value = value + contract_rows_per_example(records[l], steps[l]).reshape(value.shape)  # Psi_kl
                value = value + jnp.einsum("rbjd,bjdq->brjq", start[l],
                                           state.traces[l][0]).reshape(value.shape)  # Phi_kl eps_l
                for j in descendants[l]:  # Phi_kj S[j,l] through the nodes between l and k
                    if k not in descendants[j]:
                        continue
                    if (j, l) in factored:  # (Phi_kj U_{j<-l}) (x) F: the step form's factored hop, r rows for n_k
                        mixing = jnp.einsum("rbm,mw->brw", start[j][..., 0], edge(j, l))  # (B, r, n_l o_l)
                        hop = factored_hop(jnp.ones((batch, rows, 1, 1), mixing.dtype), mixing, old[(j, l)],
                                           model.nodes[l].outputs)  # (B, r, 1, n_l, R_l)
                    else:  # the n^4 hop
                        hop = jnp.matmul(jnp.swapaxes(start[j].reshape(rows, batch, -1), 0, 1),
                                         old[(j, l)].reshape(batch, start[j][0, 0].size, -1))  # (B, r, n_l R_l)
                    value = value + hop.reshape(value.shape)
                out.append(value)
            return out, grad

        pieces = [write_rows(g) for g in range(n_k // neurons)]  # unrolled: a loop's carry would copy the traces
        for index, l in enumerate(ancestors):
            deep_new[(k, l)] = jnp.concatenate([piece[0][index] for piece in pieces], axis=1)
            grads[l] = grads[l] + sum(piece[1][index] for piece in pieces)

    traces = tuple((eligibility[l], tuple(deep_new[(k, l)] for k in descendants[l]))
                   for l in range(len(model.nodes)))
    new_state = type(state)(net=tuple(jax.lax.stop_gradient(s) for s in final), traces=traces, grads=tuple(grads))
    return new_state, (ys, losses)
