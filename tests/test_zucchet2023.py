"""``deepeprop experiment zucchet2023``: Zucchet et al. (2023)'s copy task at their size.

The default run checks the config (the paper's sizes, T = 48, one evaluation for every run) and, in float64 on
the same graph at small widths, that deep e-prop is exact on it in both its reverse and online forms while
e-prop (Zucchet et al.'s rule) is not. The quick variant end to end (CLI, report) is ``-m slow``.
"""
import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepeprop import api, training
from deepeprop.experiments import methods, read_config
from deepeprop.experiments.learning import task_config
from helpers import rerun_and_report, run_experiment

SMALL = {"hidden": [4] + [3, 4, 4] * 4, "task_options": {"pattern_length": 3, "n_symbols": 3, "delay": 1},
         "dtype": "float64", "batch_size": 3}


def _config(method, overrides=None, quick=False):
    config = read_config("zucchet2023", None, quick=quick)
    if overrides:
        config["overrides"] = overrides
    spec = methods()[method]
    return task_config(config, "copy", method, spec, lr=1e-3, seed=0, out="unused", validation=False)


def test_config_is_the_paper_size():
    config = _config("eprop")
    assert config["evaluation"] == "reverse"
    task, model, _ = training.build(config)
    lrus = [node for node in model.nodes if type(node.neuron).__name__ == "LRU"]
    assert len(lrus) == 4 and all(node.size == 64 for node in lrus)  # d_hidden 64, 4 layers
    assert all(node.size == 128 for node in model.nodes[:-1] if node not in lrus)  # d_model 128
    assert all(node.recurrence == "none" for node in model.nodes)
    assert task.pattern_length == 20 and task.n_steps == 48  # 20 tokens, 7 blank, go, 20 recall
    sweep = task_config(read_config("zucchet2023", None, quick=False), "copy", "bptt", methods()["bptt"], lr=1e-3,
                        seed=100, out="unused", validation=True)
    assert sweep["iterations"] < config["iterations"]  # the sweep's own, shorter budget


def _flat(grads):
    leaves = [jax.tree_util.tree_leaves(eqx.filter(node, eqx.is_inexact_array)) for node in grads.nodes]
    return [np.concatenate([np.ravel(leaf) for leaf in node]) for node in leaves]


@pytest.mark.slow  # 11 s; the exactness on LRU stacks is in test_cells' default run
def test_deep_eprop_is_bptt_on_the_paper_graph_and_eprop_is_not():
    """Every within-node Jacobian is (block) diagonal: deep e-prop's reverse and step forms give BPTT's gradient."""
    config = _config("deep_eprop", SMALL)
    task, model, _ = training.build(config)
    assert model.dtype == jnp.float64
    batch = training.train_batch(task, config, 1, model.dtype)
    kwargs = dict(mask=batch.mask, loss=task.loss)
    reference = _flat(api.gradients(model, batch.inputs, batch.targets, method="bptt", **kwargs))
    for evaluation in ("reverse", "step"):
        deep = _flat(api.gradients(model, batch.inputs, batch.targets, method="deep_eprop", evaluation=evaluation,
                                   **kwargs))
        for a, b in zip(deep, reference):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    eprop = _flat(api.gradients(model, batch.inputs, batch.targets, method="eprop", evaluation="reverse", **kwargs))
    cosines = [a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in zip(eprop, reference)]
    assert min(cosines[:4]) < 1 - 1e-6  # the bottom block: the memory of the blocks above is dropped
    np.testing.assert_allclose(eprop[-1], reference[-1], rtol=1e-9, atol=1e-12)  # the readout's gradient is exact



@pytest.mark.slow
def test_quick_zucchet2023_and_its_report(tmp_path):
    """The quick variant end to end: every run with the config's evaluation, deep e-prop's training the same as
    BPTT's, the online check beside the reverse run, nothing redone on a second call, and the report's section."""
    out = str(tmp_path / "results")
    run_experiment("zucchet2023", "--quick", "--out", out, "--no-progress", cwd=tmp_path)
    folder = os.path.join(out, "quick", "zucchet2023")
    config = read_config("zucchet2023", None, quick=True)
    choices = {m: json.load(open(os.path.join(folder, "copy", m, "choice.json"))) for m in config["methods"]}
    for method, choice in choices.items():
        # the learning runner's record of the evaluation (BPTT's is reverse by nature)
        assert choice["evaluation"] == ("bptt (reverse)" if method == "bptt" else "reverse")
        assert len(choice["seeds"]) == len(config["seeds"])
        for entry in choice["seeds"].values():
            saved = json.load(open(os.path.join(folder, "copy", method, entry["out"], "config.json")))
            assert saved["evaluation"] == "reverse" and saved["hidden"] == config["overrides"]["hidden"]
    for seed, entry in choices["deep_eprop"]["seeds"].items():
        np.testing.assert_allclose(entry["metric"], choices["bptt"]["seeds"][seed]["metric"], atol=1e-6)
    exact = json.load(open(os.path.join(folder, "exactness.json")))
    assert max(exact["methods"]["deep_eprop"]["max_relative_difference"]) < 1e-5
    check = json.load(open(os.path.join(folder, "online_check.json")))
    assert check["lr"] == choices["eprop"]["lr"] and len(check["relative_gap"]["step"]) == 2
    assert max(check["relative_gap"]["step"]) < 1e-4  # float32 rounding between the two evaluations
    summary_path = os.path.join(folder, "copy", "bptt", choices["bptt"]["seeds"]["0"]["out"], "summary.json")
    report = rerun_and_report("zucchet2023", out, summary_path, cwd=tmp_path)
    assert "## Zucchet et al. 2023: the copy task at the paper's size" in report
    assert "`bptt`: reverse; `deep_eprop`: reverse; `eprop`: reverse" in report
    assert "**Online evaluation, same curve.**" in report
