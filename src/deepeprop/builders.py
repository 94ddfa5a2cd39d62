"""Building networks: :func:`build_network` from layer specifications (:class:`LayerSpec`) and any acyclic edge list,
:func:`DeepRNN` for the chain ``input -> 1 -> ... -> L -> readout`` with skip and residual edges, and the
construction of each layer's neuron model from a name, a class or an instance (with its options checked). Node ids as
in :mod:`deepeprop.network`: ``0`` the input, ``1..L`` the hidden nodes, ``L + 1`` the readout.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from .graph import check_edges
from .network import RECURRENCES, Edge, Network, Node, _check_recurrence, resolve_dtype
from .neurons import NEURONS, AbstractNeuron, Integrator, takes_dtype
from .neurons.base import check_size, check_time_constant
from .validation import check_bool, check_choice, check_number

READOUTS = ("linear", "leaky")
# The default of ``self_connections`` for the network builders (DeepRNN, LayerSpec, ``deepeprop train``): no
# neuron feeds itself through a dense W, as in the standard e-prop model (Bellec et al.'s code masks W's
# diagonal; NEST's e-prop networks connect without autapses). docs/concepts/networks.md, "The standard
# e-prop model".
SELF_CONNECTIONS = False


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
    check_choice("readout", readout, READOUTS)
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
            check_choice(f"layers[{k - 1}].recurrence", spec.recurrence, RECURRENCES)
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
        check_choice("recurrence" if not isinstance(recurrence, (list, tuple)) else f"recurrence[{i}]", value,
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
