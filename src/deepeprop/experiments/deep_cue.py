"""Bellec et al.'s evidence accumulation with the memory above the layer that must learn (issue 18, item 3).

    deepeprop experiment deep_cue                          # every task, method and seed of deep_cue.toml
    deepeprop experiment deep_cue --tasks cue_two_layers --methods bptt --shard 0/2   # a share of it
    deepeprop experiment report                            # docs/results.md, this experiment after bellec2020

The runs are the learning experiment's (:func:`deepeprop.experiments.learning.run`: per (task, method) a
learning-rate sweep on the sweep seed, then the final seeds at the best rate, each a ``deepeprop train`` run with
its ``config.json``), under ``OUT/NAME`` (``NAME``: the config's ``name``, ``deep_cue``), with the evaluation the
config's ``[evaluation]`` names per method (``reverse`` for e-prop and deep e-prop; BPTT is reverse by nature).
A method that refuses a model is recorded as refused in its ``choice.json``.

After the units: every finished final run gets ``diagnostics.json`` (firing rates per layer at initialisation and
at the end; for every rule but BPTT the cosine and norm ratio of its gradient to BPTT's at initialisation, per
parameter: :func:`deepeprop.experiments.bellec2020.diagnose`), and the ``[online]`` check runs: one seed of one
method for a short stretch twice, with the reverse evaluation and with an online one (``chunked:K``), same
seed, rate and evaluation points, under ``OUT/NAME/TASK/METHOD/online/EVALUATION``; the report compares the curves.
"""
from __future__ import annotations

import os

from .alignment import summarize
from .bellec2020 import diagnose
from .common import methods as method_specs, read_json, write_json
from .learning import FOLDER, run as run_units, task_config, train_run, units
from .report import learning_section, load_learning

FOLDER_NAME = "deep_cue"  # deep_cue.toml's name: results under OUT/deep_cue


def layer_groups(options: dict) -> dict:
    """Hidden-neuron groups of the diagnostics, one per layer: ``{"L1": (0, n1), "L2": (n1, n1 + n2), ...}``."""
    groups, start = {}, 0
    for index, width in enumerate(options["hidden"]):
        groups[f"L{index + 1}"] = (start, start + int(width))
        start += int(width)
    return groups


def diagnose_finals(config: dict, folder: str, todo, log) -> None:
    """``diagnostics.json`` (and ``raster.npz``) of every finished final run of the units ``todo``."""
    specs = method_specs()
    for task, method in todo:
        choice_path = os.path.join(folder, task, method, "choice.json")
        if not os.path.exists(choice_path):
            continue
        choice = read_json(choice_path)
        groups = layer_groups(dict(config["tasks"][task], **config.get("overrides", {})))
        for seed, entry in choice.get("seeds", {}).items():
            run_dir = os.path.join(folder, task, method, entry["out"])
            if entry["status"] != "finished" or os.path.exists(os.path.join(run_dir, "diagnostics.json")):
                continue
            resolved = task_config(config, task, method, specs[method], lr=choice["lr"], seed=int(seed),
                                   out=run_dir, validation=False)
            diagnose(resolved, groups)
            log(f"{task} {method} seed {seed}: diagnostics")


def _leaf_gradients(config: dict, detach_reset=None) -> dict:
    """``{parameter path: flat float64 gradient}`` of the run's rule (or of BPTT on the network with the reset
    path detached when ``detach_reset`` is given) at the initial weights, on the first training batch."""
    import equinox as eqx
    import jax
    import numpy as np

    from .. import api, training

    bptt = detach_reset is not None
    if bptt:
        options = config["neuron_options"]
        options = ([dict(o, detach_reset=detach_reset) for o in options] if isinstance(options, list)
                   else dict(options, detach_reset=detach_reset))
        config = training.resolve_config(dict(config, method="bptt", method_options={}, evaluation=None,
                                              neuron_options=options))
    task, model, learner = training.build(config)
    batch = training.train_batch(task, config, 1, model.dtype)
    grads = api.gradients(model, batch.inputs, batch.targets, mask=batch.mask,
                          method="bptt" if bptt else learner.engine, loss="cross_entropy",
                          evaluation=None if bptt else config["evaluation"])
    return {jax.tree_util.keystr(path): np.asarray(leaf, np.float64).ravel()
            for path, leaf in jax.tree_util.tree_flatten_with_path(eqx.filter(grads, eqx.is_inexact_array))[0]}


def reference_check(config: dict, folder: str, task: str, log) -> dict | None:
    """``OUT/NAME/TASK/reference.json``: per final seed, at initialisation, exact BPTT on the network with the reset
    path detached (the network the rules differentiate before they drop the off-diagonal recurrence) against BPTT
    with it kept (the diagnostics' reference): the norm ratio and cosine per parameter. Where the detached network's
    exact gradient explodes, the recurrent path both e-prop and deep e-prop drop is the one that carries it."""
    import numpy as np

    path = os.path.join(folder, task, "reference.json")
    if os.path.exists(path):
        return read_json(path)
    specs = method_specs()
    result = {}
    for seed in config["seeds"]:
        base = task_config(config, task, "bptt", specs["bptt"], lr=1e-3, seed=int(seed), out=folder,
                           validation=False)
        kept, detached = _leaf_gradients(base, detach_reset=False), _leaf_gradients(base, detach_reset=True)
        entry = {}
        for key, b in kept.items():
            a, nb = detached[key], float(np.linalg.norm(kept[key]))
            if nb == 0 or a.size < 2:
                continue
            na = float(np.linalg.norm(a))
            entry[key] = {"norm_ratio": na / nb, "cosine": float(a @ b / max(na * nb, 1e-300))}
        result[str(seed)] = entry
        log(f"{task} seed {seed}: BPTT with the reset detached against kept")

    write_json(path, result)
    return result


def online_folder(folder: str, online: dict, evaluation: str) -> str:
    return os.path.join(folder, online["task"], online["method"], "online", evaluation.replace(":", "-"))


def online_check(config: dict, folder: str, log) -> list[dict] | None:
    """The ``[online]`` check: the method's chosen rate, one seed, ``iterations`` iterations, evaluated every
    ``eval_every``, once with the reverse evaluation and once with ``evaluation``; ``None`` while the method's
    sweep has not chosen a rate."""
    online = config.get("online")
    if not online:
        return None
    choice_path = os.path.join(folder, online["task"], online["method"], "choice.json")
    if not os.path.exists(choice_path) or read_json(choice_path).get("lr") is None:
        return None
    lr = read_json(choice_path)["lr"]
    spec = method_specs()[online["method"]]
    results = []
    for evaluation in ("reverse", online["evaluation"]):
        run_config = dict(config, evaluation={online["method"]: evaluation},
                          overrides=dict(config.get("overrides", {}), iterations=int(online["iterations"]),
                                         eval_every=int(online["eval_every"])))
        resolved = task_config(run_config, online["task"], online["method"], spec, lr=lr, seed=int(online["seed"]),
                               out=online_folder(folder, online, evaluation), validation=False)
        result = train_run(resolved)
        log(f"online check {online['task']} {online['method']} seed {online['seed']} {evaluation}: "
            f"{result['status']} {result.get('final_metric')}")
        results.append(result)
    return results


def run(config: dict, out: str, *, tasks=None, methods=None, progress: bool = True, shard=None,
        online: bool = True) -> list[dict]:
    """The units (:func:`deepeprop.experiments.learning.run`), their diagnostics and the online check."""
    choices = run_units(config, out, tasks=tasks, methods=methods, progress=progress, shard=shard)
    folder = os.path.join(out, config.get("name", FOLDER))
    todo = units(config, tasks, methods)
    if shard is not None and shard.count > 1:
        todo = shard.take(todo)
    log = (lambda text: print(text, flush=True)) if progress else (lambda text: None)
    diagnose_finals(config, folder, todo, log)
    for task, method in todo:  # the shard that holds a task's BPTT unit computes its reference check
        if method == "bptt":
            reference_check(config, folder, task, log)
    check = config.get("online") or {}
    if online and (check.get("task"), check.get("method")) in todo:  # the shard that holds the unit runs it
        online_check(config, folder, log)
    return choices


# ---------------------------------------------------------------------------------------------- the report
def intro_lines(saved: dict) -> list[str]:
    """The heading and the text of the report's section (the learning table follows)."""
    config = saved["config"]
    online = config.get("online") or {}
    evaluations = config.get("evaluation", {})
    first = dict(next(iter(config["tasks"].values())), **config.get("overrides", {}))
    task = dict(first["task_options"])
    widths = sorted({int(w) for spec in config["tasks"].values()
                     for w in dict(spec, **config.get("overrides", {}))["hidden"]})
    length = (task.get("lead_steps", 0) + task["n_cues"] * (task["cue_steps"] + task["gap_steps"])
              + task["delay_steps"] + task["recall_steps"])
    # the sweep's budget (saved configs from before sweep_overrides name it sweep_iterations)
    sweep_iterations = config.get("sweep_overrides", {}).get("iterations", config.get("sweep_iterations", "all"))
    return [
        "## Deep versions of Bellec et al.'s evidence accumulation: the memory above the layer that must learn", "",
        "Bellec et al.'s task (the statistics of the section above) with the memory one or two layers above the "
        "layer reading the input: LIF neurons (no recurrence) below an ALIF memory layer (tau_a 2000, Bellec's beta, "
        "dense recurrence without autapses), leaky readout, "
        f"{' or '.join(map(str, widths))} neurons per layer. Every method at its own learning "
        f"rate: a sweep over {config['learning_rates']} ({sweep_iterations} iterations, seed "
        f"{config['sweep_seed']}, its own validation batch), then seeds {config['seeds']} at the best rate, scored "
        "on the test batch after the final iteration; 95% intervals (Student t) and Welch's t-test against deep "
        "e-prop, as in the learning experiment.", "",
        f"**Shortened from the paper's task, to fit 2 shared CPU cores in one sitting:** the delay is "
        f"{task['delay_steps']} steps instead of 1000 (T = {length} instead of 2250; every other statistic is Bellec "
        f"et al.'s), the batch is {first['batch_size']} (their README's figure: 32; their code's default: 64), and "
        f"the budget is a fixed {first['iterations']} iterations per final run, not their early-stopping "
        "criterion.", "",
        "- Command: `deepeprop experiment deep_cue` (config `src/deepeprop/experiments/deep_cue.toml`, methods "
        "`src/deepeprop/experiments/methods.toml`; results under `results/deep_cue`)",
        "- Evaluations: " + ", ".join(f"{m}: {e}" for m, e in evaluations.items())
        + " (the same gradient as the online forms, at about BPTT's cost; the weights change once per sequence); "
        "BPTT is reverse by nature; a method not named keeps its engine's own. The table's last column says which "
        "computed each run."
        + (f" The online check reruns {online.get('method')}, seed {online.get('seed')}, on {online.get('task')} with "
           f"the evaluation {online.get('evaluation')} for {online.get('iterations')} iterations (below)."
           if online else ""),
        "- Times are wall-clock on 2 cores that three other agents' jobs shared while these runs ran: compare them "
        "within a task, as ratios.",
    ]


def _mean_text(values, digits=2) -> str:
    summary = summarize(values)
    if summary["mean"] is None:
        return "n/a"
    if summary["n"] == 1:
        return f"{summary['mean']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} [{summary['low']:.{digits}f}, {summary['high']:.{digits}f}]"


def diagnostics_lines(config: dict, root: str, task: str, choices: list[dict]) -> tuple[list[str], list[str]]:
    """What explains a task's outcome: per method, over its final seeds, the firing rate of every layer at
    initialisation and at the end, and the cosine (norm ratio) of its gradient to BPTT's at initialisation for
    every layer's input weights (mean [95% interval]); then the online check when it ran on ``task``."""
    spec = dict(config["tasks"][task], **config.get("overrides", {}))
    depth = len(spec["hidden"])
    lines, findings = [], []
    rows, cosines, bottom = [], {}, {}
    for choice in choices:
        if "seeds" not in choice:
            continue
        found = []
        for entry in choice["seeds"].values():
            path = os.path.join(root, task, choice["method"], entry["out"], "diagnostics.json")
            if entry["status"] == "finished" and os.path.exists(path):
                found.append(read_json(path))
        if not found:
            continue
        cells = []
        for layer in range(1, depth + 1):
            cells.append(_mean_text([d["rates_init_hz"].get(f"mean_L{layer}") for d in found], 1) + " → "
                         + _mean_text([d["rates_final_hz"].get(f"mean_L{layer}") for d in found], 1))
        for layer in range(depth):
            key = f".nodes[{layer}].inputs[0].weight"
            values = [d.get("alignment_at_init", {}).get(key) for d in found]
            if choice["method"] == "bptt" or not all(values):
                cells.append("")
                continue
            cosine = [v["cosine"] for v in values]
            cosines.setdefault(choice["method"], {})[layer] = _mean_text(cosine)
            if layer == 0:
                bottom[choice["method"]] = cosine
            cells.append(_mean_text(cosine) + f" ({_mean_text([v['norm_ratio'] for v in values], 2)})")
        rows.append(f"| {choice['method']} | {len(found)} | " + " | ".join(cells) + " |")
    if rows:
        lines += ["What explains the outcome, per method over its final seeds (mean [95% interval]): each layer's "
                  "firing rate (Hz, at initialisation → after training, on the test batch) and the cosine (norm "
                  "ratio) of each layer's input-weight gradient to BPTT's at initialisation (the network as it runs, "
                  "reset path kept; the first training batch).", "",
                  "| method | seeds | " + " | ".join(f"rate L{i} (Hz)" for i in range(1, depth + 1)) + " | "
                  + " | ".join(f"cos L{i} input weights" for i in range(1, depth + 1)) + " |",
                  "|---|---|" + "---|" * (2 * depth), *rows, ""]
        if cosines:
            findings.append(f"{task}: gradient cosine to BPTT at initialisation, bottom layer (L1) input weights: "
                            + ", ".join(f"{m} {c.get(0, 'n/a')}" for m, c in cosines.items())
                            + f"; top (memory) layer L{depth}: "
                            + ", ".join(f"{m} {c.get(depth - 1, 'n/a')}" for m, c in cosines.items()))
    reference_path = os.path.join(root, task, "reference.json")
    if os.path.exists(reference_path):
        reference = read_json(reference_path)
        cells = []
        for layer in range(depth):
            key = f".nodes[{layer}].inputs[0].weight"
            ratios = [entry[key]["norm_ratio"] for entry in reference.values() if key in entry]
            cos = [entry[key]["cosine"] for entry in reference.values() if key in entry]
            if ratios:
                cells.append(f"L{layer + 1} input weights: norm ratio {min(ratios):.1e} to {max(ratios):.1e}, "
                             f"cosine {_mean_text(cos)}")
        text = ("Exact BPTT through the network with the reset path detached (what the rules differentiate before "
                "they drop the off-diagonal part of the recurrent Jacobian) against BPTT with it kept, at "
                f"initialisation, seeds {sorted(int(k) for k in reference)}: " + "; ".join(cells) + ".")
        largest = max((e["norm_ratio"] for entry in reference.values() for e in entry.values()), default=0.0)
        if largest > 1e3:
            text += (" That gradient explodes over the sequence: BPTT's bounded gradient rests on the reset path, "
                     "which e-prop and deep e-prop drop (their default), and they stay bounded only because they "
                     "also drop the memory layer's off-diagonal recurrence; what they keep of the long-range credit "
                     "runs through each neuron's own membrane and adaptation.")
        if bottom.get("deep_eprop") and bottom.get("eprop"):
            from scipy import stats

            pair = stats.ttest_rel(bottom["deep_eprop"], bottom["eprop"]) if len(bottom["eprop"]) > 1 else None
            text += (f" Bottom-layer cosine to BPTT at initialisation, the same seeds: deep e-prop "
                     f"{_mean_text(bottom['deep_eprop'])}, e-prop {_mean_text(bottom['eprop'])}"
                     + (f" (paired t-test p = {pair.pvalue:.2g})" if pair is not None and len(bottom["deep_eprop"]) ==
                        len(bottom["eprop"]) else "") + ".")
        lines += [f"- {text}", ""]
        findings.append(f"{task}: " + "; ".join(cells) + " (BPTT with the reset path detached against kept)")
    online = config.get("online") or {}
    if online.get("task") == task:
        compared = online_comparison(root, online)
        if compared:
            lines += [f"- {compared}", ""]
            findings.append(f"{task}: {compared}")
    return lines, findings


def online_comparison(root: str, online: dict) -> str | None:
    """The online check in words: the relative gap of the validation loss between the two evaluations at every
    evaluation both made, and how many validation accuracies agree."""
    from ..runfolder import read_metrics

    runs = {}
    for evaluation in ("reverse", online["evaluation"]):
        path = os.path.join(online_folder(root, online, evaluation), "metrics.jsonl")
        if not os.path.exists(path):
            return None
        runs[evaluation] = read_metrics(path)
    reverse = {r["iteration"]: r for r in runs["reverse"]}
    shared = [(r, reverse[r["iteration"]]) for r in runs[online["evaluation"]] if r["iteration"] in reverse]
    if not shared:
        return None
    gaps = [abs(a["test_loss"] - b["test_loss"]) / abs(b["test_loss"]) for a, b in shared]
    train_gap = None
    if all("train_loss" in a and "train_loss" in b for a, b in shared):
        train_gap = max(abs(a["train_loss"] - b["train_loss"]) / abs(b["train_loss"]) for a, b in shared)
    same = sum(a["test_metric"] == b["test_metric"] for a, b in shared)
    slower = None
    times = [(rows[-1]["wall_time"] - rows[0]["wall_time"]) / max(rows[-1]["iteration"] - rows[0]["iteration"], 1)
             for rows in (runs["reverse"], runs[online["evaluation"]]) if len(rows) > 1]
    if len(times) == 2 and times[0] > 0:
        slower = times[1] / times[0]
    return (f"Online check: {online['method']}, seed {online['seed']}, evaluation {online['evaluation']} against "
            f"reverse, {shared[-1][0]['iteration']} iterations: relative gap of the validation loss "
            + ", ".join(f"{g:.1e}" for g in gaps) + " at iterations "
            + ", ".join(str(a["iteration"]) for a, _ in shared)
            + f"; the same validation accuracy at {same} of {len(shared)} evaluations"
            + ("" if train_gap is None else f"; the training loss of the same batches (computed by each evaluation's "
               f"own forward pass) differs by up to {train_gap:.1e} (relative)")
            + (f"; the online evaluation took {slower:.1f}x the reverse one's time per iteration" if slower else ""))


def section(folder: str, figures: str, report_dir: str) -> tuple[list[str], list[str], float]:
    """The report's section of this experiment (after Bellec et al.'s): its heading and text, then the learning
    tables with the diagnostics of each task; ``([], [], 0.0)`` when it has not run under ``folder``."""
    saved, choices = load_learning(folder, FOLDER_NAME)
    if saved is None:
        return [], [], 0.0
    return learning_section(saved, choices, folder, figures, report_dir, name=FOLDER_NAME, intro=intro_lines(saved),
                            diagnostics=diagnostics_lines)
