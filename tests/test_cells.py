"""Element-wise recurrent cells (LRU, minGRU), instantaneous layers and residual edges: deep e-prop and
RTRL equal BPTT on deep stacks of them, trained neuron parameters (the LRU's nu, theta) included."""
from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deepeprop as dp
from helpers import N_IN, N_OUT, covering_grid, flat_layers, make_batch, relative_errors

EXACT = 1e-9
EXACT_ENGINES = [name for name, cls in dp.ENGINES.items() if (cls.exact or cls.exact_elementwise) and name != "bptt"]


def residual_lru_stack(readout="leaky", blocks=3):
    """``blocks`` blocks ``x -> lru -> gelu -> (+ x)``: the sum is an identity node fed by two identity edges."""
    neurons, hidden, residual = [], [], []
    for i in range(blocks):
        neurons += ["lru", "gelu", "identity"]
        hidden += [4, N_IN, N_IN]
        base = 3 * i  # the block's input node (0 = the network input)
        residual += [(base + 2, base + 3), (base, base + 3)]
    return dp.DeepRNN(N_IN, hidden, N_OUT, neuron=neurons, recurrence="none", residual=residual, readout=readout,
                      key=jax.random.PRNGKey(0), dtype=jnp.float64, tau_out=4.0,
                      neuron_options=[{"r_min": 0.5, "r_max": 0.95}, None, None] * blocks)


def mingru_stack(readout="leaky"):
    return dp.DeepRNN(N_IN, [4, 5, 6], N_OUT, neuron="mingru", recurrence="none", readout=readout,
                      key=jax.random.PRNGKey(1), dtype=jnp.float64, tau_out=4.0)


def lif_under_lru(readout="leaky"):
    return dp.DeepRNN(N_IN, [5, 4], N_OUT, neuron=["lif", "lru"], recurrence=["diagonal", "none"], readout=readout,
                      key=jax.random.PRNGKey(2), dtype=jnp.float64, tau_out=4.0, input_gain=2.0,
                      tau_m=[jnp.linspace(3.0, 8.0, 5), None], neuron_options=[{"detach_reset": False}, None])


STACKS = {"residual_lru": residual_lru_stack, "mingru": mingru_stack, "lif_under_lru": lif_under_lru}


def _neuron_parameter_gradients(grads, model):
    return [getattr(g.neuron, name) for g, node in zip(grads.nodes, model.nodes)
            for name in node.trained_neuron_parameters]


# every engine on every stack in the default run, readouts and losses in turn; the full grid under -m slow
@pytest.mark.parametrize("method,stack,readout,loss",
                         covering_grid([EXACT_ENGINES, list(STACKS)], [["linear", "leaky"], ["mse", "cross_entropy"]]))
def test_exact_engines_equal_bptt_on_cell_stacks(method, stack, readout, loss):
    model = STACKS[stack](readout)
    inputs, targets = make_batch(loss)
    reference = dp.gradients(model, inputs, targets, method="bptt", loss=loss)
    for layer_grad in flat_layers(reference, model):
        assert float(jnp.linalg.norm(layer_grad)) > 1e-8
    grads = dp.gradients(model, inputs, targets, method=method, loss=loss)
    assert max(relative_errors(grads, reference, model)) < EXACT
    # the LRU's nu and theta, one by one
    for got, want in zip(_neuron_parameter_gradients(grads, model), _neuron_parameter_gradients(reference, model)):
        assert float(jnp.linalg.norm(want)) > 1e-8
        assert float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want)) < EXACT


def test_stacks_train_their_neuron_parameters():
    model = residual_lru_stack()
    assert model.hidden[0].trained_neuron_parameters == ("nu", "theta")
    assert len(_neuron_parameter_gradients(model, model)) == 6  # 3 LRU nodes x (nu, theta)


def test_eprop_is_the_per_layer_rule_on_the_lru_stack():
    model = residual_lru_stack()
    inputs, targets = make_batch("mse")
    reference = dp.gradients(model, inputs, targets, method="bptt")
    errors = relative_errors(dp.gradients(model, inputs, targets, method="eprop"), reference, model)
    assert errors[0] > 1e-3 and errors[3] > 1e-3  # the lower blocks' LRUs lose the paths through the blocks above
    assert errors[-1] < EXACT


def test_deep_eprop_factorises_hops_into_memoryless_nodes():
    """gelu and identity nodes have a shared constant leak 0: the hop into them is stored factorised, exactly."""
    model = residual_lru_stack(blocks=2)
    hops = dp.make_engine("deep_eprop", chunk_size=1).factorised_hops(model)  # the step form factorises
    assert 2 in hops[0]  # lru (node 1) -> gelu (node 2): node ids
    inputs, targets = make_batch("mse")
    fast = dp.gradients(model, inputs, targets, method="deep_eprop", evaluation="step")
    full = dp.gradients(model, inputs, targets, method="deep_eprop", factorize=False, evaluation="step")
    assert max(relative_errors(fast, full, model)) < 1e-12


@pytest.mark.parametrize("r_min,r_max,max_phase",
                         [(0.0, 1.0, 2 * math.pi), (0.9, 0.999, math.pi / 10), (0.4, 0.5, 1.0)])
def test_lru_ring_initialisation(r_min, r_max, max_phase):
    lru = dp.LRU(2000, r_min=r_min, r_max=r_max, max_phase=max_phase, key=jax.random.PRNGKey(3), dtype=jnp.float64)
    re, im = lru.eigenvalues()
    modulus = np.asarray(jnp.sqrt(re ** 2 + im ** 2))
    phase = np.asarray(jnp.exp(lru.theta))
    assert modulus.min() >= r_min - 1e-9 and modulus.max() <= r_max + 1e-9
    assert phase.min() >= 0 and phase.max() <= max_phase + 1e-9
    # |lambda|^2 uniform on [r_min^2, r_max^2] (the ring's area measure): its mean, within 5 standard errors
    squared = modulus ** 2
    mean, sd = (r_min ** 2 + r_max ** 2) / 2, (r_max ** 2 - r_min ** 2) / math.sqrt(12)
    assert abs(squared.mean() - mean) < 5 * sd / math.sqrt(squared.size)
    gamma = np.sqrt(1 - squared)
    state = jnp.zeros((1, 2000, 2)).at[..., 0].set(1.0)
    stepped = lru.step(state, jnp.zeros((1, 2000, 2)))
    np.testing.assert_allclose(np.asarray(stepped[0, :, 0]), np.asarray(re), atol=1e-12)  # lambda * 1
    unit = lru.step(jnp.zeros((1, 2000, 2)), jnp.ones((1, 2000, 2)))
    np.testing.assert_allclose(np.asarray(unit[0, :, 0]), gamma, atol=1e-12)  # gamma * u


def test_lru_options_are_checked():
    with pytest.raises(ValueError, match="r_min < r_max"):
        dp.LRU(4, r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="max_phase"):
        dp.LRU(4, max_phase=0.0)


def test_residual_edges_are_checked():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"residual edge \(1, 2\) needs equal widths"):
        dp.DeepRNN(N_IN, [4, 5], N_OUT, neuron=["lru", "gelu"], recurrence="none", residual=[(1, 2)], key=key)
    with pytest.raises(ValueError, match="recurrence 'dense' needs one current and one output per neuron"):
        dp.DeepRNN(N_IN, [4], N_OUT, neuron="lru", recurrence="dense", key=key)
    with pytest.raises(ValueError, match="same-time cycle"):
        dp.DeepRNN(N_IN, [4, 4], N_OUT, neuron="gelu", recurrence="none", residual=[(2, 1)], key=key)
    # a residual on a chain edge replaces it: no trained weight there
    model = dp.DeepRNN(N_IN, [4, 4], N_OUT, neuron="gelu", recurrence="none", residual=[(1, 2)], key=key)
    assert model.hidden[1].inputs[0].weight is None and model.hidden[1].row_size == 1


def test_cells_train_online_and_their_parameters_move():
    import optax

    model = residual_lru_stack(blocks=1)
    task = dp.get_task("copy", pattern_length=3, n_symbols=3, delay=1)
    model = dp.DeepRNN(task.n_in, [6, task.n_in, task.n_in], task.n_out, neuron=["lru", "gelu", "identity"],
                       recurrence="none", residual=[(2, 3), (0, 3)], key=jax.random.PRNGKey(0), dtype=jnp.float64)
    learner = dp.OnlineLearner(dp.make_engine("deep_eprop"), optax.adam(1e-2), loss=task.loss, update_every=3)
    state = learner.init(model)
    batch = task.batch(0, 4)
    new, losses, _ = learner.train_sequence(state, jnp.asarray(batch.inputs, jnp.float64), batch.targets,
                                            jnp.asarray(batch.mask, jnp.float64))
    assert bool(jnp.all(jnp.isfinite(losses)))
    assert float(jnp.max(jnp.abs(new.model.hidden[0].neuron.nu - model.hidden[0].neuron.nu))) > 0
    assert float(jnp.max(jnp.abs(new.model.hidden[0].U - model.hidden[0].U))) > 0


def test_copy_task_layout():
    task = dp.get_task("copy", pattern_length=4, n_symbols=5, delay=3)
    batch = task.batch(0, 6)
    assert task.n_in == 6 and task.n_out == 5 and task.n_steps == 4 + 3 + 1 + 4
    assert task.chance == pytest.approx(0.2)
    pattern = np.argmax(np.asarray(batch.inputs[:4, :, :5]), axis=-1)  # (4, B)
    np.testing.assert_array_equal(np.asarray(batch.targets[-4:]), pattern)  # recall the pattern in order
    assert bool(np.all(np.asarray(batch.targets[:-4]) == -1))
    assert bool(np.all(np.asarray(batch.inputs[7, :, 5]) == 1)) and float(np.asarray(batch.inputs[4:7]).sum()) == 0
    with pytest.raises(ValueError, match="pattern_length"):
        dp.get_task("copy", pattern_length=0)


def test_gradient_structure_has_the_neuron_parameters():
    model = lif_under_lru()
    inputs, targets = make_batch("mse")
    grads = dp.gradients(model, inputs, targets, method="deep_eprop")
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(eqx.filter(model, eqx.is_inexact_array))
    assert grads.hidden[1].neuron.nu.shape == (4,)
