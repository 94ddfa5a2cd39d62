"""The network: a directed acyclic graph of nodes joined by same-time edges (docs/math.md, "The network").

    I[k,t] = W_k z[k,t-1] + sum_{j in parents(k)} U_{k<-j} z[j,t] + b_k      s[k,t] = M_k(s[k,t-1], I[k,t])

Node ids: ``0`` is the input (``z[0,t] = x[t]``), ``1..N`` the nodes in topological order (every edge
goes from a lower id to a higher one, so parents are finished before their children within a step), and
the last node ``N`` is the readout, whose output is ``y[t]``. A node (:class:`Node`) holds its neuron
model, its within-node recurrence ``W`` (none, diagonal or dense), its bias and its incoming edges
(:class:`Edge`: a source id and a trainable weight matrix). The readout is usually an
:class:`~deepeprop.neurons.Integrator` (``y[t] = k*y[t-1] + I[t]``, ``k = 0`` for a linear readout).

Engines see a node's trainable parameters as one matrix ``theta_k`` of shape ``(n_k, R_k)`` whose row
``j`` holds everything neuron ``j``'s currents depend on: for each of its ``c`` currents in turn,
``[U_{k<-j1}[row, :] | U_{k<-j2}[row, :] | ... | W_k[j, :] (dense) or W_k[j] (diagonal) | b_k[row]]``
(``P_k`` numbers; trained incoming edges in their stored order), then the ``q`` neuron parameters the model
declares trained (an LRU's ``nu``, ``theta``): ``R_k = c P_k + q``. :meth:`Node.presynaptic` gives, per
neuron, the vector each current's ``P_k`` parameters multiply. Neurons with several outputs (``o``) are
read by edges flattened neuron-major, ``(B, n o)``; residual edges are fixed identities without parameters.

This module holds the node mathematics (:class:`Edge`, :class:`Node`) and :class:`Network`, which checks a graph
of built nodes; the graph's structure by id is :mod:`deepeprop.graph`, and the builders (:func:`build_network` from
layer specifications and an edge list, :func:`DeepRNN` for the chain with skips) are :mod:`deepeprop.builders`.

Why this file is long: a node's parameter layout (``theta``, ``split_theta``, ``presynaptic``) and the forward step
it lays out are one contract that every engine reads, and :class:`Network` is the checked container of such nodes
with the run over time; kept together, a change to the layout shows beside the step it must match. The graph by id
(:mod:`deepeprop.graph`) and the builders (:mod:`deepeprop.builders`) are apart already.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .graph import Graph, check_edges, graph_of
from .neurons import AbstractNeuron, Integrator, shared_constant_leak
from .validation import check_array_shape, describe

RECURRENCES = ("none", "diagonal", "dense")
DTYPES = {"float32": jnp.float32, "float64": jnp.float64}

# Per node of states: a tuple (s[1], ..., s[N]) of (B, n_k, d_k) arrays, the readout's last.
NetState = tuple


class Edge(eqx.Module):
    """A same-time edge into a node: ``U_{k<-source} z[source, t]``.

    Args:
        weight: ``(n_k c_k, n_source o_source)``, trained; ``None`` is a fixed identity (a residual edge, equal
            widths), which has no parameters.
        source: the source node id (``0`` = the network input).
    """

    weight: Array | None  # (n_k c_k, n_source o_source), or None: identity
    source: int = eqx.field(static=True)  # 0 = the network input, else a node id

    @property
    def trainable(self) -> bool:
        return self.weight is not None

    def __call__(self, z_source: Array) -> Array:
        """(B, n_source o_source) -> (B, n_k c_k)."""
        return z_source if self.weight is None else z_source @ self.weight.T

    def matrix(self, width: int, dtype) -> Array:
        """The edge as a matrix: the weight, or the identity of the given width."""
        return jnp.eye(width, dtype=dtype) if self.weight is None else self.weight


class Node(eqx.Module):
    """One node: incoming edges, within-node recurrence ``W``, bias ``b``, and a neuron model.

    Args:
        inputs: the incoming edges (:class:`Edge`), in the order of ``theta``'s column blocks.
        W: the recurrence: ``(n, n)`` dense, ``(n,)`` diagonal, or ``None``.
        b: the bias, ``(n c,)``.
        neuron: the neuron model (an :class:`~deepeprop.AbstractNeuron` of ``n`` neurons).
        recurrence: ``"none"``, ``"diagonal"`` or ``"dense"`` (must match ``W``).
        self_connections: with dense recurrence, ``False`` masks ``W``'s diagonal to zero (fixed); the default
            ``True`` uses ``W`` as given (the builders, :func:`DeepRNN` and :class:`LayerSpec`, default to ``False``).
    """

    inputs: tuple[Edge, ...]
    W: Array | None  # (n, n) dense, (n,) diagonal, or None
    b: Array  # (n,)
    neuron: AbstractNeuron
    recurrence: str = eqx.field(static=True)
    # Dense recurrence without self-connections: ``W_jj`` is masked to zero (fixed, never trained), so the
    # only within-neuron dynamics are the neuron's own. Lets engines factorise e-prop's traces.
    self_connections: bool = eqx.field(static=True, default=True)

    @property
    def U(self) -> Array:
        """The weight of the first incoming edge (in a chain: from the layer below, or the readout's ``W_out``)."""
        return self.inputs[0].weight

    @property
    def sources(self) -> tuple[int, ...]:
        """The source ids of the incoming edges, in the order of ``theta``'s column blocks."""
        return tuple(p.source for p in self.inputs)

    @property
    def size(self) -> int:
        """``n``: the number of neurons."""
        return self.neuron.size

    @property
    def currents(self) -> int:
        """``c``: input currents per neuron."""
        return self.neuron.n_currents

    @property
    def outputs(self) -> int:
        """``o``: outputs per neuron; edges out of this node read ``n * o`` numbers."""
        return self.neuron.n_outputs

    @property
    def trained_neuron_parameters(self) -> tuple[str, ...]:
        return self.neuron.trainable

    @property
    def n_in(self) -> int:
        """The total width of the trained incoming edges (the columns of ``theta``'s blocks before ``W`` and ``b``)."""
        return sum(p.weight.shape[1] for p in self.inputs if p.trainable)

    @property
    def synaptic_row_size(self) -> int:
        """``P``: the parameters of one current of one neuron (its rows of the trained edges, ``W``, ``b``)."""
        extra = {"none": 0, "diagonal": 1, "dense": self.size}[self.recurrence]
        return self.n_in + extra + 1

    @property
    def row_size(self) -> int:
        """``R = c P + q``: the number of parameters in row ``j`` of ``theta`` (see the module docstring)."""
        return self.currents * self.synaptic_row_size + len(self.trained_neuron_parameters)

    @property
    def has_own_recurrence(self) -> bool:
        """Whether ``W`` acts inside each neuron (diagonal, or dense with self-connections): static."""
        return self.recurrence == "diagonal" or (self.recurrence == "dense" and self.self_connections)

    def recurrent_diagonal(self) -> Array:
        """``W_jj`` per neuron (zeros without recurrence): the part of ``W`` inside each neuron."""
        if not self.has_own_recurrence:
            return jnp.zeros((self.size,), self.b.dtype)
        if self.recurrence == "diagonal":
            return self.W
        return jnp.diagonal(self.W)

    def recurrent_matrix(self) -> Array:
        """Dense ``W`` as used in the forward pass (diagonal masked out without self-connections)."""
        if self.self_connections:
            return self.W
        return self.W * (1.0 - jnp.eye(self.size, dtype=self.W.dtype))

    def output(self, state: Array) -> Array:
        """The node's output, flattened neuron-major: (B, n, d) -> (B, n o)."""
        z = self.neuron.output(state)
        return z if self.outputs == 1 else z.reshape(z.shape[0], -1)

    def current(self, z_prev: Array, sources: Sequence[Array]) -> Array:
        """``I = W @ z_prev + sum_j U_j @ z_j + b``: (B, n o) and one (B, n_j o_j) per edge -> (B, n c)."""
        current = self.b
        for projection, z in zip(self.inputs, sources):
            current = current + projection(z)
        if self.recurrence == "diagonal":
            current = current + z_prev * self.W
        elif self.recurrence == "dense":
            current = current + z_prev @ self.recurrent_matrix().T
        return current

    def neuron_current(self, current: Array) -> Array:
        """The flat current (B, n c) in the form the neuron's step takes: (B, n) or (B, n, c)."""
        return current if self.currents == 1 else current.reshape(current.shape[0], self.size, self.currents)

    def step(self, s_prev: Array, sources: Sequence[Array]) -> Array:
        """One time step: ``s_prev`` (B, n, d) and the sources' outputs -> ``s`` (B, n, d)."""
        z_prev = self.output(s_prev)  # (B, n o)
        return self.neuron.step(s_prev, self.neuron_current(self.current(z_prev, sources)))

    def trained_sources(self, sources: Sequence[Array]) -> list[Array]:
        """The outputs of the sources of trained edges (identity edges have no parameters)."""
        return [z for projection, z in zip(self.inputs, sources) if projection.trainable]

    def shared_presynaptic(self, z_prev: Array, sources: Sequence[Array]) -> Array:
        """The presynaptic vector shared by every neuron of a node without per-neuron recurrence: (B, P).

        ``[z_j1 | z_j2 | ... | z_prev | 1]`` for dense recurrence, without ``z_prev`` for none; row ``j`` of
        :meth:`presynaptic` is this vector for every ``j`` (``W_jj``'s entry is masked in the gradient).
        """
        if self.recurrence == "diagonal":
            raise ValueError("a node with diagonal recurrence has no shared presynaptic vector")
        ones = jnp.ones(z_prev.shape[:1] + (1,), z_prev.dtype)
        recurrent = [z_prev] if self.recurrence == "dense" else []
        return jnp.concatenate(self.trained_sources(sources) + recurrent + [ones], axis=-1)

    def presynaptic(self, z_prev: Array, sources: Sequence[Array]) -> Array:
        """Per neuron, the vector each of its currents' rows multiplies: (B, n o) and sources -> (B, n, P)."""
        batch, n = z_prev.shape[0], self.size
        if self.recurrence != "diagonal":
            shared = self.shared_presynaptic(z_prev, sources)  # (B, P)
            return jnp.broadcast_to(shared[:, None, :], (batch, n, shared.shape[-1]))
        inputs = jnp.concatenate(self.trained_sources(sources), axis=-1)  # (B, n_in)
        x_b = jnp.broadcast_to(inputs[:, None, :], (batch, n, inputs.shape[-1]))  # (B, n, n_in)
        ones_b = jnp.ones((batch, n, 1), z_prev.dtype)
        return jnp.concatenate([x_b, z_prev[..., None], ones_b], axis=-1)

    def theta(self) -> Array:
        """The node's parameters as one ``(n, R)`` matrix (see the module docstring)."""
        parts = [p.weight for p in self.inputs if p.trainable]  # (n c, width) each
        if self.recurrence == "diagonal":
            parts.append(self.W[:, None])
        elif self.recurrence == "dense":
            parts.append(self.W)
        parts.append(self.b[:, None])
        synaptic = jnp.concatenate(parts, axis=1).reshape(self.size, -1)  # (n, c P): neuron j's c rows in turn
        neuron = [getattr(self.neuron, name)[:, None] for name in self.trained_neuron_parameters]
        return jnp.concatenate([synaptic] + neuron, axis=1)

    def split_theta(self, theta: Array) -> tuple[tuple[Array | None, ...], Array | None, Array, tuple[Array, ...]]:
        """Inverse of :meth:`theta`: ``(n, R)`` -> ``(edge weights (None for identity edges), W, b, neuron params)``."""
        c, P = self.currents, self.synaptic_row_size
        rows = theta[:, :c * P].reshape(self.size * c, P)  # (n c, P)
        weights, start = [], 0
        for p in self.inputs:
            if not p.trainable:
                weights.append(None)
                continue
            width = p.weight.shape[1]
            weights.append(rows[:, start:start + width])
            start += width
        if self.recurrence == "diagonal":
            W = rows[:, start]
        elif self.recurrence == "dense":
            W = rows[:, start:start + self.size]
            if not self.self_connections:
                W = W * (1.0 - jnp.eye(self.size, dtype=W.dtype))  # masked: no gradient on W_jj
        else:
            W = None
        neuron = tuple(theta[:, c * P + i] for i in range(len(self.trained_neuron_parameters)))
        return tuple(weights), W, rows[:, -1], neuron

    def shared_leak(self) -> Array | None:
        """The node's own Jacobian ``Jb = a`` as one scalar, when it is one: a shared constant leak of the
        neuron with ``ds/dI = 1`` and no recurrence inside a neuron (docs/math.md, "Factorised traces").
        Read from the fields as they are (never a stored flag); ``None`` otherwise."""
        if self.has_own_recurrence:
            return None
        return shared_constant_leak(self.neuron)


def _check_recurrence(k: int, recurrence: str, neuron: AbstractNeuron) -> None:
    """A within-node ``W`` needs one current and one output per neuron (it mixes the outputs into the current)."""
    if recurrence != "none" and (neuron.n_currents != 1 or neuron.n_outputs != 1):
        raise ValueError(f"node {k}: recurrence {recurrence!r} needs one current and one output per neuron; "
                         f"{type(neuron).__name__} has {neuron.n_currents} and {neuron.n_outputs} (its recurrence "
                         "is inside the neuron model): use recurrence 'none'")


class Network(eqx.Module):
    """A network as a graph of nodes (see the module docstring); the engines consume this.

    Args:
        nodes: the nodes (:class:`Node`) with ids ``1..N`` in topological order, the readout last.
        n_in: input channels (the width of node 0).

    Raises ``ValueError`` for an edge from a node that does not exist or goes against the order (a cycle
    is named), a width mismatch, a node without incoming edges, or a node with no path to the readout.
    Usually built by :func:`DeepRNN` or :func:`build_network`.
    """

    nodes: tuple[Node, ...]
    n_in: int = eqx.field(static=True)

    def __init__(self, nodes: Sequence[Node], n_in: int):
        nodes = tuple(nodes)
        if not nodes or not all(isinstance(node, Node) for node in nodes):
            raise ValueError("nodes must be a non-empty sequence of deepeprop Node modules (the readout last)")
        if isinstance(n_in, bool) or not isinstance(n_in, int) or n_in <= 0:
            raise ValueError(f"n_in must be a positive int, got {n_in!r}")
        count = len(nodes)
        edges = [(p.source, k) for k, node in enumerate(nodes, start=1) for p in node.inputs]
        check_edges(edges, count, what="edges")
        widths = [n_in] + [node.size * node.outputs for node in nodes]  # what edges out of each node read
        for k, node in enumerate(nodes, start=1):
            if not node.inputs:
                raise ValueError(f"node {k} has no incoming edge: every node needs at least one")
            current_width = node.size * node.currents
            if node.b.shape != (current_width,):
                raise ValueError(f"node {k}'s bias must have shape (n c,) = ({current_width},), got {node.b.shape}")
            for p in node.inputs:
                if p.weight is None and widths[p.source] != current_width:
                    raise ValueError(f"residual edge ({p.source}, {k}) needs equal widths: node {p.source} gives "
                                     f"{widths[p.source]} numbers, node {k} takes {current_width} currents")
                if p.weight is not None and p.weight.shape != (current_width, widths[p.source]):
                    raise ValueError(f"edge ({p.source}, {k}) must have a weight of shape (n_{k} c_{k}, n_{p.source} "
                                     f"o_{p.source}) = {(current_width, widths[p.source])}, got {p.weight.shape}")
            _check_recurrence(k, node.recurrence, node.neuron)
            if not any(p.trainable for p in node.inputs) and node.recurrence == "diagonal":
                raise ValueError(f"node {k} with diagonal recurrence needs at least one trained incoming edge")
        self.nodes = nodes
        self.n_in = n_in
        graph = self.graph
        for k in graph.hidden:
            if graph.readout not in graph.descendants[k]:
                raise ValueError(f"node {k} has no path to the readout (node {count}): its parameters would get no "
                                 "gradient; connect it or remove it")

    # ----------------------------------------------------------------- structure
    @property
    def graph(self) -> Graph:
        """The static structure (parents, children, descendants, paths by node id; :class:`~deepeprop.Graph`)."""
        return graph_of(tuple(node.sources for node in self.nodes))

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """Every same-time edge as ``(src id, dst id)``, grouped by destination."""
        return tuple((p.source, k) for k, node in enumerate(self.nodes, start=1) for p in node.inputs)

    def node(self, k: int) -> Node:
        """The node with id ``k`` (``1..N``; the input, id ``0``, is no node): ``nodes[k - 1]``."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self.nodes):
            raise ValueError(f"k must be a node id in 1..{len(self.nodes)} (0 is the input, not a node), got {k!r}")
        return self.nodes[k - 1]

    @property
    def hidden(self) -> tuple[Node, ...]:
        """The hidden nodes (ids ``1..N-1``): every node but the readout."""
        return self.nodes[:-1]

    @property
    def layers(self) -> tuple[Node, ...]:
        """Deprecated name of :attr:`hidden` (the hidden nodes); kept because user code reads ``grads.layers``."""
        warnings.warn("Network.layers is deprecated: use Network.hidden (the hidden nodes)", DeprecationWarning,
                      stacklevel=2)
        return self.nodes[:-1]

    @property
    def readout(self) -> Node:
        """The output node (id ``N``)."""
        return self.nodes[-1]

    @property
    def readout_is_linear(self) -> bool:
        """Static: the readout is an integrator with ``k = 0``."""
        neuron = self.readout.neuron
        return isinstance(neuron, Integrator) and neuron.is_linear

    @property
    def n_out(self) -> int:
        return self.readout.size

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """The sizes of the hidden nodes (``DeepRNN``'s ``hidden`` argument)."""
        return tuple(node.size for node in self.hidden)

    @property
    def dtype(self):
        return self.readout.b.dtype

    # ----------------------------------------------------------------- dynamics
    def init_state(self, batch: int) -> NetState:
        """Zero state: a tuple of ``(B, n_k, d_k)`` arrays, the readout's last."""
        return tuple(node.neuron.init_state(batch, self.dtype) for node in self.nodes)

    def step(self, state: NetState, x: Array) -> tuple[NetState, Array]:
        """One time step: ``x`` (B, n_in) -> new state and readout ``y`` (B, n_out). Nodes in topological order."""
        outputs = [x]  # z by node id, (B, n o) each
        new_state = []
        for node, s_prev in zip(self.nodes, state):
            s = node.step(s_prev, [outputs[source] for source in node.sources])
            outputs.append(node.output(s))
            new_state.append(s)
        return tuple(new_state), outputs[-1]

    def run(self, inputs: Array, state: NetState | None = None, *, record: bool = False):
        """Run over a sequence: ``inputs`` (T, B, n_in) -> (final state, ``y`` (T, B, n_out)).

        With ``record=True`` also returns the hidden outputs ``z``: a tuple of (T, B, n_k o_k) arrays.

        ``inputs`` are cast to the model's dtype; a wrong rank, ``n_in`` or ``state`` raises ``ValueError`` (shapes
        and dtypes only, at trace time: nothing is added to the compiled loop). Neurons that leave their reset path
        to a rule (``detach_reset=None``) run with it kept: plain autodiff of this function is BPTT on the network as
        it runs.
        """
        inputs = check_array_shape("inputs", inputs, (None, None, self.n_in), "(T, B, n_in)")
        inputs = inputs.astype(self.dtype)
        if state is None:
            state = self.init_state(inputs.shape[1])
        else:
            expected = tuple((inputs.shape[1], node.size, node.neuron.state_size) for node in self.nodes)
            given = tuple(getattr(s, "shape", None) for s in state) if isinstance(state, (tuple, list)) else None
            if given != expected:
                raise ValueError(f"state must be a tuple of per-node states of shapes {expected} (model.init_state(B) "
                                 f"for B = {inputs.shape[1]}), got {given if given is not None else describe(state)}")
            state = tuple(jnp.asarray(s).astype(self.dtype) for s in state)

        def body(carry, x):
            new_state, y = self.step(carry, x)
            if record:
                zs = tuple(node.output(s) for node, s in zip(self.hidden, new_state[:-1]))
                return new_state, (y, zs)
            return new_state, y

        final, out = jax.lax.scan(body, state, inputs)
        if record:
            return final, out[0], out[1]
        return final, out


def resolve_dtype(dtype):
    """``jnp.float32``/``jnp.float64`` or their names -> a numpy dtype, with a clear error otherwise."""
    try:  # (jnp.dtype(None) is float64: None is refused, not read as a dtype)
        resolved = None if dtype is None else jnp.dtype(dtype)
    except TypeError:
        resolved = None
    # (None == np.dtype("float64") is True in numpy: test for None first)
    if resolved is None or resolved not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    if resolved == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs jax_enable_x64: call "
                         "jax.config.update('jax_enable_x64', True) before creating arrays")
    return resolved


# Deprecated names, kept for user code written before the rename (a checkpoint stores leaves only, no names).
_RENAMED = {"Layer": "Node", "Projection": "Edge"}


def renamed(name: str, module: str):
    """The object a deprecated ``name`` now has, with a warning: the lookup of ``module``'s ``__getattr__`` (this
    module's and the package's)."""
    if name in _RENAMED:
        warnings.warn(f"deepeprop.{name} is deprecated: use deepeprop.{_RENAMED[name]}", DeprecationWarning,
                      stacklevel=3)
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


def __getattr__(name: str):
    return renamed(name, __name__)
