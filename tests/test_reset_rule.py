"""The reset path is a choice of the rule (docs/concepts/networks.md, "The reset: a choice of the rule").

LIF and ALIF leave it to the rule by default (``detach_reset=None``): the e-prop family drops it, ``bptt`` and
``rtrl`` keep it (the network as it runs, as plain autodiff of ``Network.run`` does), an engine's
``detach_reset`` option overrides the rule's default, and a neuron's explicit choice is the model's.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import pytest

import deepeprop as dp
from deepeprop.engines import Reversed
from helpers import N_IN, N_OUT, make_batch


def _model(neuron="lif", recurrence="dense", detach_reset=None, hidden=(4, 5)):
    options = None if detach_reset is None else {"detach_reset": detach_reset}
    return dp.DeepRNN(N_IN, list(hidden), N_OUT, neuron=neuron, recurrence=recurrence, key=jax.random.PRNGKey(0),
                      dtype=jnp.float64, input_gain=1.5, tau_m=5.0, tau_a=10.0, tau_out=4.0, neuron_options=options)


def _close(a, b):
    return all(bool(jnp.allclose(x, y, rtol=1e-10, atol=1e-12)) for x, y in
               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@pytest.fixture(scope="module")
def batch():
    return make_batch("mse")


def test_bptt_keeps_the_reset_and_eprop_drops_it_by_default(batch):
    """With the defaults BPTT differentiates the network as it runs (the reset path kept, equal to autodiff of
    Network.run) and the e-prop family detaches it; an engine option or an explicit neuron says otherwise."""
    inputs, targets = batch
    default, keep, drop = (_model(detach_reset=d, hidden=(4,)) for d in (None, False, True))
    assert all(layer.neuron.detach_reset is None for layer in default.hidden)

    def grads(model, method):
        return dp.gradients(model, inputs, targets, method=method)

    bptt, bptt_drop = grads(default, "bptt"), grads(drop, "bptt")
    assert _close(bptt, grads(keep, "bptt")) and not _close(bptt, bptt_drop)  # the reset path matters here

    @eqx.filter_jit
    @eqx.filter_grad
    def autodiff(model):  # plain autodiff without an engine: an undecided reset is kept
        _, ys = model.run(inputs)
        return jnp.sum(jax.vmap(dp.MSE())(ys, targets, jnp.ones(inputs.shape[:2])))

    assert _close(bptt, autodiff(default))
    assert _close(grads(default, "rtrl"), bptt)  # rtrl keeps too: still exact
    assert _close(grads(default, dp.BPTT(detach_reset=True)), bptt_drop)
    assert _close(grads(default, "eprop"), grads(drop, "eprop"))
    assert _close(grads(default, dp.EProp(detach_reset=False)), grads(keep, "eprop"))
    # the gradients keep the caller's model structure (not the resolved model's), so optax takes them
    structure = jax.tree_util.tree_structure(eqx.filter(default, eqx.is_inexact_array))
    assert jax.tree_util.tree_structure(bptt) == structure
    params = eqx.filter(default, eqx.is_inexact_array)
    optax.adam(1e-3).update(bptt, optax.adam(1e-3).init(params), params)


def test_explicit_neuron_and_engine_choices_that_disagree_are_refused(batch):
    inputs, targets = batch
    for model, engine in ((_model(detach_reset=False), dp.EProp(detach_reset=True)),
                          (_model(detach_reset=True), dp.BPTT(detach_reset=False))):
        with pytest.raises(ValueError, match="detach_reset is given twice and disagrees: node 1's LIF"):
            dp.gradients(model, inputs, targets, method=engine)
        with pytest.raises(ValueError, match="given twice"):
            engine.init(model, inputs.shape[1])
    with pytest.raises(ValueError, match="detach_reset must be None, True or False"):
        dp.make_engine("eprop", detach_reset="yes")


def test_every_entry_point_sees_the_rules_choice(batch):
    """engine.step users get the rule dp.gradients computes; the static capability queries see the resolved model
    (e-prop factorises the default LIF model; deep_eprop_factored accepts it; bptt's resolved model does not)."""
    inputs, targets = batch
    model = _model(recurrence="dense")
    engine = dp.EProp(chunk_size=1)
    state = engine.init(model, inputs.shape[1])
    step = eqx.filter_jit(engine.step)
    mask = jnp.ones(inputs.shape[1])
    for x, target in zip(inputs, targets):
        state, _ = step(model, state, x, target, mask, "mse")
    assert _close(engine.grads(model, state), dp.gradients(model, inputs, targets, method="eprop"))
    assert all(engine.factorised_layers(model))
    assert not any(engine.factorised_layers(dp.BPTT().prepare(model)))
    engine.check_model(model)
    dp.FactoredDeepEProp().check_model(model)
    with pytest.raises(ValueError, match="deep_eprop_factored needs"):
        dp.FactoredDeepEProp(detach_reset=False).check_model(model)
    reversed_rule = Reversed(dp.EProp())  # the reverse evaluation of a rule keeps the rule's choice
    assert reversed_rule.reset_choice is True
    assert all(node.neuron.detach_reset for node in reversed_rule.prepare(model).hidden)


def test_alif_and_the_learner_follow_the_rule(batch):
    inputs, targets = batch
    default, drop = _model("alif", hidden=(4,)), _model("alif", detach_reset=True, hidden=(4,))
    assert _close(dp.gradients(default, inputs, targets, method="deep_eprop"),
                  dp.gradients(drop, inputs, targets, method="deep_eprop"))
    learner = dp.OnlineLearner("bptt", optax.sgd(0.1), loss="mse", update_every=3)  # truncated BPTT keeps it
    ours, _, _ = learner.train_sequence(learner.init(default), inputs, targets)
    keep = _model("alif", detach_reset=False, hidden=(4,))
    theirs, _, _ = learner.train_sequence(learner.init(keep), inputs, targets)
    assert _close(eqx.filter(ours.model, eqx.is_inexact_array), eqx.filter(theirs.model, eqx.is_inexact_array))
    assert all(layer.neuron.detach_reset is None for layer in ours.model.hidden)  # the model stays the caller's
