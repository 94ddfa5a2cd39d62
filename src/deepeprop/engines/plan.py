"""Static plans: every decision an engine takes from a model's structure, computed once, and its cost formula.

An engine's plan (:meth:`Engine.plan`, memoised per engine and model structure) holds what its ``init``, its steps,
its chunk contractions and :meth:`Engine.cost` read: which nodes' traces factorise, how each node's traces are
laid out, which hops of a deep trace are factorised, which filtered path prefixes a factored trace carries. The
decisions are made from static structure only (sizes, neuron classes and their static options, the shapes of the
fixed constants, the graph), never from values, so they hold under ``jit``. ``plan.cost(model, batch, T)`` is the
engine's docstring formula evaluated for the model; ``deepeprop bench`` prints it beside the measured time.
"""
from __future__ import annotations

from dataclasses import dataclass

from .traces import has_constant_own_jacobian


def _sizes(model):
    """``(n, P, d)`` by node id ``0..N``, as the graph counts (the input, id 0: its width, no parameters, no state)."""
    nodes = model.nodes
    return ([model.n_in] + [node.size for node in nodes], [0] + [node.row_size for node in nodes],
            [0] + [node.neuron.state_size for node in nodes])


def forward_flops(model, batch: int) -> int:
    """The forward pass's matrix products per step: ``2 B n_k (P_k - 1)`` summed over the nodes."""
    return sum(2 * batch * node.size * (node.row_size - 1) for node in model.nodes)


def reverse_cost(model, batch: int, T: int) -> tuple[int, int]:
    """A reverse evaluation (BPTT, or a rule in reverse): the stored trajectory, and about three forward passes."""
    n, _, d = _sizes(model)
    return T * batch * sum(a * b for a, b in zip(n, d)), 3 * forward_flops(model, batch)


def _signal_flops(model, batch: int, l: int) -> int:
    """The learning signal sent down each edge into node ``l``'s children (``l`` an id)."""
    n, _, _ = _sizes(model)
    return sum(2 * batch * n[k] * n[l] for k, _ in model.graph.children[l])


@dataclass(frozen=True)
class Plan:
    """The plan of an engine that takes no structural decision: its cost is unknown unless evaluated in reverse."""

    def cost(self, model, batch: int, T: int = 1, *, reverse: bool = False) -> tuple[int, int]:
        """``(trace_elements, flops_per_step)``: the numbers carried between steps and the work per step."""
        return reverse_cost(model, batch, T) if reverse else (0, 0)


@dataclass(frozen=True)
class BPTTPlan(Plan):
    """BPTT: the stored trajectory (``T B sum_k n_k d_k``), about three forward passes of work per step."""

    def cost(self, model, batch, T=1, *, reverse=False):
        return reverse_cost(model, batch, T)


@dataclass(frozen=True)
class RTRLPlan(Plan):
    """RTRL: the influence of every node's parameters on itself and on every descendant (``~n^3`` per pair)."""

    def cost(self, model, batch, T=1, *, reverse=False):
        if reverse:
            return reverse_cost(model, batch, T)
        n, P, d = _sizes(model)
        elements, flops = 0, forward_flops(model, batch)
        for l in model.graph.nodes:
            for k in (l,) + model.graph.descendants[l]:
                size = batch * n[k] * d[k] * n[l] * P[l]
                elements += size
                flops += 2 * size * (P[k] - 1)  # W and U products on the influence matrix
        return elements, flops


@dataclass(frozen=True)
class EPropPlan(Plan):
    """E-prop's (and ``immediate``'s) decisions (:class:`~deepeprop.engines.eprop.EProp`).

    Args:
        layouts: per hidden node, how its traces are stored and contracted (``EProp.plan``'s docstring).
        leaky: whether the hidden traces carry the leaky readout's filter (``ebar``).
        chunked: whether ``sequence`` contracts every node's traces once per chunk (``chunk_size > 1``).
        carries: whether the eligibility carries on through the node's own Jacobian (``False``: ``immediate``).
    """

    layouts: tuple[str, ...]
    leaky: bool
    chunked: bool
    carries: bool

    @property
    def factorised(self) -> tuple[bool, ...]:
        """Per hidden node, whether its eligibility is stored factorised (``e = psi (x) xbar``)."""
        return tuple(layout == "factorised" for layout in self.layouts)

    def cost(self, model, batch, T=1, *, reverse=False):
        if reverse:
            return reverse_cost(model, batch, T)
        B, (n, P, d), leaky = batch, _sizes(model), self.leaky
        own = 1 if self.carries else 0
        elements = B * P[-1]
        flops = forward_flops(model, B) + 2 * B * n[-1] * P[-1]
        for l, layout in enumerate(self.layouts, start=1):  # node ids
            o = model.node(l).outputs
            if layout == "factorised":
                elements += B * P[l] + (B * n[l] * P[l] if leaky else 0)
                flops += (4 if leaky else 2) * B * n[l] * P[l]
            elif layout == "components":  # d state slabs and ebar; (1 + d + o) matrix products per step
                elements += B * n[l] * (d[l] + (o if leaky else 0)) * P[l]
                flops += 2 * (1 + d[l] + (o if leaky else 0)) * B * n[l] * P[l]
            elif layout == "scalar":  # the scalar chunked form: eps and ebar; 2-3 matrix products per step
                elements += B * n[l] * P[l] * (2 if leaky else 1)
                flops += (6 if leaky else 4) * B * n[l] * P[l]
            else:
                elements += B * n[l] * d[l] * P[l] + (B * n[l] * P[l] if leaky else 0)
                flops += (own * 2 * d[l] * d[l] + 2 * d[l] + (4 if leaky else 2)) * B * n[l] * P[l]
            flops += _signal_flops(model, B, l)
        return elements, flops


@dataclass(frozen=True)
class DeepEPropPlan(Plan):
    """Deep e-prop's decisions (:class:`~deepeprop.engines.deep_eprop.DeepEProp`).

    Args:
        factorised_hops: per node ``l`` (at position ``l - 1``), the ids of the descendants ``k`` whose deep
            trace ``S[k,l]`` is stored factorised,
            ``U_{k<-l} (x) F`` with ``F = a_k F + e`` (``k`` a child of ``l`` with a shared, state-independent own
            Jacobian and ``l``'s only edge into ``k``; the step form and the chunk hybrid alike).
        chunk_size: ``1``: the step form; ``K > 1``: the chunk hybrid over chunks of ``K`` steps.
        direct_nodes: per node (by position, id - 1), whether the hybrid updates its deep traces by the
            direct-node formula (:mod:`deepeprop.engines.hybrid`: every ancestor of ``k`` a parent, none below
            another), with no cotangent per neuron of ``k``.
    """

    factorised_hops: tuple[tuple[int, ...], ...]
    chunk_size: int
    direct_nodes: tuple[bool, ...] = ()

    def cost(self, model, batch, T=1, *, reverse=False):
        if reverse:
            return reverse_cost(model, batch, T)
        B, (n, P, d), graph = batch, _sizes(model), model.graph
        forward = forward_flops(model, B)
        if self.chunk_size > 1:  # the chunk hybrid
            K = min(self.chunk_size, T)
            elements, flops = 0, 3 * forward
            direct = self.direct_nodes or (False,) * len(model.nodes)  # by position (id - 1)
            factorised = {(k, l) for l in graph.nodes for k in self.factorised_hops[l - 1]}  # by id
            full = {(k, l) for l in graph.nodes for k in graph.descendants[l] if (k, l) not in factorised}
            run_through = {l for k, l in full if direct[k - 1]}  # eps_l run through the chunk for a direct child
            rows = {k for k, _ in full if not direct[k - 1]}  # nodes with a cotangent per row
            adjoint = 2 * B * sum(a * b for a, b in zip(n, d))  # one cotangent pulled back through the chunk, per step
            for l in graph.nodes:
                elements += B * n[l] * d[l] * P[l]
                flops += 2 * d[l] * B * n[l] * d[l] * P[l]  # Psi_ll from d cotangents
                if l in run_through:
                    flops += (2 * d[l] * d[l] + 2) * B * n[l] * P[l]
                for k in graph.descendants[l]:
                    if (k, l) in factorised:  # F (B, n_l, P_l): o_l cotangents a_k^(t0+K-t) dz_l pulled back,
                        elements += B * n[l] * P[l]  # each contracted with the chunk's K rows of x_l
                        flops += model.node(l).outputs * (adjoint + 2 * B * n[l] * P[l])
                        continue
                    elements += B * n[k] * d[k] * n[l] * P[l]
                    flops += 2 * B * n[k] * d[k] * n[l] * P[l]  # Psi_kl: (r n_l, K) @ (K, P_l) per example
                    for j in graph.descendants[l]:
                        if k in graph.descendants[j] and (j, l) in factorised:  # (start U) (x) F, once per chunk
                            flops += (2 * B * n[k] * d[k] * n[j] * n[l] + B * n[k] * d[k] * n[l] * P[l]) // K
                        elif k in graph.descendants[j]:  # the hop Phi_kj S[j,l], once per chunk
                            flops += 2 * B * n[k] * d[k] * n[j] * d[j] * n[l] * P[l] // K
            for k in rows:  # the adjoints of a cotangent per row of k, through every node of the chunk
                flops += n[k] * d[k] * adjoint
            return elements, flops
        elements, flops = 0, forward
        for l in graph.nodes:
            elements += B * n[l] * d[l] * P[l]
            flops += (2 * d[l] * d[l] + 2) * B * n[l] * P[l]
            for k in graph.descendants[l]:
                if k in self.factorised_hops[l - 1]:  # S[k,l] stored as F (B, n_l, P_l)
                    elements += B * n[l] * P[l]
                    flops += 3 * B * n[l] * P[l]
                    continue
                elements += B * n[k] * d[k] * n[l] * P[l]
                flops += 2 * B * n[k] * d[k] * n[l] * P[l]  # Jb * S
                for j in graph.parents[k]:
                    if j == l:  # element-wise hop from the eligibility
                        flops += 3 * B * n[k] * d[k] * n[l] * P[l]
                    elif j in self.factorised_hops[l - 1]:  # M[b] (x) F: a B n^3 product for M, element-wise B n^3
                        flops += 2 * B * n[k] * n[j] * n[l] + 2 * B * n[k] * d[k] * n[l] * P[l]
                    elif j in graph.descendants[l]:  # a matrix product with U_{k<-j}
                        flops += 2 * B * n[k] * n[j] * n[l] * P[l]
        return elements, flops


@dataclass(frozen=True)
class FactoredPlan(Plan):
    """The factored deep trace's decisions (:class:`~deepeprop.engines.deep_eprop_factored.FactoredDeepEProp`).

    Args:
        prefixes: per hidden node ``l`` (at position ``l - 1``), the path prefixes (node ids) from ``l`` (``l``
            excluded, :meth:`~deepeprop.Graph.prefixes`) that end at a node with a leak: one filtered trace ``F``
            each (a linear readout filters nothing).
        groups: per hidden node, the distinct longest filtered prefixes of its paths (``()``: ``e`` itself); the
            paths of one group read the same ``F``, so a chunk sums their signals first.
        longest: per hidden node, per path of ``graph.paths(l)``, the longest filtered prefix of that path.
        batch_major: per hidden node, whether its ``F`` are stored batch-major (B, n_l, P_l) and contracted once per
            chunk (``chunk_size > 1`` and a factorised node), else neuron-major (n_l o_l, B, R_l), step by step.
        factorised: per hidden node, whether its own trace factorises (a shared, state-independent own Jacobian).
    """

    prefixes: tuple[tuple[tuple[int, ...], ...], ...]
    groups: tuple[tuple[tuple[int, ...], ...], ...]
    longest: tuple[tuple[tuple[int, ...], ...], ...]
    batch_major: tuple[bool, ...]
    factorised: tuple[bool, ...]

    @classmethod
    def of(cls, model, chunk_size: int) -> FactoredPlan:
        graph = model.graph
        prefixes, groups, longest = [], [], []
        for l in graph.hidden:
            own = [prefix for prefix in graph.prefixes(l)  # a linear readout filters nothing
                   if not (prefix[-1] == graph.readout and model.readout_is_linear)]
            per_path = []
            for path in graph.paths(l):
                above = path[1:]
                per_path.append(next((above[:i] for i in range(len(above), 0, -1) if above[:i] in own), ()))
            prefixes.append(tuple(own))
            longest.append(tuple(per_path))
            groups.append(tuple(dict.fromkeys(per_path)))
        factorised = tuple(has_constant_own_jacobian(layer) for layer in model.hidden)
        return cls(tuple(prefixes), tuple(groups), tuple(longest),
                   tuple(chunk_size > 1 and f for f in factorised), factorised)

    def cost(self, model, batch, T=1, *, reverse=False):
        if reverse:
            return reverse_cost(model, batch, T)
        B, (n, P, d) = batch, _sizes(model)
        elements, flops = B * P[-1], forward_flops(model, B) + 2 * B * n[-1] * P[-1]
        for l in model.graph.hidden:
            levels = len(self.prefixes[l - 1])  # one F per filtered path prefix
            own = B * P[l] if self.factorised[l - 1] else B * n[l] * d[l] * P[l]
            paths = len(model.graph.paths(l))
            elements += own + levels * B * n[l] * P[l]
            if self.batch_major[l - 1]:  # chunked: one matmul for the gradient, one per F for its new value
                flops += (2 * levels + 2) * B * n[l] * P[l] + _signal_flops(model, B, l)
            else:  # step by step: e, each F updated element-wise, one contraction per path
                flops += (2 * levels + 2 + 2 * paths) * B * n[l] * P[l] + _signal_flops(model, B, l)
        return elements, flops
