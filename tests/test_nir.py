"""NIR export and import (deepeprop.to_nir / from_nir; src/deepeprop/nir_io.py): the round trip through a file
gives the same network in float64, a graph written by another tool runs as NIR's equations say, what NIR cannot
express is refused, and Spyx (another NIR consumer, optional) runs our export to the same spikes."""
from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deepeprop as dp

nir = pytest.importorskip("nir", reason="the nir package is missing: python -m pip install -e '.[test]'")

KEY = jax.random.PRNGKey(0)
DT = 1e-3


def _inputs(n_in, T=40, B=3, seed=1):
    return jax.random.bernoulli(jax.random.PRNGKey(seed), 0.3, (T, B, n_in)).astype(jnp.float64)  # (T, B, n_in)


def _leaves(model):
    return jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))


MODELS = {
    "chain, dense recurrence, leaky readout": lambda: dp.DeepRNN(
        4, [6, 5], 3, neuron="lif", recurrence="dense", key=KEY, dtype=jnp.float64, input_gain=3.0),
    "skips, diagonal recurrence, per-neuron leaks, linear readout, surrogate options": lambda: dp.DeepRNN(
        4, [6, 5, 4], 2, neuron="lif", recurrence=["diagonal", "none", "dense"], readout="linear",
        skip=[(0, 2), (1, 4)], tau_m=[jnp.linspace(5.0, 30.0, 6), 10.0, 40.0], self_connections=[True, True, False],
        neuron_options={"surrogate": "fast_sigmoid", "gamma": 0.5, "detach_reset": True},
        key=KEY, dtype=jnp.float64, input_gain=3.0),
    "a DAG with a residual edge": lambda: dp.build_network(
        4, [dp.LayerSpec(5, "lif", "none"), dp.LayerSpec(5, "lif", "dense")], 2,
        edges=[(0, 1), (0, 2), (2, 3), (1, 3)], residual=[(1, 2)], key=KEY, dtype=jnp.float64, input_gain=3.0),
}


@pytest.mark.parametrize("discretisation", ["exact", "euler"])
@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip_through_a_file_gives_the_same_network(name, discretisation, tmp_path):
    model = MODELS[name]()
    if name.startswith("chain"):  # non-zero biases travel on the Affine of each node's first edge
        model = eqx.tree_at(lambda m: [n.b for n in m.nodes], model,
                            [0.1 * jnp.arange(n.b.shape[0], dtype=jnp.float64) for n in model.nodes])
    graph = dp.to_nir(model, dt=DT, discretisation=discretisation)
    nir.write(tmp_path / "model.nir", graph)
    back = dp.from_nir(nir.read(tmp_path / "model.nir"), dt=DT, dtype=jnp.float64)

    x = _inputs(model.n_in)
    _, y, zs = model.run(x, record=True)  # y (T, B, n_out), zs: (T, B, n_l) spikes per hidden layer
    _, y_back, zs_back = back.run(x, record=True)
    rates = [float(jnp.mean(z)) for z in zs]
    assert all(0.02 < rate < 0.98 for rate in rates), rates  # the spikes say something
    assert all(bool(jnp.array_equal(a, b)) for a, b in zip(zs, zs_back))
    assert float(jnp.max(jnp.abs(y - y_back))) <= 1e-12 * float(jnp.max(jnp.abs(y)))
    assert back.edges == model.edges and back.readout_is_linear == model.readout_is_linear
    assert [n.recurrence for n in back.nodes] == [n.recurrence for n in model.nodes]
    for a, b in zip(_leaves(model), _leaves(back)):  # weights, biases and leaks, to rounding
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-15)
    for ours, theirs in zip(model.hidden, back.hidden):  # NIR has no field for these: they ride in the metadata
        assert (theirs.neuron.surrogate_id, theirs.neuron.gamma, theirs.neuron.detach_reset) == \
            (ours.neuron.surrogate_id, ours.neuron.gamma, ours.neuron.detach_reset)
    # and the gradients agree (the imported model trains like the original)
    targets = jnp.zeros(x.shape[:2] + (model.n_out,))
    g1 = dp.gradients(model, x, targets, method="bptt")
    g2 = dp.gradients(back, x, targets, method="bptt")
    for a, b in zip(_leaves(g1), _leaves(g2)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-9, atol=1e-12)


def test_time_constants_follow_the_stated_time_step():
    model = dp.DeepRNN(3, [4], 2, neuron="lif", recurrence="none", tau_m=20.0, tau_out=5.0, key=KEY,
                       dtype=jnp.float64)
    a, k = math.exp(-1 / 20), math.exp(-1 / 5)
    exact = dp.to_nir(model, dt=DT)
    np.testing.assert_allclose(exact.nodes["layer1"].tau, 20 * DT, rtol=1e-12)  # tau_nir = tau_steps * dt
    np.testing.assert_allclose(exact.nodes["readout"].tau, 5 * DT, rtol=1e-12)
    np.testing.assert_allclose(exact.nodes["layer1"].r, 1 / (1 - a), rtol=1e-12)  # input gain 1 per step
    euler = dp.to_nir(model, dt=DT, discretisation="euler")
    np.testing.assert_allclose(1 - DT / euler.nodes["layer1"].tau, a, rtol=1e-12)  # an Euler step has our leak
    np.testing.assert_allclose(1 - DT / euler.nodes["readout"].tau, k, rtol=1e-12)
    assert exact.metadata["dt"] == DT and euler.metadata["discretisation"] == "euler"
    # the graph's own discretisation is used by default; read as the other one, the leak changes
    assert float(dp.from_nir(euler, dt=DT, dtype=jnp.float64).hidden[0].neuron.decay) == pytest.approx(a, rel=1e-12)
    read_exact = dp.from_nir(euler, dt=DT, discretisation="exact", dtype=jnp.float64)
    assert float(read_exact.hidden[0].neuron.decay) == pytest.approx(math.exp(-(1 - a)), rel=1e-12)
    with pytest.raises(ValueError, match="differs from the dt=0.001 the graph was written with"):
        dp.from_nir(exact, dt=1.0)


def _foreign_graph(dt):
    """A graph as another tool writes it: recurrence inside a subgraph, a CubaLIF with an instantaneous synapse
    (Euler: tau_syn = dt), input weights w_in, resistances and leak potentials, an LI readout with r != 1."""
    rng = np.random.default_rng(0)
    W1, b1 = rng.normal(0.5, 1.5, (5, 3)), rng.normal(0.3, 0.1, 5)
    W_rec, W2 = rng.normal(0, 0.5, (5, 5)), rng.normal(0, 1.0, (2, 5))
    lif = nir.CubaLIF(tau_syn=np.full(5, dt), tau_mem=np.full(5, 8 * dt), r=np.full(5, 2.0), v_leak=np.full(5, 0.1),
                      v_threshold=np.full(5, 1.0), w_in=np.full(5, 1.5))
    sub = nir.NIRGraph(nodes={"in": nir.Input(np.array([5])), "lif": lif, "w_rec": nir.Linear(W_rec),
                              "out": nir.Output(np.array([5]))},
                       edges=[("in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "out")])
    li = nir.LI(tau=np.full(2, 4 * dt), r=np.full(2, 0.5), v_leak=np.full(2, -0.2))
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "fc1": nir.Affine(W1, b1), "rec": sub,
                                "fc2": nir.Linear(W2), "li": li, "output": nir.Output(np.array([2]))},
                         edges=[("input", "fc1"), ("fc1", "rec"), ("rec", "fc2"), ("fc2", "li"), ("li", "output")])
    return graph, (W1, b1, W_rec, W2)


def test_a_graph_written_elsewhere_runs_as_its_equations_say():
    graph, (W1, b1, W_rec, W2) = _foreign_graph(DT)
    model = dp.from_nir(graph, dt=DT, discretisation="euler", dtype=jnp.float64)
    x = np.asarray(_inputs(3, T=60, B=2))
    # NIR's ODEs stepped by forward Euler, spikes reset by subtraction at the next step (as Spyx and snnTorch do)
    v, z, y = np.zeros((2, 5)), np.zeros((2, 5)), np.zeros((2, 2))
    ys, spikes = [], []
    for t in range(x.shape[0]):
        synapse = 1.5 * (x[t] @ W1.T + b1 + z @ W_rec.T)  # instantaneous synapse: I = w_in * input
        v = v + DT / (8 * DT) * (0.1 - v + 2.0 * synapse) - 1.0 * z
        z = (v > 1.0).astype(float)
        y = y + DT / (4 * DT) * (-0.2 - y + 0.5 * (z @ W2.T))
        ys.append(y)
        spikes.append(z)
    _, y_ours, (z_ours,) = model.run(jnp.asarray(x), record=True)
    assert 0.05 < float(np.mean(spikes)) < 0.95
    np.testing.assert_array_equal(np.asarray(z_ours), np.stack(spikes))
    np.testing.assert_allclose(np.asarray(y_ours), np.stack(ys), rtol=1e-10, atol=1e-12)
    assert model.hidden[0].recurrence == "dense" and not model.readout_is_linear


def test_what_nir_cannot_express_is_refused():
    for neuron, message in (("alif", "ALIF cannot be written as NIR .NIR has no threshold adaptation"),
                            ("leaky", "LeakyRate cannot be written as NIR .NIR has no tanh"),
                            ("lru", "LRU cannot be written as NIR")):
        model = dp.DeepRNN(3, [4], 2, neuron=neuron, recurrence="none", key=KEY, dtype=jnp.float64)
        with pytest.raises(ValueError, match=message):
            dp.to_nir(model, dt=DT)
    for options, message in (({"n_ref": 2}, "'layer1': LIF with a refractory period .n_ref=2. cannot be written"),
                             ({"beta": 0.0}, "ALIF cannot be written as NIR")):
        neuron = "lif" if "n_ref" in options else "alif"
        model = dp.DeepRNN(3, [4], 2, neuron=neuron, key=KEY, dtype=jnp.float64, neuron_options=options)
        with pytest.raises(ValueError, match=message):
            dp.to_nir(model, dt=DT)
    model = dp.DeepRNN(3, [4], 2, neuron="lif", key=KEY, dtype=jnp.float64)
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        dp.to_nir(model, dt=0.0)
    with pytest.raises(ValueError, match="discretisation must be one of"):
        dp.to_nir(model, dt=DT, discretisation="rk4")
    with pytest.raises(ValueError, match="model must be a deepeprop.Network"):
        dp.to_nir("model", dt=DT)

    def graph(neuron, extra_nodes=None, extra_edges=()):
        nodes = {"input": nir.Input(np.array([3])), "fc": nir.Linear(np.ones((4, 3))), "lif": neuron,
                 "output": nir.Output(np.array([4])), **(extra_nodes or {})}
        return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output"), *extra_edges])

    def lif(**kw):
        args = dict(tau=np.full(4, 0.02), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4))
        return nir.LIF(**{**args, **kw})

    cases = [
        (graph(lif(v_threshold=np.arange(1.0, 5.0))), "v_threshold differs between neurons"),
        (graph(lif(v_reset=np.full(4, -0.5))), "v_reset other than 0"),
        (graph(nir.CubaLIF(tau_syn=np.full(4, 0.005), tau_mem=np.full(4, 0.02), r=np.ones(4), v_leak=np.zeros(4),
                           v_threshold=np.ones(4))), "CubaLIF with a synaptic time constant"),
        (graph(nir.IF(r=np.ones(4), v_threshold=np.ones(4))), r"'lif' \(IF\) cannot be read by deepeprop"),
        (graph(lif(), {"lif2": lif(), "a": nir.Linear(np.eye(4)), "b": nir.Linear(np.eye(4))},
               [("lif", "a"), ("a", "lif2"), ("lif2", "b"), ("b", "lif")]), "feed each other at the same time step"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            dp.from_nir(bad, dt=DT)
    with pytest.raises(ValueError, match="graph must be a nir.NIRGraph"):
        dp.from_nir({"nodes": {}}, dt=DT)


def test_spyx_runs_our_export_to_the_same_spikes(tmp_path):
    spyx_nir = pytest.importorskip(
        "spyx.nir", reason="Spyx (another NIR consumer) is not installed: python -m pip install -e '.[nir-peers]'")
    model = dp.DeepRNN(5, [8, 6], 3, neuron="lif", recurrence=["dense", "none"], readout="linear", key=KEY,
                       dtype=jnp.float64, input_gain=2.5, tau_m=[10.0, 15.0])
    nir.write(tmp_path / "model.nir", dp.to_nir(model, dt=DT, discretisation="euler"))  # Spyx steps with Euler
    x = _inputs(5, T=60)
    _, (out, states) = spyx_nir.from_nir(nir.read(tmp_path / "model.nir"), x, dt=DT, return_all_states=True)
    _, y, (z1, z2) = model.run(x, record=True)
    _, ours = jax.lax.scan(lambda s, x_t: (model.step(s, x_t)[0],) * 2, model.init_state(x.shape[1]), x)
    u1, u2 = np.asarray(ours[0][..., 0]), np.asarray(ours[1][..., 0])  # (T, B, n): our membrane potentials
    # Spyx's layers: Linear, RLIF, Linear, LIF, Linear. A Spyx LIF emits the spike of its previous potential, so
    # layer l lags ours by l - 1 steps in its potential and l in its output; otherwise the dynamics (the leak per
    # step, reset by subtraction) are the same.
    v1, v2 = np.asarray(states[1]), np.asarray(states[3])  # (T, B, n) Spyx's membrane potentials
    assert 0.05 < float(jnp.mean(z1)) < 0.95 and 0.05 < float(jnp.mean(z2)) < 0.95
    np.testing.assert_allclose(v1, u1, rtol=1e-5, atol=1e-5)  # Spyx computes in float32
    np.testing.assert_allclose(v2[1:], u2[:-1], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(v1 > 0.6, np.asarray(z1))  # the same spikes (threshold 0.6, deepeprop's default)
    np.testing.assert_array_equal(v2[1:] > 0.6, np.asarray(z2[:-1]))
    np.testing.assert_allclose(np.asarray(out[2:]), np.asarray(y[:-2]), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- conventions of the torch libraries
DATA = __import__("pathlib").Path(__file__).parent / "data"


@pytest.mark.parametrize("kind", ["feedforward", "recurrent", "recurrent_diagonal"])
def test_graphs_written_by_snntorch_run_to_snntorchs_spikes(kind):
    """Graphs snnTorch 1.0.0's export_to_nir wrote (Leaky layers; RLeaky with dense and with diagonal V), with the
    spikes snnTorch ran them to (tests/data, written by tests/test_nir_peers.py): snnTorch steps with Euler at a
    fixed dt = 1e-4 and its Leaky's default reset is ours (subtraction, at the next step)."""
    graph = nir.read(DATA / f"snntorch_{kind}.nir")
    with np.load(DATA / f"snntorch_{kind}.npz") as stored:
        x, output = stored["x"], stored["output"]
        spikes = [stored[f"spikes_{i}"] for i in range(sum(k.startswith("spikes_") for k in stored.files))]
    model = dp.from_nir(graph, dt=1e-4, discretisation="euler")  # the dtype comes from the graph
    assert model.dtype == jnp.float64
    assert [n.recurrence for n in model.nodes] == {"feedforward": ["none"] * 3, "recurrent": ["dense", "none"],
                                                   "recurrent_diagonal": ["diagonal", "none"]}[kind]
    _, y, zs = model.run(jnp.asarray(x), record=True)
    assert len(zs) == len(spikes) and all(0.05 < float(np.mean(s)) < 0.95 for s in spikes)
    for ours, theirs in zip(zs, spikes):
        np.testing.assert_array_equal(np.asarray(ours), theirs)
    np.testing.assert_allclose(np.asarray(y), output, rtol=1e-12, atol=1e-12)
    # read at our usual dt the leak is wrong: refused when it leaves (0, 1), and the error names snnTorch's dt
    if kind == "recurrent":  # beta = 0.85: 1 - 1e-3/tau = -0.5
        with pytest.raises(ValueError, match=r"outside \(0, 1\) at dt=0.001; its r = tau/dt holds for dt=0.0001"):
            dp.from_nir(graph, dt=1e-3, discretisation="euler")


@pytest.mark.parametrize("name", ["chain, dense recurrence, leaky readout", "a DAG with a residual edge"])
def test_the_input_gain_folded_into_the_weights_runs_the_same_network(name):
    """``gain="weights"`` (for simulators that ignore a LIF's r, norse 1.1.0): r = 1 and every weight and bias into
    a node times 1/(1 - a) (a residual edge gets a Linear of its own); read back, the same network."""
    model = MODELS[name]()
    model = eqx.tree_at(lambda m: [n.b for n in m.nodes], model,  # biases too are scaled
                        [0.05 * jnp.arange(n.b.shape[0], dtype=jnp.float64) for n in model.nodes])
    graph = dp.to_nir(model, dt=DT, discretisation="euler", gain="weights")
    plain = dp.to_nir(model, dt=DT, discretisation="euler")
    a = np.asarray(model.hidden[0].neuron.decay)
    np.testing.assert_array_equal(graph.nodes["layer1"].r, 1.0)
    np.testing.assert_allclose(graph.nodes["layer1.from_input"].weight,
                               plain.nodes["layer1.from_input"].weight / (1 - a), rtol=1e-12)
    back = dp.from_nir(graph, dt=DT)
    assert back.dtype == jnp.float64 and back.edges == model.edges
    assert [n.recurrence for n in back.nodes] == [n.recurrence for n in model.nodes]
    x = _inputs(model.n_in)
    _, y, zs = model.run(x, record=True)
    _, y_back, zs_back = back.run(x, record=True)
    assert all(bool(jnp.array_equal(p, q)) for p, q in zip(zs, zs_back))
    np.testing.assert_allclose(np.asarray(y_back), np.asarray(y), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="gain must be one of"):
        dp.to_nir(model, dt=DT, gain="current")


def test_the_dtype_comes_from_the_graph_or_must_be_named():
    model32 = dp.DeepRNN(3, [4], 2, neuron="lif", recurrence="diagonal", key=KEY, dtype=jnp.float32)
    assert dp.from_nir(dp.to_nir(model32, dt=DT), dt=DT).dtype == jnp.float32  # ours: recorded in the metadata
    assert dp.from_nir(dp.to_nir(model32, dt=DT), dt=DT, dtype=jnp.float64).dtype == jnp.float64  # or chosen

    def foreign(weight_dtype, neuron_dtype):
        lif = nir.LIF(tau=np.full(4, 0.02, neuron_dtype), r=np.full(4, 20.0, neuron_dtype),
                      v_leak=np.zeros(4, neuron_dtype), v_threshold=np.ones(4, neuron_dtype))
        return nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "fc": nir.Linear(np.ones((4, 3), weight_dtype)),
                                   "lif": lif, "output": nir.Output(np.array([4]))},
                            edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])

    assert dp.from_nir(foreign(np.float32, np.float32), dt=DT).dtype == jnp.float32  # as snnTorch writes float32
    assert dp.from_nir(foreign(np.float64, np.float64), dt=DT).dtype == jnp.float64
    with pytest.raises(ValueError, match=r"arrays in \['float32', 'float64'\]: pass dtype=jnp.float32 or"):
        dp.from_nir(foreign(np.float32, np.float64), dt=DT)
    assert dp.from_nir(foreign(np.float32, np.float64), dt=DT, dtype=jnp.float32).dtype == jnp.float32
    if hasattr(jax, "enable_x64"):
        x64_off = jax.enable_x64(False)
    else:  # older JAX
        from jax.experimental import disable_x64

        x64_off = disable_x64()
    with x64_off:
        with pytest.raises(ValueError, match="the graph's arrays are float64 .* needs jax_enable_x64"):
            dp.from_nir(foreign(np.float64, np.float64), dt=DT)


def test_diagonal_recurrence_is_written_as_a_marked_linear_and_read_from_either_form():
    """nirtorch (snnTorch, norse) has no map for ``nir.Scale``: a diagonal recurrence is written as a Linear of its
    diagonal, marked; snnTorch writes RLeaky's V the same way, unmarked, and a Scale is read too."""
    model = dp.DeepRNN(3, [4], 2, neuron="lif", recurrence="diagonal", key=KEY, dtype=jnp.float64, input_gain=3.0)
    graph = dp.to_nir(model, dt=DT, discretisation="euler")
    w = graph.nodes["layer1.recurrent"]
    assert isinstance(w, nir.Linear) and w.metadata["recurrence"] == "diagonal"
    np.testing.assert_array_equal(w.weight, np.diag(np.asarray(model.hidden[0].W)))
    # our dense recurrence stays dense even where its matrix happens to be diagonal
    dense = dp.DeepRNN(3, [4], 2, neuron="lif", recurrence="dense", key=KEY, dtype=jnp.float64)
    dense = eqx.tree_at(lambda m: m.hidden[0].W, dense, jnp.diag(jnp.arange(1.0, 5.0) / 10))
    assert dp.from_nir(dp.to_nir(dense, dt=DT), dt=DT).hidden[0].recurrence == "dense"
    x = _inputs(3)
    _, _, (z,) = model.run(x, record=True)
    for form in ("unmarked linear", "scale"):
        nodes = dict(graph.nodes)
        nodes["layer1.recurrent"] = (nir.Linear(weight=np.asarray(w.weight)) if form == "unmarked linear"
                                     else nir.Scale(scale=np.asarray(model.hidden[0].W)))
        foreign = nir.NIRGraph(nodes=nodes, edges=graph.edges)  # no deepeprop metadata: another tool's graph
        back = dp.from_nir(foreign, dt=DT, discretisation="euler")
        assert back.hidden[0].recurrence == "diagonal", form
        np.testing.assert_array_equal(np.asarray(back.run(x, record=True)[2][0]), np.asarray(z))
