"""Silent wrong results found by trying bad inputs as a user would (issue "Reliability"): each is refused now."""
from __future__ import annotations

import jax
import pytest

import deepeprop as dp


@pytest.mark.parametrize("dtype", ["bogus", None])
def test_unknown_dtype_is_refused_not_float32(dtype):
    """Found: "bogus" built a float32 model; (found by the property tests) None built a float64 one."""
    with pytest.raises(ValueError, match="dtype must be one of"):
        dp.DeepRNN(2, [3], 1, key=jax.random.PRNGKey(0), dtype=dtype)


@pytest.mark.parametrize("kwargs,match", [
    (dict(neuron="leaky", tau_m=True), r"tau_m must be a number or an array of numbers .*got True"),
    (dict(neuron="gelu", tau_m=-1.0), r"tau_m must be finite and > 0"),
    (dict(neuron="gelu", tau_m=[jax.numpy.ones(2)]), r"tau_m\[0\] must be a scalar or an array of shape \(3,\), "
                                                      r"got shape \(2,\)"),
    (dict(neuron="tanh", tau_a=jax.numpy.ones(7)),
     r"tau_a must be a scalar or an array of shape \(3,\), got shape \(7,\)"),
])
def test_time_constants_are_checked_where_a_layer_ignores_them(kwargs, match):
    """Found by the property tests: a bool tau_m was read as 1.0, and a bad tau_m or tau_a was silently ignored
    by layers whose neuron has no such time constant."""
    with pytest.raises(ValueError, match=match):
        dp.DeepRNN(2, [3], 1, key=jax.random.PRNGKey(0), **kwargs)


@pytest.mark.parametrize("options,match", [
    (dict(readout_filter="maybe"), "readout_filter must be True or False"),
    (dict(factorize="yes"), "factorize must be None"),
    (dict(feedback_seed="a"), "feedback_seed must be an int"),
    (dict(exact=True), r"does not take option\(s\) \['exact'\]; its options: feedback, feedback_seed, factorize, "
                       "readout_filter, chunk_size, detach_reset$"),  # a class constant was listed, then a TypeError
])
def test_engine_options_are_checked(options, match):
    with pytest.raises(ValueError, match=match):
        dp.make_engine("eprop", **options)


def test_rtrl_size_check_does_not_wrap_around():
    """4.3e9 numbers per example: a 32-bit product wrapped around to an accepted size."""
    model = dp.DeepRNN(4, [1024, 1024], 3, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="rtrl needs 4315966473 numbers"):
        dp.make_engine("rtrl").check_model(model)


# A leak edited with eqx.tree_at is seen by the fast paths: tests/test_graph.py::test_fast_path_follows_an_edited_model


def test_api_takes_objects_and_keeps_names_as_shorthand():
    import jax.numpy as jnp
    import optax

    from helpers import make_batch, make_model, relative_errors

    model = make_model("lif", "diagonal", 2, "leaky")
    inputs, targets = make_batch("cross_entropy")
    by_name = dp.gradients(model, inputs, targets, method="eprop", loss="cross_entropy", feedback="random")
    by_object = dp.gradients(model, inputs, targets, method=dp.EProp(feedback="random"), loss=dp.CrossEntropy())
    assert max(relative_errors(by_object, by_name, model)) == 0.0
    with pytest.raises(ValueError, match="apply to an engine given by name"):
        dp.gradients(model, inputs, targets, method=dp.EProp(), loss="cross_entropy", feedback="random")
    with pytest.raises(ValueError, match="loss must be one of"):
        dp.gradients(model, inputs, targets, method="bptt", loss=len)
    learner = dp.OnlineLearner("deep_eprop", optax.sgd(0.1), loss=dp.CrossEntropy())
    assert isinstance(learner.engine, dp.DeepEProp) and isinstance(learner.loss, dp.CrossEntropy)
    state, losses, _ = learner.train_sequence(learner.init(model), inputs, targets, jnp.ones(inputs.shape[:2]))
    assert bool(jnp.all(jnp.isfinite(losses)))


def test_version_and_module_entry_point():
    import importlib.metadata
    import subprocess
    import sys

    assert dp.__version__ == importlib.metadata.version("deepeprop")
    result = subprocess.run([sys.executable, "-m", "deepeprop", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "gradcheck" in result.stdout


# ----------------------------------------------------------------------------- OnlineLearner.train_sequence
def _learner_case(loss="cross_entropy"):
    import jax.numpy as jnp
    import optax

    from helpers import make_batch, make_model

    model = make_model("lif", "dense", 2, "leaky")
    inputs, targets = make_batch(loss)
    learner = dp.OnlineLearner("eprop", optax.sgd(0.1), loss=loss)
    return learner, learner.init(model), inputs, targets, jnp.ones(inputs.shape[:2])


@pytest.mark.parametrize("case,match", [
    ("nan_inputs", r"inputs contains non-finite values"),
    ("label_too_high", r"targets \(labels\) must be in \[0, 2\] or -1"),
    ("label_too_low", r"targets \(labels\) must be in \[0, 2\] or -1"),
    ("inputs_rank", r"inputs must have shape \(T, B, n_in\)"),
    ("inputs_width", r"inputs must have shape \(T, B, n_in\) with n_in = 3"),
    ("targets_shape", r"targets for loss 'cross_entropy' must be integer labels of shape \(T, B\)"),
    ("float_labels", r"targets for loss 'cross_entropy' must be integer labels, got dtype float"),
    ("mask_shape", r"mask must have shape \(T, B\)"),
    ("negative_mask", r"mask must be >= 0"),
    ("nan_mask", r"mask contains non-finite"),
    ("empty_sequence", r"inputs must have at least one time step \(T >= 1\)"),
    ("string_inputs", r"inputs must be an array of real numbers .* got dtype <U1"),
    ("not_a_state", r"state must be the LearnerState"),
])
def test_train_sequence_refuses_a_bad_batch(case, match):
    """Found: train_sequence checked nothing (NaN inputs made the weights NaN, an out-of-range label gave a NaN
    loss and still updated the weights, wrong shapes gave raw JAX errors, T = 0 was a silent no-op)."""
    import jax.numpy as jnp
    import numpy as np

    learner, state, x, y, m = _learner_case()
    args = {
        "nan_inputs": (state, x.at[2, 1, 0].set(jnp.nan), y, m),
        "label_too_high": (state, x, y.at[3, 0].set(3), m),
        "label_too_low": (state, x, y.at[3, 0].set(-2), m),
        "inputs_rank": (state, x[0], y, m),
        "inputs_width": (state, x[..., :2], y, m),
        "targets_shape": (state, x, y[:, :1], m),
        "float_labels": (state, x, y.astype(jnp.float64), m),
        "mask_shape": (state, x, y, m[0]),
        "negative_mask": (state, x, y, m.at[0, 0].set(-1.0)),
        "nan_mask": (state, x, y, m.at[0, 0].set(jnp.nan)),
        "empty_sequence": (state, x[:0], y[:0], m[:0]),
        "string_inputs": (state, np.full(x.shape, "a"), y, m),
        "not_a_state": (state.model, x, y, m),
    }[case]
    with pytest.raises(ValueError, match=match):
        learner.train_sequence(*args)


def test_train_sequence_inside_jit_checks_shapes_at_trace_time_and_values_at_run_time():
    """Found: gradients and train_sequence raised TracerBoolConversionError inside a user's jit."""
    import equinox as eqx
    import jax.numpy as jnp

    learner, state, x, y, m = _learner_case()
    step = eqx.filter_jit(lambda s, x, y: learner.train_sequence(s, x, y, m))
    new, losses, _ = step(state, x, y)
    eager, eager_losses, _ = learner.train_sequence(state, x, y, m)
    assert bool(jnp.all(losses == eager_losses))
    assert all(bool(jnp.all(a == b)) for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(new, eqx.is_array)),
                                                       jax.tree_util.tree_leaves(eqx.filter(eager, eqx.is_array))))
    with pytest.raises(ValueError, match="n_in = 3"):  # static: at trace time
        step(state, x[..., :2], y)
    for bad_x, bad_y, message in ((x.at[0, 0, 0].set(jnp.inf), y, "inputs contains non-finite"),
                                  (x, y.at[1, 1].set(7), r"targets \(labels\) must be in \[0, 2\]")):
        with pytest.raises(eqx.EquinoxRuntimeError, match=message):  # values: when the compiled call runs
            jax.block_until_ready(step(state, bad_x, bad_y))


def test_gradients_inside_jit():
    import equinox as eqx
    import jax.numpy as jnp

    from helpers import make_batch, make_model, relative_errors

    model = make_model("lif", "diagonal", 2, "leaky")
    inputs, targets = make_batch("mse")
    eager = dp.gradients(model, inputs, targets, method="deep_eprop")
    jitted = jax.jit(lambda x, t: dp.gradients(model, x, t, method="deep_eprop"))
    assert max(relative_errors(jitted(inputs, targets), eager, model)) == 0.0
    traced_model = eqx.filter_jit(lambda m, x, t: dp.gradients(m, x, t, method="deep_eprop"))
    assert max(relative_errors(traced_model(model, inputs, targets), eager, model)) == 0.0
    with pytest.raises(Exception, match="targets contains non-finite"):  # jax.jit: a JaxRuntimeError
        jax.block_until_ready(jitted(inputs, targets.at[0, 0, 0].set(jnp.nan)))


# ----------------------------------------------------------------------------- bench
@pytest.mark.parametrize("argv,message", [
    (["--engines", "eprop[readout_filter=maybe]"], "readout_filter must be True or False, got 'maybe'"),
    (["--engines", "eprop[bogus=1]"], "does not take option(s) ['bogus']; its options: feedback, feedback_seed, "
                                      "factorize, readout_filter"),
    (["--batch", "0"], "--batch: must be a positive int, got '0'"),
    (["--T", "0"], "--T: must be a comma-separated list of positive ints, got '0'"),
    (["--width", "8,-1"], "--width: must be a comma-separated list of positive ints"),
    (["--repeats", "0"], "--repeats: must be a positive int"),
    (["--json", "/nonexistent-folder/bench.json"], "--json '/nonexistent-folder/bench.json': the folder "
                                                   "'/nonexistent-folder' does not exist"),
])
def test_bench_refuses_bad_flags_before_running(argv, message, capsys):
    """Found: eprop[readout_filter=maybe] ran with zeroed theory columns, --batch 0 became 4, an unknown engine
    option printed "skipped" and exited 0, --T 0 divided by zero, --json into a missing folder failed only
    after the whole benchmark had run."""
    from deepeprop.cli import main

    with pytest.raises(SystemExit) as info:
        main(["bench"] + argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "deepeprop" in err and "error" in err and message in err, err
