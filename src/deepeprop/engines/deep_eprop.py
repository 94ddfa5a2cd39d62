"""Deep e-prop (Millidge 2025) over a graph of nodes (docs/math.md, "Deep e-prop").

Equation: e-prop's block-diagonal approximation inside every node, the exact recursion across depth. For
each node ``l`` (its parameters ``theta_l``) and each descendant ``k`` of ``l`` in topological order:

    eps[l,t]   = Jb[l,t] * eps[l,t-1] + dbarM_l/dtheta_l                      (S[l,l], row-sparse)
    S[k,l,t]   = Jb[k,t] * S[k,l,t-1] + sum_{j in parents(k)} D[k<-j,t] @ S[j,l,t]
    dE/dtheta_l ~= sum_t dE_t/dy[t] @ S[N,l,t]

where ``D[k<-j] = ds_dI[k] (x) U_{k<-j} diag(dz[j])``, ``S[j,l] = 0`` unless ``j`` is ``l`` or below it, and the
readout is node ``N``. A hop from ``l`` itself uses the row-sparse eligibility ``e[l] = dz[l] * eps[l]``
(an element-wise product); hops from a deep trace are matrix products.

Cost: ``eps[l]`` holds ``B n_l d_l P_l`` numbers (``~B n^2``); each deep trace ``S[k,l]`` holds
``B n_k d_k n_l P_l`` (``~B n^3``), one per (ancestor, descendant) pair. A hop from ``l`` is element-wise
(``~B n^3`` per step); a hop from a deep trace a matrix product with ``U`` (``~B n^4`` per step). Constant
in sequence length.

Factorised first hop (exact, decided from static structure): when a child ``k`` of ``l`` has a shared,
state-independent own Jacobian ``Jb = a_k`` with ``ds_dI = 1``
(:func:`~deepeprop.engines.traces.has_constant_own_jacobian`;
the readout always qualifies) and no other parent of ``k`` descends from ``l``,
``S[k,l][m,j,:] = U_{k<-l}[m,j] * F[t][j,:]`` with ``F[t] = a_k * F[t-1] + e[l,t]``: ``B n_l P_l`` numbers
instead of ``B n_k n_l P_l``. A hop from such a trace into ``k'`` is ``ds_dI[k'] M[t] (x) F[t]`` with the
per-example ``M = U_{k'<-k} diag(dz[k] ds_dI[k]) U_{k<-l}`` (``~B n^3`` work): no ``n^4`` product.

Evaluations (docs/math.md, "Rules and their evaluations"): the step form above (``chunk_size=1``), the chunk
hybrid (``chunk_size=K > 1``, the default) and the reverse form (``Reverse``: BPTT through deep e-prop's
surrogate network, :mod:`deepeprop.engines.surrogate`, and :mod:`deepeprop.engines.hybrid`, which state their
equations and costs).

Drops (relative to RTRL): the off-diagonal part of each within-node Jacobian, ``W`` between distinct
neurons. Exact (equal to BPTT) with no or diagonal recurrence, at any depth and for any graph; equal to
e-prop for one hidden layer.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..validation import check_bool, check_int
from . import paths
from .base import Engine, EngineState, forward_linearized, zero_theta_grads
from .chunks import run_chunked
from .evaluation import Chunked, Reverse, Step
from .plan import DeepEPropPlan
from .hybrid import hybrid_chunk
from .surrogate import reverse_gradients
from .traces import (apply_block, collapse, contract_rows, edge_matrix, error_contract, factored_hop,
                     has_constant_own_jacobian, immediate, project_eligibility, project_state, shared_leak)


class DeepEProp(Engine):
    """Deep e-prop (Millidge 2025) over a graph of nodes (module docstring: equation, cost, what it drops).

    Args:
        factorize: factorise a deep trace's first hop where the child's leak is a shared constant (exact,
            cheaper; default ``True``), in the step form and the chunk hybrid alike; ``False`` always stores the
            full trace.
        chunk_size: ``K > 1`` (default 64) runs :meth:`sequence` by the chunk hybrid of
            :mod:`deepeprop.engines.hybrid` (reverse inside chunks of ``K`` steps, the deep traces carried
            across chunks): 5-17x faster than the step form on 3 x 64 and 4 x 64 networks (measured,
            docs/performance.md), for 2-6x its memory; longer chunks amortise the per-chunk passes over the
            traces (on 2 x 100, ``K = 256`` ran 1.4-1.6x faster than 64 for 1.3-1.6x the memory,
            docs/performance.md). ``1`` runs step by step (the step form). The gradient of a sequence does not
            depend on it (up to rounding).
            With weight updates inside a sequence, a factorised hop reads the current ``U_{k<-l}`` for its whole
            past, in either form, where the full trace (``factorize=False``) keeps the trace built with the
            weights of its time.
        basis_batch: the hybrid's cotangents evaluated at once (memory ``~basis_batch K B sum_k n_k d_k``).
        direct: in the hybrid, update the deep traces of a node whose ancestors are all its parents (none below
            another) from its ``d`` own cotangents and its parents' eligibilities run through the chunk, with no
            cotangent per neuron pulled back through the network (default ``True``: the same gradient; measured 1.3x
            faster with dense and 3.9x with diagonal recurrence on 2 x 100, 7-14% slower on 3 x 64,
            docs/performance.md); ``False``: a cotangent per neuron for every node.
        detach_reset: the reset choice for neurons that leave it to the rule (``detach_reset=None``, the default
            of LIF and ALIF): ``None`` (default) is the rule's, drop the reset path, as e-prop; ``True`` /
            ``False`` overrides it (docs/concepts/networks.md, "The reset: a choice of the rule").
    """

    name = "deep_eprop"
    regularization_paths = paths.DEEP  # a loss on hidden outputs: deepeprop.engines.paths
    exact_elementwise = True
    evaluations = (Step, Chunked, Reverse)
    factorize: bool = eqx.field(static=True, default=True)  # False: never factorise the first hop
    chunk_size: int = eqx.field(static=True, default=64)
    basis_batch: int = eqx.field(static=True, default=64)
    direct: bool = eqx.field(static=True, default=True)
    reset_default = True  # drops the reset path, as e-prop (detach_reset=None: this)
    detach_reset: bool | None = eqx.field(static=True, default=None)

    def __post_init__(self):
        check_bool("factorize", self.factorize)
        check_int("chunk_size", self.chunk_size, minimum=1)
        check_int("basis_batch", self.basis_batch, minimum=1)
        check_bool("direct", self.direct)

    def _make_plan(self, model) -> DeepEPropPlan:
        """Per node ``l``, the descendants ``k`` whose ``S[k,l]`` is stored as ``F`` (with ``factorize``, in both
        forms: ``k`` a child of ``l`` with a shared, state-independent own Jacobian, reached from ``l`` by one edge
        only), and per node whether the hybrid treats it as a direct node; static structure only."""
        graph = model.graph
        hops = []
        for l in graph.nodes:
            below = {l, *graph.descendants[l]}
            hops.append(tuple(
                k for k, _ in graph.children[l]
                if self.factorize and has_constant_own_jacobian(model.node(k))
                and sum(j in below for j in graph.parents[k]) == 1))
        direct = []  # by position (id - 1), as every per-node tuple
        for k in graph.nodes:
            ancestors = {l for l in graph.nodes if k in graph.descendants[l]}
            parents = {j for j in graph.parents[k] if j > 0}  # the input (id 0) is no node
            direct.append(self.direct and self.chunk_size > 1 and bool(ancestors) and ancestors == parents
                          and not any(j in graph.descendants[l] for l in parents for j in parents))
        return DeepEPropPlan(factorised_hops=tuple(hops), chunk_size=self.chunk_size, direct_nodes=tuple(direct))

    def factorised_hops(self, model) -> tuple[tuple[int, ...], ...]:
        """Per node ``l`` (at position ``l - 1``), the ids of the descendants ``k`` whose ``S[k,l]`` is stored as
        ``F`` (``plan(model)``)."""
        return self.plan(model).factorised_hops

    def init(self, model, batch):
        nodes, graph = model.nodes, model.graph
        factorised = self.plan(model).factorised_hops
        traces = []
        for l, node in enumerate(nodes, start=1):
            eps = jnp.zeros((batch, node.size, node.neuron.state_size, node.row_size), model.dtype)
            shapes = [(batch, node.size * node.outputs, node.row_size) if k in factorised[l - 1] else
                      (batch, nodes[k - 1].size, nodes[k - 1].neuron.state_size, node.size, node.row_size)
                      for k in graph.descendants[l]]
            deep = tuple(jnp.zeros(shape, model.dtype) for shape in shapes)
            traces.append((eps, deep))
        return EngineState(net=model.init_state(batch), traces=tuple(traces), grads=zero_theta_grads(model))

    def sequence(self, model, state, inputs, targets, mask, loss):
        """Run ``inputs`` (T, B, n_in): step by step (``chunk_size == 1``) or by the chunk hybrid."""
        if self.chunk_size == 1:
            return super().sequence(model, state, inputs, targets, mask, loss)
        plan = self.plan(model)
        return run_chunked(self.chunk_size, lambda s, xs: hybrid_chunk(
            model, s, xs, loss, direct=plan.direct_nodes, factorised=plan.factorised_hops,
            basis_batch=self.basis_batch), state, inputs, targets, mask)

    def reverse(self, model, state, inputs, targets, mask, loss):
        """One backward pass through deep e-prop's surrogate (:mod:`deepeprop.engines.surrogate`)."""
        final, ys, losses, theta = reverse_gradients(model, state.net, inputs, targets, mask, loss)
        fresh = self.init(model, inputs.shape[1])
        grads = tuple(g + t for g, t in zip(state.grads, theta))
        return EngineState(net=final, traces=fresh.traces, grads=grads), ys, losses

    def step(self, model, state, x, target, mask, loss):
        if self.chunk_size > 1:  # the hybrid's layout: a chunk of one step
            plan = self.plan(model)
            state, (ys, losses) = hybrid_chunk(model, state, (x[None], target[None], mask[None]), loss,
                                               basis_batch=self.basis_batch, direct=plan.direct_nodes,
                                               factorised=plan.factorised_hops)
            return state, (ys[0], losses[0])
        nodes, graph = model.nodes, model.graph
        steps = forward_linearized(model, state.net, x)
        y = steps[-1].z
        loss_t, delta = jax.value_and_grad(loss)(y, target, mask)  # delta: (B, n_out)
        factorised = self.plan(model).factorised_hops

        traces, grads = [], []
        for l in graph.nodes:
            eps_prev, deep_prev = state.traces[l - 1]
            eps = apply_block(steps[l - 1].block, eps_prev) + immediate(steps[l - 1])  # (B, n_l, d_l, R_l)
            e = collapse(steps[l - 1].dz, eps)  # (B, n_l o_l, R_l): the output trace, row-sparse
            outputs = nodes[l - 1].outputs
            previous = dict(zip(graph.descendants[l], deep_prev))
            new, factored = {}, {}
            for k in graph.descendants[l]:
                if k in factorised[l - 1]:  # S[k,l] = U_{k<-l} (x) F, F = a_k F + e (exact)
                    factored[k] = shared_leak(nodes[k - 1]) * previous[k] + e  # (B, n_l o_l, R_l)
                    continue
                depth = None
                for slot, j in enumerate(graph.parents[k]):
                    weight = edge_matrix(model, k, slot)  # U_{k<-j}
                    if j == l:  # from the row-sparse eligibility: element-wise
                        term = project_eligibility(weight, steps[k - 1].ds_dI, e, outputs)
                    elif j in factored:  # ds_dI[k] M[b] (x) F, M = U_{k<-j} diag(dz ds_dI [j]) U_{j<-l}
                        mid = steps[j - 1].dz[:, :, 0, 0] * steps[j - 1].ds_dI[:, :, 0, 0]  # (B, n_j)
                        first = edge_matrix(model, j, graph.parents[j].index(l))  # U_{j<-l} (n_j, n_l o_l)
                        M = jnp.matmul(weight[None] * mid[:, None, :], first)  # (B, n_k c_k, n_l o_l)
                        term = factored_hop(steps[k - 1].ds_dI, M, factored[j], outputs)
                    elif j in new:  # from a deep trace: a matrix product
                        term = project_state(weight, steps[k - 1].ds_dI, steps[j - 1].dz, new[j])
                    else:  # j does not descend from l
                        continue
                    depth = term if depth is None else depth + term
                new[k] = apply_block(steps[k - 1].block, previous[k]) + depth  # (B, n_k, d_k, n_l, R_l)
            top = graph.readout
            if l == top:  # the readout's own parameters: its eligibility is its top trace
                grad = jnp.einsum("bo,bop->op", delta, eps[:, :, 0])
            elif top in factored:  # dE/dtheta = sum_b (delta ds_dI U_{N<-l})[b, j] F[b, j, :]
                weight = edge_matrix(model, top, graph.parents[top].index(l))
                signal = (delta * steps[top - 1].ds_dI[:, :, 0, 0]) @ weight  # (B, n_l o_l)
                grad = contract_rows(signal, factored[top], outputs)
            else:
                grad = error_contract(delta, new[top])
            traces.append((eps, tuple(factored[k] if k in factored else new[k] for k in graph.descendants[l])))
            grads.append(state.grads[l - 1] + grad)
        return EngineState(net=tuple(s.state for s in steps), traces=tuple(traces), grads=tuple(grads)), (y, loss_t)
