"""Silent wrong results found by trying bad inputs as a user would (issue "Reliability"): each is refused now."""
from __future__ import annotations

import jax
import pytest

import deepeprop as dp


def test_unknown_dtype_is_refused_not_float32():
    with pytest.raises(ValueError, match="dtype must be one of"):
        dp.DeepRNN(2, [3], 1, key=jax.random.PRNGKey(0), dtype="bogus")


@pytest.mark.parametrize("options,match", [
    (dict(readout_filter="maybe"), "readout_filter must be True or False"),
    (dict(factorize="yes"), "factorize must be None"),
    (dict(feedback_seed="a"), "feedback_seed must be an int"),
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
