"""Shared test fixtures: small float64 networks whose spiking layers really spike."""
from __future__ import annotations

import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp

import deepeprop as dp
from deepeprop.gradcheck import layer_vectors
from deepeprop.jacobians import output_jacobian

N_IN, N_OUT, WIDTH, T, BATCH = 3, 3, 4, 8, 2


SPIKING = ("lif", "alif")
# the neuron features, as variants of the engine grids: name -> (model, its extra neuron options). "alif_mixed": one
# node of LIF and ALIF neurons (the first LIF, beta = 0) with Bellec et al.'s heuristic beta per neuron (from the
# per-neuron time constants); "lif_ref", "alif_ref": a refractory period of 2 steps (a counter in the state, the
# surrogate zero while it runs), the latter on the mixed node
FEATURES = {"alif_mixed": ("alif", {"beta": "bellec", "n_lif": 1}),
            "lif_ref": ("lif", {"n_ref": 2}),
            "alif_ref": ("alif", {"beta": "bellec", "n_lif": 1, "n_ref": 2})}


def make_model(neuron="lif", recurrence="dense", depth=2, readout="leaky", *, per_neuron_tau=True, seed=0,
               width=WIDTH, detach_reset=False, self_connections=True):
    """The engines' hardest case by default, pinned (not the library defaults): the exact-reset model (the
    reset path in the own Jacobian of LIF/ALIF, dense ``W`` with its diagonal inside each neuron) and
    per-neuron time constants, so that nothing factorises. ``neuron`` is a name of :data:`deepeprop.NEURONS` or
    of :data:`FEATURES`."""
    key = jax.random.PRNGKey(seed)
    k_model, k_tau, k_tau_a = jax.random.split(key, 3)
    hidden = [width + i for i in range(depth)]  # distinct sizes catch transposed shapes
    if per_neuron_tau:
        tau_m = [jax.random.uniform(jax.random.fold_in(k_tau, i), (n,), jnp.float64, 3.0, 8.0)
                 for i, n in enumerate(hidden)]
        tau_a = [jax.random.uniform(jax.random.fold_in(k_tau_a, i), (n,), jnp.float64, 5.0, 15.0)
                 for i, n in enumerate(hidden)]
    else:
        tau_m, tau_a = 5.0, 10.0
    gain = 1.0 if neuron == "leaky" else 1.5  # drives every spiking layer of up to 4 to spike
    neuron, extra = FEATURES.get(neuron, (neuron, {}))
    options = {"detach_reset": detach_reset, **extra} if neuron in SPIKING else None
    return dp.DeepRNN(N_IN, hidden, N_OUT, neuron=neuron, recurrence=recurrence, readout=readout, key=k_model,
                      input_gain=gain, dtype=jnp.float64, tau_m=tau_m, tau_a=tau_a, tau_out=4.0,
                      neuron_options=options, self_connections=self_connections)


def make_batch(loss="mse", *, steps=T, batch=BATCH, seed=1):
    kx, ky = jax.random.split(jax.random.PRNGKey(seed))
    inputs = jax.random.normal(kx, (steps, batch, N_IN), jnp.float64) + 0.3
    if loss == "mse":
        targets = jax.random.normal(ky, (steps, batch, N_OUT), jnp.float64)
    else:
        targets = jax.random.randint(ky, (steps, batch), -1, N_OUT)
        targets = targets.at[-1].set(jnp.arange(batch) % N_OUT)  # at least one labelled step
    return inputs, targets


@eqx.filter_jit
def _activity(model, inputs):
    def body(state, x):
        state, _ = model.step(state, x)
        out = tuple((layer.neuron.output(s), output_jacobian(layer, s)[1][..., 0])
                    for layer, s in zip(model.hidden, state[:-1]))
        return state, out

    return jax.lax.scan(body, model.init_state(inputs.shape[1]), inputs)[1]


def activity(model, inputs):
    """Per hidden layer: (spike rate, fraction of steps with a non-zero surrogate derivative)."""
    out = _activity(model, inputs)
    return [(float(z.mean()), float((dz != 0).mean())) for z, dz in out]


def flat_layers(grads, model):
    """Per layer (hidden then readout) the concatenation of its U, W, b gradients."""
    return [jnp.asarray(v) for v in layer_vectors(grads)]


def relative_errors(grads, reference, model):
    return [float(jnp.linalg.norm(g - r) / jnp.linalg.norm(r))
            for g, r in zip(flat_layers(grads, model), flat_layers(reference, model))]


def cosines(grads, reference, model):
    return [float(jnp.dot(g, r) / (jnp.linalg.norm(g) * jnp.linalg.norm(r)))
            for g, r in zip(flat_layers(grads, model), flat_layers(reference, model))]


def state_sizes(method, model, lengths=(8, 32)):
    """The number of numbers an engine carries after sequences of each length (online: all equal)."""
    engine = dp.make_engine(method)
    loss = dp.make_loss("mse")
    sizes = []
    for steps in lengths:
        inputs, targets = make_batch("mse", steps=steps)
        state = engine.init(model, inputs.shape[1])
        state, ys, _ = jax.jit(lambda s, i, t: engine.sequence(model, s, i, t, jnp.ones(i.shape[:2]), loss))(
            state, inputs, targets)
        assert ys.shape[0] == steps
        sizes.append(sum(leaf.size for leaf in jax.tree_util.tree_leaves(state)))
    return sizes


def checked_reference(model, inputs, targets, loss):
    """BPTT's gradient, after checking the case is not degenerate: every spiking node spikes with its surrogate
    active, and every node's gradient is non-zero."""
    for node, (rate, surrogate) in zip(model.hidden, activity(model, inputs)):
        if node.neuron.spiking:
            assert 0.02 < rate < 0.98, "test inputs must make every spiking layer spike"
            assert surrogate > 0.05, "the surrogate derivative must be active"
    reference = dp.gradients(model, inputs, targets, method="bptt", loss=loss)
    for layer_grad in flat_layers(reference, model):
        assert float(jnp.linalg.norm(layer_grad)) > 1e-8, "every layer's gradient must be non-zero"
    return reference


def covering_grid(primary, rotated):
    """pytest params over the full product of ``primary`` axes and ``rotated`` axes, where the default run keeps
    every combination of the primary axes once, with the rotated axes' combinations taken in turn (so every value
    and every pair of rotated values still occurs); the rest of the full grid is marked ``slow``
    (``pytest -m slow`` runs it)."""
    import itertools

    import pytest

    rotated_combos = list(itertools.product(*rotated))
    params = []
    for index, head in enumerate(itertools.product(*primary)):
        kept = rotated_combos[index % len(rotated_combos)]
        for tail in rotated_combos:
            marks = () if tail == kept else (pytest.mark.slow,)
            params.append(pytest.param(*head, *tail, marks=marks))
    return params


def run_experiment(*args, cwd, timeout=900):
    """``deepeprop experiment ARGS`` in a subprocess (float32, as a user runs it); fails the test on a non-zero exit
    with the end of its stderr."""
    env = dict(os.environ, JAX_ENABLE_X64="0")
    result = subprocess.run([sys.executable, "-m", "deepeprop", "experiment", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def rerun_and_report(experiment: str, out: str, summary_path: str, *, cwd) -> str:
    """Run ``experiment --quick`` again (finished runs must not be redone: ``summary_path`` is left untouched), then
    the quick report; returns the report's text."""
    before = os.path.getmtime(summary_path)
    run_experiment(experiment, "--quick", "--out", out, "--no-progress", cwd=cwd)
    assert os.path.getmtime(summary_path) == before, f"{experiment}: a finished run was redone"
    run_experiment("report", "--quick", "--out", out, cwd=cwd)
    return open(os.path.join(out, "quick", "results.md")).read()
