"""The static structure of a network: its nodes and same-time edges, by node id only (docs/math.md, "The network").

Node ids: ``0`` is the input, ``1..N`` the nodes in topological order (every edge goes from a lower id to a higher
one), ``N`` the readout. Every index this module takes or returns is such an id; a node's position in a per-node
tuple (``Network.nodes``, an engine's traces and gradients, which hold no entry for the input) is its id minus one,
and only the code that reads such a tuple converts. The node mathematics (``Node``, ``Edge``) and the builders
live in :mod:`deepeprop.network`; this module imports nothing of the package.
"""
from __future__ import annotations

import dataclasses
import functools


@dataclasses.dataclass(frozen=True)
class Graph:
    """A network's edges by node id (``0`` = the input, ``N`` = the readout). Built by :attr:`Network.graph`
    (:func:`graph_of`); every tuple below is indexed by id ``0..N`` (the input's entry included).

    Args:
        parents: ``parents[k]``, the source id of each incoming edge of node ``k``, in ``theta``'s order
            (``parents[0] == ()``: the input has none).
        children: ``children[j]``, ``(k, slot)`` for each edge ``j -> k`` (``slot`` indexes ``parents[k]``).
        descendants: ``descendants[j]``, the ids reachable from ``j`` by same-time edges (``j`` excluded), sorted.

    :meth:`paths` and :meth:`prefixes` are computed once per graph and node (memoised).
    """

    parents: tuple[tuple[int, ...], ...]
    children: tuple[tuple[tuple[int, int], ...], ...]
    descendants: tuple[tuple[int, ...], ...]
    _memo: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @property
    def size(self) -> int:
        """``N``: the number of nodes, the input not counted (the readout's id)."""
        return len(self.parents) - 1

    @property
    def readout(self) -> int:
        """The readout's id, ``N``."""
        return len(self.parents) - 1

    @property
    def nodes(self) -> tuple[int, ...]:
        """The ids of every node, ``1..N`` (the readout last)."""
        return tuple(range(1, len(self.parents)))

    @property
    def hidden(self) -> tuple[int, ...]:
        """The ids of the hidden nodes, ``1..N-1``."""
        return tuple(range(1, len(self.parents) - 1))

    def paths(self, start: int) -> tuple[tuple[int, ...], ...]:
        """Every path from node ``start`` to the readout, as tuples of ids (``start`` first); memoised."""
        key = ("paths", start)
        if key not in self._memo:
            if start == self.readout:
                found = ((start,),)
            else:
                found = tuple((start,) + rest for k, _ in self.children[start] for rest in self.paths(k))
            self._memo[key] = found
        return self._memo[key]

    def prefixes(self, start: int) -> tuple[tuple[int, ...], ...]:
        """The distinct prefixes of the paths from ``start`` with ``start`` left out (``path[1:i]``, ``i >= 2``),
        in the order :meth:`paths` meets them, a prefix's own prefix first; memoised."""
        key = ("prefixes", start)
        if key not in self._memo:
            found: list[tuple[int, ...]] = []
            for path in self.paths(start):
                for i in range(2, len(path) + 1):
                    if path[1:i] not in found:
                        found.append(path[1:i])
            self._memo[key] = tuple(found)
        return self._memo[key]


@functools.lru_cache(maxsize=256)
def graph_of(sources: tuple[tuple[int, ...], ...]) -> Graph:
    """The graph of nodes ``1..N`` whose incoming edges come from ``sources[k - 1]`` (ids), one per node."""
    parents = ((),) + tuple(tuple(node) for node in sources)
    children: list[list[tuple[int, int]]] = [[] for _ in parents]
    for k, node in enumerate(parents):
        for slot, j in enumerate(node):
            children[j].append((k, slot))
    descendants: list[tuple[int, ...]] = [()] * len(parents)
    for j in reversed(range(len(parents))):
        reach: set[int] = set()
        for k, _ in children[j]:
            reach |= {k, *descendants[k]}
        descendants[j] = tuple(sorted(reach))
    return Graph(parents, tuple(tuple(c) for c in children), tuple(descendants))


def check_edges(edges, n_nodes: int, *, what: str = "edges") -> list[tuple[int, int]]:
    """Validate same-time edges ``(src, dst)`` over ids ``0`` (input) .. ``n_nodes`` (readout).

    Refuses an edge to or from a node that does not exist, an edge into the input, a duplicate edge, and a
    same-time cycle (named); an acyclic edge against the id order is refused with the order to use.
    """
    checked = []
    for edge in edges:
        if (not isinstance(edge, (tuple, list)) or len(edge) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in edge)):
            raise ValueError(f"{what} must be pairs of node ids (src, dst), got {edge!r}")
        src, dst = int(edge[0]), int(edge[1])
        for node in (src, dst):
            if not 0 <= node <= n_nodes:
                raise ValueError(f"{what}: edge ({src}, {dst}) names node {node}, which does not exist: node ids are "
                                 f"0 (the input), 1..{n_nodes - 1} (hidden) and {n_nodes} (the readout)")
        if dst == 0:
            raise ValueError(f"{what}: edge ({src}, {dst}) goes into the input (node 0); "
                             f"edges go into nodes 1..{n_nodes}")
        if src == dst:
            raise ValueError(f"{what}: edge ({src}, {dst}) is a same-time cycle (a node feeding itself at the same "
                             "time step); within-node recurrence is the node's `recurrence`, one step late")
        if src == n_nodes:
            raise ValueError(f"{what}: edge ({src}, {dst}) leaves the readout (node {n_nodes}); "
                             "the readout is the output node")
        if (src, dst) in checked:
            raise ValueError(f"{what}: edge ({src}, {dst}) is given twice")
        checked.append((src, dst))
    cycle = find_cycle(checked, n_nodes)
    if cycle:
        raise ValueError(f"{what} form a same-time cycle " + " -> ".join(map(str, cycle)) + ": a node's current at "
                         "time t cannot depend on itself at time t; make one of these connections recurrent instead")
    backwards = [(s, d) for s, d in checked if s > d]
    if backwards:
        raise ValueError(f"{what}: edge {backwards[0]} goes from a higher node id to a lower one; number the nodes in "
                         "topological order (every edge from a lower id to a higher one)")
    return checked


def find_cycle(edges, n_nodes: int) -> list[int] | None:
    """A same-time cycle among ``edges`` over ids ``0..n_nodes``, as the ids along it (first repeated last), or None."""
    children: dict[int, list[int]] = {node: [] for node in range(n_nodes + 1)}
    for src, dst in edges:
        children[src].append(dst)
    state: dict[int, int] = {}

    def visit(node, path):
        state[node] = 1
        for child in children[node]:
            if state.get(child) == 1:
                return path[path.index(child):] + [child]
            if child not in state:
                found = visit(child, path + [child])
                if found:
                    return found
        state[node] = 2
        return None

    for start in range(n_nodes + 1):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None
