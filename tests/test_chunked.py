"""Every evaluation of every chunk-capable engine equals its step-by-step form (float64).

An engine declares the option by having a ``chunk_size`` field and lists its evaluations in ``evaluations``
(:mod:`deepeprop.engines.evaluation`): ``Step`` is the reference, ``Chunked(K)`` the hybrid per chunk and
``Reverse`` one chunk as long as the window (docs/math.md, "Traces contracted per chunk"). Chunk sizes cover
1, a divisor of ``T``, a size that leaves a shorter last chunk and more than ``T``.
"""
import dataclasses
import itertools

import jax
import jax.numpy as jnp
import optax
import pytest

import deepeprop as dp
from deepeprop.engines import ENGINES, Chunked, Reverse
from deepeprop.engines.chunks import ChunkedEngine
from deepeprop.validation import checked
from helpers import N_IN, N_OUT, activity, make_batch, relative_errors

EXACT = 1e-12
STEPS = 12
CHUNK_SIZES = ((1, 5), (4,), (20,))  # 1 and a shorter last chunk; a divisor of T; more than T (one chunk of T)
# the engines whose chunks contract e-prop-style traces (ChunkedEngine); deep_eprop's chunk hybrid has its own
# grid in test_evaluations.py
CHUNKED_ENGINES = [name for name, cls in ENGINES.items() if issubclass(cls, ChunkedEngine)]
# per neuron: (recurrence, self_connections, neuron_options); the LIF cases are the ones a chunk treats
# differently: factorised (reset detached, no self-connection), scalar with the reset path, diagonal (a per-row
# presynaptic column); ALIF (two states), LRU (two states, currents and outputs, trained neuron parameters) and
# minGRU (two currents) are contracted with (d, d) own blocks
MODELS = {
    "leaky": [("dense", False, None), ("dense", True, None)],
    "lif": [("dense", False, {"detach_reset": True}), ("dense", True, {"detach_reset": False}),
            ("none", True, {"detach_reset": False}), ("diagonal", True, None)],
    "alif": [("dense", True, None), ("dense", False, None)],
    "lru": [("none", True, None)],
    "mingru": [("none", True, None)],
}
# the neuron features, appended (the indices above stay): a refractory LIF that would factorise without its counter
# (d = 2, contracted with own blocks), and ALIF with per-neuron beta, LIF neurons in the node and a refractory period
FEATURE_CASES = [("lif", "dense", False, {"detach_reset": True, "n_ref": 2}),
                 ("alif", "dense", False, {"beta": "bellec", "n_lif": 2, "n_ref": 2})]
CASES = [(neuron, *case) for neuron, cases in MODELS.items() for case in cases] + FEATURE_CASES


def make(neuron, recurrence, self_connections, options, readout, seed=0):
    return dp.DeepRNN(N_IN, [4, 5, 6], N_OUT, neuron=neuron, recurrence=recurrence, readout=readout,
                      key=jax.random.PRNGKey(seed), dtype=jnp.float64, tau_m=5.0, tau_out=4.0, input_gain=1.5,
                      self_connections=self_connections, neuron_options=options)


def test_the_registry_has_chunked_engines():
    assert {"eprop", "immediate", "deep_eprop_factored"} <= set(CHUNKED_ENGINES)
    assert Reverse in ENGINES["eprop"].evaluations and Reverse in ENGINES["immediate"].evaluations


def _evaluation_grid():
    """e-prop on every case once in the default run, the other chunked engines on every third case (in turn), the
    other axes turned with coprime periods so that each engine meets
    both readouts and every chunk size across its cases (and ALIF, LRU and diagonal LIF several chunks); the full
    product is marked ``slow``."""
    readouts, filters, feedbacks = ["leaky", "linear"], [True, False], ["symmetric", "random"]
    params = []
    for index, (method, case) in enumerate(itertools.product(CHUNKED_ENGINES, CASES)):
        kept = (readouts[index % 2], filters[index // 2 % 2], feedbacks[index // 4 % 2],
                CHUNK_SIZES[(index + 1) % len(CHUNK_SIZES)])
        default = method == "eprop" or (CHUNKED_ENGINES.index(method) + CASES.index(case)) % 3 == 0
        for rest in itertools.product(readouts, filters, feedbacks, CHUNK_SIZES):
            params.append(pytest.param(method, case, *rest,
                                       marks=() if default and rest == kept else (pytest.mark.slow,)))
    return params


@pytest.mark.parametrize("method,case,readout,readout_filter,feedback,sizes", _evaluation_grid())
def test_every_evaluation_equals_step_by_step(method, case, readout, readout_filter, feedback, sizes):
    """Each evaluation the engine declares (the registry's ``evaluations``), through ``dp.gradients(evaluation=)``."""
    model = make(*case, readout)
    inputs, targets = make_batch("mse", steps=STEPS)
    fields = {f.name for f in dataclasses.fields(ENGINES[method])}
    options = {name: value for name, value in (("readout_filter", readout_filter), ("feedback", feedback))
               if name in fields}
    try:
        ENGINES[method](**options).check_model(model)
    except ValueError as error:  # e.g. deep_eprop_factored needs constant leaks above the bottom node
        pytest.skip(f"{method} refuses this model: {error}")
    reference = dp.gradients(model, inputs, targets, method=method, evaluation="step", **options)
    evaluations = ENGINES[method].evaluations
    assert Chunked in evaluations
    others = [f"chunked:{size}" for size in sizes] + (["reverse"] if Reverse in evaluations else [])
    for evaluation in others:
        grads = dp.gradients(model, inputs, targets, method=method, evaluation=evaluation, **options)
        errors = relative_errors(grads, reference, model)
        assert max(errors) < EXACT, (evaluation, errors)


def _factored_models():
    """Factored deep e-prop's chunk cases: its ``F`` chains of every length, both readouts, a skip edge, a
    bottom node that is not factorised (run step by step inside each chunk)."""
    lif = {"detach_reset": True}
    key = jax.random.PRNGKey(3)
    common = dict(key=key, dtype=jnp.float64, tau_out=4.0, input_gain=1.5)
    two_lif = dp.DeepRNN(N_IN, [3, 4], N_OUT, neuron="lif", recurrence="dense", readout="leaky", tau_m=5.0,
                         self_connections=False, neuron_options=lif, **common)
    three_leaky = dp.DeepRNN(N_IN, [3, 4, 5], N_OUT, neuron="leaky", recurrence="dense", readout="linear",
                             tau_m=[3.0, 5.0, 4.0], self_connections=False, **common)
    # ALIF at the bottom (fed by the input only), a skip edge 1 -> 3 and one 2 -> readout, leaky readout
    layers = [dp.LayerSpec(3, "alif", tau_m=4.0, tau_a=8.0), dp.LayerSpec(4, "lif", self_connections=False,
                                                                         tau_m=5.0, neuron_options=lif),
              dp.LayerSpec(5, "leaky", recurrence="none", tau_m=3.0)]
    graph = dp.build_network(N_IN, layers, N_OUT, edges=[(0, 1), (1, 2), (2, 3), (1, 3), (3, 4), (2, 4)], **common)
    # LIF with the reset kept at the bottom, a skip edge to a linear readout
    reset_kept = dp.DeepRNN(N_IN, [3, 4], N_OUT, neuron="lif", recurrence=["none", "dense"], readout="linear",
                            tau_m=5.0, self_connections=False, neuron_options=[{"detach_reset": False}, lif],
                            skip=[(1, 3)], **common)
    return {"two_lif_leaky": two_lif, "three_leaky_linear": three_leaky, "graph_alif_skip": graph,
            "reset_kept_skip_linear": reset_kept}


FACTORED_SIZES = (4, 5, 20)  # divides T, a shorter last chunk, more than T (one chunk of T)
# the default run keeps few compilations (the grid above covers 3 layers of leaky-rate units with a leaky readout
# and of LIF with a linear one); -m slow runs every size on every model
FACTORED_DEFAULT = {"two_lif_leaky": (20,), "graph_alif_skip": (5,), "reset_kept_skip_linear": (5,),
                    "three_leaky_linear": ()}


@pytest.mark.parametrize("name,sizes", [
    pytest.param(name, sizes, marks=() if sizes == FACTORED_DEFAULT[name] else (pytest.mark.slow,),
                 id=f"{name}-{'-'.join(map(str, sizes))}")
    for name, default in FACTORED_DEFAULT.items() for sizes in (default, FACTORED_SIZES)
    if sizes and (sizes == default or sizes != FACTORED_DEFAULT[name])])
def test_factored_chunks_equal_step_by_step(name, sizes):
    """Factored deep e-prop, chunked, equals its step-by-step form."""
    model = _factored_models()[name]
    inputs, targets = make_batch("mse", steps=STEPS)
    for node, (rate, _) in zip(model.hidden, activity(model, inputs)):
        assert not node.neuron.spiking or 0.02 < rate < 0.98, "every spiking node must spike"
    reference = dp.gradients(model, inputs, targets, method="deep_eprop_factored", chunk_size=1)
    for size in sizes:
        grads = dp.gradients(model, inputs, targets, method="deep_eprop_factored", chunk_size=size)
        errors = relative_errors(grads, reference, model)
        assert max(errors) < EXACT, (size, errors)
    engine = dp.make_engine("deep_eprop_factored", chunk_size=4)
    expected = {"graph_alif_skip": (False, True, True), "reset_kept_skip_linear": (False, True)}
    assert engine.batch_major(model) == expected.get(name, (True,) * len(model.hidden))
    if name == "two_lif_leaky":  # ``step`` on the batch-major layout (chunk_size > 1), then chunks, on one state
        loss, mask = dp.make_loss("mse"), jnp.ones(inputs.shape[:2])
        step = jax.jit(lambda s, x, t, m: engine.step(model, s, x, t, m, loss))
        state = engine.init(model, inputs.shape[1])
        for t in range(3):
            state, _ = step(state, inputs[t], targets[t], mask[t])
        state, _, _ = engine.sequence(model, state, inputs[3:], targets[3:], mask[3:], loss)
        assert max(relative_errors(engine.grads(model, state), reference, model)) < EXACT


def test_chunks_cover_the_cases_they_claim():
    """The models above exercise every layout a chunk contracts (and the step form's)."""
    engine = dp.EProp()
    layouts = [engine.layouts(make(*case, "leaky"))[0] for case in CASES]
    assert layouts[2] == "factorised"  # LIF, reset detached, no self-connection
    assert layouts[3] == layouts[4] == "scalar"  # LIF with the reset path, dense or none
    assert set(layouts[5:]) == {"components"}  # diagonal LIF, ALIF, LRU, minGRU, the feature cases
    assert layouts[2] != layouts[-2]  # a refractory period takes LIF off the factorised trace (d = 2)
    assert all(engine.chunked_layers(make(*case, "leaky")) == (True,) * 3 for case in CASES[:6])
    step = dp.EProp(chunk_size=1)
    assert step.layouts(make(*CASES[5], "leaky")) == ("neuron_major",) * 3  # diagonal LIF, step by step
    assert step.layouts(make(*CASES[6], "leaky")) == ("general",) * 3  # ALIF
    assert step.chunked_layers(make("leaky", "dense", False, None, "leaky")) == (False,) * 3


@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[6]])  # factorised, scalar with the reset path, ALIF
def test_chunked_and_reverse_equal_bptt_for_one_layer(case):
    """One hidden layer without dense recurrence: e-prop is exact, in every evaluation."""
    neuron, _, self_connections, options = case
    model = dp.DeepRNN(N_IN, [5], N_OUT, neuron=neuron, recurrence="none", readout="leaky",
                       key=jax.random.PRNGKey(2), dtype=jnp.float64, tau_m=5.0, tau_out=4.0, input_gain=1.5,
                       neuron_options=options)
    inputs, targets = make_batch("mse", steps=STEPS)
    # the same reset choice: the neuron's where it makes one, else e-prop's (BPTT's own default keeps the reset)
    reference = dp.gradients(model, inputs, targets, method="bptt", **({} if options else {"detach_reset": True}))
    for evaluation in ("chunked:5", "reverse"):
        grads = dp.gradients(model, inputs, targets, method="eprop", evaluation=evaluation)
        assert max(relative_errors(grads, reference, model)) < 1e-9, evaluation


def _train(model, inputs, targets, evaluation, update_every, feedback="symmetric"):
    learner = dp.OnlineLearner(dp.EProp(feedback=feedback), optax.sgd(0.1), loss="mse", update_every=update_every,
                               evaluation=evaluation)
    state, losses, _ = learner.train_sequence(learner.init(model), inputs, targets)
    return state, losses


def _assert_same_training(first, second, model):
    (state, losses), (other, other_losses) = first, second
    assert jnp.allclose(losses, other_losses, rtol=1e-12, atol=0)
    weights = [state.model.hidden[0].inputs[0].weight, other.model.hidden[0].inputs[0].weight]
    assert jnp.max(jnp.abs(weights[0] - weights[1])) < 1e-12 * jnp.max(jnp.abs(weights[0]))
    assert not jnp.allclose(weights[0], model.hidden[0].inputs[0].weight)  # training moved the weights


@pytest.mark.parametrize("neuron,update_every", [("lif", 1), ("lif", 7), ("alif", 4), ("alif", 7)])
def test_online_training_does_not_depend_on_the_evaluation(neuron, update_every):
    """Weights updated every few steps: chunks never straddle an update (a chunk of 3 cut by updates every 4 or 7
    steps), so training is the same as step by step."""
    case = CASES[3] if neuron == "lif" else CASES[7]  # LIF with the reset path (scalar); ALIF (d = 2)
    model = make(*case, "leaky")
    inputs, targets = make_batch("mse", steps=STEPS)
    _assert_same_training(_train(model, inputs, targets, "step", update_every),
                          _train(model, inputs, targets, "chunked:3", update_every), model)


def test_reverse_training_equals_step_by_step_with_one_update_per_sequence():
    """update_every=None: one update per sequence, so the reverse window (traces from zero) is the online rule;
    adaptive feedback moves B_out with W_out in both."""
    model = make(*CASES[7], "leaky")  # ALIF
    inputs, targets = make_batch("mse", steps=STEPS)
    step = _train(model, inputs, targets, "step", None, feedback="adaptive")
    reverse = _train(model, inputs, targets, "reverse", None, feedback="adaptive")
    _assert_same_training(step, reverse, model)
    for b_step, b_reverse in zip(step[0].feedback[-1], reverse[0].feedback[-1]):
        assert jnp.max(jnp.abs(b_step - b_reverse)) < 1e-12 * jnp.max(jnp.abs(b_step))


def test_reverse_returns_the_traces_at_zero():
    """The reverse window starts its traces at zero and returns them at zero (feedback matrices kept), its
    gradients accumulated and the network state at the window's end, as the step form's."""
    model = make(*CASES[7], "leaky")
    inputs, targets = make_batch("mse", steps=STEPS)
    mask, loss = jnp.ones(inputs.shape[:2]), dp.make_loss("mse")
    rule = dp.EProp(feedback="random")
    reverse = dp.engines.with_evaluation(rule, "reverse")
    state = reverse.init(model, inputs.shape[1])
    end, ys, _ = jax.jit(lambda s: reverse.sequence(model, s, inputs, targets, mask, loss))(state)
    step = dp.engines.with_evaluation(rule, "step")
    step_end, step_ys, _ = step.sequence(model, step.init(model, inputs.shape[1]), inputs, targets, mask, loss)
    traces = (end.traces.eligibility, end.traces.filtered, end.traces.readout_eligibility)
    assert all(float(jnp.max(jnp.abs(x))) == 0 for x in jax.tree_util.tree_leaves(traces))
    assert all(jnp.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(end.traces.feedback),
                                                     jax.tree_util.tree_leaves(state.traces.feedback)))
    assert jnp.allclose(ys, step_ys, rtol=1e-12, atol=0)
    assert all(jnp.allclose(a, b, rtol=1e-12, atol=1e-300) for a, b in zip(end.net, step_end.net))


def test_chunk_size_is_checked():
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        dp.EProp(chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        dp.make_engine("immediate", chunk_size=2.5)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        dp.make_engine("deep_eprop_factored", chunk_size=0)


@pytest.mark.parametrize("method,neuron", [("bptt", "lif")] + [(name, "lif") for name in CHUNKED_ENGINES]
                         + [("eprop", "alif")])
def test_chunked_memory_does_not_grow_with_sequence_length(method, neuron):
    """XLA's compiled temporaries of a gradient for T and 8T steps (each with a shorter last chunk): equal for an
    online engine (no copy of the inputs, no record that outlives its chunk); BPTT stores the trajectory."""
    model = make(*(CASES[3] if neuron == "lif" else CASES[7]), "leaky")
    engine, loss = dp.make_engine(method, **({} if method == "bptt" else dict(chunk_size=16))), dp.make_loss("mse")
    try:
        engine.check_model(model)
    except ValueError:  # deep_eprop_factored: the reset detached and no self-connection above the bottom node
        model = make("lif", "dense", False, {"detach_reset": True}, "leaky")

    def gradient(inputs, targets, mask):
        with checked():  # the engine's own memory: the entry points' argument checks (a few reductions) left out
            state = engine.init(model, inputs.shape[1])
            state, _, _ = engine.sequence(model, state, inputs, targets, mask, loss)
            return engine.grads(model, state)

    temps = []
    for steps in (100, 804):  # both leave a last chunk of 4
        inputs, targets = make_batch("mse", steps=steps)
        compiled = jax.jit(gradient).lower(inputs, targets, jnp.ones(inputs.shape[:2], inputs.dtype)).compile()
        temps.append(compiled.memory_analysis().temp_size_in_bytes)
    if method == "bptt":
        assert temps[1] > 4 * temps[0]
    else:
        assert temps[1] == temps[0], temps
