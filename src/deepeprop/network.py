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

Constructors: :class:`Network` from built nodes (checks the graph), :func:`build_network` from layer
specifications and an edge list (any DAG), :func:`DeepRNN` for the chain with per-layer neurons and
recurrences and skip edges.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from typing import Any, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .graph import Graph, check_edges, graph_of
from .neurons import NEURONS, AbstractNeuron, Integrator, shared_constant_leak, takes_dtype
from .neurons.base import check_size, check_time_constant
from .validation import check_array_shape, check_bool, check_choice, check_number, describe

RECURRENCES = ("none", "diagonal", "dense")
READOUTS = ("linear", "leaky")
DTYPES = {"float32": jnp.float32, "float64": jnp.float64}
# The default of ``self_connections`` for the network builders (DeepRNN, LayerSpec, ``deepeprop train``): no
# neuron feeds itself through a dense W, as in the standard e-prop model (Bellec et al.'s code masks W's
# diagonal; NEST's e-prop networks connect without autapses). docs/concepts/networks.md, "The standard
# e-prop model".
SELF_CONNECTIONS = False

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


# ---------------------------------------------------------------------------- building networks
@dataclasses.dataclass
class LayerSpec:
    """One hidden node for :func:`build_network`.

    Args:
        size: the number of neurons.
        neuron: a name from :data:`deepeprop.NEURONS` (``"leaky"``, ``"lif"``, ``"alif"``), a neuron-model
            class (built as ``cls(size, **neuron_options, dtype=dtype)``, with ``tau_m``/``tau_a`` where it
            takes them), or an instance built for this size (then ``tau_m``, ``tau_a`` and
            ``neuron_options`` must be left unset).
        recurrence: ``"none"``, ``"diagonal"`` or ``"dense"``.
        self_connections: with dense recurrence, ``False`` (the default) masks ``W``'s diagonal; ``True`` keeps it.
        tau_m, tau_a: time constants in steps (a number or an ``(size,)`` array); ``None``: 20 and 200.
        neuron_options: further keyword arguments of a named neuron (``threshold``, ``detach_reset``, ...).
    """

    size: int
    neuron: Any = "lif"
    recurrence: str = "dense"
    self_connections: bool = SELF_CONNECTIONS
    tau_m: Any = None
    tau_a: Any = None
    neuron_options: dict | None = None


def _check_choice(value, name: str, choices) -> str:
    return check_choice(name, value, choices)


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


def _make_neuron(spec: LayerSpec, name: str, dtype, key) -> AbstractNeuron:
    """The neuron model of one layer spec (by name, class or instance), checked against its size and dtype."""
    neuron = spec.neuron
    if isinstance(neuron, AbstractNeuron):
        if spec.tau_m is not None or spec.tau_a is not None or spec.neuron_options:
            raise ValueError(f"{name}: tau_m, tau_a and neuron_options apply to a neuron given by name or class; "
                             f"the {type(neuron).__name__} instance is already built")
        if neuron.size != spec.size:
            raise ValueError(f"{name}: the {type(neuron).__name__} instance has {neuron.size} neurons, the layer "
                             f"{spec.size}: build it for the layer's size")
        for leaf in jax.tree_util.tree_leaves(eqx.filter(neuron, eqx.is_inexact_array)):
            if leaf.dtype != dtype:
                raise ValueError(f"{name}: the {type(neuron).__name__} instance holds {leaf.dtype} arrays, the network "
                                 f"is {jnp.dtype(dtype).name}: build it with dtype={jnp.dtype(dtype).name}")
        return neuron
    if isinstance(neuron, str):
        if neuron not in NEURONS:
            raise ValueError(f"{name} must be one of {tuple(NEURONS)}, a neuron-model class or instance, "
                             f"got {neuron!r}")
        cls = NEURONS[neuron]
    elif isinstance(neuron, type) and issubclass(neuron, AbstractNeuron):
        cls = neuron
    else:
        raise ValueError(f"{name} must be one of {tuple(NEURONS)}, a neuron-model class or instance "
                         f"(a deepeprop.AbstractNeuron), got {neuron!r}")
    options = spec.neuron_options or {}
    if not isinstance(options, dict):
        raise ValueError(f"neuron_options must be a dict of keyword arguments, got {options!r}")
    label = spec.neuron if isinstance(spec.neuron, str) else cls.__name__
    if not takes_dtype(cls):
        raise ValueError(f"{name}: the neuron class {cls.__name__} cannot be built: its __init__ takes no dtype "
                         f"keyword, which the neuron contract asks for (a class is built as "
                         f"cls(n, **neuron_options, dtype=dtype)); add dtype=jnp.float32 to {cls.__name__}.__init__ "
                         "and make its arrays in that dtype, or pass an instance built for the layer")
    check_neuron_options(cls, options, label)
    kwargs = dict(options, dtype=dtype)
    if _accepts(cls, "key") and "key" not in kwargs:  # a model that draws its constants (the LRU's ring)
        kwargs["key"] = key
    for tau_name, default in (("tau_m", 20.0), ("tau_a", 200.0)):
        value = getattr(spec, tau_name)
        if _accepts(cls, tau_name):
            kwargs[tau_name] = default if value is None else value
        elif value is not None:
            raise ValueError(f"{tau_name} not accepted by neuron {cls.__name__} ({name})")
    try:
        return cls(spec.size, **kwargs)
    except TypeError as err:
        given = f" with neuron_options {options}" if options else ""
        raise ValueError(f"{name}: building neuron {label!r} as {cls.__name__}({spec.size}, "
                         f"{', '.join(f'{k}=...' for k in kwargs)}){given} failed: {err}") from None


# keyword arguments the network passes itself, not neuron options
_BUILDER_ARGUMENTS = ("self", "n", "dtype", "key")


def neuron_option_names(cls) -> tuple[str, ...] | None:
    """The neuron options ``cls``'s ``__init__`` takes (keywords other than ``n``, ``dtype``, ``key``, and the time
    constants, which have flags of their own); ``None`` if it takes ``**kwargs`` (anything goes)."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    size = positional[1].name if len(positional) > 1 else None  # the first argument after self: n
    return tuple(p.name for p in parameters if p.name not in _BUILDER_ARGUMENTS and p.name != size
                 and p.kind is not inspect.Parameter.VAR_POSITIONAL and p.name not in ("tau_m", "tau_a"))


def check_neuron_options(cls, options: dict, label: str) -> None:
    """Refuse neuron options that ``cls`` does not take, listing the ones it does (as methods and tasks do)."""
    accepted = neuron_option_names(cls)
    if accepted is None:
        return
    times = [name for name in ("tau_m", "tau_a") if _accepts(cls, name)]
    unknown = sorted(set(options) - set(accepted) - set(times))
    if unknown:
        valid = ", ".join(accepted) if accepted else "none"
        if times:
            valid += f" (time constants: {', '.join(times)}, given as the network's {' and '.join(times)})"
        raise ValueError(f"neuron_options not accepted by neuron {label!r}: {unknown}; its options: {valid}")


def build_network(n_in: int, layers: Sequence[LayerSpec], n_out: int, *, edges: Sequence[tuple[int, int]],
                  key, readout: str = "leaky", dtype=jnp.float32, tau_out: float = 20.0, input_gain: float = 1.0,
                  recurrent_gain: float = 1.0, residual: Sequence[tuple[int, int]] = ()) -> Network:
    """A network from layer specifications and any acyclic same-time edge list (the general constructor).

    Args:
        n_in: input channels (node ``0``).
        layers: one :class:`LayerSpec` per hidden node, ids ``1..L`` in this order.
        n_out: readout units (node ``L+1``).
        edges: ``(src, dst)`` pairs, ``src`` in ``0..L``, ``dst`` in ``1..L+1``, ``src < dst``; a node's incoming
            edges make the column blocks of its ``theta`` in the order given.
        key: a ``jax.random`` key. readout: ``"linear"`` or ``"leaky"``. dtype: float32 or float64.
        tau_out: the leaky readout's time constant (``k = exp(-1/tau_out)``).
        input_gain, recurrent_gain: scale of the initial edge weights and ``W``.
        residual: fixed identity edges ``(src, dst)`` (no parameters), e.g. ``(1, 3)`` adds ``z[1]`` to node 3's
            currents; the source's width ``n o`` must equal the destination's ``n c``.

    Returns:
        A :class:`Network` with nodes ``1..L+1`` (the readout last), checked.

    Example -- two parallel layers joined by a third, which also sees the input::

        net = dp.build_network(4, [dp.LayerSpec(16, "lif"), dp.LayerSpec(16, "leaky", recurrence="diagonal"),
                                   dp.LayerSpec(8, "alif")], 2,
                               edges=[(0, 1), (0, 2), (1, 3), (2, 3), (0, 3), (3, 4)], key=jax.random.PRNGKey(0))

    Initialisation: edge weights ``~ N(0, gain^2 / fan_in)`` with ``fan_in`` the node's total input width, dense
    ``W ~ N(0, 1/n)``, diagonal ``W ~ U(-0.5, 0.5)``, readout weights ``~ N(0, 1/fan_in)``, biases zero; rows
    are scaled by the neuron's :meth:`~deepeprop.AbstractNeuron.input_scale` (``1 - a`` for leaky rate units),
    and readout edges from non-spiking nodes by ``1 - k``. Key use: node ``k`` draws from
    ``split(key, L + 1)[k - 1]`` (its first edge and ``W``), further edges from ``fold_in`` of that key.
    """
    n_in = check_size("n_in", n_in)
    n_out = check_size("n_out", n_out)
    if isinstance(layers, (str, bytes)) or not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError(f"layers must be a non-empty list of LayerSpec, got {layers!r}")
    for i, spec in enumerate(layers):
        if not isinstance(spec, LayerSpec):
            raise ValueError(f"layers[{i}] must be a deepeprop.LayerSpec, got {spec!r}")
    _check_choice(readout, "readout", READOUTS)
    dtype = resolve_dtype(dtype)
    if not isinstance(key, jax.Array) or key.shape not in ((2,), ()):
        raise ValueError("key must be a jax.random key (jax.random.PRNGKey(seed) or jax.random.key(seed))")
    for gain_name, gain in (("input_gain", input_gain), ("recurrent_gain", recurrent_gain), ("tau_out", tau_out)):
        check_number(gain_name, gain, minimum=0, exclusive_minimum=True)
    if isinstance(edges, (str, bytes)) or not isinstance(edges, (list, tuple)):
        raise ValueError(f"edges must be a list of (src, dst) pairs, got {edges!r}")
    count = len(layers) + 1
    if isinstance(residual, (str, bytes)) or not isinstance(residual, (list, tuple)):
        raise ValueError(f"residual must be a list of (src, dst) pairs, got {residual!r}")
    residual = [tuple(e) if isinstance(e, list) else e for e in residual]
    for edge in residual:
        if edge in [tuple(e) if isinstance(e, list) else e for e in edges]:
            raise ValueError(f"residual: edge {edge} is also a trained edge; give it once")
    all_edges = check_edges(list(edges) + list(residual), count)
    fixed = set(all_edges[len(edges):])
    sizes = [n_in] + [check_size(f"layers[{i}].size", spec.size) for i, spec in enumerate(layers)] + [n_out]
    incoming = {k: [s for s, d in all_edges if d == k] for k in range(1, count + 1)}

    keys = jax.random.split(key, count)
    k_out = math.exp(-1.0 / tau_out) if readout == "leaky" else 0.0
    nodes = []
    neurons = []
    widths = [n_in]  # the output width of each node so far (n o)
    for k in range(1, count + 1):
        is_readout = k == count
        node_key = keys[k - 1]
        ku, kw = jax.random.split(node_key)
        if is_readout:
            spec, cell = None, Integrator(n_out, decay=k_out)
        else:
            spec = layers[k - 1]
            _check_choice(spec.recurrence, f"layers[{k - 1}].recurrence", RECURRENCES)
            check_bool(f"layers[{k - 1}].self_connections", spec.self_connections)
            cell = _make_neuron(spec, f"layers[{k - 1}].neuron", dtype, jax.random.fold_in(node_key, _NEURON_STREAM))
            _check_recurrence(k, spec.recurrence, cell)
        neurons.append(cell)
        n, c = sizes[k], cell.n_currents
        sources = incoming[k]
        if not sources:
            raise ValueError(f"node {k} has no incoming edge: every node needs at least one")
        fan_in = sum(widths[s] for s in sources if (s, k) not in fixed)
        projections = []
        for index, source in enumerate(sources):
            if (source, k) in fixed:
                if widths[source] != n * c:
                    raise ValueError(f"residual edge ({source}, {k}) needs equal widths: node {source} gives "
                                     f"{widths[source]} numbers, node {k} takes {n * c} currents")
                projections.append(None)
                continue
            k_edge = (node_key if is_readout else ku) if index == 0 else jax.random.fold_in(node_key, index)
            shape = (n * c, widths[source])
            if is_readout:  # (1 - k) / sqrt(fan_in), undone for spiking (and input) sources
                weight = jax.random.normal(k_edge, shape, dtype) * ((1.0 - k_out) / math.sqrt(fan_in))
                if source == 0 or neurons[source - 1].spiking:
                    weight = weight / (1.0 - k_out)
            else:
                weight = jax.random.normal(k_edge, shape, dtype) * (input_gain / math.sqrt(fan_in))
            projections.append(weight)
        W = None
        recurrence, self_connections = "none", True
        if not is_readout:
            recurrence, self_connections = spec.recurrence, spec.self_connections or spec.recurrence != "dense"
            if recurrence == "dense":
                W = jax.random.normal(kw, (n, n), dtype) * (recurrent_gain / math.sqrt(n))
                if not self_connections:
                    W = W * (1.0 - jnp.eye(n, dtype=dtype))
            elif recurrence == "diagonal":
                W = jax.random.uniform(kw, (n,), dtype, -0.5, 0.5) * recurrent_gain
            scale = jnp.asarray(cell.input_scale(), dtype)
            per_row = scale.reshape(-1, 1) if scale.ndim == 1 else scale  # (), (n, 1) or (n, c)
            row_scale = jnp.broadcast_to(per_row, (n, c)).reshape(n * c)  # one scale per current row
            projections = [None if w is None else w * row_scale[:, None] for w in projections]
            if W is not None:
                W = W * (row_scale[:, None] if W.ndim == 2 else row_scale)
        inputs = tuple(Edge(w, source) for w, source in zip(projections, sources))
        nodes.append(Node(inputs, W, jnp.zeros((n * c,), dtype), cell, recurrence, self_connections=self_connections))
        widths.append(n * cell.n_outputs)
    return Network(nodes, n_in)


_NEURON_STREAM = 0x4E52  # folded into a node's key for a neuron model that draws its own constants


def _per_layer(value, depth: int, name: str) -> list:
    """One value for every layer, or a list with one entry per layer."""
    if isinstance(value, (list, tuple)):
        if len(value) != depth:
            raise ValueError(f"{name} must be one value or a list of {depth} (one per hidden layer), got {len(value)}")
        return list(value)
    return [value] * depth


def DeepRNN(n_in: int, hidden: Sequence[int], n_out: int, *, neuron="lif", recurrence="dense", readout: str = "leaky",
            key, dtype=jnp.float32, tau_m=None, tau_a=None, tau_out: float = 20.0, neuron_options=None,
            input_gain: float = 1.0, recurrent_gain: float = 1.0, self_connections=SELF_CONNECTIONS,
            skip: Sequence[tuple[int, int]] = (), residual: Sequence[tuple[int, int]] = ()) -> Network:
    """A deep recurrent (rate or spiking) network: the chain ``input -> 1 -> ... -> L -> readout``, plus skips.

    Args:
        n_in: input channels.
        hidden: hidden layer sizes, bottom to top (any depth >= 1), e.g. ``[64, 64, 64]``.
        n_out: readout units.
        neuron: one value for every layer or a list with one per layer; each a name (``"leaky"`` (rate,
            ``tanh``), ``"lif"``, ``"alif"``), a neuron-model class (yours, subclassing
            :class:`~deepeprop.AbstractNeuron`), or an instance built for that layer's size (``dp.LIF(5, tau_m=12.0)``).
        recurrence: within-layer ``W_l``: ``"none"``, ``"diagonal"`` (element-wise) or ``"dense"``; one or a list.
        readout: ``"linear"`` (``y = W_out z + b_out``) or ``"leaky"`` (``y[t] = k*y[t-1] + W_out z + b_out``).
        key: a ``jax.random`` key.
        dtype: ``jnp.float32`` (default) or ``jnp.float64``.
        tau_m: membrane time constant in time steps (default 20): a number (one leak shared by the layer), an
            ``(n_l,)`` array (per neuron), or a list with one of those per hidden layer. Fixed, not trained.
        tau_a: adaptation time constant (ALIF only, default 200), same forms as ``tau_m``.
        tau_out: the leaky readout's time constant (``k = exp(-1/tau_out)``).
        neuron_options: keyword arguments of the named neuron models (``threshold``, ``gamma``, ``beta``,
            ``surrogate``, ``detach_reset``): one dict, or a list with one per layer.
        input_gain, recurrent_gain: scale of the initial edge weights and ``W``.
        self_connections: with dense recurrence, ``False`` (the default, the standard e-prop model) masks
            ``W``'s diagonal to zero (no neuron feeds itself); ``True`` keeps it; one or a list. Without
            self-connections e-prop's eligibility factorises when the neuron's leak is shared.
        skip: extra same-time edges ``(i, j)``, ``i < j``, where ``0`` is the input, ``1..L`` the hidden layers and
            ``L+1`` the readout, e.g. ``[(1, 3)]`` or ``[(0, 2), (1, 4)]``.
        residual: fixed identity edges ``(i, j)`` (no parameters; the source's ``n o`` equal to the
            destination's ``n c``); one on a chain edge replaces it. The block ``x -> lru -> gelu -> (+ x)`` is
            ``neuron=["lru", "gelu", "identity"], residual=[(2, 3), (0, 3)]`` (node 3 sums the gelu layer and
            the input, as wide as both).

    Returns a :class:`Network`. Without ``skip`` and with one neuron and recurrence it is the model (and the
    random weights) of the first version; see :func:`build_network` for the initialisation.
    """
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, (list, tuple)) or len(hidden) == 0:
        raise ValueError(f"hidden must be a non-empty list of positive ints (layer sizes), got {hidden!r}")
    hidden = [check_size(f"hidden[{i}]", h) for i, h in enumerate(hidden)]
    depth = len(hidden)
    neurons = _per_layer(neuron, depth, "neuron")
    recurrences = _per_layer(recurrence, depth, "recurrence")
    for i, value in enumerate(recurrences):
        _check_choice(value, "recurrence" if not isinstance(recurrence, (list, tuple)) else f"recurrence[{i}]",
                      RECURRENCES)
    connections = _per_layer(self_connections, depth, "self_connections")
    for value in connections:
        check_bool("self_connections", value)
    options = _per_layer(neuron_options, depth, "neuron_options")
    for value in options:
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"neuron_options must be a dict (or a list of one dict per layer), got {value!r}")
    tau_ms = _per_layer(tau_m, depth, "tau_m")
    tau_as = _per_layer(tau_a, depth, "tau_a")
    for name, values in (("tau_m", tau_ms), ("tau_a", tau_as)):  # checked even where a layer's neuron has none
        for i, value in enumerate(values):
            if value is None:
                continue
            label = f"{name}[{i}]" if isinstance(tau_m if name == "tau_m" else tau_a, (list, tuple)) else name
            shape = check_time_constant(label, value).shape
            if shape not in ((), (hidden[i],)):
                raise ValueError(f"{label} must be a scalar or an array of shape ({hidden[i]},), got shape {shape}")
    specs = []
    for i in range(depth):
        named = not isinstance(neurons[i], AbstractNeuron)
        if isinstance(neurons[i], str) and neurons[i] not in NEURONS:
            raise ValueError(f"neuron must be one of {tuple(NEURONS)}, a neuron-model class or instance, "
                             f"got {neurons[i]!r}")
        cls = NEURONS.get(neurons[i]) if isinstance(neurons[i], str) else neurons[i]
        takes = {name: named and isinstance(cls, type) and _accepts(cls, name) for name in ("tau_m", "tau_a")}
        specs.append(LayerSpec(hidden[i], neurons[i], recurrences[i], connections[i],
                               tau_m=tau_ms[i] if takes["tau_m"] else None,  # time constants where a model has them
                               tau_a=tau_as[i] if takes["tau_a"] else None,
                               neuron_options=options[i] if named else None))
    if all(isinstance(n, AbstractNeuron) for n in neurons) and (
            tau_m is not None or tau_a is not None or neuron_options):
        raise ValueError("tau_m, tau_a and neuron_options apply to neurons given by name or class; every "
                         "neuron here is an instance, already built")
    for edges, what in ((skip, "skip"), (residual, "residual")):
        if isinstance(edges, (str, bytes)) or not isinstance(edges, (list, tuple)):
            raise ValueError(f"{what} must be a list of (i, j) pairs, got {edges!r}")
    trained, fixed = chain_edges(depth, skip, residual)
    return build_network(n_in, specs, n_out, edges=trained, key=key, readout=readout, dtype=dtype, tau_out=tau_out,
                         input_gain=input_gain, recurrent_gain=recurrent_gain, residual=fixed)


def chain_edges(depth: int, skip=(), residual=(), *, skip_name: str = "skip", residual_name: str = "residual"):
    """The chain ``0 -> 1 -> ... -> depth + 1`` with trained ``skip`` edges and fixed identity ``residual`` edges
    (one on a chain edge replaces it), checked: ``(trained edges, fixed edges)``. Error messages name the
    argument by ``skip_name`` / ``residual_name``."""
    def pairs(edges):
        return [tuple(e) if isinstance(e, list) else e for e in edges]

    chain = [(i, i + 1) for i in range(depth + 1)]
    skip, residual = pairs(skip), pairs(residual)
    for edge in skip:
        if isinstance(edge, tuple) and len(edge) == 2 and edge in chain:
            raise ValueError(f"{skip_name}: edge {edge} is already in the chain (a skip must jump over a layer)")
    extra = [edge for edge in residual if edge not in chain]
    check_edges(chain + extra, depth + 1, what=residual_name)
    check_edges(chain + skip + extra, depth + 1, what=skip_name)
    return [edge for edge in chain if edge not in residual] + skip, residual


def _accepts(cls, name: str) -> bool:
    """Whether the constructor of ``cls`` takes the keyword ``name``."""
    return name in inspect.signature(cls.__init__).parameters


# Deprecated names, kept for user code written before the rename (a checkpoint stores leaves only, no names).
_RENAMED = {"Layer": "Node", "Projection": "Edge"}


def __getattr__(name: str):
    if name in _RENAMED:
        warnings.warn(f"deepeprop.{name} is deprecated: use deepeprop.{_RENAMED[name]}", DeprecationWarning,
                      stacklevel=2)
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
