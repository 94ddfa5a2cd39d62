"""Firing-rate regularisation (deepeprop.regularization): the penalties, and each rule's gradient of them.

Each rule differentiates the penalty through its declared paths (deepeprop.engines.paths). Checked here, in float64:
* the penalties against direct NumPy formulas (Bellec et al.'s "simple" and "online" forms);
* every registered engine and evaluation, against plain autodiff of the penalty on ``model.run`` where its rule is
  exact (bptt/rtrl always; the e-prop family on one element-wise layer; deep e-prop on an element-wise chain), and
  different from it where the rule drops paths (dense recurrence; e-prop on a chain);
* that the paths are the rule: the engine's own gradient of a task loss equals autodiff through the paths;
* the online learner adds the same gradient per update window; bad arguments are refused.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deepeprop as dp
from deepeprop.engines import paths as rule_paths
from deepeprop.engines.evaluation import Reverse
from deepeprop.regularization import rate_gradients
from helpers import flat_layers, make_batch, make_model

STEPS = 12


def spikes_of(model, inputs):
    """The hidden nodes' outputs (T, B, n_k) of the network as it runs."""
    _, _, zs = model.run(inputs, record=True)
    return zs


def autodiff_penalty(model, inputs, regularization):
    """dR/dtheta by plain autodiff of ``model.run`` (every path kept): ``equinox.filter_grad``'s structure."""
    @eqx.filter_grad
    def grad(m):
        return regularization.penalty(spikes_of(m, inputs))

    return grad(model)


# the default run: one engine of each kind of paths (exact, deep, local, instant) and one reverse form; the rest
# (every engine with every evaluation: the penalty's gradient is one pass whatever the evaluation) under -m slow
DEFAULT_RUN = {("bptt", None), ("deep_eprop", None), ("eprop", None), ("immediate", None), ("eprop", "reverse")}


def engines_and_evaluations():
    """Every engine with its default evaluation (None) and with each evaluation it has."""
    for name, cls in dp.ENGINES.items():
        for evaluation in (None,) + tuple(e.name for e in cls.evaluations):
            marks = () if (name, evaluation) in DEFAULT_RUN else (pytest.mark.slow,)
            yield pytest.param(name, evaluation, id=f"{name}-{evaluation or 'default'}", marks=marks)


def reg_gradients(model, inputs, method, evaluation, regularization):
    """The engine's gradient with the task loss masked out: the penalty's gradient alone."""
    targets = jnp.zeros(inputs.shape[:2] + (model.n_out,), model.dtype)
    mask = jnp.zeros(inputs.shape[:2], model.dtype)
    return dp.gradients(model, inputs, targets, method=method, mask=mask, evaluation=evaluation,
                        regularization=regularization)


def relative(a, b):
    a, b = jnp.concatenate([jnp.ravel(x) for x in a]), jnp.concatenate([jnp.ravel(x) for x in b])
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


REG = dp.RateRegularization(strength=2.0, target_rate=0.05)


def test_simple_penalty_is_bellecs_formula():
    z = np.random.default_rng(0).random((7, 3, 5)) < 0.3
    expected = 2.0 * np.sum((z.mean(axis=(0, 1)) - 0.05) ** 2)
    assert float(REG.penalty((jnp.asarray(z, jnp.float64),))) == pytest.approx(expected, rel=1e-12)


def test_running_penalty_is_bellecs_online_form():
    z = (np.random.default_rng(1).random((6, 4, 3)) < 0.4).astype(float)  # (T, B, n)
    T, B, n = z.shape
    timeline = np.concatenate([z[:, b] for b in range(B)], axis=0)  # one agent: example b after b - 1
    running = np.cumsum(timeline, axis=0) / np.arange(1, B * T + 1)[:, None]
    expected = 0.5 * sum(np.mean((running[b * T:(b + 1) * T] - 0.02) ** 2, axis=0).sum() for b in range(B))
    reg = dp.RunningRateRegularization(strength=0.5, target_rate=0.02)
    assert float(reg.penalty((jnp.asarray(z),))) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("method, evaluation", list(engines_and_evaluations()))
def test_every_rule_is_exact_where_its_paths_are_the_network(method, evaluation):
    """One element-wise layer: every rule that keeps a neuron's own state is exact (immediate is not); a deep
    element-wise chain: the exact and deep rules are exact, e-prop (local) is not."""
    inputs, _ = make_batch(steps=STEPS)
    cls = dp.ENGINES[method]
    paths = cls.regularization_paths
    for depth in (1, 2):
        model = make_model("alif", "diagonal", depth=depth, detach_reset=True)
        if method == "deep_eprop_factored":
            try:
                dp.make_engine(method).check_model(model)
            except ValueError:
                continue
        got = flat_layers(reg_gradients(model, inputs, method, evaluation, REG), model)
        reference = flat_layers(autodiff_penalty(model, inputs, REG), model)
        hidden = slice(0, depth)  # the readout's gradient is zero in both
        assert float(jnp.linalg.norm(jnp.concatenate(reference[hidden]))) > 1e-6
        error = relative(got[hidden], reference[hidden])
        exact = paths.state and (depth == 1 or paths.sources)
        if exact:
            assert error < 1e-12, (depth, error)
        else:
            assert error > 1e-3, (depth, error)


@pytest.mark.parametrize("method", [pytest.param(name, marks=() if name in ("bptt", "eprop", "deep_eprop") else
                                                 (pytest.mark.slow,)) for name in dp.ENGINES])
def test_dense_recurrence_separates_the_rules(method):
    """Dense recurrence: only the exact rules keep the recurrent paths of the penalty's gradient."""
    inputs, _ = make_batch(steps=STEPS)
    model = make_model("lif", "dense", depth=1, detach_reset=True)
    if method == "deep_eprop_factored":
        model = make_model("lif", "dense", depth=1, detach_reset=True, self_connections=False)
    got = flat_layers(reg_gradients(model, inputs, method, None, REG), model)[0]
    reference = flat_layers(autodiff_penalty(model, inputs, REG), model)[0]
    error = float(jnp.linalg.norm(got - reference) / jnp.linalg.norm(reference))
    if dp.ENGINES[method].regularization_paths.recurrence:
        assert error < 1e-12
    else:
        assert error > 1e-3


def task_loss_through(model, inputs, targets, paths):
    """The task loss, its hidden nodes run with ``paths`` (the readout as it runs): the rule's surrogate."""
    loss = dp.make_loss("mse")

    def body(state, xs):
        x, target = xs
        outputs, new = [x], []
        for node, s_prev in zip(model.nodes[:-1], state[:-1]):
            s = rule_paths.node_step(node, s_prev, [outputs[j] for j in node.sources], paths)
            outputs.append(node.output(s))
            new.append(s)
        readout = model.nodes[-1]
        s = readout.step(state[-1], [outputs[j] for j in readout.sources])
        y = readout.output(s)
        return tuple(new) + (s,), loss(y, target, jnp.ones(y.shape[:1], y.dtype))

    _, losses = jax.lax.scan(body, model.init_state(inputs.shape[1]), (inputs, targets))
    return jnp.sum(losses)


@pytest.mark.parametrize("method, recurrence, depth, readout", [
    ("eprop", "dense", 1, "leaky"),
    ("immediate", "dense", 1, "linear"),
    ("deep_eprop", "dense", 2, "leaky"),
])
def test_paths_are_the_rule(method, recurrence, depth, readout):
    """The engine's gradient of a task loss equals autodiff through its declared paths (a surrogate where it is not
    exact): the paths the penalty is differentiated through are the rule's own. (For e-prop on one hidden layer:
    across layers e-prop also sends the readout's signal down through the same-time Jacobians, which its local
    paths do not take; docs/math.md, "Firing-rate regularisation".)"""
    inputs, targets = make_batch(steps=STEPS)
    model = make_model("alif", recurrence, depth=depth, readout=readout, detach_reset=True)
    engine = dp.make_engine(method)
    got = flat_layers(dp.gradients(model, inputs, targets, method=engine), model)
    reference = flat_layers(eqx.filter_grad(task_loss_through)(model, inputs, targets,
                                                               engine.regularization_paths), model)
    exact = flat_layers(dp.gradients(model, inputs, targets, method=dp.BPTT(detach_reset=True)), model)
    assert relative(got, reference) < 1e-12
    assert relative(got, exact) > 1e-3  # the case separates the rule from the network


@pytest.mark.parametrize("update_every", [None, 5])
def test_learner_adds_the_windows_penalty_gradient(update_every):
    """SGD with the task loss masked out: the learner's update is the penalty's gradient of each window."""
    inputs, _ = make_batch(steps=STEPS)
    model = make_model("alif", "dense", depth=2, detach_reset=True)
    targets = jnp.zeros(inputs.shape[:2] + (model.n_out,))
    mask = jnp.zeros(inputs.shape[:2])
    rate = 0.1
    learner = dp.OnlineLearner("eprop", optax.sgd(rate), update_every=update_every, regularization=REG)
    state, _, _ = learner.train_sequence(learner.init(model), inputs, targets, mask)

    expected = model
    engine = learner.engine
    s0 = model.init_state(inputs.shape[1])
    windows = [(0, STEPS)] if update_every is None else [(t, min(t + update_every, STEPS))
                                                         for t in range(0, STEPS, update_every)]
    for start, end in windows:
        window = inputs[start:end]
        grads = rate_gradients(REG, engine, expected, s0, window)[2]
        s0, _ = expected.run(window, s0)  # the network state carries on, with these weights
        expected = eqx.apply_updates(expected, jax.tree_util.tree_map(lambda g: -rate * g, grads))
    for got, want in zip(flat_layers(state.model, model), flat_layers(expected, model)):
        assert jnp.allclose(got, want, rtol=1e-12, atol=1e-14)
    assert relative(flat_layers(state.model, model), flat_layers(model, model)) > 1e-6  # the weights moved


def test_penalty_lowers_the_rate():
    inputs, _ = make_batch(steps=STEPS)
    model = make_model("lif", "dense", depth=1, detach_reset=True)
    targets = jnp.zeros(inputs.shape[:2] + (model.n_out,))
    mask = jnp.zeros(inputs.shape[:2])
    learner = dp.OnlineLearner("eprop", optax.adam(0.05), regularization=dp.RateRegularization(10.0, 0.0))
    state = learner.init(model)
    before = float(jnp.mean(spikes_of(model, inputs)[0]))
    for _ in range(10):
        state, _, _ = learner.train_sequence(state, inputs, targets, mask)
    after = float(jnp.mean(spikes_of(state.model, inputs)[0]))
    assert after < 0.5 * before


def test_reverse_and_step_forms_agree():
    inputs, _ = make_batch(steps=STEPS)
    model = make_model("alif", "dense", depth=2, detach_reset=True)
    step = flat_layers(reg_gradients(model, inputs, "eprop", "step", REG), model)
    reverse = flat_layers(reg_gradients(model, inputs, "eprop", Reverse(), REG), model)
    assert relative(step, reverse) < 1e-12


def test_refusals():
    inputs, targets = make_batch(steps=4)
    leaky = make_model("leaky", "dense", depth=1)
    with pytest.raises(ValueError, match="regularization: .*spiking hidden nodes"):
        dp.gradients(leaky, inputs, targets, method="eprop", regularization="simple")
    with pytest.raises(ValueError, match="regularization"):
        dp.gradients(make_model(), inputs, targets, method="eprop", regularization="often")
    with pytest.raises(ValueError, match="strength"):
        dp.RateRegularization(strength=-1.0)
    with pytest.raises(ValueError, match="target_rate"):
        dp.RateRegularization(target_rate=2.0)


def test_train_command_takes_the_regularisation(tmp_path, capsys):
    import json

    from deepeprop import cli

    out = tmp_path / "run"
    code = cli.main(["train", "--task", "delayed_copy", "--method", "eprop", "--neuron", "lif", "--hidden", "6",
                     "--iterations", "2", "--batch-size", "4", "--eval-every", "2", "--regularization", "running",
                     "--regularization-strength", "0.5", "--target-rate", "0.02", "--out", str(out),
                     "--no-progress", "--no-plots"])
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["regularization"], saved["regularization_strength"], saved["target_rate"]) == ("running", 0.5, 0.02)
    for argv, message in ((["--regularization", "strong"], "--regularization must be one of"),
                          (["--regularization", "simple", "--target-rate", "3"], "--target-rate must be"),
                          (["--regularization", "simple", "--regularization-strength", "-1"],
                           "--regularization-strength must be")):
        with pytest.raises(SystemExit):
            cli.main(["train", "--out", str(tmp_path / "bad"), "--no-progress"] + argv)
        assert message in capsys.readouterr().err
