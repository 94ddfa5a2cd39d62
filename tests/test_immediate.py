"""The immediate engine against its definition (float64): e-prop with no eligibility carried in time.

Its definition, written with autodiff: the gradient of ``sum_t E_t`` in which every node's state carried from
``t-1`` is held constant (``stop_gradient``), so that each weight is credited only for its same-step effect
on the loss, through the same-time Jacobians of the layers above. The readout's own parameters keep e-prop's
exact gradient (BPTT's).
"""
import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import deepeprop as dp
from helpers import N_IN, N_OUT, checked_reference, make_batch, make_model, relative_errors

EXACT = 1e-9


def same_step_gradient(model, inputs, targets, loss_name):
    """BPTT through a network whose carried state is cut at every step: the immediate engine's definition."""
    loss = dp.make_loss(loss_name)
    mask = jnp.ones(inputs.shape[:2], inputs.dtype)

    def total(params, static):
        net = eqx.combine(params, static)

        def body(state, xs):
            x, target, m = xs
            state, y = net.step(jax.lax.stop_gradient(state), x)
            return state, loss(y, target, m)

        _, losses = jax.lax.scan(body, net.init_state(inputs.shape[1]), (inputs, targets, mask))
        return jnp.sum(losses)

    params, static = eqx.partition(model, eqx.is_inexact_array)
    return jax.grad(total)(params, static)


@pytest.mark.parametrize("neuron,recurrence,loss", [("leaky", "dense", "mse"), ("lif", "diagonal", "cross_entropy"),
                                                    ("alif", "dense", "mse"), ("mingru", "none", "cross_entropy"),
                                                    ("alif_ref", "diagonal", "cross_entropy")])
def test_immediate_equals_its_definition(neuron, recurrence, loss):
    model = make_model(neuron, recurrence, depth=3, readout="linear")
    inputs, targets = make_batch(loss)
    reference = checked_reference(model, inputs, targets, loss)
    definition = same_step_gradient(model, inputs, targets, loss)
    grads = dp.gradients(model, inputs, targets, method="immediate", loss=loss)
    errors = relative_errors(grads, definition, model)
    assert max(errors[:-1]) < EXACT, errors
    assert relative_errors(grads, reference, model)[-1] < EXACT  # the readout's own gradient: exact
    # the definition is not BPTT here: the hidden layers have memory, which the immediate engine ignores
    assert min(relative_errors(definition, reference, model)[:-1]) > 1e-3


def test_immediate_with_leaky_readout_drops_its_filter_unless_asked():
    """readout_filter=False (default): the readout's state is cut like every other; True: e-prop's filter kept."""
    model = make_model("leaky", "none", depth=2, readout="leaky")
    inputs, targets = make_batch("mse")
    definition = same_step_gradient(model, inputs, targets, "mse")
    grads = dp.gradients(model, inputs, targets, method="immediate", loss="mse")
    assert max(relative_errors(grads, definition, model)[:-1]) < EXACT
    filtered = dp.gradients(model, inputs, targets, method=dp.Immediate(readout_filter=True), loss="mse")
    assert min(relative_errors(filtered, definition, model)[:-1]) > 1e-3


@pytest.mark.parametrize("readout", ["linear", "leaky"])
@pytest.mark.parametrize("feedback", ["symmetric", "random"])
def test_immediate_equals_eprop_when_no_layer_has_memory(readout, feedback):
    """Memoryless nodes (tanh, gelu) without recurrence: e-prop's trace is this step's derivative too."""
    key = jax.random.PRNGKey(3)
    model = dp.DeepRNN(N_IN, [5, 4, 6], N_OUT, neuron=["tanh", "gelu", "tanh"], recurrence="none",
                       readout=readout, key=key, dtype=jnp.float64, tau_out=4.0)
    inputs, targets = make_batch("cross_entropy")
    for readout_filter in (False, True):
        eprop = dp.gradients(model, inputs, targets, loss="cross_entropy",
                             method=dp.EProp(feedback=feedback, readout_filter=readout_filter))
        immediate = dp.gradients(model, inputs, targets, loss="cross_entropy",
                                 method=dp.Immediate(feedback=feedback, readout_filter=readout_filter))
        assert max(relative_errors(immediate, eprop, model)) < EXACT
    # and the two differ once the layers have memory
    leaky = dp.DeepRNN(N_IN, [5, 4], N_OUT, neuron="leaky", recurrence="none", readout=readout, key=key,
                       dtype=jnp.float64, tau_m=3.0)
    eprop = dp.gradients(leaky, inputs, targets, loss="cross_entropy", method=dp.EProp(feedback=feedback))
    immediate = dp.gradients(leaky, inputs, targets, loss="cross_entropy",
                             method=dp.Immediate(feedback=feedback, readout_filter=True))
    assert min(relative_errors(immediate, eprop, leaky)[:-1]) > 1e-3


def test_immediate_is_online():
    from helpers import state_sizes

    model = make_model("alif", "dense", depth=2)
    sizes = state_sizes("immediate", model)
    assert sizes[0] == sizes[1]
