"""Networks as graphs (docs/math.md, "The network", "Deep e-prop"): skip edges, input edges, several parents,
per-layer neurons, a user's own neuron, and the checks on the graph. Every engine against BPTT in float64.

The engines under test come from the registry (``dp.ENGINES``), filtered by what each declares: ``exact``
(equal to BPTT on every network) and ``exact_elementwise`` (equal to BPTT when every node's recurrence is
element-wise).
"""
from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import deepeprop as dp
from helpers import N_IN, N_OUT, checked_reference, covering_grid, make_batch, relative_errors, state_sizes

EXACT = 1e-9
EXACT_ENGINES = [name for name, cls in dp.ENGINES.items() if cls.exact and name != "bptt"]
ELEMENTWISE_EXACT = [name for name, cls in dp.ENGINES.items() if cls.exact_elementwise and not cls.exact]
APPROXIMATE = [name for name, cls in dp.ENGINES.items() if not cls.exact and not cls.exact_elementwise]


class ExpIF(dp.AbstractNeuron):
    """Exponential integrate-and-fire with soft reset, written against the public contract only.

        v[t] = a v[t-1] + (1 - a) delta exp((v[t-1] - v_T) / delta) + I[t] - thr z[t-1],   z = H(v - thr)
    """

    n: int = eqx.field(static=True)
    decay: jax.Array
    threshold: float = eqx.field(static=True)
    sharpness: float = eqx.field(static=True)
    rheobase: float = eqx.field(static=True)
    state_size = 1
    spiking = True

    def __init__(self, n, *, tau_m=5.0, threshold=1.0, sharpness=0.5, rheobase=0.7, dtype=jnp.float32):
        self.n = n
        self.decay = jnp.exp(-1.0 / jnp.asarray(tau_m, dtype))
        self.threshold, self.sharpness, self.rheobase = threshold, sharpness, rheobase

    @property
    def size(self):
        return self.n

    def step(self, state, current):
        a = lax.stop_gradient(self.decay)
        v = state[..., 0]
        drive = (1 - a) * self.sharpness * jnp.exp(jnp.minimum((v - self.rheobase) / self.sharpness, 4.0))
        v_new = a * v + drive + current - self.threshold * self.output(state)
        return v_new[..., None]

    def output(self, state):
        x = (state[..., 0] - self.threshold) / self.threshold
        return dp.spike_fn(x, jnp.asarray(0.3 / self.threshold, x.dtype), 0)


def _taus(sizes, seed=0):
    key = jax.random.PRNGKey(100 + seed)
    return [jax.random.uniform(jax.random.fold_in(key, i), (n,), jnp.float64, 3.0, 8.0) for i, n in enumerate(sizes)]


# The graphs below pin the exact-reset model (LIF/ALIF with the reset path, dense W with its diagonal), not the
# library defaults: the engines' hardest case, whose own Jacobians depend on the state.
EXACT_RESET = {"detach_reset": False}


def chain_graph(recurrence, readout, *, neuron="lif", skip=(), sizes=(4, 5, 6), seed=0):
    gain = 1.0 if neuron == "leaky" else 1.8
    return dp.DeepRNN(N_IN, list(sizes), N_OUT, neuron=neuron, recurrence=recurrence, readout=readout,
                      key=jax.random.PRNGKey(seed), dtype=jnp.float64, tau_m=_taus(sizes), tau_out=4.0,
                      input_gain=gain, skip=list(skip), self_connections=True,
                      neuron_options=EXACT_RESET if neuron in ("lif", "alif") else None)


def heterogeneous(recurrences, readout):
    """leaky under LIF under ALIF, each with its own recurrence and time constants."""
    sizes = (4, 5, 6)
    neurons = [dp.LeakyRate(4, tau_m=_taus(sizes)[0], dtype=jnp.float64),
               dp.LIF(5, tau_m=_taus(sizes)[1], dtype=jnp.float64, **EXACT_RESET),
               dp.ALIF(6, tau_m=_taus(sizes)[2], tau_a=9.0, dtype=jnp.float64, **EXACT_RESET)]
    return dp.DeepRNN(N_IN, list(sizes), N_OUT, neuron=neurons, recurrence=list(recurrences), readout=readout,
                      key=jax.random.PRNGKey(3), dtype=jnp.float64, tau_out=4.0, input_gain=3.0, self_connections=True)


def parallel_branches(recurrence, readout):
    """Two branches from the input, joined in node 3, which also feeds the readout with node 1."""
    taus = _taus((4, 5, 6))
    layers = [dp.LayerSpec(n, neuron, recurrence, self_connections=True, tau_m=tau, neuron_options=EXACT_RESET)
              for n, neuron, tau in zip((4, 5, 6), ("lif", "alif", "lif"), taus)]
    return dp.build_network(N_IN, layers, N_OUT, edges=[(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (1, 4)],
                            key=jax.random.PRNGKey(4), dtype=jnp.float64, readout=readout, tau_out=4.0, input_gain=1.8)


GRAPHS = {
    "skip_1_3": lambda rec, readout: chain_graph(rec, readout, skip=[(1, 3)]),
    "input_into_every_layer": lambda rec, readout: chain_graph(rec, readout, skip=[(0, 2), (0, 3)]),
    "readout_fed_by_two_layers": lambda rec, readout: chain_graph(rec, readout, skip=[(2, 4)]),
    "heterogeneous": lambda rec, readout: heterogeneous(
        {"dense": ["dense", "dense", "dense"], "none": ["none", "diagonal", "none"],
         "diagonal": ["diagonal", "none", "diagonal"]}[rec], readout),
    "parallel_branches": parallel_branches,
}


_reference = checked_reference


# every engine on every graph in the default run, the losses in turn; the full grid under -m slow
@pytest.mark.parametrize("method,graph,loss", covering_grid([EXACT_ENGINES, list(GRAPHS)], [["mse", "cross_entropy"]]))
def test_exact_engines_equal_bptt_on_graphs_with_dense_recurrence(method, graph, loss):
    model = GRAPHS[graph]("dense", "leaky")
    inputs, targets = make_batch(loss)
    reference = _reference(model, inputs, targets, loss)
    grads = dp.gradients(model, inputs, targets, method=method, loss=loss)
    assert max(relative_errors(grads, reference, model)) < EXACT


@pytest.mark.parametrize("method,graph,recurrence,readout,loss",
                         covering_grid([ELEMENTWISE_EXACT, list(GRAPHS), ["none", "diagonal"]],
                                       [["linear", "leaky"], ["mse", "cross_entropy"]]))
def test_deep_eprop_equals_bptt_on_graphs(method, graph, recurrence, readout, loss):
    model = GRAPHS[graph](recurrence, readout)
    inputs, targets = make_batch(loss)
    reference = _reference(model, inputs, targets, loss)
    grads = dp.gradients(model, inputs, targets, method=method, loss=loss)
    assert max(relative_errors(grads, reference, model)) < EXACT


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_eprop_differs_from_bptt_on_lower_layers_of_graphs(graph):
    model = GRAPHS[graph]("diagonal", "leaky")
    inputs, targets = make_batch("mse")
    reference = _reference(model, inputs, targets, "mse")
    errors = relative_errors(dp.gradients(model, inputs, targets, method="eprop"), reference, model)
    assert errors[0] > 1e-3  # the lowest node's credit through the dynamics above is lost
    assert errors[-1] < EXACT  # the readout's own gradient is exact


def test_dense_graphs_are_approximations_for_deep_eprop():
    model = GRAPHS["skip_1_3"]("dense", "leaky")
    inputs, targets = make_batch("mse")
    reference = _reference(model, inputs, targets, "mse")
    errors = relative_errors(dp.gradients(model, inputs, targets, method="deep_eprop"), reference, model)
    assert errors[0] > 1e-3 and errors[-1] < EXACT


# ---------------------------------------------------------------------------- the factored trace on graphs
def _factorisable(skip, readout, sizes=(4, 5)):
    """LIF with the reset path at the bottom, LIF with the reset detached and one leak above: factored-trace
    territory (the bottom node, fed by the input only, may be any model)."""
    options = [EXACT_RESET, {"detach_reset": True}, {"detach_reset": True}][:len(sizes)]
    return dp.DeepRNN(N_IN, list(sizes), N_OUT, neuron="lif", recurrence=["diagonal"] + ["none"] * (len(sizes) - 1),
                      readout=readout, key=jax.random.PRNGKey(5), dtype=jnp.float64,
                      tau_m=[_taus(sizes)[0]] + [5.0] * (len(sizes) - 1), tau_out=4.0, input_gain=1.8,
                      neuron_options=options, skip=list(skip))


def test_factored_trace_exact_when_every_path_meets_one_leak():
    """Paths 1 -> 2 -> readout and 1 -> readout (linear): each meets at most one leak, so it is exact."""
    model = _factorisable([(1, 3)], "linear")
    inputs, targets = make_batch("mse")
    reference = _reference(model, inputs, targets, "mse")
    grads = dp.gradients(model, inputs, targets, method="deep_eprop_factored")
    assert max(relative_errors(grads, reference, model)) < EXACT


def test_factored_trace_is_an_approximation_with_two_leaks_on_a_path():
    model = _factorisable([(1, 3)], "leaky")  # 1 -> 2 -> readout meets two leaks
    inputs, targets = make_batch("mse")
    reference = _reference(model, inputs, targets, "mse")
    errors = relative_errors(dp.gradients(model, inputs, targets, method="deep_eprop_factored"), reference, model)
    assert errors[0] > 1e-3 and errors[-1] < EXACT


def test_deep_eprop_factorised_hops_on_a_graph_equal_the_full_traces():
    model = _factorisable([(0, 2), (1, 3)], "leaky", sizes=(4, 5, 6))
    assert any(dp.make_engine("deep_eprop", chunk_size=1).factorised_hops(model))  # the step form factorises
    inputs, targets = make_batch("mse")
    fast = dp.gradients(model, inputs, targets, method="deep_eprop", evaluation="step")
    full = dp.gradients(model, inputs, targets, method="deep_eprop", factorize=False, evaluation="step")
    reference = dp.gradients(model, inputs, targets, method="bptt")
    assert max(relative_errors(fast, full, model)) < 1e-12
    assert max(relative_errors(fast, reference, model)) < EXACT


# ---------------------------------------------------------------------------- a user's own neuron
@pytest.mark.parametrize("method", list(dp.ENGINES))
def test_a_users_neuron_gets_every_engine(method):
    """ExpIF (defined in this file) by class under a LIF layer with the reset detached: every engine runs."""
    model = dp.DeepRNN(N_IN, [4, 5], N_OUT, neuron=[ExpIF, "lif"], recurrence=["diagonal", "none"], readout="leaky",
                       key=jax.random.PRNGKey(6), dtype=jnp.float64, tau_m=[4.0, 5.0], tau_out=4.0, input_gain=2.0,
                       neuron_options=[None, {"detach_reset": True}])
    assert isinstance(model.hidden[0].neuron, ExpIF)
    inputs, targets = make_batch("mse")
    reference = _reference(model, inputs, targets, "mse")
    grads = dp.gradients(model, inputs, targets, method=method)
    errors = relative_errors(grads, reference, model)
    cls = dp.ENGINES[method]
    if cls.exact or cls.exact_elementwise:  # diagonal recurrence: element-wise
        assert max(errors) < EXACT
    else:
        assert all(math.isfinite(e) for e in errors) and errors[-1] < EXACT


def test_a_users_neuron_instance_with_dense_recurrence_rtrl_exact():
    model = dp.DeepRNN(N_IN, [4, 5], N_OUT, neuron=[ExpIF(4, tau_m=4.0, dtype=jnp.float64), "alif"],
                       recurrence="dense", key=jax.random.PRNGKey(7), dtype=jnp.float64, tau_out=4.0, input_gain=2.0,
                       neuron_options=[None, EXACT_RESET], self_connections=True)
    inputs, targets = make_batch("cross_entropy")
    reference = _reference(model, inputs, targets, "cross_entropy")
    grads = dp.gradients(model, inputs, targets, method="rtrl", loss="cross_entropy")
    assert max(relative_errors(grads, reference, model)) < EXACT


@pytest.mark.parametrize("neuron", [lambda: dp.LeakyRate(5, tau_m=4.0, dtype=jnp.float64),
                                    lambda: dp.LIF(5, detach_reset=False, dtype=jnp.float64),
                                    lambda: dp.LIF(5, detach_reset=True, dtype=jnp.float64),
                                    lambda: dp.ALIF(5, detach_reset=False, dtype=jnp.float64),
                                    lambda: dp.ALIF(5, detach_reset=True, dtype=jnp.float64),
                                    lambda: dp.Integrator(5, decay=0.8),
                                    lambda: ExpIF(5, dtype=jnp.float64)] +
                         [lambda cls=cls: cls(5, dtype=jnp.float64) for cls in dp.NEURONS.values()])
def test_every_neuron_meets_its_declared_contract(neuron):
    dp.check_neuron(neuron())


def test_check_neuron_catches_a_false_declaration_and_a_coupled_neuron():
    class Liar(ExpIF):
        def constant_leak(self):
            return lax.stop_gradient(self.decay)  # false: the exponential term depends on v

    with pytest.raises(ValueError, match="declares constant_leak"):
        dp.check_neuron(Liar(4, dtype=jnp.float64), scale=2.0)

    class Coupled(ExpIF):
        def step(self, state, current):
            return state + jnp.mean(current, axis=-1, keepdims=True)[..., None]

    with pytest.raises(ValueError, match="not element-wise"):
        dp.check_neuron(Coupled(4, dtype=jnp.float64))

    class BadTrainable(ExpIF):
        trainable = ("decay",)  # a scalar leak, not one parameter per neuron

    with pytest.raises(ValueError, match="declared trainable but is not an array of shape"):
        dp.check_neuron(BadTrainable(4, dtype=jnp.float64))


# ---------------------------------------------------------------------------- capabilities from the model as it is
def test_fast_path_follows_an_edited_model():
    """A shared leak replaced by per-neuron leaks with eqx.tree_at: the fast path is left, deep_eprop stays exact."""
    model = _factorisable([], "leaky", sizes=(4, 5))
    engine = dp.make_engine("deep_eprop", chunk_size=1)  # the step form, which factorises
    assert engine.factorised_hops(model)[0] == (2,)  # node 1's hop to node 2 (ids)
    edited = eqx.tree_at(lambda m: m.hidden[1].neuron.decay, model, jnp.linspace(0.6, 0.9, 5))
    assert engine.factorised_hops(edited)[0] == ()
    inputs, targets = make_batch("mse")
    reference = dp.gradients(edited, inputs, targets, method="bptt")
    assert max(relative_errors(dp.gradients(edited, inputs, targets, method=engine), reference, edited)) < EXACT
    with pytest.raises(ValueError, match="deep_eprop_factored needs"):
        dp.gradients(edited, inputs, targets, method="deep_eprop_factored")


# ---------------------------------------------------------------------------- the graph's own checks
@pytest.mark.parametrize("skip,match", [
    ([(3, 1)], r"same-time cycle 1 -> 2 -> 3 -> 1"),
    ([(2, 2)], r"same-time cycle"),
    ([(1, 5)], r"names node 5, which does not exist"),
    ([(-1, 2)], r"names node -1, which does not exist"),
    ([(4, 2)], r"leaves the readout"),
    ([(1, 2)], r"already in the chain"),
    ([(1, 3), (1, 3)], r"given twice"),
    ([(1, 3.0)], r"pairs of node ids"),
])
def test_bad_edges_are_refused(skip, match):
    with pytest.raises(ValueError, match=match):
        dp.DeepRNN(N_IN, [4, 5, 6], N_OUT, key=jax.random.PRNGKey(0), skip=skip)


def test_general_constructor_checks():
    layers = [dp.LayerSpec(4, "lif"), dp.LayerSpec(5, "leaky")]
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="same-time cycle 1 -> 2 -> 1"):
        dp.build_network(N_IN, layers, N_OUT, edges=[(0, 1), (1, 2), (2, 1), (2, 3)], key=key)
    with pytest.raises(ValueError, match="node 2 has no path to the readout"):
        dp.build_network(N_IN, layers, N_OUT, edges=[(0, 1), (1, 2), (1, 3)], key=key)
    with pytest.raises(ValueError, match="node 2 has no incoming edge"):
        dp.build_network(N_IN, layers, N_OUT, edges=[(0, 1), (1, 3), (2, 3)], key=key)
    with pytest.raises(ValueError, match="higher node id to a lower"):
        dp.build_network(N_IN, layers, N_OUT, edges=[(0, 2), (2, 1), (1, 3)], key=key)
    with pytest.raises(ValueError, match=r"layers\[1\].neuron: the LIF instance has 4 neurons"):
        dp.DeepRNN(N_IN, [4, 5], N_OUT, neuron=["lif", dp.LIF(4)], key=key)
    with pytest.raises(ValueError, match="neuron must be one of"):
        dp.DeepRNN(N_IN, [4, 5], N_OUT, neuron=["lif", "hh"], key=key)
    with pytest.raises(ValueError, match=r"neuron must be one value or a list of 2"):
        dp.DeepRNN(N_IN, [4, 5], N_OUT, neuron=["lif"], key=key)
    with pytest.raises(ValueError, match=r"recurrence\[1\] must be one of"):
        dp.DeepRNN(N_IN, [4, 5], N_OUT, recurrence=["none", "full"], key=key)


def test_chain_keeps_the_first_versions_weights():
    """DeepRNN without the new arguments draws exactly the weights of the first version's initialisation."""
    key = jax.random.PRNGKey(11)
    model = dp.DeepRNN(5, [6, 7], 2, neuron="leaky", recurrence="diagonal", key=key, tau_m=10.0, tau_out=8.0)
    keys = jax.random.split(key, 3)
    fan_in = 5
    for i, n in enumerate([6, 7]):
        ku, kw = jax.random.split(keys[i])
        scale = 1.0 - math.exp(-1.0 / 10.0)
        U = jax.random.normal(ku, (n, fan_in), jnp.float32) * (1.0 / math.sqrt(fan_in))
        U = U * jnp.full((n,), 1.0 - jnp.exp(-1.0 / jnp.float32(10.0)))[:, None]
        W = jax.random.uniform(kw, (n,), jnp.float32, -0.5, 0.5) * 1.0 * (1.0 - jnp.exp(-1.0 / jnp.float32(10.0)))
        np.testing.assert_array_equal(np.asarray(model.hidden[i].U), np.asarray(U))
        np.testing.assert_array_equal(np.asarray(model.hidden[i].W), np.asarray(W))
        assert abs(float(model.hidden[i].neuron.decay) - (1 - scale)) < 1e-6
        fan_in = n
    k = math.exp(-1.0 / 8.0)
    W_out = jax.random.normal(keys[-1], (2, 7), jnp.float32) * ((1.0 - k) / math.sqrt(7))
    np.testing.assert_array_equal(np.asarray(model.readout.U), np.asarray(W_out))


def test_graph_structure_and_gradient_structure():
    model = parallel_branches("none", "leaky")
    graph = model.graph
    assert graph.parents == ((), (0,), (0,), (1, 2), (3, 1))  # by node id, the input (0) included
    assert graph.descendants[1] == (3, 4) and graph.descendants[2] == (3, 4) and graph.descendants[0] == (1, 2, 3, 4)
    assert graph.children[0] == ((1, 0), (2, 0)) and graph.readout == 4 and graph.hidden == (1, 2, 3)
    assert set(graph.paths(1)) == {(1, 3, 4), (1, 4)}
    assert graph.prefixes(1) == ((3,), (3, 4), (4,))  # in the order of the paths, a prefix's prefix first
    assert graph.paths(1) is graph.paths(1)  # memoised
    assert model.edges == ((0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (1, 4))
    inputs, targets = make_batch("mse")
    grads = dp.gradients(model, inputs, targets, method="deep_eprop")
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(eqx.filter(model, eqx.is_inexact_array))


@pytest.mark.parametrize("method", ["rtrl", "eprop", "deep_eprop", "deep_eprop_factored"])
def test_engine_state_does_not_grow_with_sequence_length_on_a_graph(method):
    sizes = state_sizes(method, _factorisable([(1, 3), (0, 2)], "leaky"))
    assert sizes[0] == sizes[1]
