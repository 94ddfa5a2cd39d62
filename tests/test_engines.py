"""Every engine against autograd BPTT in float64 (docs/math.md, "Identities the tests hold")."""
from __future__ import annotations

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import deepeprop as dp
from helpers import FEATURES, checked_reference, covering_grid, make_batch, make_model, relative_errors, state_sizes

NEURONS = ["leaky", "lif", "alif"]
# the neuron features (helpers.FEATURES): each once in the default run, the rest of their grid under -m slow
VARIANTS = list(FEATURES)


def variant_grid(default, *axes):
    """pytest params over ``VARIANTS`` x ``axes``: the ``default`` cases in the default run, the rest ``slow``."""
    import itertools

    return [pytest.param(*case, marks=() if case in default else (pytest.mark.slow,))
            for case in itertools.product(VARIANTS, *axes)]
READOUTS = ["linear", "leaky"]
LOSSES = ["mse", "cross_entropy"]
EXACT = 1e-9


_check_case = checked_reference


@pytest.mark.parametrize("neuron,depth,readout,loss", covering_grid([NEURONS, [1, 2, 3]], [READOUTS, LOSSES])
                         + variant_grid([("alif_mixed", 2, "linear", "mse"), ("lif_ref", 1, "leaky", "cross_entropy"),
                                         ("alif_ref", 3, "leaky", "mse")], [1, 2, 3], READOUTS, LOSSES))
def test_rtrl_equals_bptt(neuron, depth, readout, loss):
    model = make_model(neuron, "dense", depth, readout)
    inputs, targets = make_batch(loss)
    reference = _check_case(model, inputs, targets, loss)
    grads = dp.gradients(model, inputs, targets, method="rtrl", loss=loss)
    assert max(relative_errors(grads, reference, model)) < EXACT


@pytest.mark.parametrize("neuron,recurrence,depth,readout,loss",
                         covering_grid([NEURONS, ["none", "diagonal"], [1, 2, 3, 4]], [READOUTS, LOSSES])
                         + variant_grid([("alif_mixed", "diagonal", 3, "leaky", "cross_entropy"),
                                         ("lif_ref", "diagonal", 2, "linear", "mse"),
                                         ("alif_ref", "none", 3, "leaky", "mse")],
                                        ["none", "diagonal"], [2, 3], READOUTS, LOSSES))
def test_deep_eprop_exact_without_dense_recurrence(neuron, recurrence, depth, readout, loss):
    model = make_model(neuron, recurrence, depth, readout, per_neuron_tau=True)
    inputs, targets = make_batch(loss)
    reference = _check_case(model, inputs, targets, loss)
    grads = dp.gradients(model, inputs, targets, method="deep_eprop", loss=loss)
    assert max(relative_errors(grads, reference, model)) < EXACT


@pytest.mark.parametrize("neuron,readout", [(n, r) for n in NEURONS for r in READOUTS]
                         + [(n, READOUTS[i % 2]) for i, n in enumerate(VARIANTS)])
def test_deep_eprop_equals_eprop_for_one_layer(neuron, readout):
    model = make_model(neuron, "dense", 1, readout)
    inputs, targets = make_batch("mse")
    deep = dp.gradients(model, inputs, targets, method="deep_eprop")
    naive = dp.gradients(model, inputs, targets, method="eprop")
    reference = _check_case(model, inputs, targets, "mse")
    assert max(relative_errors(naive, deep, model)) < 1e-10
    # dense recurrence: both are approximations of the hidden layer's gradient (how far off depends on the case:
    # the feature variants check the identity above; with a refractory period the gap is smaller, ~5e-4)
    if neuron in NEURONS:
        assert relative_errors(deep, reference, model)[0] > 1e-3


@pytest.mark.parametrize("neuron", NEURONS + ["alif_ref"])
def test_eprop_differs_from_bptt_on_lower_layers(neuron):
    model = make_model(neuron, "diagonal", 3, "leaky")
    inputs, targets = make_batch("mse")
    reference = _check_case(model, inputs, targets, "mse")
    naive = relative_errors(dp.gradients(model, inputs, targets, method="eprop"), reference, model)
    deep = relative_errors(dp.gradients(model, inputs, targets, method="deep_eprop"), reference, model)
    assert naive[0] > 1e-3 and naive[1] > 1e-3
    assert naive[-1] < EXACT  # the readout's own gradient is exact in e-prop too
    assert max(deep) < EXACT


def test_dense_deep_eprop_is_an_approximation():
    model = make_model("leaky", "dense", 3, "leaky")
    inputs, targets = make_batch("mse")
    reference = _check_case(model, inputs, targets, "mse")
    errors = relative_errors(dp.gradients(model, inputs, targets, method="deep_eprop"), reference, model)
    assert errors[0] > 1e-3 and errors[-1] < EXACT


@pytest.mark.parametrize("loss", LOSSES)
def test_bptt_equals_filter_grad(loss):
    model = make_model("alif", "dense", 2, "leaky")
    inputs, targets = make_batch(loss)
    mask = jnp.ones(inputs.shape[:2])
    loss_fn = dp.make_loss(loss)

    @eqx.filter_grad
    def reference(m):
        _, ys = m.run(inputs)
        return jnp.sum(jax.vmap(loss_fn)(ys, targets, mask))

    expected = reference(model)
    grads = dp.gradients(model, inputs, targets, method="bptt", loss=loss)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(expected)
    for g, e in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", ["rtrl", "eprop", "deep_eprop"])
def test_every_engine_returns_filter_grad_structure(method):
    model = make_model("lif", "dense", 2, "leaky")
    inputs, targets = make_batch("mse")
    structure = jax.tree_util.tree_structure(dp.gradients(model, inputs, targets, method="bptt"))
    grads = dp.gradients(model, inputs, targets, method=method)
    assert jax.tree_util.tree_structure(grads) == structure
    for g, p in zip(jax.tree_util.tree_leaves(grads),
                    jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))):
        assert g.shape == p.shape and g.dtype == p.dtype


def test_bptt_agrees_with_central_finite_differences():
    model = make_model("leaky", "dense", 2, "leaky", per_neuron_tau=False)
    inputs, targets = make_batch("mse", steps=6)
    mask = jnp.ones(inputs.shape[:2])
    loss_fn = dp.make_loss("mse")
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    @jax.jit
    def loss_of(vector):
        m = eqx.combine(unravel(vector), static)
        _, ys = m.run(inputs)
        return jnp.sum(jax.vmap(loss_fn)(ys, targets, mask))

    def total_loss(vector):
        return float(loss_of(vector))

    grads = dp.gradients(model, inputs, targets, method="bptt")
    g_flat, _ = jax.flatten_util.ravel_pytree(grads)
    rng = np.random.default_rng(0)
    trainable = np.flatnonzero(np.asarray(g_flat) != 0)
    assert trainable.size > 20
    h = 1e-6
    for index in rng.choice(trainable, size=20, replace=False):
        step = jnp.zeros_like(flat).at[index].set(h)
        numeric = (total_loss(flat + step) - total_loss(flat - step)) / (2 * h)
        assert abs(numeric - float(g_flat[index])) <= 1e-7 * max(1.0, abs(numeric))


def test_local_jacobians_equal_dense_autodiff():
    """The forward-mode block Jacobians equal the full Jacobian of the neuron step (element-wise contract)."""
    from deepeprop.jacobians import linearize

    model = make_model("alif", "dense", 1, "leaky")
    layer = model.hidden[0]
    key = jax.random.PRNGKey(3)
    s_prev = jax.random.normal(key, (2, layer.size, 2)) * 0.5 + jnp.array([0.5, 1.0])
    x = jax.random.normal(jax.random.fold_in(key, 1), (2, layer.n_in))
    step = linearize(layer, s_prev, [x])
    current = layer.current(step.z_prev, [x])
    full = jax.jacfwd(lambda s: layer.neuron.step(s, current))(s_prev)  # (B, n, d, B, n, d)
    for b in range(2):
        for j in range(layer.size):
            np.testing.assert_allclose(full[b, j, :, b, j, :], step.own[b, j], atol=1e-14)
    off = full.at[jnp.arange(2)[:, None], jnp.arange(layer.size)[None, :], :, jnp.arange(2)[:, None],
                  jnp.arange(layer.size)[None, :], :].set(0.0)
    assert float(jnp.max(jnp.abs(off))) == 0.0
    assert float(jnp.max(jnp.abs(step.own[..., 0, 1]))) > 0  # the reset path depends on b through z
    full_dz = jax.jacfwd(layer.neuron.output)(step.state)  # (B, n, B, n, d)
    np.testing.assert_allclose(full_dz[jnp.arange(2)[:, None], jnp.arange(layer.size), jnp.arange(2)[:, None],
                                      jnp.arange(layer.size)], step.dz[:, :, 0], atol=1e-14)  # (B, n, o=1, d)


@pytest.mark.parametrize("method", ["rtrl", "eprop", "deep_eprop"])
def test_engine_state_does_not_grow_with_sequence_length(method):
    sizes = state_sizes(method, make_model("lif", "dense", 2, "leaky"))
    assert sizes[0] == sizes[1]


@pytest.mark.parametrize("method", ["rtrl", "eprop", "deep_eprop"])
def test_step_by_step_and_chunked_runs_equal_one_sequence(method):
    model = make_model("alif", "diagonal", 2, "leaky")
    inputs, targets = make_batch("mse", steps=10)
    mask = jnp.ones(inputs.shape[:2])
    engine, loss = dp.make_engine(method), dp.make_loss("mse")
    expected = dp.gradients(model, inputs, targets, method=method)

    step = jax.jit(lambda s, x, t, m: engine.step(model, s, x, t, m, loss))
    state = engine.init(model, inputs.shape[1])
    for t in range(inputs.shape[0]):
        state, _ = step(state, inputs[t], targets[t], mask[t])
    stepwise = engine.grads(model, state)

    state = engine.init(model, inputs.shape[1])
    for chunk in (slice(0, 4), slice(4, 10)):
        state, _, _ = engine.sequence(model, state, inputs[chunk], targets[chunk], mask[chunk], loss)
    chunked = engine.grads(model, state)
    for got in (stepwise, chunked):
        assert max(relative_errors(got, expected, model)) < 1e-12


def test_random_feedback_is_seeded_and_differs_from_symmetric():
    model = make_model("lif", "none", 3, "leaky")
    inputs, targets = make_batch("mse")
    symmetric = dp.gradients(model, inputs, targets, method="eprop")
    random_a = dp.gradients(model, inputs, targets, method="eprop", feedback="random", feedback_seed=1)
    random_b = dp.gradients(model, inputs, targets, method="eprop", feedback="random", feedback_seed=1)
    random_c = dp.gradients(model, inputs, targets, method="eprop", feedback="random", feedback_seed=2)
    assert max(relative_errors(random_a, random_b, model)) == 0.0
    assert relative_errors(random_a, symmetric, model)[0] > 1e-3
    assert relative_errors(random_a, random_c, model)[0] > 1e-3
    # the readout's gradient does not depend on the feedback
    assert relative_errors(random_a, symmetric, model)[-1] < 1e-12


def test_detach_reset_changes_the_gradient_consistently():
    """With the reset path detached every engine still agrees with BPTT of the same model; the forward pass is the
    reset-kept model's, the gradient is not."""
    def build(detach):
        return dp.DeepRNN(3, [4, 5], 3, neuron="lif", recurrence="diagonal", readout="leaky",
                          key=jax.random.PRNGKey(0), dtype=jnp.float64, tau_m=5.0, input_gain=1.5,
                          neuron_options={"detach_reset": detach})

    model, attached = build(True), build(False)
    inputs, targets = make_batch("mse")
    assert jnp.array_equal(model.run(inputs)[1], attached.run(inputs)[1])
    reference = dp.gradients(model, inputs, targets, method="bptt")
    for method in ("rtrl", "deep_eprop"):
        assert max(relative_errors(dp.gradients(model, inputs, targets, method=method), reference, model)) < EXACT
    with_reset = dp.gradients(attached, inputs, targets, method="bptt")
    assert relative_errors(with_reset, reference, model)[0] > 1e-6


def test_random_feedback_is_not_the_readout_weights_for_equal_seeds():
    model = dp.DeepRNN(3, [4], 2, key=jax.random.PRNGKey(0), dtype=jnp.float64)
    engine = dp.make_engine("eprop", feedback="random", feedback_seed=0)
    feedback = engine.init(model, 1).traces.feedback
    assert feedback[-1][0].shape == model.readout.U.shape
    assert float(jnp.max(jnp.abs(feedback[-1][0] - model.readout.U))) > 1e-3
