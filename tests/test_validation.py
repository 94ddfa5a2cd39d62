"""Bad input raises a clear ValueError at the API boundary, naming the argument and what was expected."""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import deepeprop as dp
from helpers import make_batch, make_model


@pytest.fixture(scope="module")
def model():
    return make_model("lif", "dense", 2, "leaky")


@pytest.fixture(scope="module")
def batch():
    return make_batch("mse")


def _raises(match, fn, *args, **kwargs):
    with pytest.raises(ValueError, match=match):
        fn(*args, **kwargs)


def test_input_rank_and_size(model, batch):
    inputs, targets = batch
    _raises(r"inputs must have shape \(T, B, n_in\)", dp.gradients, model, inputs[0], targets, method="bptt")
    _raises(r"n_in = 3", dp.gradients, model, inputs[..., :2], targets, method="bptt")


def test_empty_sequence_and_batch(model, batch):
    inputs, targets = batch
    _raises(r"T >= 1", dp.gradients, model, inputs[:0], targets[:0], method="eprop")
    _raises(r"B >= 1", dp.gradients, model, inputs[:, :0], targets[:, :0], method="eprop")


def test_target_shapes(model, batch):
    inputs, targets = batch
    _raises(r"targets for loss 'mse' must have shape \(T, B, n_out\)", dp.gradients, model, inputs,
            targets[..., :2], method="bptt")
    labels = jnp.zeros(inputs.shape[:2], jnp.int32)
    _raises(r"integer labels of shape \(T, B\)", dp.gradients, model, inputs, labels[0], method="bptt",
            loss="cross_entropy")
    _raises(r"must be integer labels", dp.gradients, model, inputs, labels.astype(jnp.float64), method="bptt",
            loss="cross_entropy")


def test_labels_out_of_range(model, batch):
    inputs, _ = batch
    labels = jnp.zeros(inputs.shape[:2], jnp.int32)
    _raises(r"in \[0, 2\] or -1", dp.gradients, model, inputs, labels.at[0, 0].set(3), method="eprop",
            loss="cross_entropy")
    _raises(r"in \[0, 2\] or -1", dp.gradients, model, inputs, labels.at[0, 0].set(-2), method="eprop",
            loss="cross_entropy")


def test_non_finite_inputs_and_targets(model, batch):
    inputs, targets = batch
    _raises(r"inputs contains non-finite", dp.gradients, model, inputs.at[1, 0, 0].set(jnp.nan), targets,
            method="bptt")
    _raises(r"targets contains non-finite", dp.gradients, model, inputs, targets.at[0, 0, 0].set(jnp.inf),
            method="bptt")


def test_mask(model, batch):
    inputs, targets = batch
    _raises(r"mask must have shape \(T, B\)", dp.gradients, model, inputs, targets, method="bptt",
            mask=jnp.ones(inputs.shape[:1]))
    _raises(r"mask must be >= 0", dp.gradients, model, inputs, targets, method="bptt",
            mask=-jnp.ones(inputs.shape[:2]))


def test_unknown_names_list_valid_ones(model, batch):
    inputs, targets = batch
    _raises(r"method must be one of .*deep_eprop", dp.gradients, model, inputs, targets, method="backprop")
    _raises(r"loss must be one of .*cross_entropy", dp.gradients, model, inputs, targets, method="bptt", loss="l1")
    _raises(r"does not take option\(s\) \['feedbak'\]", dp.gradients, model, inputs, targets, method="eprop",
            feedbak="random")
    _raises(r"feedback must be one of", dp.gradients, model, inputs, targets, method="eprop", feedback="magic")
    key = jax.random.PRNGKey(0)
    _raises(r"neuron must be one of .*alif", dp.DeepRNN, 2, [3], 1, neuron="izhikevich", key=key)
    _raises(r"recurrence must be one of .*diagonal", dp.DeepRNN, 2, [3], 1, recurrence="full", key=key)
    _raises(r"readout must be one of .*leaky", dp.DeepRNN, 2, [3], 1, readout="softmax", key=key)
    _raises(r"dtype must be one of", dp.DeepRNN, 2, [3], 1, key=key, dtype=jnp.int32)


def test_bad_sizes():
    key = jax.random.PRNGKey(0)
    _raises(r"hidden must be a non-empty list", dp.DeepRNN, 2, [], 1, key=key)
    _raises(r"hidden must be a non-empty list", dp.DeepRNN, 2, 16, 1, key=key)
    _raises(r"hidden\[1\] must be a positive int, got 0", dp.DeepRNN, 2, [3, 0], 1, key=key)
    _raises(r"n_in must be a positive int", dp.DeepRNN, -1, [3], 1, key=key)
    _raises(r"n_out must be a positive int", dp.DeepRNN, 2, [3], 0, key=key)
    _raises(r"tau_m must be a scalar or an array of shape \(3,\)", dp.DeepRNN, 2, [3], 1, key=key, tau_m=jnp.ones(4))
    _raises(r"tau_m must be finite and > 0", dp.DeepRNN, 2, [3], 1, key=key, tau_m=-1.0)
    _raises(r"tau_m must be one value or a list of 2", dp.DeepRNN, 2, [3, 3], 1, key=key, tau_m=[1.0])
    _raises(r"threshold must be a finite number > 0", dp.DeepRNN, 2, [3], 1, key=key,
            neuron_options={"threshold": 0.0})
    _raises(r"neuron_options not accepted by neuron 'leaky'", dp.DeepRNN, 2, [3], 1, key=key, neuron="leaky",
            neuron_options={"threshold": 1.0})
    _raises(r"key must be a jax.random key", dp.DeepRNN, 2, [3], 1, key=0)


def test_unsupported_case_is_refused():
    big = dp.DeepRNN(4, [40, 40], 2, key=jax.random.PRNGKey(0), dtype=jnp.float64)
    inputs = jnp.zeros((3, 1, 4))
    targets = jnp.zeros((3, 1, 2))
    _raises(r"rtrl needs .* max_trace_elements", dp.gradients, big, inputs, targets, method="rtrl",
            max_trace_elements=1000)


def test_model_argument_checked(batch):
    inputs, targets = batch
    _raises(r"model must be a deepeprop.DeepRNN", dp.gradients, object(), inputs, targets, method="bptt")


def test_engine_entry_points_check_their_arguments(batch):
    """engine.init/step/sequence/grads check like dp.gradients (one wording), and take a loss by name."""
    inputs, targets = batch
    model = dp.DeepRNN(3, [3], 3, recurrence="none", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    engine = dp.make_engine("eprop", chunk_size=1)
    state = engine.init(model, inputs.shape[1])
    mask = jnp.ones(inputs.shape[1])
    _raises(r"x must have shape \(B, n_in\) = \(2, 3\) \(the state's batch", engine.step, model, state,
            inputs[0, :1], targets[0], mask, "mse")
    _raises(r"target for loss 'mse' must have shape \(B, n_out\) = \(2, 3\)", engine.step, model, state,
            inputs[0], targets[0, :, :2], mask, "mse")
    _raises(r"mask must have shape \(B,\) = \(2,\)", engine.step, model, state, inputs[0], targets[0],
            jnp.ones(3), "mse")
    _raises(r"x contains non-finite", engine.step, model, state, inputs[0].at[0, 0].set(jnp.nan), targets[0], mask,
            "mse")
    _raises(r"loss must be one of", engine.step, model, state, inputs[0], targets[0], mask, "l1")
    step = eqx.filter_jit(engine.step)  # as engine.step should be called (un-jitted it runs op by op)
    by_name, by_object = (step(model, state, inputs[0], targets[0], mask, loss) for loss in ("mse", dp.MSE()))
    assert jnp.array_equal(by_name[1][1], by_object[1][1])
    _raises(r"batch must be a positive int, got 0", engine.init, model, 0)
    _raises(r"model must be a deepeprop.DeepRNN", engine.init, object(), 2)
    _raises(r"inputs must have shape \(T, B, n_in\) with B = 2 \(the state's batch", engine.sequence, model, state,
            inputs[:, :1], targets[:, :1], None, "mse")
    _raises(r"state must be an EngineState", engine.grads, model, None)
    with pytest.raises(eqx.EquinoxRuntimeError, match="x contains non-finite"):
        step(model, state, inputs[0].at[0, 0].set(jnp.inf), targets[0], mask, "mse")  # raises when it runs


def test_checks_add_nothing_inside_compiled_loops(model, batch):
    """engine.sequence and the learner check the sequence once, before their scan: no check inside it."""
    inputs, targets = batch
    engine = dp.make_engine("eprop", chunk_size=1)
    state = engine.init(model, inputs.shape[1])

    def scans(jaxpr):
        return [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "scan"]

    jaxpr = jax.make_jaxpr(lambda x: engine.sequence(model, state, x, targets, None, "mse"))(inputs).jaxpr
    assert "callback" in str(jaxpr)  # the inputs' value checks, once
    assert scans(jaxpr) and all("callback" not in str(eqn.params["jaxpr"]) for eqn in scans(jaxpr))
    with pytest.raises(eqx.EquinoxRuntimeError, match="inputs contains non-finite"):  # and they do run
        eqx.filter_jit(engine.sequence)(model, state, inputs.at[2, 0, 0].set(jnp.nan), targets, None, "mse")


def test_network_run_takes_other_float_dtypes_and_checks_shapes():
    model = dp.DeepRNN(3, [4], 2, key=jax.random.PRNGKey(0))  # float32
    inputs = jax.random.normal(jax.random.PRNGKey(1), (5, 2, 3), jnp.float64)
    _, ys = model.run(inputs)
    assert ys.dtype == jnp.float32 and jnp.array_equal(ys, model.run(inputs.astype(jnp.float32))[1])
    _raises(r"inputs must have shape \(T, B, n_in\) = \(T, B, 3\), got shape \(5, 2, 4\)", model.run,
            jnp.ones((5, 2, 4)))
    _raises(r"state must be a tuple of per-node states", model.run, inputs, model.init_state(3))


class _NoDtype(dp.AbstractNeuron):
    n: int
    state_size = 1
    spiking = False

    def __init__(self, n):
        self.n = n

    @property
    def size(self):
        return self.n

    def step(self, state, current):
        return 0.5 * state + current[..., None]

    def output(self, state):
        return jnp.tanh(state[..., 0])


def test_a_neuron_class_without_dtype_is_named_as_the_cause():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="_NoDtype cannot be built: its __init__ takes no dtype keyword") as info:
        dp.DeepRNN(2, [3, 3], 1, neuron=[_NoDtype, "lif"], key=key)
    assert "neuron_options" not in str(info.value).split("(")[0]
    _raises(r"_NoDtype.__init__ must take a dtype keyword", dp.check_neuron, _NoDtype(3))


def test_unknown_neuron_options_list_the_valid_ones():
    from deepeprop import training

    key = jax.random.PRNGKey(0)
    _raises(r"neuron_options not accepted by neuron 'lif': \['tau'\]; its options: threshold, gamma, surrogate, "
            r"detach_reset", dp.DeepRNN, 2, [3], 1, key=key, neuron_options={"tau": 3.0})
    _raises(r"--neuron-option: neuron_options not accepted by neuron 'alif': \['thresh'\]; its options: .*beta",
            training.resolve_config, {"neuron": "alif", "neuron_options": {"thresh": 1.0}})
