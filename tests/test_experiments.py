"""``deepeprop experiment``: the quick variants run end to end, and the report's numbers are the runs' numbers."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deepeprop.experiments import read_config
from deepeprop.experiments.alignment import points, summarize, time_constants
from deepeprop.experiments.report import _welch
from helpers import rerun_and_report, run_experiment


def test_sweep_points_share_the_base_point_and_change_one_factor():
    config = read_config("alignment", None, quick=False)
    entries = points(config)
    base = config["base"]
    base_entries = [e for e in entries if e["point"] == base]
    assert len(base_entries) == 1  # computed once, listed under every sweep that contains it
    assert sorted(base_entries[0]["sweeps"]) == sorted(a for a, v in config["sweeps"].items() if base[a] in v)
    for entry in entries:
        changed = [k for k in base if entry["point"][k] != base[k]]
        assert len(changed) <= 1
    assert len(entries) == 1 + sum(len([v for v in values if v != base[a]]) for a, values in config["sweeps"].items())


def test_time_constant_profiles():
    point = {"depth": 3, "tau_fast": 1.0, "tau_slow": 25.0, "tau_mid": 4.0}
    assert time_constants(dict(point, profile="uniform")) == [4.0] * 3
    assert np.allclose(time_constants(dict(point, profile="fast_below")), [1.0, 5.0, 25.0])
    assert np.allclose(time_constants(dict(point, profile="slow_below")), [25.0, 5.0, 1.0])
    with pytest.raises(ValueError, match="profile"):
        time_constants(dict(point, profile="sideways"))


def test_interval_and_test_statistics():
    from scipy import stats

    values = [0.5, 0.7, 0.6, 0.8]
    summary = summarize(values + [None])
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert summary["n"] == 4 and np.isclose(summary["mean"], 0.65)
    assert np.isclose(summary["high"] - summary["mean"], half)
    assert summarize([None])["mean"] is None
    assert _welch([0.1, 0.2, 0.15], [0.8, 0.9, 0.85]) < 1e-3
    assert _welch([0.1, 0.2, 0.15], [0.1, 0.2, 0.15]) > 0.99



@pytest.mark.slow  # about 15-40 s of two cores: run with -m slow
def test_quick_experiments_and_report(tmp_path):
    out = str(tmp_path / "results")
    run_experiment("alignment", "--quick", "--out", out, "--no-progress", cwd=tmp_path)
    run_experiment("learning", "--quick", "--out", out, "--no-progress", cwd=tmp_path)
    folder = os.path.join(out, "quick")
    choice = json.load(open(os.path.join(folder, "learning", "delayed_digits", "bptt", "choice.json")))
    summary_path = os.path.join(folder, "learning", "delayed_digits", "bptt", choice["seeds"]["0"]["out"],
                                "summary.json")
    before = os.path.getmtime(summary_path)
    run_experiment("learning", "--quick", "--out", out, "--no-progress", cwd=tmp_path)  # resumes: nothing redone
    assert os.path.getmtime(summary_path) == before
    run_experiment("report", "--quick", "--out", out, cwd=tmp_path)
    report = open(os.path.join(folder, "results.md")).read()
    for heading in ("## Findings", "## Learning", "### delayed_digits", "## Gradient alignment", "### depth",
                    "### recurrence"):
        assert heading in report
    config = read_config("learning", None, quick=True)
    # every final run's config sits beside its results
    for method in config["methods"]:
        choice = json.load(open(os.path.join(folder, "learning", "delayed_digits", method, "choice.json")))
        values = []
        for seed in config["seeds"]:
            run = os.path.join(folder, "learning", "delayed_digits", method, choice["seeds"][str(seed)]["out"])
            saved = json.load(open(os.path.join(run, "config.json")))
            assert saved["seed"] == seed and saved["lr"] == choice["lr"]
            values.append(json.load(open(os.path.join(run, "summary.json")))["final_metric"])
        row = next(line for line in report.splitlines() if line.startswith(f"| {method} | {choice['lr']:g}"))
        assert f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" in row  # the number comes from the runs
    # the alignment table holds the points' own numbers
    align = [json.load(open(os.path.join(folder, "alignment", name))) for name in
             os.listdir(os.path.join(folder, "alignment")) if name != "config.json"]
    depth_one = next(r for r in align if r["point"]["depth"] == 1)
    cosine = summarize([s[0] for s in depth_one["methods"]["eprop"]["cosine"]])
    assert f"| 1 | eprop | {cosine['mean']:.3f} [{cosine['low']:.3f}, {cosine['high']:.3f}]" in report
    figures = os.path.join(folder, "figures-quick")
    assert {"alignment_depth.png", "alignment_heatmap.png", "learning_delayed_digits.png"} <= set(os.listdir(figures))
    with open(os.path.join(figures, "alignment_depth.png"), "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")


def test_committed_learning_runs_have_the_configs_the_toml_gives():
    """Every committed run's config.json is what learning.toml resolves to today (defaults included): the runs stay
    reproducible and a resume is not refused (learning.toml pins the options whose defaults changed)."""
    import glob

    from deepeprop import training
    from deepeprop.experiments import methods
    from deepeprop.experiments.learning import task_config
    from deepeprop.runfolder import differences

    config, specs = read_config("learning", None, quick=False), methods()
    paths = sorted(glob.glob(os.path.join(RESULTS, "learning", "*", "*", "*", "*", "config.json")) +
                   glob.glob(os.path.join(RESULTS, "learning", "*", "*", "*", "*", "*", "config.json")))
    assert len(paths) > 100
    for path in paths:
        saved = json.load(open(path))
        task, method, kind, rate = os.path.relpath(path, os.path.join(RESULTS, "learning")).split(os.sep)[:4]
        seed = config["sweep_seed"] if kind == "sweep" else int(path.split(os.sep)[-2].removeprefix("seed-"))
        current = task_config(config, task, method, specs[method], lr=float(rate.removeprefix("lr-")), seed=seed,
                              out=saved["out"], validation=kind == "sweep")
        changed = differences({k: saved[k] for k in training.DEFAULTS if k in saved},
                              {k: current[k] for k in training.DEFAULTS}, training.DEFAULTS)
        assert [k for k in changed if k not in training.RESUMABLE] == [], path


_REPRODUCE = """
import json, sys
import jax.numpy as jnp
from deepeprop import gradients
from deepeprop.experiments import alignment
point = json.loads(sys.argv[1])
model = alignment.build_model(point, 0, jnp.float32)
inputs, labels = alignment.make_batch(point, 0, jnp.float32)
reference = gradients(model, inputs, labels, method="bptt", loss="cross_entropy")
cosines, _ = alignment.compare_layers(gradients(model, inputs, labels, method="eprop", loss="cross_entropy"), reference)
print(json.dumps(cosines))
"""


@pytest.mark.parametrize("key", ["d04666155542f92f", "38f8ee0382c5ccdf"])  # LIF, no recurrence; leaky, dense:1.0
def test_committed_alignment_points_are_reproduced(key):
    """The alignment experiment's model is pinned (reset path kept, W's diagonal): a committed point's e-prop
    cosines come back for seed 0 (in float32 without x64, as the experiment ran)."""
    from deepeprop.experiments import alignment

    saved = json.load(open(os.path.join(RESULTS, "alignment", f"{key}.json")))
    assert alignment.point_key(saved["point"]) == key
    env = dict(os.environ, JAX_ENABLE_X64="0")
    result = subprocess.run([sys.executable, "-c", _REPRODUCE, json.dumps(saved["point"])], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    cosines = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(cosines, saved["methods"]["eprop"]["cosine"][0], atol=1e-5)


@pytest.mark.slow
def test_quick_bellec2020_and_its_report(tmp_path):
    """The Bellec et al. experiment's quick variant end to end: one run per method with the config's evaluation,
    resumed without redoing anything, diagnostics written, and the report's table holds the runs' own numbers."""
    out = str(tmp_path / "results")
    run_experiment("bellec2020", "--quick", "--out", out, "--no-progress", cwd=tmp_path)
    folder = os.path.join(out, "quick", "bellec2020")
    config = read_config("bellec2020", None, quick=True)
    summary_path = os.path.join(folder, "bptt", "seed-0", "summary.json")
    report = rerun_and_report("bellec2020", out, summary_path, cwd=tmp_path)
    assert "## Bellec et al. 2020, Fig. 3 at the paper's size" in report
    for method in config["methods"]:
        run = os.path.join(folder, method, "seed-0")
        saved = json.load(open(os.path.join(run, "config.json")))
        assert saved["evaluation"] == config["evaluation"].get(method)
        assert saved["early_stopping"] == 0.07 and saved["hidden"] == config["overrides"]["hidden"]
        summary = json.load(open(os.path.join(run, "summary.json")))
        assert summary["early_stopping"]["threshold"] == 0.07
        rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
        diagnostics = json.load(open(os.path.join(run, "diagnostics.json")))
        assert diagnostics["rates_final_hz"]["mean"] >= 0
        assert ("alignment_at_init" in diagnostics) == (method != "bptt")
        assert f"| 0 | {summary['early_stopping']['met_at'] or 'not met'} | 200-500 | " \
               f"{1 - rows[-1]['test_metric']:.3f} | {rows[-1]['iteration']} |" in report
    figures = os.path.join(out, "quick", "figures-quick")
    assert {"bellec2020_curves.png", "bellec2020_raster.png"} <= set(os.listdir(figures))


def test_deep_cue_config_evaluations_and_refusal(tmp_path):
    """deep_cue.toml through the learning runner's config: each method gets the config's evaluation, the sweep its
    shorter budget, the factored trace's refusal of the ALIF memory layer is recorded with its reason, and the
    diagnostics' layer groups follow the widths."""
    from deepeprop.experiments import methods
    from deepeprop.experiments.deep_cue import layer_groups
    from deepeprop.experiments.learning import run_method, task_config

    config = read_config("deep_cue", None, quick=True)
    specs = methods()
    for method in config["methods"]:
        resolved = task_config(config, "cue_two_layers", method, specs[method], lr=1e-2, seed=0,
                               out=str(tmp_path / method), validation=True)
        assert resolved["evaluation"] == config["evaluation"].get(method)
        assert resolved["iterations"] == config["sweep_overrides"]["iterations"]
        final = task_config(config, "cue_two_layers", method, specs[method], lr=1e-2, seed=0,
                            out=str(tmp_path / method), validation=False)
        assert final["iterations"] == config["overrides"]["iterations"]
    choice = run_method(config, "cue_two_layers", "deep_eprop_factored", specs["deep_eprop_factored"],
                        str(tmp_path / "factored"), print)
    assert "own Jacobian" in choice["refused"] and "node 2" in choice["refused"]
    assert json.load(open(tmp_path / "factored" / "choice.json")) == choice
    # a reverse evaluation the factored trace does not have is a refusal too, not a crash
    forced = dict(config, evaluation={"deep_eprop_factored": "reverse"})
    choice = run_method(forced, "cue_two_layers", "deep_eprop_factored", specs["deep_eprop_factored"],
                        str(tmp_path / "forced"), print)
    assert "no 'reverse' evaluation" in choice["refused"]
    assert layer_groups({"hidden": [5, 6, 7]}) == {"L1": (0, 5), "L2": (5, 11), "L3": (11, 18)}


def test_deep_cue_online_comparison_reads_both_curves(tmp_path):
    from deepeprop.experiments.deep_cue import online_comparison, online_folder

    online = {"task": "t", "method": "deep_eprop", "seed": 0, "evaluation": "chunked:4"}
    curves = {"reverse": [(2, 10.0, 0.5), (4, 8.0, 0.75)], "chunked:4": [(2, 10.0, 0.5), (4, 8.8, 0.5)]}
    for evaluation, rows in curves.items():
        folder = online_folder(str(tmp_path), online, evaluation)
        os.makedirs(folder)
        with open(os.path.join(folder, "metrics.jsonl"), "w") as handle:
            for iteration, loss, metric in rows:
                handle.write(json.dumps({"iteration": iteration, "test_loss": loss, "test_metric": metric,
                                         "wall_time": float(iteration)}) + "\n")
    text = online_comparison(str(tmp_path), online)
    assert "0.0e+00, 1.0e-01 at iterations 2, 4" in text
    assert "the same validation accuracy at 1 of 2 evaluations" in text


@pytest.mark.slow
def test_quick_deep_cue_and_its_report(tmp_path):
    """The deep cue experiment's quick variant end to end: sweep, seeds, the refusal, diagnostics, the online check,
    and the report's table row holds the runs' own numbers."""
    out = str(tmp_path / "results")
    run_experiment("deep_cue", "--quick", "--out", out, "--no-progress", cwd=tmp_path)
    run_experiment("report", "--quick", "--out", out, cwd=tmp_path)
    report = open(os.path.join(out, "quick", "results.md")).read()
    folder = os.path.join(out, "quick", "deep_cue", "cue_two_layers")
    config = read_config("deep_cue", None, quick=True)
    assert "## Deep versions of Bellec et al.'s evidence accumulation" in report
    assert "| deep_eprop_factored | | refused: " in report
    for method in ("bptt", "deep_eprop"):
        choice = json.load(open(os.path.join(folder, method, "choice.json")))
        values = [e["metric"] for e in choice["seeds"].values()]
        assert len(values) == len(config["seeds"])
        summary = summarize(values)
        assert f"| {method} | {choice['lr']:g}" in report and f"[{summary['low']:.3f}, {summary['high']:.3f}]" in report
        run = os.path.join(folder, method, choice["seeds"]["0"]["out"])
        assert json.load(open(os.path.join(run, "config.json")))["evaluation"] == config["evaluation"].get(method)
        assert ("alignment_at_init" in json.load(open(os.path.join(run, "diagnostics.json")))) == (method != "bptt")
    assert "Online check: deep_eprop, seed 0, evaluation chunked:4 against reverse" in report
    assert "Exact BPTT through the network with the reset path detached" in report
    assert set(json.load(open(os.path.join(folder, "reference.json")))) == {str(s) for s in config["seeds"]}


def test_deep_cue_reference_check_compares_bptt_detached_with_kept(tmp_path):
    """BPTT on the quick model with the reset path detached against kept: one entry per seed and parameter; the two
    differ (the reset path carries gradient), and a second call reads the file instead of recomputing."""
    from deepeprop.experiments.deep_cue import reference_check

    config = read_config("deep_cue", None, quick=True)
    result = reference_check(config, str(tmp_path), "cue_two_layers", print)
    assert set(result) == {str(s) for s in config["seeds"]}
    entry = result["0"][".nodes[0].inputs[0].weight"]
    assert np.isfinite(entry["norm_ratio"]) and entry["norm_ratio"] > 0 and -1 <= entry["cosine"] <= 1
    assert any(abs(e["norm_ratio"] - 1) > 1e-6 or e["cosine"] < 1 - 1e-9 for e in result["0"].values())
    assert reference_check(config, str(tmp_path), "cue_two_layers", print) == result
