"""Online learner, training loop, checkpoints and the ``train`` command (tiny networks, float64)."""
from __future__ import annotations

import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deepeprop as dp
from deepeprop import cli, trainer, training
from deepeprop.online import OnlineLearner, trainable_spec
from deepeprop.tasks import get_task

COPY = {"n_symbols": 3, "seq_len": 2, "delay": 2}  # delayed_copy with T = 7


def tiny_model(task, hidden=(4, 4), neuron="lif", recurrence="dense", seed=0):
    return dp.DeepRNN(task.n_in, list(hidden), task.n_out, neuron=neuron, recurrence=recurrence, readout="leaky",
                      key=jax.random.PRNGKey(seed), dtype=jnp.float64, tau_m=5.0, tau_a=10.0, tau_out=4.0,
                      input_gain=2.0)


def f64(batch):
    return batch._replace(inputs=batch.inputs.astype(jnp.float64))


def tiny_config(out, **overrides):
    explicit = dict(task="delayed_copy", task_options=dict(COPY), method="deep_eprop", neuron="lif", hidden=[4, 4],
                    iterations=4, batch_size=4, lr=1e-2, eval_every=2, eval_batch_size=8, dtype="float64",
                    tau_m=5.0, out=str(out))
    explicit.update(overrides)
    return training.resolve_config(explicit)


def trainable_leaves(model):
    return jax.tree_util.tree_leaves(eqx.filter(model, trainable_spec(model)))


# ----------------------------------------------------------------------------- the online learner
@pytest.mark.parametrize("method,update_every", [("bptt", None), ("rtrl", 3), ("eprop", None), ("deep_eprop", 2)])
def test_every_engine_decreases_the_loss(method, update_every):
    task = get_task("delayed_copy", **COPY)
    model = tiny_model(task, hidden=(3, 3) if method == "rtrl" else (4, 4))
    learner = OnlineLearner(dp.make_engine(method), optax.adam(0.05), loss=task.loss, update_every=update_every)
    state = learner.init(model)
    batch = f64(task.batch(0, 8))
    losses = []
    for _ in range(12):
        state, per_step, _ = learner.train_sequence(state, *batch)
        losses.append(float(jnp.sum(per_step)))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses
    # the neurons' fixed constants never change
    for new, old in zip(state.model.hidden, model.hidden):
        assert bool(jnp.all(new.neuron.decay == old.neuron.decay))
    assert bool(jnp.all(state.model.readout.neuron.decay == model.readout.neuron.decay))


def _sgd(model, grads, lr):
    """Hand-written SGD on the trainable parameters only."""
    spec = trainable_spec(model)
    step = jax.tree_util.tree_map(lambda g: -lr * g, eqx.filter(grads, spec))
    return eqx.apply_updates(model, step)


@pytest.mark.parametrize("T,k", [(4, 2), (5, 2)])
def test_update_every_k_matches_hand_computed_updates(T, k):
    task = get_task("delayed_copy", n_symbols=3, seq_len=1, delay=T - 3)  # T = 1 + delay + 1 + 1
    assert task.n_steps == T
    model = tiny_model(task, neuron="alif")
    x = task.batch(3, 4).inputs.astype(jnp.float64)  # (T, 4, n_in)
    y = jax.random.randint(jax.random.PRNGKey(7), (T, 4), 0, task.n_out)  # a label at every step
    m = jnp.ones((T, 4), jnp.float64)
    lr = 0.5
    engine = dp.make_engine("deep_eprop")
    loss = dp.make_loss(task.loss)

    # by hand: engine.sequence on each chunk, SGD in between, traces and network state carried on
    @eqx.filter_jit
    def by_hand(model, x, y, m):
        estate, start = engine.init(model, x.shape[1]), 0
        while start < T:  # a Python loop over the (2 or 3) chunks, unrolled once under jit
            stop = min(start + k, T)
            estate, _, _ = engine.sequence(model, estate, x[start:stop], y[start:stop], m[start:stop], loss)
            model = _sgd(model, engine.grads(model, estate), lr)
            estate = engine.reset_grads(model, estate)
            start = stop
        return model

    expected = by_hand(model, x, y, m)

    learner = OnlineLearner(engine, optax.sgd(lr), loss=task.loss, update_every=k)
    state, _, ys = learner.train_sequence(learner.init(model), x, y, m)
    assert ys.shape == (T, 4, task.n_out)
    for got, want in zip(trainable_leaves(state.model), trainable_leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # ... and it is not the same as one update per sequence
    whole = OnlineLearner(engine, optax.sgd(lr), loss=task.loss)
    once, _, _ = whole.train_sequence(whole.init(model), x, y, m)
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in
               zip(trainable_leaves(once.model), trainable_leaves(state.model))) > 1e-6
    # the learner compiles once for repeated calls (a counter of traces would show a retrace)
    before = learner.train_sequence._cached._cache_size() if hasattr(learner.train_sequence, "_cached") else None
    learner.train_sequence(state, x, y, m)
    if before is not None:
        assert learner.train_sequence._cached._cache_size() == before


def test_adaptive_feedback_moves_with_the_readout_and_persists():
    task = get_task("delayed_copy", **COPY)
    model = tiny_model(task)
    x, y, m = f64(task.batch(1, 4))
    decay, lr = 0.01, 0.3
    learner = OnlineLearner(dp.make_engine("eprop", feedback="adaptive", feedback_seed=1), optax.sgd(lr),
                            loss=task.loss, feedback_decay=decay)
    state0 = learner.init(model)
    b0 = state0.feedback[-1][0]  # the readout's feedback, per incoming edge (one in a chain)
    assert b0.shape == model.readout.U.shape and not bool(jnp.allclose(b0, model.readout.U))
    state1, _, _ = learner.train_sequence(state0, x, y, m)
    # same step for W_out and B_out, the same weight decay for both
    dw = state1.model.readout.U - (1 - decay) * model.readout.U
    db = state1.feedback[-1][0] - (1 - decay) * b0
    np.testing.assert_allclose(db, dw, rtol=0, atol=1e-12)
    assert float(jnp.max(jnp.abs(dw))) > 1e-6
    # the hidden feedback matrices stay fixed; B_out carries over to the next sequence
    for a, b in zip(jax.tree_util.tree_leaves(state1.feedback[:-1]), jax.tree_util.tree_leaves(state0.feedback[:-1])):
        assert bool(jnp.all(a == b))
    state2, _, _ = learner.train_sequence(state1, x, y, m)
    db2 = state2.feedback[-1][0] - (1 - decay) * state1.feedback[-1][0]
    np.testing.assert_allclose(db2, state2.model.readout.U - (1 - decay) * state1.model.readout.U, atol=1e-12)


def test_learner_rejects_bad_arguments():
    engine = dp.make_engine("eprop")
    with pytest.raises(ValueError, match="update_every"):
        OnlineLearner(engine, optax.sgd(0.1), update_every=0)
    with pytest.raises(ValueError, match="optimizer"):
        OnlineLearner(engine, "adam")
    with pytest.raises(ValueError, match="engine must be a deepeprop Engine object or an engine name"):
        OnlineLearner(3, optax.sgd(0.1))
    with pytest.raises(ValueError, match="method must be one of"):  # a name is shorthand; an unknown one is refused
        OnlineLearner("sideways", optax.sgd(0.1))


# ----------------------------------------------------------------------------- the training loop
def test_run_outputs_and_single_compilation(tmp_path):
    config = tiny_config(tmp_path / "run", neuron="alif")
    summary = training.train(config, progress=False, plots=True)
    out = tmp_path / "run"
    saved = json.loads((out / "config.json").read_text())
    for key in ("task", "task_options", "method", "neuron", "hidden", "recurrence", "readout", "iterations",
                "batch_size", "lr", "update_every", "seed", "eval_every", "feedback", "tau_m", "dtype",
                "package_version"):
        assert key in saved, key
    assert saved["package_version"] == dp.__version__ and saved["hidden"] == [4, 4]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [2, 4]
    for row in rows:
        assert {"iteration", "train_loss", "test_loss", "test_metric", "wall_time"} <= set(row)
        assert np.isfinite(row["test_loss"])
    on_disk = json.loads((out / "summary.json").read_text())
    for key in ("task", "method", "final_metric", "metric_name", "iterations", "seconds", "chance"):
        assert key in on_disk, key
    assert on_disk["final_metric"] == rows[-1]["test_metric"] and on_disk["metric_name"] == "accuracy"
    assert on_disk["chance"] == pytest.approx(1 / 3) and on_disk["iterations"] == 4
    assert summary["compilations"] == {"train": 1, "evaluate": 1}  # no recompilation between iterations
    for name in ("learning_curves.png", "raster.png", "readout.png", "checkpoint.eqx"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "raster.png").read_bytes()[:4] == b"\x89PNG"


def _payload(path):
    return training.read_checkpoint_header(str(path))[1]


def test_resume_equals_uninterrupted_run(tmp_path):
    whole = tiny_config(tmp_path / "whole", update_every=3)
    training.train(whole, progress=False, plots=False)
    part = tiny_config(tmp_path / "part", update_every=3, iterations=2)
    training.train(part, progress=False, plots=False)
    halfway = _payload(tmp_path / "part" / training.CHECKPOINT)
    resumed = training.train(dict(part, iterations=4), resume=True, progress=False, plots=False)
    assert resumed["iterations"] == 4
    header = training.read_checkpoint_header(str(tmp_path / "part" / training.CHECKPOINT))[0]
    assert header["iteration"] == 4
    assert _payload(tmp_path / "part" / training.CHECKPOINT) == _payload(tmp_path / "whole" / training.CHECKPOINT)
    rows = [json.loads(line) for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["test_loss"] for r in rows] == [r["test_loss"] for r in want]
    assert halfway != _payload(tmp_path / "part" / training.CHECKPOINT)  # training did move the weights


def test_corrupted_or_truncated_checkpoint_is_rejected(tmp_path):
    config = tiny_config(tmp_path / "run", iterations=2)
    training.train(config, progress=False, plots=False)
    path = tmp_path / "run" / training.CHECKPOINT
    good = path.read_bytes()
    task, model, learner = training.build(config)
    like = learner.init(model)
    state, header = training.load_checkpoint(str(path), like)
    assert header["iteration"] == 2
    assert not all(bool(jnp.all(a == b)) for a, b in zip(trainable_leaves(state.model), trainable_leaves(model)))

    cases = {"truncated": good[:-7], "corrupted": good[:-20] + bytes([good[-20] ^ 1]) + good[-19:],
             "not a deepeprop checkpoint": b"garbage\n" + good}
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    for message, data in cases.items():
        path.write_bytes(data)
        with pytest.raises(training.CheckpointError, match=message):
            training.load_checkpoint(str(path), like)
        with pytest.raises(training.CheckpointError, match=message):  # a resume stops before touching anything
            training.train(dict(config, iterations=4), resume=True, progress=False, plots=False)
        assert path.read_bytes() == data
        assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics
    with pytest.raises(training.CheckpointError, match="no checkpoint"):
        training.load_checkpoint(str(tmp_path / "missing.eqx"), like)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    config = tiny_config(tmp_path / "run", iterations=6)

    def inject_nan(iteration, state):
        if iteration == 3:
            return eqx.tree_at(lambda s: s.model.readout.U, state, state.model.readout.U * jnp.nan)
        return state

    with pytest.raises(training.TrainingDiverged, match="diverged at iteration 3.*iteration 2"):
        training.train(config, progress=False, plots=False, fault=inject_nan)
    task, model, learner = training.build(config)
    state, header = training.load_checkpoint(str(tmp_path / "run" / training.CHECKPOINT), learner.init(model))
    assert header["iteration"] == 2
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in trainable_leaves(state.model))

    # the command reports it and exits non-zero
    def diverge(*args, **kwargs):
        raise training.TrainingDiverged("training diverged at iteration 1: loss = nan")

    monkeypatch.setattr(training, "train", diverge)
    code = cli.main(["train", "--task", "digits", "--out", str(tmp_path / "cli"), "--no-progress"])
    assert code == 3
    assert "diverged" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the command line
def test_toml_config_with_flag_override(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text('method = "eprop"\nneuron = "lif"\nhidden = [5, 3]\nlr = 0.5\niterations = 2\n'
                    'batch_size = 4\neval_every = 2\ndtype = "float64"\nfeedback = "random"\n'
                    '[task]\nname = "delayed_copy"\nn_symbols = 3\nseq_len = 2\ndelay = 1\n')
    out = tmp_path / "out"
    code = cli.main(["train", "--config", str(toml), "--lr", "0.01", "--task-option", "delay=2",
                     "--out", str(out), "--no-progress", "--no-plots"])
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["lr"] == 0.01  # the flag wins
    assert saved["hidden"] == [5, 3] and saved["method"] == "eprop" and saved["feedback"] == "random"
    assert saved["task"] == "delayed_copy" and saved["task_options"] == {"n_symbols": 3, "seq_len": 2, "delay": 2}
    assert saved["batch_size"] == 4  # from the file
    assert "final test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--task", "nope"], "--task must be one of .*digits"),
    (["--method", "sgd"], "--method must be one of"),
    (["--hidden", "4,x"], "--hidden"),
    (["--neuron", "izhikevich"], "--neuron must be one of"),
    (["--update-every", "0"], "--update-every"),
    (["--lr", "-1"], "--lr"),
    (["--iterations", "0"], "--iterations"),
    (["--task-option", "bogus=1"], "--task-option: unknown option"),
    (["--task-option", "delay_steps"], "NAME=VALUE"),
    (["--feedback", "adaptive"], "--feedback applies to --method eprop"),
    (["--method", "eprop", "--feedback", "sideways"], "--feedback must be one of"),
    (["--dtype", "float16"], "--dtype"),
    (["--config", "/nonexistent.toml"], "--config: no such file"),
    (["--method-option", "sideways=1"], "--method-option: .*does not take option"),
    (["--method", "eprop", "--method-option", "readout_filter=maybe"], "readout_filter must be True or False"),
    (["--method", "eprop", "--feedback", "random", "--method-option", "feedback=random"], "give the feedback once"),
    (["--tau-m", "2,3,4"], "--tau-m must be one number or a list of 2"),
    (["--tau-m", "0"], "--tau-m must be a finite number > 0"),
    (["--neuron-option", "detach_reset"], "--neuron-option must look like NAME=VALUE"),
    (["--self-connections", "maybe"], "--self-connections must be true or false"),
    (["--recurrent-gain", "-1"], "--recurrent-gain"),
])
def test_bad_flags_name_the_flag(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--out", str(tmp_path / "x"), "--no-progress"] + argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "deepeprop" in err and "error" in err
    import re
    assert re.search(message, err), err


def test_bad_toml_key_and_resume_errors(tmp_path, capsys):
    toml = tmp_path / "bad.toml"
    toml.write_text('learning_rate = 0.1\n')
    with pytest.raises(SystemExit):
        cli.main(["train", "--config", str(toml)])
    assert "unknown key(s) ['learning_rate']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--resume", "--out", str(tmp_path / "empty")])
    assert "no run to resume" in capsys.readouterr().err
    # a resumed run may not change the model
    training.train(tiny_config(tmp_path / "run", iterations=2), progress=False, plots=False)
    with pytest.raises(SystemExit):
        cli.main(["train", "--resume", "--out", str(tmp_path / "run"), "--hidden", "8,8"])
    assert "--hidden" in capsys.readouterr().err and os.path.exists(tmp_path / "run" / training.CHECKPOINT)


def test_per_layer_neurons_and_skip_edges_from_toml_and_flags(tmp_path, capsys):
    toml = tmp_path / "graph.toml"
    toml.write_text('method = "deep_eprop"\nneuron = ["lif", "alif"]\nrecurrence = ["diagonal", "none"]\n'
                    'hidden = [4, 3]\nskip = [[0, 2], [1, 3]]\niterations = 2\nbatch_size = 4\neval_every = 2\n'
                    '[task]\nname = "delayed_copy"\nn_symbols = 3\nseq_len = 2\ndelay = 1\n')
    out = tmp_path / "graph"
    assert cli.main(["train", "--config", str(toml), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["neuron"] == ["lif", "alif"] and saved["recurrence"] == ["diagonal", "none"]
    assert saved["skip"] == [[0, 2], [1, 3]]
    _, model, _ = training.build(saved)
    assert model.edges == ((0, 1), (1, 2), (0, 2), (2, 3), (1, 3))
    assert type(model.hidden[1].neuron).__name__ == "ALIF" and model.hidden[0].recurrence == "diagonal"
    # the same options as flags, in their command-line form, are the same run on resume
    assert cli.main(["train", "--resume", "--out", str(out), "--neuron", "lif,alif", "--skip", "0:2,1:3",
                     "--iterations", "4", "--no-progress", "--no-plots"]) == 0
    with pytest.raises(SystemExit):
        cli.main(["train", "--resume", "--out", str(out), "--skip", "0:2"])
    assert "--skip" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--out", str(tmp_path / "bad"), "--hidden", "4,4", "--skip", "2:1", "--no-progress"])
    assert "same-time cycle" in capsys.readouterr().err


def test_cell_stack_with_residual_edges_trains_from_toml(tmp_path):
    toml = tmp_path / "cells.toml"
    toml.write_text('method = "deep_eprop"\nneuron = ["lru", "gelu", "identity"]\nrecurrence = "none"\n'
                    'hidden = [6, 4, 4]\nresidual = [[2, 3], [0, 3]]\niterations = 2\nbatch_size = 4\n'
                    'eval_every = 2\n[task]\nname = "copy"\npattern_length = 2\nn_symbols = 3\ndelay = 1\n')
    out = tmp_path / "cells"
    assert cli.main(["train", "--config", str(toml), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["residual"] == [[2, 3], [0, 3]] and saved["neuron"] == ["lru", "gelu", "identity"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "copy" and 0.0 <= summary["final_metric"] <= 1.0


def test_engine_and_model_options_from_flags_and_toml(tmp_path, capsys):
    """--method-option, --neuron-option, per-layer --tau-m, --recurrent-gain and --self-connections reach the
    engine and the model; a TOML file gives per-layer neuron options."""
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--method", "eprop", "--method-option", "readout_filter=false",
                              "--method-option", "feedback=random", "--neuron", "lif", "--neuron-option",
                              "detach_reset=false", "--tau-m", "2,50", "--hidden", "4,5", "--recurrent-gain", "0.5",
                              "--self-connections", "true"])  # the exact-reset model: both away from the defaults
    config = training.resolve_config(training.explicit_options(args))
    assert config["method_options"] == {"readout_filter": False, "feedback": "random"}
    assert config["tau_m"] == [2.0, 50.0] and config["self_connections"] is True
    _, model, learner = training.build(config)
    assert learner.engine.readout_filter is False and learner.engine.feedback == "random"
    assert learner.engine.feedback_seed == config["seed"] + 1  # not the model's seed
    assert np.allclose([float(layer.neuron.decay) for layer in model.hidden], np.exp(-1 / np.array([2.0, 50.0])))
    assert all(not layer.neuron.detach_reset for layer in model.hidden)
    assert all(layer.self_connections for layer in model.hidden)
    assert all(float(jnp.max(jnp.abs(jnp.diagonal(layer.W)))) > 0 for layer in model.hidden)
    defaults = training.build(training.resolve_config({"neuron": "lif", "hidden": [4, 5]}))[1]
    assert all(layer.neuron.detach_reset and not layer.self_connections for layer in defaults.hidden)
    full_gain = training.build(dict(config, recurrent_gain=1.0))[1]
    assert np.allclose(model.hidden[0].W, 0.5 * full_gain.hidden[0].W)
    toml = tmp_path / "options.toml"
    toml.write_text('neuron = "leaky"\nhidden = [4, 5]\ntau_m = [1.0, 30.0]\n'
                    'neuron_options = [{}, {}]\nmethod = "immediate"\n[method_options]\nreadout_filter = true\n')
    config = training.resolve_config({}, str(toml))
    _, model, learner = training.build(config)
    assert type(learner.engine).__name__ == "Immediate" and learner.engine.readout_filter is True



def test_a_config_writes_the_reset_choice_out_and_an_older_run_keeps_its_model(tmp_path):
    """The reset is the method's choice (e-prop family detach, bptt and rtrl keep): new configs record it, a neuron
    option or --method-option detach_reset overrides it (both explicit and disagreeing is refused), and a run saved
    before, whose config has no entry, resumes with the reset path it was trained with."""
    assert training.resolve_config({"neuron": "lif"}, None)["neuron_options"] == {"detach_reset": True}  # deep_eprop
    for method, detach in (("eprop", True), ("immediate", True), ("bptt", False), ("rtrl", False)):
        config = training.resolve_config({"neuron": "lif", "method": method}, None)
        assert config["neuron_options"] == {"detach_reset": detach}, method
    assert training.resolve_config({"neuron": "alif", "method": "bptt", "method_options": {"detach_reset": True}},
                                   None)["neuron_options"] == {"detach_reset": True}
    with pytest.raises(ValueError, match="detach_reset is given twice and disagrees"):
        training.resolve_config({"neuron": "lif", "method": "bptt", "method_options": {"detach_reset": True},
                                 "neuron_options": {"detach_reset": False}}, None)
    with pytest.raises(ValueError, match="--neuron-option: detach_reset must be true or false, got 'maybe'"):
        training.resolve_config({"neuron": "lif", "neuron_options": {"detach_reset": "maybe"}}, None)
    _, model, _ = training.build(training.resolve_config({"neuron": "lif", "method": "bptt", "hidden": [4]}))
    assert model.hidden[0].neuron.detach_reset is False  # the model is built with the recorded choice
    mixed = training.resolve_config({"neuron": ["lif", "leaky"], "hidden": [4, 4]}, None)
    assert mixed["neuron_options"] == [{"detach_reset": True}, {}]
    assert training.resolve_config({"neuron": "leaky"}, None)["neuron_options"] == {}
    explicit = training.resolve_config({"neuron": "alif", "neuron_options": {"detach_reset": False}}, None)
    assert explicit["neuron_options"] == {"detach_reset": False}

    old = dict(training.resolve_config({"neuron": "lif", "out": str(tmp_path)}, None))
    old["neuron_options"] = {}  # as a run saved before the change wrote it
    (tmp_path / "config.json").write_text(json.dumps(old))
    resumed = training._resume_config({"out": str(tmp_path)}, None)
    assert resumed["neuron_options"] == {"detach_reset": False}
    # a bptt run saved by the version whose neurons detached by default recorded True: it resumes with it
    recorded = training.resolve_config({"neuron": "lif", "method": "bptt", "out": str(tmp_path)}, None)
    (tmp_path / "config.json").write_text(json.dumps(dict(recorded, neuron_options={"detach_reset": True})))
    assert training._resume_config({"out": str(tmp_path)}, None)["neuron_options"] == {"detach_reset": True}
    # its checkpoint's fingerprinted config (no entry either) agrees with the resumed run, not with a fresh one
    _, fingerprinted = training.runfolder.fingerprint(old, training.RESUMABLE)
    header = {"fingerprint": "from the older version", "config": fingerprinted}
    training._check_resumable(header, resumed, "checkpoint")
    with pytest.raises(training.CheckpointError, match="neuron_options"):
        training._check_resumable(header, {**resumed, "neuron_options": {"detach_reset": True}}, "checkpoint")


def test_readout_plot_shows_a_correctly_classified_example_and_says_so(tmp_path, monkeypatch):
    """Found (issue 21): the demo's readout figure showed the first test example, misclassified, under a title
    that did not say so. It shows the first correctly classified one now, and its title says whether it is."""
    from deepeprop import plots

    cues = dict(n_cues=3, cue_steps=2, gap_steps=1, delay_steps=2, recall_steps=2)  # a label in a recall window
    config = tiny_config(tmp_path, task="cue_accumulation", task_options=cues, neuron="leaky", hidden=[4])
    task, model, _ = training.build(config)
    test = training.eval_batch(task, config, model.dtype)
    _, ys = model.run(test.inputs[:, :64])
    targets, mask = np.asarray(test.targets[:, :64]), np.asarray(test.mask[:, :64])
    predicted = np.argmax(np.sum(np.asarray(ys) * mask[..., None], axis=0), axis=-1)
    labels = np.max(np.where(mask > 0, targets, -1), axis=0)
    assert predicted[0] != labels[0] and np.any(predicted == labels)  # the case found: the first one is wrong
    first_correct = int(np.nonzero(predicted == labels)[0][0])
    shown = {}

    def readout_over_time(y, path, **kwargs):
        shown.update(kwargs, y=np.asarray(y))
        return path

    monkeypatch.setattr(plots, "readout_over_time", readout_over_time)
    training.write_plots(str(tmp_path), [], task, model, test, config)
    assert shown["title"] == (f"readout of one test example (label {labels[first_correct]}, predicted "
                              f"{labels[first_correct]}: correct)")
    np.testing.assert_allclose(shown["y"], np.asarray(ys[:, first_correct]), rtol=1e-12)
    # none correct: the first labelled one, called misclassified
    wrong = np.where(np.arange(10) == 3, -5.0, 5.0) * np.ones((8, 2, 10))  # never predicts 3
    window = np.zeros((8, 2))
    window[-1] = 1
    assert training.shown_example(wrong, np.full((8, 2), 3), window) == (0, 3, 0)
    assert training.shown_example(wrong, np.full((8, 2), -1), window) == (0, None, None)  # no label: no claim


def test_a_task_whose_batches_have_no_label_is_refused_naming_targets(tmp_path, monkeypatch):
    """Found (issue 21): labels all -1 gave all-zero gradients without a word: the run 'trained' and learned nothing.
    deepeprop train refuses such a task before it writes anything (host-side; dp.gradients returns the zeros)."""
    config = tiny_config(tmp_path / "run", iterations=1)
    task_batch = training.train_batch

    def unlabelled(task, config, iteration, dtype):
        batch = task_batch(task, config, iteration, dtype)
        return batch._replace(targets=jnp.full_like(batch.targets, -1))

    monkeypatch.setattr(trainer, "train_batch", unlabelled)
    with pytest.raises(ValueError, match=r"targets: its first training batch of task 'delayed_copy' has no step where "
                                         r"the loss counts \(every label is -1"):
        training.train(config, progress=False, plots=False)
    assert os.listdir(tmp_path / "run") == []  # nothing written
    monkeypatch.setattr(trainer, "train_batch", task_batch)
    monkeypatch.setattr(trainer, "eval_batch", lambda task, config, dtype: unlabelled(task, config, 0, dtype))
    with pytest.raises(cli.UsageError, match="targets: its evaluation batch"):  # deepeprop train: exit code 2
        training.train(config, progress=False, plots=False)
