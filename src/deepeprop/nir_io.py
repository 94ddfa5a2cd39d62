"""Export to and import from NIR, the Neuromorphic Intermediate Representation (``nir`` 1.0.x).

    graph = dp.to_nir(model, dt=1e-3)           # a nir.NIRGraph: nir.write("model.nir", graph)
    model = dp.from_nir(nir.read("model.nir"), dt=1e-3)

**What maps.** A node of the network becomes a NIR neuron node: :class:`~deepeprop.LIF` -> ``nir.LIF``
(``nir.CubaLIF`` with an instantaneous synapse is read as LIF too), a leaky readout (or any
:class:`~deepeprop.Integrator` with ``k > 0``) -> ``nir.LI``; a linear readout (``k = 0``) has no neuron node: its
edges go straight into ``nir.Output``, which sums them. Each trained edge ``U_{k<-j}`` becomes ``nir.Linear``
(the node's bias ``b_k`` rides on its first edge, which is then ``nir.Affine``); a residual (identity) edge is a
plain NIR edge; within-node recurrence is a cycle through the node: dense ``W`` -> ``nir.Linear``, diagonal ``W``
-> ``nir.Linear`` of ``diag(W)`` marked ``recurrence="diagonal"`` in its metadata (as snnTorch writes RLeaky's
``V``; nirtorch, which snnTorch and norse import through, has no ``nir.Scale``; a Scale is still read, and so is an
unmarked, exactly diagonal recurrent Linear from another tool). Skip edges and any DAG of nodes map edge for
edge. NIR node names: ``input``, ``layer1`` ..
``layerL``, ``readout``, ``output``, and ``layer2.from_layer1``, ``layer1.recurrent`` for the weights.

**Time.** Our models are discrete-time: per step ``v[t] = a*v[t-1] + I[t]`` with ``a = exp(-1/tau)``, ``tau`` in
steps. NIR's neurons are continuous-time ODEs, ``tau_nir dv/dt = (v_leak - v) + r*I``. With the time step
``dt`` (seconds, or any unit; the same on both sides) and the input held over each step:

* ``discretisation="exact"`` (default): the ODE's exact solution over one step, ``v <- exp(-dt/tau_nir)*v +
  (1 - exp(-dt/tau_nir))*r*I``. The mapping is ``tau_nir = tau * dt`` and ``r = 1/(1 - a)``: our model *is* the
  ODE sampled every ``dt``.
* ``discretisation="euler"``: forward Euler, ``v <- (1 - dt/tau_nir)*v + (dt/tau_nir)*r*I``, as most simulators
  step NIR graphs (Spyx, snnTorch). The mapping is ``tau_nir = dt/(1 - a)`` (so ``1 - dt/tau_nir = a``) and again
  ``r = 1/(1 - a)``. Use it to hand a model to a simulator that steps with Euler: the same leak per step.

The two differ by ``O(1/tau^2)`` per step (``a = exp(-1/tau)`` against ``1 - 1/tau``: 0.9512 and 0.9500 for
``tau = 20``); importing a graph with the wrong setting gives a slightly different leak, not an error. The
graph's metadata records ``dt`` and ``discretisation``; :func:`from_nir` reads the discretisation from there
when the graph came from deepeprop, and checks that ``dt`` agrees.

**Input gain.** The ODE scales its input current by ``dt/tau_nir`` (``1 - a`` under Euler); our step adds it
whole. ``gain="r"`` (default) writes the factor back as the neuron's ``r = 1/(1 - a)`` (``= tau_nir/dt`` under
Euler, snnTorch's convention) and the weights as trained; ``gain="weights"`` writes ``r = 1`` and multiplies every
weight and bias into the node by ``1/(1 - a)``, for simulators that ignore ``r`` (norse 1.1.0).

**dtype.** :func:`from_nir` builds the model in the dtype deepeprop wrote the graph in (recorded in its metadata),
else in the one the graph's arrays share (snnTorch writes float32), and asks for ``dtype`` when they are mixed.

**Spikes and reset.** Our LIF spikes when ``v[t] > thr`` and resets *by subtraction* at the next step
(``v[t+1] = a*v[t] + I[t+1] - thr*z[t]``), as Spyx runs a NIR ``LIF`` and as snnTorch's ``Leaky`` and ``RLeaky``
run with their default reset; NIR's own definition resets to ``v_reset`` at once, and so do snnTorch's
``import_from_nir`` and norse's ``from_nir``. The export writes ``v_reset = 0`` and ``reset = "subtract"`` in the
node's metadata; the import reads every LIF as resetting by subtraction (right for graphs snnTorch writes from its
default neurons) and refuses a ``v_reset`` other than 0. In discrete time the two resets differ after a neuron's
first spike (``docs/concepts/nir.md`` gives the numbers). snnTorch and norse see a spike downstream in the step
it is emitted, as we do. Simulators also differ in
when a spike is seen downstream: Spyx emits a layer's spike one step after ours (its layer ``l`` lags ours by
``l`` steps; the test shows the rest is identical).

**What does not map, and is refused** (``ValueError`` naming the node): :class:`~deepeprop.ALIF` (NIR has no
threshold adaptation, whatever its ``beta``), a LIF with a refractory period (``n_ref > 0``: NIR's LIF has none),
:class:`~deepeprop.LeakyRate` (NIR has no ``tanh``), the LRU and minGRU cells and the
memoryless ``gelu``/``relu``/``tanh``/``identity`` layers, per-neuron thresholds, per-neuron leaks of an ``LI``
(our :class:`~deepeprop.Integrator` shares one), recurrence between two different nodes, and NIR nodes other
than Input, Output, Affine, Linear, Scale, LIF, CubaLIF (instantaneous synapse), LI, 1-D Flatten and subgraphs
(Spyx writes recurrent layers as subgraphs; they are inlined). **What is kept only for deepeprop**: training
choices NIR has no field for (the surrogate, ``gamma``, ``detach_reset``) go in the LIF node's metadata and come
back on import; other tools ignore them. A ``CubaLIF`` with a real synaptic filter has no model here.

Why this file is long: NIR export and import are one mapping read in two directions. The node types, the time-
constant discretisations and the gains are defined once here and both directions must stay each other's inverse
(tests/test_nir.py round-trips every form); split into two files, each conversion would have its two halves apart.
"""
from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .network import Node, Network, Edge, resolve_dtype
from .version import __version__
from .neurons import LIF, SURROGATES, AbstractNeuron, Integrator

DISCRETISATIONS = ("exact", "euler")
GAINS = ("r", "weights")
PRODUCER = "deepeprop"


def _nir():
    try:
        import nir
    except ModuleNotFoundError:
        raise ModuleNotFoundError("NIR export and import need the nir package: "
                                  "python -m pip install 'deepeprop[nir]' (or: pip install nir)") from None
    return nir


def _check_dt(dt) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be a finite number > 0 (the time step, in the unit of NIR's time constants), "
                         f"got {dt!r}")
    return float(dt)


def _check_discretisation(value) -> str:
    if value not in DISCRETISATIONS:
        raise ValueError(f"discretisation must be one of {DISCRETISATIONS}, got {value!r}")
    return value


def tau_to_nir(decay, dt: float, discretisation: str = "exact") -> np.ndarray:
    """NIR's continuous time constant for the per-step leak ``decay`` (``a`` in ``v <- a v + I``).

    Args:
        decay: ``a`` in ``(0, 1)``, a scalar or an array.
        dt: the time step.
        discretisation: ``"exact"`` (``tau_nir = -dt / log(a) = tau_steps * dt``) or ``"euler"``
            (``tau_nir = dt / (1 - a)``).

    Returns:
        ``tau_nir``, the shape of ``decay``, float64.
    """
    a = np.asarray(decay, dtype=np.float64)
    if discretisation == "exact":
        return -dt / np.log(a)
    return dt / (1.0 - a)


def decay_from_nir(tau, dt: float, discretisation: str = "exact") -> np.ndarray:
    """The per-step leak ``a`` of a NIR time constant: the inverse of :func:`tau_to_nir`.

    Args:
        tau: ``tau_nir`` (> 0), a scalar or an array.
        dt: the time step.
        discretisation: ``"exact"`` (``a = exp(-dt / tau_nir)``) or ``"euler"`` (``a = 1 - dt / tau_nir``).

    Returns:
        ``a``, the shape of ``tau``, float64.
    """
    tau = np.asarray(tau, dtype=np.float64)
    if discretisation == "exact":
        return np.exp(-dt / tau)
    return 1.0 - dt / tau


# ---------------------------------------------------------------------------- export
def _node_names(model: Network) -> list[str]:
    """NIR names by node id: ``input``, ``layer1`` .. ``layerL``, ``readout``."""
    return ["input"] + [f"layer{k}" for k in range(1, len(model.nodes))] + ["readout"]


def _input_gain(neuron: AbstractNeuron) -> np.ndarray | None:
    """``1/(1 - a)`` per neuron, NIR's ``r`` for our ``v <- a v + I``; ``None`` for a linear readout."""
    if isinstance(neuron, Integrator):
        return None if neuron.decay == 0.0 else np.full((neuron.size,), 1.0 / (1.0 - neuron.decay))
    if type(neuron) is LIF:
        return 1.0 / (1.0 - np.broadcast_to(np.asarray(neuron.decay, dtype=np.float64), (neuron.size,)))
    return None


def _neuron_to_nir(nir, neuron: AbstractNeuron, name: str, dt: float, discretisation: str, is_readout: bool):
    """The NIR neuron node of one of our neuron models, or ``None`` for a linear readout."""
    n = neuron.size
    if isinstance(neuron, Integrator):
        if neuron.decay == 0.0:
            if is_readout:
                return None
            raise ValueError(f"node {name!r}: a hidden Integrator with k = 0 (a summing node) has no NIR neuron node")
        a = np.full((n,), neuron.decay)
        return nir.LI(tau=tau_to_nir(a, dt, discretisation), r=1.0 / (1.0 - a), v_leak=np.zeros(n),
                      metadata={"deepeprop_neuron": "Integrator"})
    if type(neuron) is LIF and neuron.n_ref:
        raise ValueError(f"node {name!r}: LIF with a refractory period (n_ref={neuron.n_ref}) cannot be written as "
                         "NIR (NIR's LIF has no refractory period: a graph without it would run another network); "
                         "export a LIF built with n_ref=0")
    if type(neuron) is LIF:
        a = np.broadcast_to(np.asarray(neuron.decay, dtype=np.float64), (n,))
        return nir.LIF(tau=tau_to_nir(a, dt, discretisation), r=1.0 / (1.0 - a), v_leak=np.zeros(n),
                       v_threshold=np.full((n,), neuron.threshold), v_reset=np.zeros(n),
                       metadata={"deepeprop_neuron": "LIF", "reset": "subtract",
                                 "surrogate": SURROGATES[neuron.surrogate_id], "gamma": neuron.gamma,
                                 # None (the rule decides) is left out: read back as None
                                 **({} if neuron.detach_reset is None else {"detach_reset": neuron.detach_reset})})
    reasons = {"ALIF": "NIR has no threshold adaptation", "LeakyRate": "NIR has no tanh output",
               "LRU": "NIR has no complex diagonal recurrence", "MinGRU": "NIR has no gated cells"}
    kind = type(neuron).__name__
    raise ValueError(f"node {name!r}: {kind} cannot be written as NIR ({reasons.get(kind, 'no NIR node for it')}); "
                     "NIR export covers LIF layers and Integrator (leaky or linear) readouts")


def to_nir(model: Network, *, dt: float, discretisation: str = "exact", gain: str = "r"):
    """Write a network as a NIR graph (see the module docstring for the mapping).

    Args:
        model: a :class:`~deepeprop.Network` of LIF (and leaky-integrator) nodes with a leaky or linear readout.
        dt: the time step one of our steps stands for, in the unit of NIR's time constants (e.g. ``1e-3`` s).
        discretisation: how NIR's continuous time constants are set: ``"exact"`` (``tau_nir = tau * dt``, the
            ODE's exact solution per step) or ``"euler"`` (``tau_nir = dt / (1 - a)``, for Euler simulators).
        gain: where the input gain ``1/(1 - a)`` of a neuron node goes (the continuous-time ODE scales its input
            current by ``dt/tau_nir``; our step adds it whole): ``"r"`` (default) writes it as the node's ``r``
            and the weights as trained; ``"weights"`` writes ``r = 1`` and multiplies every weight and bias into
            the node by it, for simulators that ignore ``r`` (norse 1.1.0). Both run the same network.

    Returns:
        A ``nir.NIRGraph`` with nodes ``input`` (shape ``(n_in,)``), ``layer1`` .. ``layerL``, ``readout`` (when the
        readout is leaky), ``output`` (``(n_out,)``) and one weight node per trained edge and recurrence;
        ``metadata`` records ``dt``, ``discretisation`` and the producer. Arrays are in the model's dtype.

    Raises:
        ValueError: a node NIR cannot express (named), or a bad ``dt`` / ``discretisation``.
    """
    nir = _nir()
    if not isinstance(model, Network):
        raise ValueError(f"model must be a deepeprop.Network (DeepRNN or build_network), got {type(model).__name__}")
    dt = _check_dt(dt)
    discretisation = _check_discretisation(discretisation)
    if gain not in GAINS:
        raise ValueError(f"gain must be one of {GAINS}, got {gain!r}")
    names = _node_names(model)
    count = len(model.nodes)
    np_dtype = np.dtype(model.dtype)
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([model.n_in])),
                             "output": nir.Output(output_type=np.array([model.n_out]))}
    edges: list[tuple[str, str]] = []
    for k, node in enumerate(model.nodes, start=1):
        name = names[k]
        neuron = _neuron_to_nir(nir, node.neuron, name, dt, discretisation, is_readout=k == count)
        if neuron is not None and gain == "weights":  # the input gain goes into the weights instead (below)
            neuron.r = np.ones_like(neuron.r)
        target = name if neuron is not None else "output"
        if neuron is not None:
            nodes[name] = neuron
            if k == count:
                edges.append((name, "output"))
        row = _input_gain(node.neuron) if gain == "weights" else None  # (n,) or None: scales what flows in

        def scale(m, row=row):  # rows of what flows into the node (n, ...) times the gain, under gain="weights"
            return m if row is None else row.reshape((-1,) + (1,) * (m.ndim - 1)) * m

        bias = np.asarray(scale(np.asarray(node.b, dtype=np.float64)), dtype=np_dtype)
        bias_written = False
        for p in node.inputs:
            source = names[p.source]
            if p.weight is None:  # a residual edge: NIR's edges are identities
                if row is None:
                    edges.append((source, target))
                else:  # the gain needs a node of its own
                    key = f"{name}.from_{source}"
                    nodes[key] = nir.Linear(weight=np.diag(row).astype(np_dtype))
                    edges += [(source, key), (key, target)]
                continue
            weight = np.asarray(scale(np.asarray(p.weight, dtype=np.float64)), dtype=np_dtype)
            key = f"{name}.from_{source}"
            if bias_written:
                nodes[key] = nir.Linear(weight=weight)
            else:
                nodes[key] = nir.Affine(weight=weight, bias=bias)
                bias_written = True
            edges += [(source, key), (key, target)]
        if not bias_written and np.any(bias != 0):  # only identity edges in: the bias enters from the input
            key = f"{name}.bias"
            nodes[key] = nir.Affine(weight=np.zeros((bias.shape[0], model.n_in), np_dtype), bias=bias)
            edges += [("input", key), (key, target)]
        if node.recurrence != "none":
            key = f"{name}.recurrent"
            if node.recurrence == "dense":  # without self-connections W_jj = 0 stays fixed: kept for deepeprop
                matrix = scale(np.asarray(node.recurrent_matrix(), dtype=np.float64))
                nodes[key] = nir.Linear(weight=np.asarray(matrix, dtype=np_dtype),
                                        metadata={"recurrence": "dense", "self_connections": node.self_connections})
            else:  # a diagonal as a Linear (snnTorch writes RLeaky's V so; nirtorch has no map for Scale)
                matrix = np.diag(scale(np.asarray(node.W, dtype=np.float64)))
                nodes[key] = nir.Linear(weight=np.asarray(matrix, dtype=np_dtype), metadata={"recurrence": "diagonal"})
            edges += [(name, key), (key, name)]
    metadata = {"source": PRODUCER, "deepeprop_version": __version__, "dt": dt, "discretisation": discretisation,
                "gain": gain, "dtype": np_dtype.name,
                "time_constants": "tau_nir = tau_steps * dt" if discretisation == "exact" else "tau_nir = dt / (1 - a)"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


# ---------------------------------------------------------------------------- import
def _meta(node, key, default=None):
    value = (getattr(node, "metadata", None) or {}).get(key, default)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _inline(nir, nodes: dict, edges: list) -> tuple[dict, list]:
    """Inline subgraphs (``name.inner``) and drop pass-through nodes (their Input/Output, 1-D Flatten)."""
    nodes, edges = dict(nodes), list(edges)
    while any(isinstance(node, nir.NIRGraph) for node in nodes.values()):
        name = next(key for key, node in nodes.items() if isinstance(node, nir.NIRGraph))
        sub = nodes.pop(name)
        inner_in = [f"{name}.{key}" for key, node in sub.nodes.items() if isinstance(node, nir.Input)]
        inner_out = [f"{name}.{key}" for key, node in sub.nodes.items() if isinstance(node, nir.Output)]
        if len(inner_in) != 1 or len(inner_out) != 1:
            raise ValueError(f"NIR subgraph {name!r} must have one Input and one Output node to be inlined")
        for key, node in sub.nodes.items():
            nodes[f"{name}.{key}"] = _PassThrough() if isinstance(node, (nir.Input, nir.Output)) else node
        edges = [(inner_out[0] if a == name else a, inner_in[0] if b == name else b) for a, b in edges]
        edges += [(f"{name}.{a}", f"{name}.{b}") for a, b in sub.edges]
    for key, node in list(nodes.items()):
        if isinstance(node, nir.Flatten):
            shape = np.asarray(node.input_type["input"]).ravel()
            if shape.size != 1:
                raise ValueError(f"NIR node {key!r}: Flatten of a {tuple(shape)} tensor; deepeprop reads vectors only")
            nodes[key] = _PassThrough()
    for key in [k for k, node in nodes.items() if isinstance(node, _PassThrough)]:
        into = [a for a, b in edges if b == key]
        out = [b for a, b in edges if a == key]
        edges = [(a, b) for a, b in edges if key not in (a, b)] + [(a, b) for a in into for b in out]
        del nodes[key]
    return nodes, edges


class _PassThrough:
    """An identity node that is removed before the graph is read (a subgraph's Input/Output, a 1-D Flatten)."""


def _vector(value, n: int, what: str) -> np.ndarray:
    out = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{what} must be finite")
    return out


def _uniform(values: np.ndarray, what: str) -> float:
    if not np.allclose(values, values[0], rtol=1e-12, atol=0.0):
        raise ValueError(f"{what} differs between neurons; deepeprop's model has one per node")
    return float(values[0])


def _graph_dtype(nir, nodes: dict, metadata_dtype) -> Any:
    """The dtype a graph's arrays are in (deepeprop's own records it in the metadata), for ``from_nir(dtype=None)``;
    a clear error when they are mixed or not float32/float64."""
    if metadata_dtype in ("float32", "float64"):
        return np.dtype(metadata_dtype)
    found = set()
    for node in nodes.values():
        if isinstance(node, (nir.Input, nir.Output)):
            continue
        for value in vars(node).values():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                found.add(value.dtype.name)
    if len(found) == 1 and found <= {"float32", "float64"}:
        return np.dtype(found.pop())
    what = f"arrays in {sorted(found)}" if found else "no float arrays"
    raise ValueError(f"dtype=None reads the model's dtype from the graph, but it has {what}: "
                     "pass dtype=jnp.float32 or dtype=jnp.float64")


def from_nir(graph, *, dt: float, discretisation: str | None = None, dtype=None) -> Network:
    """Read a NIR graph as a network (the inverse of :func:`to_nir`; see the module docstring).

    Args:
        graph: a ``nir.NIRGraph`` (e.g. from ``nir.read(path)``): one Input, one Output, LIF / CubaLIF (instantaneous
            synapse) / LI neuron nodes, Affine / Linear / Scale weights, recurrence as a cycle through one node.
        dt: the time step of one of our steps, in the unit of the graph's time constants.
        discretisation: ``"exact"`` or ``"euler"`` (see :func:`to_nir`); ``None`` takes the graph's own when
            deepeprop wrote it, else ``"exact"``.
        dtype: ``jnp.float32`` or ``jnp.float64`` (the latter needs ``jax_enable_x64``); ``None`` (default) takes
            the graph's: the one deepeprop wrote it in, else the dtype its arrays share (snnTorch writes float32;
            a ``ValueError`` asks for ``dtype`` when they are mixed).

    Returns:
        A :class:`~deepeprop.Network`: nodes in topological order, an Integrator readout (leaky when the Output is
        fed by one LI node alone, else linear, reading every node that feeds the Output). LIF neurons take their
        surrogate, ``gamma`` and ``detach_reset`` from the node's metadata (deepeprop's defaults otherwise).

    Raises:
        ValueError: a node or structure the networks here cannot express (named), a ``dt`` that disagrees with the
            graph's metadata, or a bad argument.
    """
    nir = _nir()
    if not isinstance(graph, nir.NIRGraph):
        raise ValueError(f"graph must be a nir.NIRGraph (e.g. nir.read(path)), got {type(graph).__name__}")
    dt = _check_dt(dt)
    produced_here = _meta(graph, "source") == PRODUCER
    if discretisation is None:
        discretisation = _meta(graph, "discretisation", "exact") if produced_here else "exact"
    discretisation = _check_discretisation(discretisation)
    if produced_here and _meta(graph, "dt") is not None and not math.isclose(_meta(graph, "dt"), dt, rel_tol=1e-12):
        raise ValueError(f"dt={dt} differs from the dt={_meta(graph, 'dt')} the graph was written with")

    nodes, edges = _inline(nir, graph.nodes, graph.edges)
    if dtype is None:
        dtype = _graph_dtype(nir, nodes, _meta(graph, "dtype") if produced_here else None)
        if dtype == np.float64 and not jax.config.jax_enable_x64:
            raise ValueError("the graph's arrays are float64 and dtype=None reads the model in float64, which needs "
                             "jax_enable_x64 (jax.config.update('jax_enable_x64', True)); or pass dtype=jnp.float32")
    dtype = resolve_dtype(dtype)
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    outputs = [k for k, v in nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"the graph must have one Input and one Output node, got inputs {inputs}, outputs {outputs}")
    input_name, output_name = inputs[0], outputs[0]
    weights = (nir.Affine, nir.Linear, nir.Scale)
    neurons = (nir.LIF, nir.CubaLIF, nir.LI)
    for key, node in nodes.items():
        if not isinstance(node, weights + neurons + (nir.Input, nir.Output)):
            raise ValueError(f"NIR node {key!r} ({type(node).__name__}) cannot be read by deepeprop; supported: "
                             "Input, Output, Affine, Linear, Scale, LIF, CubaLIF, LI, 1-D Flatten, subgraphs")
    n_in = int(np.prod(np.asarray(nodes[input_name].input_type["input"])))
    preds: dict[str, list[str]] = {key: [] for key in nodes}
    for a, b in edges:
        preds[b].append(a)

    def width(key) -> int:
        node = nodes[key]
        if key == input_name:
            return n_in
        if isinstance(node, nir.LI):
            return int(np.asarray(node.tau).size)
        if isinstance(node, nir.CubaLIF):
            return int(np.asarray(node.tau_mem).size)
        return int(np.asarray(node.tau).size)

    # what flows into a node, as linear maps of neuron (and input) outputs: [(source, matrix or None, diag)] and a
    # bias (None or a vector); None = the identity
    resolving: set[str] = set()

    def gather(key) -> tuple[list, np.ndarray | None]:
        terms, bias = [], None
        for p in preds[key]:
            t, c = resolve(p)
            terms += t
            bias = c if bias is None else (bias if c is None else bias + c)
        return terms, bias

    def resolve(key) -> tuple[list, np.ndarray | None]:
        node = nodes[key]
        if key == input_name or isinstance(node, neurons):
            return [(key, None, True)], None
        if key in resolving:
            raise ValueError(f"NIR node {key!r} lies on a cycle of weights with no neuron on it")
        if not preds[key]:
            raise ValueError(f"NIR node {key!r} has no input")
        resolving.add(key)
        terms, bias = gather(key)
        resolving.discard(key)
        if isinstance(node, nir.Scale):
            scale = np.asarray(node.scale, dtype=np.float64).ravel()
            matrix, diag, own = np.diag(scale), True, None
        else:
            matrix = np.asarray(node.weight, dtype=np.float64)
            if matrix.ndim != 2:
                raise ValueError(f"NIR node {key!r}: weight of shape {matrix.shape}; deepeprop reads 2-D weights")
            diag = False
            own = np.asarray(node.bias, dtype=np.float64).ravel() if isinstance(node, nir.Affine) else None
        out = [(source, matrix @ (np.eye(width(source)) if m is None else m), diag and is_diag)
               for source, m, is_diag in terms]
        bias = None if bias is None else matrix @ bias
        return out, own if bias is None else (bias if own is None else bias + own)

    # the neuron nodes and their inputs
    feeds: dict[str, tuple[list, Any]] = {}
    for key, node in nodes.items():
        if isinstance(node, neurons) or key == output_name:
            feeds[key] = gather(key)
            if not feeds[key][0]:
                raise ValueError(f"NIR node {key!r} has no input")
    consumers = {key: [b for a, b in edges if a == key] for key in nodes}
    recurrent_keys = {key: next((w for w in consumers[key] if w in preds[key] and isinstance(nodes[w], weights)),
                                None) for key in nodes}  # the weight node of a cycle key -> w -> key
    out_terms, out_bias = feeds[output_name]
    readout_key = None
    if (len(out_terms) == 1 and out_terms[0][1] is None and out_bias is None
            and isinstance(nodes[out_terms[0][0]], nir.LI) and consumers[out_terms[0][0]] == [output_name]):
        readout_key = out_terms[0][0]  # a leaky readout
    hidden = [k for k in nodes if isinstance(nodes[k], neurons) and k != readout_key]
    order = _topological(hidden, {k: {s for s, _, _ in feeds[k][0] if s in hidden and s != k} for k in hidden})
    ids = {input_name: 0, **{k: i for i, k in enumerate(order, start=1)}}
    if readout_key is not None:
        ids[readout_key] = len(order) + 1
    n_out = int(np.prod(np.asarray(nodes[output_name].output_type["output"])))

    layers = []
    for key in order + ([readout_key] if readout_key else [None]):
        if key is None:  # a linear readout that sums whatever feeds the Output
            n, neuron, gain, offset = n_out, Integrator(n_out, decay=0.0), np.ones(n_out), np.zeros(n_out)
            terms, bias = out_terms, out_bias
            name = output_name
        else:
            neuron, gain, offset = _neuron_from_nir(nodes[key], key, dt, discretisation, dtype)
            n = neuron.size
            terms, bias = feeds[key]
            name = key
        groups: dict[str, list] = {}
        for source, m, diag in terms:
            if source not in ids:
                raise ValueError(f"NIR node {name!r} reads {source!r}, which is not before it in the network "
                                 "(deepeprop has recurrence only within a node)")
            groups.setdefault(source, []).append((m, diag))
        projections, W, recurrence, self_connections = [], None, "none", True
        for source in groups:  # in the order the graph lists the edges (the order of theta's blocks)
            parts = groups[source]
            if source == key:  # recurrence through the node itself
                matrix = sum(np.eye(n) if m is None else m for m, _ in parts) * gain[:, None]
                w_node = nodes[recurrent_keys[key]] if recurrent_keys.get(key) is not None else None
                marked = _meta(w_node, "recurrence") if w_node is not None else None
                # diagonal: Scale nodes, our own export's mark, or (a graph from elsewhere) an exactly diagonal
                # matrix, as snnTorch writes RLeaky(all_to_all=False) and reads it back
                is_diagonal = marked == "diagonal" or (marked is None and not produced_here
                                                       and np.array_equal(matrix, np.diag(np.diagonal(matrix))))
                if all(d for _, d in parts) or is_diagonal:
                    W, recurrence = np.diagonal(matrix).copy(), "diagonal"
                else:
                    W, recurrence = matrix, "dense"
                    self_connections = not (recurrent_keys.get(key) is not None and
                                            _meta(nodes[recurrent_keys[key]], "self_connections") is False
                                            and np.all(np.diagonal(matrix) == 0))
                continue
            if len(parts) == 1 and parts[0][0] is None and np.allclose(gain, 1.0, rtol=1e-12, atol=0.0):
                projections.append(Edge(None, ids[source]))  # an identity edge stays one
                continue
            w_in = width(source) if source != input_name else n_in
            matrix = sum(np.eye(n, w_in) if m is None else m for m, _ in parts) * gain[:, None]
            if matrix.shape != (n, w_in):
                raise ValueError(f"NIR edge {source!r} -> {name!r}: weight of shape {matrix.shape}, "
                                 f"expected {(n, w_in)}")
            projections.append(Edge(jnp.asarray(matrix, dtype), ids[source]))
        b = (0.0 if bias is None else gain * bias) + offset
        layers.append(Node(tuple(projections), None if W is None else jnp.asarray(W, dtype), jnp.asarray(b, dtype),
                            neuron, recurrence, self_connections=self_connections))
    return Network(layers, n_in)


def _topological(keys: list[str], parents: dict[str, set]) -> list[str]:
    """``keys`` ordered so that parents come first (graph order among equals); a cycle is named."""
    order, placed = [], set()
    while len(order) < len(keys):
        ready = [k for k in keys if k not in placed and parents[k] <= placed]
        if not ready:
            stuck = [k for k in keys if k not in placed]
            raise ValueError(f"NIR nodes {stuck} feed each other at the same time step (a cycle between different "
                             "neuron nodes); deepeprop has recurrence only within a node")
        order.append(ready[0])
        placed.add(ready[0])
    return order


def _dt_hint(node, tau: np.ndarray) -> str:
    """The time step a graph was probably written for: ``tau / r`` when ``r = tau/dt`` (the unit-gain Euler
    convention of snnTorch, Spyx and our ``discretisation="euler"``), to name in an error."""
    r = np.broadcast_to(np.asarray(node.r, dtype=np.float64), tau.shape)
    ratio = tau / r
    if np.all(np.isfinite(ratio)) and np.allclose(ratio, ratio[0], rtol=1e-6) and ratio[0] > 0:
        return (f"; its r = tau/dt holds for dt={ratio[0]:.6g} with discretisation='euler' "
                "(snnTorch writes its graphs for dt=1e-4)")
    return ""


def _neuron_from_nir(node, key: str, dt: float, discretisation: str, dtype):
    """``(neuron, gain (n,), offset (n,))``: our neuron for a NIR neuron node, the factor its input current
    is scaled by (``(1 - a) r``) and the constant it adds per step (``(1 - a) v_leak``)."""
    nir = _nir()
    if isinstance(node, nir.LI):
        tau = np.asarray(node.tau, dtype=np.float64).ravel()
        n = tau.size
        a = decay_from_nir(tau, dt, discretisation)
        if np.any(a <= 0) or np.any(a >= 1):
            raise ValueError(f"NIR node {key!r}: tau={tau} gives a per-step leak outside (0, 1) at dt={dt}"
                             + _dt_hint(node, tau))
        decay = _uniform(a, f"NIR node {key!r}: the LI time constant")
        neuron = Integrator(n, decay=decay)
        r, v_leak = _vector(node.r, n, f"{key}.r"), _vector(node.v_leak, n, f"{key}.v_leak")
        return neuron, (1.0 - a) * r, (1.0 - a) * v_leak
    if isinstance(node, nir.CubaLIF):
        tau = np.asarray(node.tau_mem, dtype=np.float64).ravel()
        n = tau.size
        tau_syn = _vector(node.tau_syn, n, f"{key}.tau_syn")
        instantaneous = np.all(tau_syn == 0) if discretisation == "exact" else np.allclose(tau_syn, dt, rtol=1e-12)
        if not instantaneous:
            raise ValueError(f"NIR node {key!r}: a CubaLIF with a synaptic time constant (tau_syn={tau_syn[0]:g}) has "
                             "no deepeprop neuron model; only an instantaneous synapse is read (tau_syn = 0 with "
                             "discretisation='exact', tau_syn = dt with 'euler')")
        w_in = _vector(node.w_in, n, f"{key}.w_in")
    else:
        tau = np.asarray(node.tau, dtype=np.float64).ravel()
        n = tau.size
        w_in = np.ones(n)
    a = decay_from_nir(tau, dt, discretisation)
    if np.any(a <= 0) or np.any(a >= 1):
        raise ValueError(f"NIR node {key!r}: tau={tau} gives a per-step leak outside (0, 1) at dt={dt}"
                         + _dt_hint(node, tau))
    threshold = _uniform(_vector(node.v_threshold, n, f"{key}.v_threshold"), f"NIR node {key!r}: v_threshold")
    if threshold <= 0:
        raise ValueError(f"NIR node {key!r}: v_threshold must be > 0, got {threshold}")
    if np.any(_vector(node.v_reset, n, f"{key}.v_reset") != 0):
        raise ValueError(f"NIR node {key!r}: v_reset other than 0; deepeprop's LIF resets by subtracting the threshold")
    options = {}
    for field, check in (("surrogate", lambda v: v in SURROGATES), ("gamma", lambda v: isinstance(v, float)),
                         ("detach_reset", lambda v: isinstance(v, bool))):
        value = _meta(node, field)
        if value is not None and check(value):
            options[field] = value
    shared = np.allclose(a, a[0], rtol=1e-12, atol=0.0)
    neuron = LIF(n, tau_m=20.0, threshold=threshold, dtype=dtype, **options)
    decay = jnp.asarray(a[0] if shared else a, dtype)  # () shared, (n,) per neuron: the leak exactly
    neuron = eqx.tree_at(lambda m: m.decay, neuron, decay)
    r, v_leak = _vector(node.r, n, f"{key}.r"), _vector(node.v_leak, n, f"{key}.v_leak")
    return neuron, (1.0 - a) * r * w_in, (1.0 - a) * v_leak
