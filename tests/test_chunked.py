"""The chunked trace contractions equal the step-by-step form (float64), for every engine that has them.

An engine declares the option by having a ``chunk_size`` field; ``chunk_size=1`` is the step-by-step
reference (docs/math.md, "Traces contracted per chunk"). Chunk sizes cover a divisor of ``T``, a size that
leaves a shorter last chunk, ``T`` itself and more than ``T``.
"""
import dataclasses

import jax
import jax.numpy as jnp
import optax
import pytest

import deepeprop as dp
from deepeprop.engines import ENGINES
from deepeprop.validation import checked
from helpers import N_IN, N_OUT, activity, covering_grid, make_batch, relative_errors

EXACT = 1e-12
STEPS = 12
CHUNK_SIZES = (5, STEPS)  # a shorter last chunk; one chunk (a larger size runs as T)
CHUNKED_ENGINES = [name for name, cls in ENGINES.items()
                   if "chunk_size" in {f.name for f in dataclasses.fields(cls)}]
# per neuron: (recurrence, self_connections, neuron_options); the LIF cases are the three a chunk treats
# differently: factorised (reset detached, no self-connection), scalar with the reset path, diagonal (step form)
MODELS = {
    "leaky": [("dense", False, None), ("dense", True, None)],
    "lif": [("dense", False, {"detach_reset": True}), ("dense", True, {"detach_reset": False}),
            ("none", True, {"detach_reset": False}), ("diagonal", True, None)],
    "alif": [("dense", True, None)],  # two states: runs step by step inside each chunk
    "mingru": [("none", True, None)],
}
CASES = [(neuron, *case) for neuron, cases in MODELS.items() for case in cases]


def make(neuron, recurrence, self_connections, options, readout, seed=0):
    return dp.DeepRNN(N_IN, [4, 5, 6], N_OUT, neuron=neuron, recurrence=recurrence, readout=readout,
                      key=jax.random.PRNGKey(seed), dtype=jnp.float64, tau_m=5.0, tau_out=4.0, input_gain=1.5,
                      self_connections=self_connections, neuron_options=options)


def test_the_registry_has_chunked_engines():
    assert {"eprop", "immediate", "deep_eprop_factored"} <= set(CHUNKED_ENGINES)


@pytest.mark.parametrize("method,case,readout,readout_filter",
                         covering_grid([CHUNKED_ENGINES, CASES], [["leaky", "linear"], [True, False]]))
def test_chunked_equals_step_by_step(method, case, readout, readout_filter):
    model = make(*case, readout)
    inputs, targets = make_batch("mse", steps=STEPS)
    fields = {f.name for f in dataclasses.fields(ENGINES[method])}
    options = dict(readout_filter=readout_filter) if "readout_filter" in fields else {}
    try:
        ENGINES[method](**options).check_model(model)
    except ValueError as error:  # e.g. deep_eprop_factored needs constant leaks above the bottom node
        pytest.skip(f"{method} refuses this model: {error}")
    reference = dp.gradients(model, inputs, targets, method=method, chunk_size=1, **options)
    for size in CHUNK_SIZES:
        grads = dp.gradients(model, inputs, targets, method=method, chunk_size=size, **options)
        errors = relative_errors(grads, reference, model)
        assert max(errors) < EXACT, (size, errors)


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
FACTORED_DEFAULT = {"two_lif_leaky": (4, 20), "graph_alif_skip": (5,), "reset_kept_skip_linear": (5,),
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
    for node, (rate, _) in zip(model.layers, activity(model, inputs)):
        assert not node.neuron.spiking or 0.02 < rate < 0.98, "every spiking node must spike"
    reference = dp.gradients(model, inputs, targets, method="deep_eprop_factored", chunk_size=1)
    for size in sizes:
        grads = dp.gradients(model, inputs, targets, method="deep_eprop_factored", chunk_size=size)
        errors = relative_errors(grads, reference, model)
        assert max(errors) < EXACT, (size, errors)
    engine = dp.make_engine("deep_eprop_factored", chunk_size=4)
    expected = {"graph_alif_skip": (False, True, True), "reset_kept_skip_linear": (False, True)}
    assert engine.batch_major(model) == expected.get(name, (True,) * len(model.layers))
    if name == "two_lif_leaky":  # ``step`` on the batch-major layout (chunk_size > 1), then chunks, on one state
        loss, mask = dp.make_loss("mse"), jnp.ones(inputs.shape[:2])
        step = jax.jit(lambda s, x, t, m: engine.step(model, s, x, t, m, loss))
        state = engine.init(model, inputs.shape[1])
        for t in range(3):
            state, _ = step(state, inputs[t], targets[t], mask[t])
        state, _, _ = engine.sequence(model, state, inputs[3:], targets[3:], mask[3:], loss)
        assert max(relative_errors(engine.grads(model, state), reference, model)) < EXACT


def test_chunks_cover_the_cases_they_claim():
    """The models above exercise both chunked forms and the step form inside a chunk."""
    engine = dp.EProp()
    assert engine.chunked_layers(make("lif", "dense", False, {"detach_reset": True}, "leaky")) == (True,) * 3
    assert engine.factorised_layers(make("lif", "dense", True, {"detach_reset": False}, "leaky")) == (False,) * 3
    assert engine.chunked_layers(make("lif", "dense", True, {"detach_reset": False}, "leaky")) == (True,) * 3
    assert engine.chunked_layers(make("lif", "diagonal", True, None, "leaky")) == (False,) * 3
    assert engine.chunked_layers(make("alif", "dense", True, None, "leaky")) == (False,) * 3
    assert dp.EProp(chunk_size=1).chunked_layers(make("leaky", "dense", False, None, "leaky")) == (False,) * 3


@pytest.mark.parametrize("case", [CASES[0], CASES[3]])  # factorised, and the scalar form with the reset path
def test_chunked_equals_bptt_for_one_layer(case):
    """One hidden layer without dense recurrence: e-prop is exact, chunked or not."""
    neuron, _, self_connections, options = case
    model = dp.DeepRNN(N_IN, [5], N_OUT, neuron=neuron, recurrence="none", readout="leaky",
                       key=jax.random.PRNGKey(2), dtype=jnp.float64, tau_m=5.0, tau_out=4.0, input_gain=1.5,
                       neuron_options=options)
    inputs, targets = make_batch("mse", steps=STEPS)
    reference = dp.gradients(model, inputs, targets, method="bptt")
    grads = dp.gradients(model, inputs, targets, method="eprop", chunk_size=5)
    assert max(relative_errors(grads, reference, model)) < 1e-9


@pytest.mark.parametrize("update_every", [1, 4, 7])
def test_online_training_does_not_depend_on_the_chunk_size(update_every):
    """Weights updated every few steps: chunks never straddle an update, so training is the same."""
    model = make("lif", "dense", True, {"detach_reset": False}, "leaky")
    inputs, targets = make_batch("mse", steps=STEPS)
    trained = []
    for size in (1, 3):
        learner = dp.OnlineLearner(dp.EProp(chunk_size=size), optax.sgd(0.1), loss="mse", update_every=update_every)
        state, losses, _ = learner.train_sequence(learner.init(model), inputs, targets)
        trained.append((state.model, losses))
    (step_model, step_losses), (chunk_model, chunk_losses) = trained
    assert jnp.allclose(step_losses, chunk_losses, rtol=1e-12, atol=0)
    first_layer = [step_model.layers[0].inputs[0].weight, chunk_model.layers[0].inputs[0].weight]
    assert jnp.max(jnp.abs(first_layer[0] - first_layer[1])) < 1e-12 * jnp.max(jnp.abs(first_layer[0]))
    assert not jnp.allclose(first_layer[0], model.layers[0].inputs[0].weight)  # training moved the weights


def test_chunk_size_is_checked():
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        dp.EProp(chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        dp.make_engine("immediate", chunk_size=2.5)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        dp.make_engine("deep_eprop_factored", chunk_size=0)


@pytest.mark.parametrize("method", ["bptt"] + CHUNKED_ENGINES)
def test_chunked_memory_does_not_grow_with_sequence_length(method):
    """XLA's compiled temporaries of a gradient for T and 8T steps (each with a shorter last chunk): equal for an
    online engine (no copy of the inputs, no record that outlives its chunk); BPTT stores the trajectory."""
    model = make("lif", "dense", True, {"detach_reset": False}, "leaky")
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
