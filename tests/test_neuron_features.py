"""The neuron features of Bellec et al. 2020's cue-accumulation network: per-neuron adaptation strength in ALIF
(``beta = 0`` makes a neuron LIF; their heuristic ``beta``) and the refractory period of LIF and ALIF (docs/math.md,
"The network"). The engines against BPTT with these features on: test_engines.py, test_evaluations.py and
test_chunked.py (helpers.FEATURES)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deepeprop as dp
from helpers import N_IN, N_OUT, make_batch, relative_errors


def _run_neuron(neuron, currents):
    """Step ``neuron`` through ``currents`` (T, B, n): states (T, B, n, d) and outputs (T, B, n)."""
    def body(state, current):
        state = neuron.step(state, current)
        return state, (state, neuron.output(state))

    return jax.lax.scan(body, neuron.init_state(currents.shape[1], currents.dtype), currents)[1]


def _currents(n, steps=60, batch=3, seed=0, scale=0.6):
    return scale * jax.random.normal(jax.random.PRNGKey(seed), (steps, batch, n), jnp.float64) + 0.25


# ---------------------------------------------------------------------------- per-neuron beta
def test_bellec_beta_is_their_heuristic():
    """Bellec et al.'s tutorial_evidence_accumulation_with_alif.py: beta_a = 1.7 (1 - rho) / (1 - exp(-1/tau_v)),
    rho = exp(-1/tau_a); their network has tau_v = 20, tau_a = 2000."""
    expected = 1.7 * (1 - math.exp(-1 / 2000)) / (1 - math.exp(-1 / 20))
    assert dp.bellec_beta(20.0, 2000.0) == pytest.approx(expected, rel=1e-12)
    assert dp.bellec_beta(20.0, 2000.0, scale=3.4) == pytest.approx(2 * expected, rel=1e-12)
    per_neuron = dp.bellec_beta(np.array([10.0, 20.0]), 2000.0)
    assert per_neuron.shape == (2,) and per_neuron[1] == pytest.approx(expected, rel=1e-12)
    assert per_neuron[0] < per_neuron[1]  # a faster membrane: a smaller threshold increase
    with pytest.raises(ValueError, match="tau_a must be finite and > 0"):
        dp.bellec_beta(20.0, 0.0)
    with pytest.raises(ValueError, match="scale must be"):
        dp.bellec_beta(20.0, 2000.0, scale=0.0)


def test_alif_beta_forms():
    paper = dp.ALIF(100, tau_m=20.0, tau_a=2000.0, beta="bellec", n_lif=50, dtype=jnp.float64)
    beta = np.asarray(paper.beta)
    assert beta.shape == (100,)
    np.testing.assert_array_equal(beta[:50], 0.0)
    np.testing.assert_allclose(beta[50:], dp.bellec_beta(20.0, 2000.0), rtol=1e-12)
    assert dp.ALIF(4, beta=0.3).beta.shape == ()  # one for the node
    np.testing.assert_array_equal(np.asarray(dp.ALIF(3, beta=[0.0, 0.5, 1.0]).beta), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(np.asarray(dp.ALIF(3, beta=0.5, n_lif=2).beta), [0.0, 0.0, 0.5])
    tau_m = np.array([10.0, 20.0, 30.0])
    np.testing.assert_allclose(np.asarray(dp.ALIF(3, tau_m=tau_m, tau_a=500.0, beta="bellec", dtype=jnp.float64).beta),
                               dp.bellec_beta(tau_m, 500.0), rtol=1e-12)
    dp.check_neuron(dp.ALIF(4, beta=[0.0, 0.5, 1.0, 0.0]))


@pytest.mark.parametrize("kwargs,match", [
    (dict(beta=-0.1), r"beta must be finite and >= 0"),
    (dict(beta=[0.1, -0.1, 0.2]), r"beta must be finite and >= 0"),
    (dict(beta=[0.1, 0.2]), r"beta must be a number >= 0, an array of shape \(3,\) .*got shape \(2,\)"),
    (dict(beta="adaptive"), r"beta must be a number >= 0, an array of shape \(3,\) .*'bellec', got 'adaptive'"),
    (dict(beta=True), r"beta must be a number"),
    (dict(beta=float("nan")), r"beta must be finite"),
    (dict(n_lif=4), r"n_lif must be an int in \[0, 3\], got 4"),
    (dict(n_lif=1.5), r"n_lif must be an int"),
    (dict(beta=[0.0, 0.1, 0.2], n_lif=1), r"n_lif=1 goes with a number or 'bellec'"),
])
def test_alif_beta_is_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dp.ALIF(3, **kwargs)


def test_zero_beta_neurons_are_lif_neurons():
    """A mixed node's first ``n_lif`` neurons run exactly as LIF neurons, the others as an ALIF node of their own."""
    n, n_lif = 5, 2
    tau_m = jnp.linspace(4.0, 8.0, n)
    mixed = dp.ALIF(n, tau_m=tau_m, tau_a=30.0, beta="bellec", n_lif=n_lif, dtype=jnp.float64)
    lif = dp.LIF(n_lif, tau_m=tau_m[:n_lif], dtype=jnp.float64)
    alif = dp.ALIF(n - n_lif, tau_m=tau_m[n_lif:], tau_a=30.0, beta="bellec", dtype=jnp.float64)
    currents = _currents(n)
    states, spikes = _run_neuron(mixed, currents)
    lif_states, lif_spikes = _run_neuron(lif, currents[..., :n_lif])
    alif_states, alif_spikes = _run_neuron(alif, currents[..., n_lif:])
    np.testing.assert_array_equal(np.asarray(spikes[..., :n_lif]), np.asarray(lif_spikes))
    np.testing.assert_allclose(np.asarray(states[..., :n_lif, 0]), np.asarray(lif_states[..., 0]), atol=1e-13)
    np.testing.assert_array_equal(np.asarray(spikes[..., n_lif:]), np.asarray(alif_spikes))
    assert 0.05 < float(spikes.mean()) < 0.95
    # the adaptation is carried for the LIF neurons too but never read: their dz/db is zero, the others' is not
    from deepeprop.jacobians import output_jacobian
    layer = dp.DeepRNN(2, [n], 2, neuron=mixed, key=jax.random.PRNGKey(0), dtype=jnp.float64).hidden[0]
    near = jnp.stack([jnp.full((1, n), 0.65), jnp.full((1, n), 0.5)], axis=-1)  # v close to the threshold
    dz = output_jacobian(layer, near)[1][:, :, 0]  # (B, n, d)
    assert float(jnp.max(jnp.abs(dz[:, :n_lif, 1]))) == 0.0 and float(jnp.min(jnp.abs(dz[:, n_lif:, 1]))) > 0


def test_an_all_lif_alif_network_has_the_lif_network_gradient():
    """ALIF with every beta = 0 is the LIF network: same outputs, and the same gradients of U, W, b from BPTT and
    from e-prop (which runs LIF's factorised trace and ALIF's two-state one)."""
    common = dict(key=jax.random.PRNGKey(4), dtype=jnp.float64, tau_m=5.0, input_gain=1.5, recurrence="dense")
    lif = dp.DeepRNN(N_IN, [4, 5], N_OUT, neuron="lif", **common)
    alif = dp.DeepRNN(N_IN, [4, 5], N_OUT, neuron="alif", neuron_options=[{"n_lif": 4}, {"beta": 0.0}], **common)
    inputs, targets = make_batch("mse")
    np.testing.assert_allclose(np.asarray(alif.run(inputs)[1]), np.asarray(lif.run(inputs)[1]), atol=1e-13)
    for method in ("bptt", "eprop"):
        reference = dp.gradients(lif, inputs, targets, method=method)
        grads = dp.gradients(alif, inputs, targets, method=method)
        assert max(relative_errors(grads, reference, lif)) < 1e-12, method
    with_beta = dp.DeepRNN(N_IN, [4, 5], N_OUT, neuron="alif", neuron_options={"beta": 0.5}, **common)
    assert max(relative_errors(dp.gradients(with_beta, inputs, targets, method="bptt"),
                               dp.gradients(lif, inputs, targets, method="bptt"), lif)) > 1e-3


def test_beta_is_fixed_and_has_a_zero_gradient():
    model = dp.DeepRNN(N_IN, [4], N_OUT, neuron="alif", neuron_options={"beta": [0.0, 0.1, 0.2, 0.3]},
                       key=jax.random.PRNGKey(0), dtype=jnp.float64, input_gain=1.5, tau_m=5.0)
    inputs, targets = make_batch("mse")
    for method in ("bptt", "deep_eprop"):
        grads = dp.gradients(model, inputs, targets, method=method)
        assert float(jnp.max(jnp.abs(grads.hidden[0].neuron.beta))) == 0.0
    import optax
    learner = dp.OnlineLearner("deep_eprop", optax.adam(0.1))
    state, _, _ = learner.train_sequence(learner.init(model), inputs, targets)
    np.testing.assert_array_equal(np.asarray(state.model.hidden[0].neuron.beta), [0.0, 0.1, 0.2, 0.3])
    assert float(jnp.max(jnp.abs(state.model.hidden[0].U - model.hidden[0].U))) > 0


def test_beta_options_from_toml_and_the_command_line(tmp_path, capsys):
    """``neuron_options`` per layer in TOML (a list for beta, the shorthands) and ``--neuron-option`` give the model;
    a bad value is a usage error naming ``beta``."""
    from deepeprop import cli, training

    toml = tmp_path / "alif.toml"
    toml.write_text('neuron = "alif"\nhidden = [4, 3]\ntau_a = 500.0\n'
                    'neuron_options = [{beta = [0.0, 0.1, 0.2, 0.3]}, {beta = "bellec", n_lif = 1}]\n'
                    '[task]\nname = "delayed_copy"\nn_symbols = 3\nseq_len = 2\ndelay = 1\n')
    _, model, _ = training.build(training.resolve_config({}, str(toml)))
    np.testing.assert_allclose(np.asarray(model.hidden[0].neuron.beta), [0.0, 0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(model.hidden[1].neuron.beta),
                               [0.0] + [dp.bellec_beta(20.0, 500.0)] * 2, rtol=1e-6)
    flags = ["--neuron-option", "beta=[0, 0.5, 0.5, 0]", "--neuron-option", "n_lif=1"]
    explicit = {"neuron": "alif", "hidden": [4], "task": "delayed_copy",
                "neuron_options": training.parse_task_options(flags[1::2], "--neuron-option")}
    with pytest.raises(ValueError, match="n_lif=1 goes with a number or 'bellec'"):
        training.build(training.resolve_config(explicit))
    explicit["neuron_options"]["n_lif"] = 0
    _, model, _ = training.build(training.resolve_config(explicit))
    np.testing.assert_allclose(np.asarray(model.hidden[0].neuron.beta), [0.0, 0.5, 0.5, 0.0])
    with pytest.raises(SystemExit):
        cli.main(["train", "--task", "delayed_copy", "--neuron", "alif", "--hidden", "4", "--neuron-option",
                  "beta=[0.1, 0.2]", "--iterations", "1", "--out", str(tmp_path / "bad")])
    assert "error: beta must be" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the refractory period
def _bellec_reference(currents, a, r, beta, thr, n_refractory):
    """Bellec et al.'s EligALIF forward pass written out in NumPy (their equations, their counter convention:
    ``is_refractory = count > 0``, ``count <- clip(count + n_refractory z - 1, 0, n_refractory)``); ``beta = 0`` is
    their LIF neuron. Returns the spikes (T, B, n)."""
    currents = np.asarray(currents)
    v = np.zeros(currents.shape[1:])
    b, z, count = np.zeros_like(v), np.zeros_like(v), np.zeros_like(v)
    spikes = []
    for current in currents:
        b = r * b + z
        v = a * v + current - thr * z
        z = np.where(count > 0, 0.0, (v - thr - beta * b > 0).astype(float))
        count = np.clip(count + n_refractory * z - 1, 0, n_refractory)
        spikes.append(z)
    return np.stack(spikes)


@pytest.mark.parametrize("kind", ["lif", "alif"])
@pytest.mark.parametrize("n_ref", [1, 3])
def test_refractory_spikes_are_bellec_et_al(kind, n_ref):
    """A spike at t, none at t+1 .. t+n_ref; Bellec et al.'s n_refractory = n_ref + 1 gives the same spike trains."""
    n, tau_m, tau_a, beta = 6, 6.0, 20.0, 0.4
    common = dict(tau_m=tau_m, n_ref=n_ref, dtype=jnp.float64)
    neuron = dp.LIF(n, **common) if kind == "lif" else dp.ALIF(n, tau_a=tau_a, beta=beta, n_lif=2, **common)
    currents = _currents(n, steps=120, scale=0.8)
    states, spikes = _run_neuron(neuron, currents)
    betas = np.zeros(n) if kind == "lif" else np.asarray(neuron.beta)
    expected = _bellec_reference(currents, math.exp(-1 / tau_m), math.exp(-1 / tau_a), betas, 0.6, n_ref + 1)
    np.testing.assert_array_equal(np.asarray(spikes), expected)
    z = np.asarray(spikes)
    assert 0.05 < z.mean() < 0.5
    for lag in range(1, n_ref + 1):  # no two spikes closer than n_ref + 1 steps
        assert not np.any(z[lag:] * z[:-lag])
    gaps = [np.diff(np.flatnonzero(z[:, b, j])) for b in range(z.shape[1]) for j in range(n)]
    assert min(int(g.min()) for g in gaps if g.size) == n_ref + 1  # the bound is reached: the drive is strong
    free = dp.LIF(n, tau_m=tau_m, dtype=jnp.float64) if kind == "lif" else dp.ALIF(
        n, tau_m=tau_m, tau_a=tau_a, beta=beta, n_lif=2, dtype=jnp.float64)
    assert np.any(np.asarray(_run_neuron(free, currents)[1]) != z)  # the refractory period changes the spike trains


@pytest.mark.parametrize("kind", ["lif", "alif"])
def test_the_surrogate_is_zero_while_refractory(kind):
    """dz/dv is zero exactly at the steps where the counter runs, and the free neuron's surrogate elsewhere."""
    n = 6
    neuron = (dp.LIF(n, tau_m=6.0, n_ref=3, dtype=jnp.float64) if kind == "lif"
              else dp.ALIF(n, tau_m=6.0, tau_a=20.0, beta=0.4, n_ref=3, dtype=jnp.float64))
    free = (dp.LIF(n, tau_m=6.0, dtype=jnp.float64) if kind == "lif"
            else dp.ALIF(n, tau_m=6.0, tau_a=20.0, beta=0.4, dtype=jnp.float64))
    states, _ = _run_neuron(neuron, _currents(n, steps=80, scale=0.8))  # (T, B, n, d)
    d = neuron.state_size
    tangent = jnp.zeros_like(states).at[..., 0].set(1.0)
    dz_dv = np.asarray(jax.jvp(neuron.output, (states,), (tangent,))[1])
    free_states = states[..., :d - 1]
    dz_free = np.asarray(jax.jvp(free.output, (free_states,), (tangent[..., :d - 1],))[1])
    refractory = np.asarray(states[..., -1]) > 0
    assert refractory.mean() > 0.1 and np.all(dz_dv[refractory] == 0.0)
    assert np.count_nonzero(dz_free[refractory]) > 0  # the free neuron's surrogate would be active there
    np.testing.assert_array_equal(dz_dv[~refractory], dz_free[~refractory])
    assert np.count_nonzero(dz_dv[~refractory]) > 0


def test_the_counter_has_zero_derivative_in_linearize():
    """The local derivatives every engine reads: the counter's row and column of the own Jacobian, its dM/dI and its
    dz/ds are zero; the rest is the refractory-free neuron's, gated."""
    from deepeprop.jacobians import linearize

    model = dp.DeepRNN(N_IN, [5], N_OUT, neuron="alif", neuron_options={"n_ref": 2, "detach_reset": False},
                       key=jax.random.PRNGKey(1), dtype=jnp.float64, tau_m=5.0, tau_a=10.0, input_gain=1.5)
    layer = model.hidden[0]
    assert layer.neuron.state_size == 3 and model.init_state(2)[0].shape == (2, 5, 3)
    key = jax.random.PRNGKey(2)
    s_prev = jnp.stack([0.6 + 0.3 * jax.random.normal(key, (4, 5)), jnp.full((4, 5), 0.5),
                        jnp.array([0.0, 1.0, 2.0, 0.0, 0.0])[None].repeat(4, 0)], axis=-1)  # (B, n, 3)
    step = linearize(layer, s_prev, [jax.random.normal(jax.random.fold_in(key, 1), (4, N_IN))])
    for block in (step.own[..., 2, :], step.own[..., :, 2], step.ds_dI[..., 2, :], step.dz[..., 2],
                  step.dz_prev[..., 2]):
        assert float(jnp.max(jnp.abs(block))) == 0.0
    np.testing.assert_array_equal(np.asarray(step.dz_prev[:, 1:3]), 0.0)  # the refractory neurons 1, 2: no surrogate
    assert float(jnp.max(jnp.abs(step.dz_prev[:, [0, 3, 4], 0, 0]))) > 0
    assert float(jnp.max(jnp.abs(step.own[..., 0, 1]))) > 0  # the reset path through z, open where not refractory
    np.testing.assert_array_equal(np.asarray(step.state[..., 2][:, 1:3]), [[0.0, 1.0]] * 4)  # counting down
    dp.check_neuron(layer.neuron)


def test_refractoriness_is_exercised_by_the_engine_grid():
    """The grid's feature variants (helpers.FEATURES) really meet the refractory period: in both layers of the
    depth-2 case (the first two layers of every deeper one) some neuron is above its threshold while its counter
    runs (a spike blocked), and some has its surrogate held at zero (``|v - A| < thr`` there)."""
    from helpers import make_model

    for name in ("lif_ref", "alif_ref"):
        model = make_model(name, "dense", 2, "leaky")
        inputs, _ = make_batch("mse")

        def body(state, x, model=model):
            state, _ = model.step(state, x)
            return state, state[:-1]

        _, states = jax.lax.scan(body, model.init_state(inputs.shape[1]), inputs)
        for layer, s in zip(model.hidden, states):  # (T, B, n, d)
            neuron = layer.neuron
            threshold = neuron.threshold + (neuron.beta * s[..., 1] if name == "alif_ref" else 0.0)
            running = s[..., -1] > 0
            assert int((running & (s[..., 0] > threshold)).sum()) > 0, name
            assert int((running & (jnp.abs(s[..., 0] - threshold) < neuron.threshold)).sum()) > 0, name


def test_refractoriness_and_the_factorised_trace():
    """A LIF neuron with a refractory period has two state variables: no constant leak, no factorised trace; the
    factored engine refuses it above the bottom node, naming n_ref."""
    standard = dict(key=jax.random.PRNGKey(0), dtype=jnp.float64, tau_m=5.0, self_connections=False)
    plain = dp.DeepRNN(N_IN, [4, 5], N_OUT, neuron="lif", neuron_options={"detach_reset": True}, **standard)
    refractory = dp.DeepRNN(N_IN, [4, 5], N_OUT, neuron="lif", neuron_options={"detach_reset": True, "n_ref": 2},
                            **standard)
    assert dp.make_engine("eprop").factorised_layers(plain) == (True, True)
    assert dp.make_engine("eprop").factorised_layers(refractory) == (False, False)
    assert refractory.hidden[0].neuron.constant_leak() is None and refractory.hidden[0].shared_leak() is None
    with pytest.raises(ValueError, match=r"node 2 does not.*n_ref=0"):
        dp.make_engine("deep_eprop_factored").check_model(refractory)
    with pytest.raises(ValueError, match=r"factorize=True.*n_ref=0"):
        dp.make_engine("eprop", factorize=True).check_model(refractory)


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_n_ref_is_checked(value):
    for cls in (dp.LIF, dp.ALIF):
        with pytest.raises(ValueError, match="n_ref must be an int >= 0"):
            cls(3, n_ref=value)


def test_n_ref_from_the_command_line(tmp_path):
    from deepeprop import cli, training

    out = tmp_path / "run"
    assert cli.main(["train", "--task", "delayed_copy", "--task-option", "n_symbols=3", "--task-option", "seq_len=2",
                     "--task-option", "delay=1", "--neuron", "lif,alif", "--hidden", "4,3", "--neuron-option",
                     "n_ref=2", "--iterations", "2", "--batch-size", "4", "--eval-every", "2", "--eval-batch-size",
                     "4", "--out", str(out), "--no-progress", "--no-plots"]) == 0
    import json
    saved = json.loads((out / "config.json").read_text())
    _, model, _ = training.build(saved)
    assert [layer.neuron.n_ref for layer in model.hidden] == [2, 2]
    assert [layer.neuron.state_size for layer in model.hidden] == [2, 3]
