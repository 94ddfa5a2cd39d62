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
