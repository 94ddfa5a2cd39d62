"""Factorised e-prop traces and the factored deep trace (docs/math.md, "Factorised traces", "Factored deep traces")
against the full engines."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import deepeprop as dp
from helpers import make_batch, relative_errors


def _model(neuron="lif", recurrence="dense", depth=2, readout="leaky", detach=True, tau_m=5.0, n_ref=0):
    options = {"detach_reset": detach, "n_ref": n_ref} if neuron == "lif" else None  # explicit, not the default
    return dp.DeepRNN(3, [4, 5, 6][:depth], 3, neuron=neuron, recurrence=recurrence, readout=readout,
                      key=jax.random.PRNGKey(0), dtype=jnp.float64, tau_m=tau_m, tau_out=4.0, input_gain=1.5,
                      neuron_options=options, self_connections=False)


@pytest.mark.parametrize("neuron,recurrence,readout", [("lif", "dense", "leaky"), ("leaky", "dense", "linear"),
                                                       ("lif", "none", "linear")])
def test_factorised_eprop_equals_unfactorised(neuron, recurrence, readout):
    model = _model(neuron, recurrence, 3, readout)
    assert all(dp.make_engine("eprop").factorised_layers(model))
    inputs, targets = make_batch("mse")
    fact = dp.gradients(model, inputs, targets, method="eprop")
    full = dp.gradients(model, inputs, targets, method="eprop", factorize=False)
    assert max(relative_errors(fact, full, model)) < 1e-10


def test_factorisation_is_decided_statically():
    eprop = dp.make_engine("eprop")
    assert not any(eprop.factorised_layers(_model(detach=False)))  # reset path: Jb depends on the state
    assert not any(eprop.factorised_layers(_model(recurrence="diagonal")))  # W_jj inside Jb
    per_neuron = _model(tau_m=[jnp.linspace(3.0, 6.0, 4), jnp.linspace(3.0, 6.0, 5)])
    assert not any(eprop.factorised_layers(per_neuron))
    with_self = dp.DeepRNN(3, [4], 3, key=jax.random.PRNGKey(0), neuron_options={"detach_reset": True},
                           self_connections=True)
    assert not any(eprop.factorised_layers(with_self))
    with pytest.raises(ValueError, match="factorize=True"):
        inputs, targets = make_batch("mse")
        dp.gradients(_model(detach=False), inputs, targets, method="eprop", factorize=True)
    with pytest.raises(ValueError, match="factorize"):
        dp.make_engine("eprop", factorize="yes")


def test_the_defaults_are_the_standard_eprop_model():
    """The reset left to the rule (e-prop drops it, as Bellec et al.'s code and NEST's eprop_iaf do), no
    self-connections: factorisable for e-prop by default; the exact-reset model (detach_reset=False,
    self_connections=True) is the option, and is not."""
    from deepeprop import training

    assert dp.LIF(3).detach_reset is None and dp.ALIF(3).detach_reset is None  # the rule decides
    assert dp.LayerSpec(3).self_connections is False and training.DEFAULTS["self_connections"] is False
    eprop = dp.make_engine("eprop")
    model = dp.DeepRNN(3, [4, 5], 3, neuron="lif", recurrence="dense", key=jax.random.PRNGKey(0))
    assert all(layer.neuron.detach_reset is None and not layer.self_connections for layer in model.hidden)
    assert all(float(jnp.max(jnp.abs(jnp.diagonal(layer.W)))) == 0.0 for layer in model.hidden)
    assert all(eprop.factorised_layers(model))  # the capability queries see the model as the rule resolves it
    assert all(layer.neuron.detach_reset for layer in eprop.prepare(model).hidden)
    config = training.resolve_config({"neuron": "lif", "hidden": [4, 5], "task": "digits", "method": "eprop"})
    _, trained, _ = training.build(config)
    assert all(eprop.factorised_layers(trained))
    exact = dp.DeepRNN(3, [4, 5], 3, neuron="lif", recurrence="dense", key=jax.random.PRNGKey(0),
                       neuron_options={"detach_reset": False}, self_connections=True)
    assert all(not layer.neuron.detach_reset and layer.self_connections for layer in exact.hidden)
    assert not any(eprop.factorised_layers(exact))
    # the same random draw: the standard model's W is the exact one's with the diagonal masked
    for a, b in zip(model.hidden, exact.hidden):
        assert jnp.array_equal(a.W, b.W * (1.0 - jnp.eye(b.W.shape[0], dtype=b.W.dtype)))


def test_no_self_connections_masks_the_diagonal():
    model = _model("leaky", "dense", 2, "leaky")
    assert float(jnp.max(jnp.abs(jnp.diagonal(model.hidden[0].W)))) == 0.0
    inputs, targets = make_batch("mse")
    for method in ("bptt", "eprop", "deep_eprop"):
        grads = dp.gradients(model, inputs, targets, method=method)
        assert float(jnp.max(jnp.abs(jnp.diagonal(grads.hidden[0].W)))) == 0.0


@pytest.mark.parametrize("neuron,recurrence,readout,depth", [("lif", "none", "linear", 2),
                                                             ("leaky", "dense", "linear", 2),
                                                             ("lif", "none", "leaky", 1)])
def test_factored_deep_trace_is_exact_with_one_leaky_layer_above(neuron, recurrence, readout, depth):
    model = _model(neuron, recurrence, depth, readout)
    inputs, targets = make_batch("mse")
    grads = dp.gradients(model, inputs, targets, method="deep_eprop_factored")
    deep = dp.gradients(model, inputs, targets, method="deep_eprop")
    assert max(relative_errors(grads, deep, model)) < 1e-9
    if recurrence == "none":
        reference = dp.gradients(model, inputs, targets, method="bptt")
        assert max(relative_errors(grads, reference, model)) < 1e-9


def test_factored_deep_trace_with_a_refractory_mixed_alif_node_below():
    """The neuron features at the bottom node (not factorised: its own trace is the full one): the factored deep
    trace is still exact with one leaky layer above, equal to deep e-prop and to BPTT (no recurrence)."""
    model = dp.DeepRNN(3, [4, 5], 3, neuron=["alif", "lif"], recurrence="none", readout="linear",
                       key=jax.random.PRNGKey(0), dtype=jnp.float64, tau_m=5.0, tau_a=10.0, input_gain=1.5,
                       neuron_options=[{"detach_reset": True, "n_ref": 2, "beta": "bellec", "n_lif": 1},
                                       {"detach_reset": True}])
    inputs, targets = make_batch("mse")
    grads = dp.gradients(model, inputs, targets, method="deep_eprop_factored")
    for method in ("deep_eprop", "bptt"):
        assert max(relative_errors(grads, dp.gradients(model, inputs, targets, method=method), model)) < 1e-9


def test_factored_deep_trace_is_an_approximation_above_two_layers():
    model = _model("lif", "none", 3, "linear")
    inputs, targets = make_batch("mse")
    grads = dp.gradients(model, inputs, targets, method="deep_eprop_factored")
    deep = dp.gradients(model, inputs, targets, method="deep_eprop")
    errors = relative_errors(grads, deep, model)
    assert errors[0] > 1e-3 and max(errors[1:]) < 1e-9


@pytest.mark.parametrize("kwargs", [dict(detach=False), dict(recurrence="diagonal"), dict(neuron="alif"),
                                    dict(n_ref=2)])
def test_factored_deep_trace_rejects_unsupported_models(kwargs):
    model = _model(**kwargs)
    inputs, targets = make_batch("mse")
    with pytest.raises(ValueError, match="deep_eprop_factored needs"):
        dp.gradients(model, inputs, targets, method="deep_eprop_factored")


def test_eprop_without_readout_filter_equals_eprop_with_a_linear_readout_signal():
    """readout_filter=False: hidden layers see e, not ebar; same as the unfactorised path with the option."""
    model = _model("lif", "dense", 2, "leaky")
    inputs, targets = make_batch("mse")
    fact = dp.gradients(model, inputs, targets, method="eprop", readout_filter=False)
    full = dp.gradients(model, inputs, targets, method="eprop", readout_filter=False, factorize=False)
    filtered = dp.gradients(model, inputs, targets, method="eprop")
    assert max(relative_errors(fact, full, model)) < 1e-10
    errors = relative_errors(fact, filtered, model)
    assert errors[0] > 1e-3 and errors[-1] < 1e-12  # the readout's own gradient is unchanged


@pytest.mark.parametrize("recurrence,readout,depth", [("none", "leaky", 3), ("dense", "linear", 3)])
def test_deep_eprop_factorised_first_hop_equals_unfactorised(recurrence, readout, depth):
    model = _model("lif", recurrence, depth, readout)
    assert any(dp.make_engine("deep_eprop", chunk_size=1).factorised_hops(model))  # the step form factorises
    inputs, targets = make_batch("mse")
    fact = dp.gradients(model, inputs, targets, method="deep_eprop", evaluation="step")
    full = dp.gradients(model, inputs, targets, method="deep_eprop", factorize=False, evaluation="step")
    assert max(relative_errors(fact, full, model)) < 1e-10
    if recurrence == "none":  # exact: equals BPTT
        reference = dp.gradients(model, inputs, targets, method="bptt")
        assert max(relative_errors(fact, reference, model)) < 1e-9
