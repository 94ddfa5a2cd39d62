"""A rule and its evaluations (docs/math.md, "Rules and their evaluations"): every evaluation an engine declares
gives its step form's gradient (float64), deep e-prop's reverse form is BPTT through its surrogate (equal to BPTT
exactly where the recursion is exact, different with dense recurrence), online training gives the same weights
with each evaluation, the chunk hybrid's memory does not grow with T, and the API refuses what it cannot do.

The e-prop family's chunked and reverse forms are checked over their own grid in ``test_chunked.py``.
"""
import jax
import jax.numpy as jnp
import optax
import pytest

import deepeprop as dp
from deepeprop.engines import ENGINES
from deepeprop.validation import checked
from helpers import N_IN, N_OUT, make_batch, relative_errors

EXACT = 1e-12
STEPS = 15  # at least three chunks for sizes 4 and 5: the carried terms of a chunk reach the gradient
# per neuron model: (neuron, recurrence, self_connections, neuron_options); the exact-reset LIF and ALIF have
# state-dependent own Jacobians, LRU and minGRU several currents (LRU also trained neuron parameters and two
# outputs), leaky rate units with diagonal recurrence a per-row W_jj column
CELLS = {
    "lif_standard": ("lif", "dense", False, {"detach_reset": True}),
    "lif_exact_reset": ("lif", "dense", True, {"detach_reset": False}),
    "alif": ("alif", "dense", True, None),
    "leaky_diagonal": ("leaky", "diagonal", True, None),
    "lru": ("lru", "none", True, None),
    "mingru": ("mingru", "none", True, None),
    # the neuron features: a refractory counter in the state (d = 2, 3), per-neuron beta with LIF neurons in the node
    "lif_ref": ("lif", "diagonal", True, {"n_ref": 2, "detach_reset": False}),
    "alif_ref": ("alif", "dense", False, {"beta": "bellec", "n_lif": 2, "n_ref": 2}),
}
GRAPHS = {"chain": (), "skip": ((1, 3), (0, 2))}
CHUNK_SIZES = (4, 5, 16)  # a shorter last chunk (4, 4, 4, 3), a divisor of T, K > T


def make(cell, graph="chain", readout="leaky", seed=0):
    neuron, recurrence, self_connections, options = CELLS[cell]
    return dp.DeepRNN(N_IN, [4, 5, 6], N_OUT, neuron=neuron, recurrence=recurrence, readout=readout,
                      key=jax.random.PRNGKey(seed), dtype=jnp.float64, tau_m=5.0, tau_out=4.0, input_gain=1.5,
                      self_connections=self_connections, neuron_options=options, skip=list(GRAPHS[graph]))


def test_every_engine_declares_its_evaluations():
    for name, cls in ENGINES.items():
        assert cls.evaluations, name
        engine = cls()
        assert type(engine.evaluation) in cls.evaluations, name
    assert dp.Reverse in ENGINES["deep_eprop"].evaluations and dp.Chunked in ENGINES["deep_eprop"].evaluations
    assert ENGINES["bptt"].evaluations == (dp.Reverse,)


# the default run: every cell once, every graph, readout, loss and chunk size in turn; the full grid under -m slow
COVERING = [("lif_standard", "skip", "leaky", "mse", 4), ("lif_exact_reset", "chain", "linear", "cross_entropy", 5),
            ("alif", "skip", "linear", "mse", 16), ("leaky_diagonal", "chain", "leaky", "cross_entropy", 4),
            ("lru", "skip", "leaky", "cross_entropy", 5), ("mingru", "chain", "linear", "mse", 16),
            ("lif_ref", "skip", "linear", "cross_entropy", 4), ("alif_ref", "chain", "leaky", "mse", 5)]
FULL = [(c, g, r, lo, k) for c in CELLS for g in GRAPHS for r in ("leaky", "linear")
        for lo in ("mse", "cross_entropy") for k in CHUNK_SIZES]


@pytest.mark.parametrize("cell,graph,readout,loss,size",
                         COVERING + [pytest.param(*case, marks=pytest.mark.slow) for case in FULL
                                     if case not in COVERING])
def test_deep_eprop_evaluations_equal_the_step_form(cell, graph, readout, loss, size):
    model = make(cell, graph, readout)
    inputs, targets = make_batch(loss, steps=STEPS)
    reference = dp.gradients(model, inputs, targets, method="deep_eprop", loss=loss, evaluation="step")
    for evaluation in (dp.Reverse(), dp.Chunked(size)):
        grads = dp.gradients(model, inputs, targets, method="deep_eprop", loss=loss, evaluation=evaluation)
        errors = relative_errors(grads, reference, model)
        assert max(errors) < EXACT, (evaluation, errors)


def test_direct_nodes_follow_the_graph_and_give_the_general_hybrids_gradient():
    """The plan marks a node direct when every ancestor is a parent and none is below another; the direct formula
    (no cotangent per neuron) gives the general hybrid's gradient, with a state-dependent own Jacobian (ALIF), several
    currents and outputs (LRU) and a shorter last chunk (the evaluation grid above holds it to the step form on
    every cell and graph, the exact-reset LIF included)."""
    assert dp.DeepEProp().plan(make("alif")).direct_nodes == (False, True, False, False)
    # skip 0 -> 2 keeps node 2 direct; 1 -> 3 gives node 3 a parent below another parent
    assert dp.DeepEProp().plan(make("alif", "skip")).direct_nodes == (False, True, False, False)
    assert not any(dp.DeepEProp(direct=False).plan(make("alif")).direct_nodes)
    assert not any(dp.DeepEProp(chunk_size=1).plan(make("alif")).direct_nodes)
    two = dp.DeepRNN(N_IN, [4, 5], N_OUT, neuron=["lif", "alif"], recurrence="dense", readout="leaky",
                     key=jax.random.PRNGKey(3), dtype=jnp.float64, tau_m=5.0, tau_out=4.0, input_gain=1.5)
    one = dp.DeepRNN(N_IN, [4], N_OUT, neuron="lru", recurrence="none", readout="leaky", key=jax.random.PRNGKey(4),
                     dtype=jnp.float64)
    assert dp.DeepEProp().plan(one).direct_nodes == (False, True)  # one hidden node: the readout is direct
    inputs, targets = make_batch("mse", steps=STEPS)
    directs = {}
    for name, model in (("two", two), ("one", one)):
        general = dp.gradients(model, inputs, targets, method=dp.DeepEProp(chunk_size=4, direct=False), loss="mse")
        directs[name] = dp.gradients(model, inputs, targets, method=dp.DeepEProp(chunk_size=4), loss="mse")
        assert max(relative_errors(directs[name], general, model)) < EXACT
    step = dp.gradients(two, inputs, targets, method=dp.DeepEProp(chunk_size=1), loss="mse")
    assert max(relative_errors(directs["two"], step, two)) < EXACT


def test_factorised_pairs_in_the_hybrid_give_the_full_traces_gradient():
    """On a chain of factorisable LIF nodes (and with a skip edge) the hybrid stores ``S[k,l] = U (x) F`` for each child
    with a shared constant leak reached by one edge, and gives the gradient of the hybrid with every trace full and of
    the step form, hops from ``F`` into the rows of the nodes above included."""
    chain, skip = make("lif_standard"), make("lif_standard", "skip")
    plan = dp.DeepEProp().plan(chain)
    assert plan.factorised_hops == ((2,), (3,), (4,), ())  # ids: each hidden node's child, the readout last
    assert dp.DeepEProp().plan(skip).factorised_hops[0] == (2,)  # 0 -> 2 does not reach node 2 from node 1 twice
    assert dp.DeepEProp(factorize=False).plan(chain).factorised_hops == ((), (), (), ())
    state = dp.DeepEProp().init(chain, 2)
    assert state.traces[0][1][0].shape == (2, 4, chain.nodes[0].row_size)  # F (B, n_1, R_1), not (B, 5, 1, 4, R_1)
    inputs, targets = make_batch("mse", steps=STEPS)
    for model in (chain, skip):
        step = dp.gradients(model, inputs, targets, method=dp.DeepEProp(chunk_size=1, factorize=False), loss="mse")
        for size in (4, 16):
            full = dp.gradients(model, inputs, targets, method=dp.DeepEProp(chunk_size=size, factorize=False),
                                loss="mse")
            factorised = dp.gradients(model, inputs, targets, method=dp.DeepEProp(chunk_size=size), loss="mse")
            assert max(relative_errors(factorised, full, model)) < EXACT, size
            assert max(relative_errors(factorised, step, model)) < EXACT, size


@pytest.mark.parametrize("cell", ["leaky_diagonal", "lif_exact_reset", "lif_ref"])
def test_deep_eprop_reverse_is_bptt_where_exact_and_not_with_dense_recurrence(cell):
    """The surrogate is the network itself without dense recurrence; with it, the surrogate is not the network."""
    model = make(cell)
    inputs, targets = make_batch("mse", steps=STEPS)
    reverse = dp.gradients(model, inputs, targets, method="deep_eprop", evaluation="reverse")
    exact = dp.gradients(model, inputs, targets, method="bptt")
    errors = relative_errors(reverse, exact, model)
    if CELLS[cell][1] == "dense":
        assert max(errors[:-1]) > 1e-3, errors  # the hidden layers' gradients differ
    else:
        assert max(errors) < EXACT, errors


def _train(evaluation, update_every, steps=STEPS):
    model = make("alif", "skip")
    inputs, targets = make_batch("mse", steps=steps)
    # the step form with full traces: a factorised first hop (factorize=True) reads the current U_{k<-l}, so after
    # an update inside a sequence it is no longer the trace the hybrid and the full step form carry
    learner = dp.OnlineLearner(dp.DeepEProp(factorize=False), optax.sgd(0.05), update_every=update_every,
                               evaluation=evaluation)
    state = learner.init(model)
    for seed in range(2):
        state, _, _ = learner.train_sequence(state, inputs + 0.1 * seed, targets)
    return state.model


def test_online_training_gives_the_same_weights_with_each_evaluation():
    """update_every=3 cuts the chunks of 4 (five windows of 3); one update per sequence for the reverse form."""
    def weights(model):
        return jnp.concatenate([leaf.ravel() for leaf in jax.tree_util.tree_leaves(model.nodes)
                                if leaf.dtype == jnp.float64])

    step, chunked = _train("step", 3), _train("chunked:4", 3)
    assert jnp.max(jnp.abs(weights(step) - weights(chunked))) < 1e-12
    step_once, reverse_once = _train("step", None), _train("reverse", None)
    assert jnp.max(jnp.abs(weights(step_once) - weights(reverse_once))) < 1e-12
    assert jnp.max(jnp.abs(weights(step) - weights(step_once))) > 1e-6  # the updates inside the sequence count


def test_the_chunk_hybrid_keeps_memory_constant_in_sequence_length():
    """XLA's compiled temporaries of the hybrid for T and 8T steps (each with a last chunk of 4) are equal."""
    model = make("lif_exact_reset")
    loss = dp.make_loss("mse")
    temps = {}
    for evaluation in ("chunked:16",):
        engine = dp.with_evaluation(dp.make_engine("deep_eprop"), evaluation)

        def gradient(inputs, targets, mask, engine=engine):
            state = engine.init(model, inputs.shape[1])
            state, _, _ = engine.sequence(model, state, inputs, targets, mask, loss)
            return engine.grads(model, state)

        for steps in (100, 804):
            inputs, targets = make_batch("mse", steps=steps)
            with checked():  # the engine's own memory: the entry points' argument checks left out
                compiled = jax.jit(gradient).lower(inputs, targets, jnp.ones(inputs.shape[:2], inputs.dtype)).compile()
            temps[evaluation, steps] = compiled.memory_analysis().temp_size_in_bytes
    assert temps["chunked:16", 804] == temps["chunked:16", 100], temps


def test_the_step_of_a_chunked_engine_is_a_chunk_of_one_step():
    model = make("alif")
    inputs, targets = make_batch("mse", steps=4)
    engine, loss = dp.DeepEProp(chunk_size=8), dp.make_loss("mse")
    state = engine.init(model, inputs.shape[1])
    step = jax.jit(lambda s, x, t: engine.step(model, s, x, t, jnp.ones(x.shape[:1]), loss))
    for x, t in zip(inputs, targets):
        state, _ = step(state, x, t)
    reference = dp.gradients(model, inputs, targets, method="deep_eprop", evaluation="step")
    assert max(relative_errors(engine.grads(model, state), reference, model)) < EXACT


def test_evaluations_refused_with_a_clear_message():
    model = make("lif_standard")
    inputs, targets = make_batch("mse", steps=4)
    with pytest.raises(ValueError, match="method 'rtrl' has no 'reverse' evaluation; it has: step"):
        dp.gradients(model, inputs, targets, method="rtrl", evaluation="reverse")
    with pytest.raises(ValueError, match="has no 'chunked' evaluation; it has: reverse"):
        dp.gradients(model, inputs, targets, method="bptt", evaluation=dp.Chunked(4))
    for bad in ("sideways", "chunked:0", "chunked:x", 3):
        with pytest.raises(ValueError, match="evaluation must be"):
            dp.gradients(model, inputs, targets, method="eprop", evaluation=bad)
    with pytest.raises(ValueError, match="size must be"):
        dp.Chunked(0)
    with pytest.raises(ValueError, match="needs update_every=None"):
        dp.OnlineLearner("deep_eprop", optax.sgd(0.1), update_every=5, evaluation="reverse")
    reversed_engine = dp.with_evaluation(dp.make_engine("deep_eprop"), "reverse")
    assert reversed_engine.name == "deep_eprop" and not reversed_engine.online
    with pytest.raises(TypeError, match="not online"):
        reversed_engine.step(model, reversed_engine.init(model, 2), inputs[0], targets[0], jnp.ones(2),
                             dp.make_loss("mse"))
    assert dp.make_evaluation("chunked:32") == dp.Chunked(32) and str(dp.Chunked(32)) == "chunked:32"


def test_every_engine_and_evaluation_reports_a_cost():
    """``engine.cost`` (what bench prints): positive for every registered engine in each evaluation it declares; a
    reverse form stores the trajectory (grows with T), the online forms carry the same traces for any T."""
    model = make("lif_standard")
    for name, cls in ENGINES.items():
        for kind in cls.evaluations:
            engine = dp.with_evaluation(dp.make_engine(name), dp.Chunked(4) if kind is dp.Chunked else kind())
            short, long = engine.cost(model, 2, 10), engine.cost(model, 2, 1000)
            assert short[0] > 0 and short[1] > 0, (name, kind)
            if engine.online:
                assert short == long, (name, kind)
            else:
                assert long[0] == 100 * short[0] and long[1] == short[1], (name, kind)
