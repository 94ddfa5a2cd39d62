"""Zucchet et al. (2023), "Online learning of long-range dependencies" (NeurIPS): their copy task at their size.

    deepeprop experiment zucchet2023 [--quick]      # sweep + final seeds of bptt, deep_eprop, eprop; the checks
    deepeprop experiment zucchet2023 --shard 0/3    # one (task, method) unit per process
    deepeprop experiment report                     # docs/results.md, with this experiment's section

The runs are the learning experiment's (:func:`deepeprop.experiments.learning.run` with ``name="zucchet2023"``):
for each method a learning-rate sweep (``sweep_seed``, the sweep's own budget ``sweep_overrides``), then the final
seeds at the best rate, under ``OUT/zucchet2023/copy/METHOD/``. The config's ``evaluation`` (``reverse``: one
backward pass through each rule's surrogate; the weights change once per sequence, so it is the online forms'
gradient at BPTT's cost) computes every run. Two checks, written once and not redone:

* ``exactness.json``: on the paper-size network at its initial weights (float32, one training batch), the cosine
  and norm ratio of deep e-prop's and e-prop's gradients to BPTT's, per node, and the largest relative difference
  of deep e-prop's from BPTT's (deep e-prop is exact here: every within-node Jacobian is (block) diagonal).
* ``online_check.json``: one seed of ``online_check.method`` rerun for a short stretch with each evaluation of
  ``online_check.evaluations`` (the online ``step`` form beside ``reverse``), at the method's chosen rate: the
  test loss at every evaluation of the stretch and the largest relative gap between the evaluations.
"""
from __future__ import annotations

import os

import numpy as np

from . import learning
from .alignment import summarize
from .common import machine, machine_text, methods as method_specs, read_json, write_json
from .learning import task_config, train_run
from .report import _figure, _fmt, _interval, _save, _welch, learning_section, load_learning

FOLDER = "zucchet2023"
TASK = "copy"

# What the network and the training here differ in from the paper's (their code: NicolasZucchet/
# Online-learning-LR-dependencies, experiments/table1_lru.yaml and online_lru/{layers,rec,seq_model}.py).
DIFFERENCES = (
    "Alphabet: each token here is one of 8 symbols, one-hot (input 9 channels with the go channel), and the loss "
    "is one 8-way cross-entropy per recall step; the paper's token is 7 random bits (input 8 channels with the stop "
    "channel) with a 2-way softmax per bit. Timing is the paper's: 20 tokens, 7 blank steps, one go step, 20 recall "
    "steps (T = 48).",
    "No layer normalisation (the paper's blocks are pre-norm): the graph has no node that normalises across units.",
    "The block's feed-forward part is gelu followed by one trained 128 x 128 edge; the paper's full GLU is "
    "Dense(gelu(y)) * sigmoid(Dense(gelu(y))): the graph has no multiplicative gate node.",
    "No LRU feed-through D u (the paper's y = Re(C h) + D u): no edge from a block's input to its gelu node.",
    "The LRU's gamma is sqrt(1 - |lambda|^2), a function of nu; the paper trains gamma_log as a parameter of its "
    "own (initialised to that value).",
    "No dropout (the paper's 0.1), constant learning rate (the paper anneals it by a cosine), one learning rate for "
    "every parameter (the paper's LRU parameters take half of it), Adam without weight decay (the paper: AdamW, "
    "weight decay 0 in table1_lru).",
    "Fresh random patterns every batch (the paper: a fixed set of 20000 training sequences); shorter training: "
    "the CPU budget (see the section) against the paper's 25 epochs of 400 batches (10000 iterations).",
)


def unit_folder(out: str, method: str) -> str:
    return os.path.join(out, FOLDER, TASK, method)


def _spec(method: str) -> dict:
    return method_specs()[method]


def exactness(config: dict, out: str) -> dict:
    """``exactness.json`` (module docstring); not recomputed when the file exists."""
    path = os.path.join(out, FOLDER, "exactness.json")
    if os.path.exists(path):
        return read_json(path)
    import equinox as eqx
    import jax

    from .. import api, training

    results = {"config": None, "methods": {}}
    reference = None
    for method in ("bptt", "deep_eprop", "eprop"):
        run_config = task_config(config, TASK, method, _spec(method), lr=1e-3, seed=0, out=os.path.join(out, "x"),
                                 validation=False)
        task, model, _ = training.build(run_config)
        batch = training.train_batch(task, run_config, 1, model.dtype)
        grads = api.gradients(model, batch.inputs, batch.targets, mask=batch.mask, method=method, loss=task.loss,
                              evaluation=run_config["evaluation"] if method != "bptt" else None)
        nodes = [[np.asarray(leaf, np.float64).ravel() for leaf in
                  jax.tree_util.tree_leaves(eqx.filter(layer, eqx.is_inexact_array))] for layer in grads.nodes]
        flat = [np.concatenate(leaves) if leaves else np.zeros(0) for leaves in nodes]
        if reference is None:
            reference = flat
            results["config"] = {k: v for k, v in dict(run_config).items() if k not in ("out", "method", "lr")}
            results["nodes"] = [type(layer.neuron).__name__.lower() for layer in model.nodes]
            continue
        cosine, ratio, rel = [], [], []
        for a, b in zip(flat, reference):
            na, nb = np.linalg.norm(a), np.linalg.norm(b)
            cosine.append(float(a @ b / max(na * nb, 1e-300)) if nb > 0 else None)
            ratio.append(float(na / nb) if nb > 0 else None)
            rel.append(float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if nb > 0 else None)
        results["methods"][method] = {"cosine": cosine, "norm_ratio": ratio, "max_relative_difference": rel,
                                      "evaluation": run_config["evaluation"]}
    results["dtype"] = "float32"
    write_json(path, results)
    return results


def online_check(config: dict, out: str) -> dict | None:
    """``online_check.json`` (module docstring): ``None`` while the method has no chosen rate yet."""
    check = config["online_check"]
    method = check["method"]
    path = os.path.join(out, FOLDER, "online_check.json")
    if os.path.exists(path):
        return read_json(path)
    choice_path = os.path.join(unit_folder(out, method), "choice.json")
    if not os.path.exists(choice_path) or read_json(choice_path).get("lr") is None:
        return None
    lr = read_json(choice_path)["lr"]
    runs = {}
    for evaluation in check["evaluations"]:
        run_config = task_config(config, TASK, method, _spec(method), lr=lr, seed=check["seed"],
                                 out=os.path.join(out, FOLDER, "online_check", evaluation), validation=False)
        run_config = run_config.replace(iterations=int(check["iterations"]), eval_every=int(check["eval_every"]),
                                        evaluation=evaluation)
        result = train_run(run_config)
        from ..runfolder import read_metrics

        rows = read_metrics(os.path.join(run_config["out"], "metrics.jsonl"))
        runs[evaluation] = {"status": result["status"], "iterations": [r["iteration"] for r in rows],
                            "test_loss": [r["test_loss"] for r in rows],
                            "test_metric": [r["test_metric"] for r in rows],
                            "seconds": result.get("seconds")}
    first, *others = check["evaluations"]
    gaps = {}
    for other in others:
        a, b = np.asarray(runs[other]["test_loss"]), np.asarray(runs[first]["test_loss"])
        gaps[other] = [float(g) for g in np.abs(a - b) / np.abs(b)]
    result = {"method": method, "seed": check["seed"], "lr": lr, "runs": runs, "relative_gap": gaps,
              "reference": first}
    write_json(path, result)
    return result


def run(config: dict, out: str, *, methods=None, progress: bool = True, shard=None) -> dict:
    """The units (sweep and final seeds of every method), then the two checks (module docstring)."""
    choices = learning.run(config, out, tasks=[TASK], methods=methods, progress=progress, shard=shard, name=FOLDER)
    write_json(os.path.join(out, FOLDER, "differences.json"), {"differences": list(DIFFERENCES),
                                                               "machine": machine()})
    found = {"choices": choices, "exactness": exactness(config, out), "online_check": online_check(config, out)}
    if found["online_check"] is None:
        print(f"zucchet2023: the online check waits for {config['online_check']['method']}'s chosen rate "
              "(run again when its unit has finished)", flush=True)
    return found


# ---------------------------------------------------------------------------------------------- the report
def _runs(folder: str, method: str) -> list[tuple[str, dict, list[dict]]]:
    """Every run folder of one method (sweep and final): ``(relative path, config.json, metrics rows)``."""
    import glob

    from ..runfolder import read_metrics

    base = os.path.join(folder, FOLDER, TASK, method)
    out = []
    for config_path in sorted(glob.glob(os.path.join(base, "*", "**", "config.json"), recursive=True)):
        run_dir = os.path.dirname(config_path)
        rows = read_metrics(os.path.join(run_dir, "metrics.jsonl")) if os.path.exists(
            os.path.join(run_dir, "metrics.jsonl")) else []
        out.append((os.path.relpath(run_dir, base), read_json(config_path), rows))
    return out


def _same_training(folder: str, choices: dict) -> str | None:
    """Deep e-prop's final runs against BPTT's at the same rate and seed: the largest gap of the test metric and
    of the test loss over every evaluation (the same training, if deep e-prop's gradient is BPTT's)."""
    from ..runfolder import read_metrics

    deep, bptt = choices.get("deep_eprop"), choices.get("bptt")
    if not deep or not bptt or not deep.get("seeds") or not bptt.get("seeds"):
        return None
    if deep["lr"] != bptt["lr"]:
        return (f"deep e-prop chose the rate {deep['lr']:g} and BPTT {bptt['lr']:g}: their final runs differ by the "
                "rate, not the gradient; the sweep runs at equal rates are compared instead")
    metric_gap, loss_gap, compared = 0.0, 0.0, 0
    for seed, entry in deep["seeds"].items():
        twin = bptt["seeds"].get(seed)
        if twin is None or entry["status"] != "finished" or twin["status"] != "finished":
            continue
        a = read_metrics(os.path.join(folder, FOLDER, TASK, "deep_eprop", entry["out"], "metrics.jsonl"))
        b = read_metrics(os.path.join(folder, FOLDER, TASK, "bptt", twin["out"], "metrics.jsonl"))
        for ra, rb in zip(a, b):
            metric_gap = max(metric_gap, abs(ra["test_metric"] - rb["test_metric"]))
            loss_gap = max(loss_gap, abs(ra["test_loss"] - rb["test_loss"]) / abs(rb["test_loss"]))
        compared += 1
    if not compared:
        return None
    return (f"deep e-prop's and BPTT's final runs at the same rate ({deep['lr']:g}), seed by seed ({compared} seeds): "
            f"the largest gap of the test accuracy over every evaluation is {metric_gap:.2g}, of the test loss "
            f"{loss_gap:.2g} (relative): the same training")


def section(folder: str, figures: str, report_dir: str) -> tuple[list[str], list[str], float]:
    """The report's lines for this experiment (empty when it has not run), its findings and its compute (s)."""
    config, choices = load_learning(folder, FOLDER)
    if config is None:
        return [], [], 0.0
    conf = config["config"]
    by_method = {c["method"]: c for c in choices}
    lines = ["## Zucchet et al. 2023: the copy task at the paper's size", "",
             "The copy task of Zucchet et al. (2023), \"Online learning of long-range dependencies\" (NeurIPS), with "
             "their network's size: 4 residual LRU blocks, model width (`d_model`) 128, 64 complex LRU units "
             "(`d_hidden`) per block, patterns of 20 tokens. Their online rule (exact eligibility traces inside each "
             "LRU, errors backpropagated across layers within the same time step only) is `eprop` on this stack; "
             "`deep_eprop` adds the traces across layers, and is exact here (below). Each method's learning rate "
             f"is the best of {conf['learning_rates']} on a sweep (seed {conf['sweep_seed']}, "
             f"{conf.get('sweep_overrides', {}).get('iterations', 'the same')} iterations, its own evaluation "
             f"batch), then seeds {conf['seeds']} at that rate. Test metric: per-token accuracy on the recall window "
             "(chance 1/8) on a fresh test batch; 95% intervals of the mean (Student t), Welch's t-test against deep "
             "e-prop.", "",
             "- Command: `deepeprop experiment zucchet2023` (config `src/deepeprop/experiments/zucchet2023.toml`, "
             f"results under `results/{FOLDER}`); one process per method: `--shard I/3`",
             f"- Machine: {machine_text(config.get('machine', {}))}; other agents shared its 2 cores while these "
             "ran, so the seconds per iteration are wall-clock under load (compare them as ratios)", ""]
    evaluations = []
    for method in conf["methods"]:
        found = sorted({(cfg.get("evaluation") or "the engine's own") for _path, cfg, _rows in _runs(folder, method)})
        if found:
            evaluations.append(f"`{method}`: {', '.join(found)}")
    lines += ["Evaluation that computed each run (from each run's `config.json`): " + "; ".join(evaluations)
              + ". `reverse` is one backward pass through the rule's surrogate network over the sequence; the "
              "weights change once per sequence, so it is the gradient of the rule's online forms at about BPTT's "
              "cost (BPTT's own evaluation is reverse).", "",
              "What differs from the paper's setup (their code, `experiments/table1_lru.yaml` and "
              "`online_lru/{layers,rec,seq_model}.py`):", ""]
    lines += [f"- {text}" for text in DIFFERENCES] + [""]
    lines += [f"**Note.** {text}" for text in conf.get("notes", [])] + ([""] if conf.get("notes") else [])
    findings = []
    exact_path = os.path.join(folder, FOLDER, "exactness.json")
    if os.path.exists(exact_path):
        exact = read_json(exact_path)
        nodes = exact["nodes"]
        lines += ["**Is deep e-prop exact here?** Yes: there is no within-node recurrence `W`, the LRU's own "
                  "Jacobian is one 2x2 rotation-and-decay block per unit and the gelu and identity nodes are "
                  "memoryless, so every within-node Jacobian is (block) diagonal, and deep e-prop's traces carry the "
                  "whole gradient (docs/math.md). Measured on the paper-size network at its initial weights (float32, "
                  "one training batch), per node: the cosine of each rule's gradient to BPTT's, and for deep e-prop "
                  "the largest difference from BPTT's relative to BPTT's largest entry:", "",
                  "| | " + " | ".join(f"{i + 1}: {n}" for i, n in enumerate(nodes)) + " |",
                  "|---|" + "---|" * len(nodes)]
        for method, values in exact["methods"].items():
            lines.append(f"| {method} cosine | " + " | ".join(_fmt(c, 4) for c in values["cosine"]) + " |")
            lines.append(f"| {method} norm ratio | " + " | ".join(_fmt(c, 3) for c in values["norm_ratio"]) + " |")
        deep = exact["methods"].get("deep_eprop")
        if deep:
            lines.append("| deep_eprop max rel. difference | " + " | ".join(
                "n/a" if c is None else f"{c:.1e}" for c in deep["max_relative_difference"]) + " |")
        lines.append("")
        eprop = exact["methods"].get("eprop")
        if eprop:
            worst = min((c, i) for i, c in enumerate(eprop["cosine"]) if c is not None)
            findings.append(f"zucchet2023: at initialisation e-prop's gradient has cosine {worst[0]:.3f} to BPTT's at "
                            f"its least aligned node ({worst[1] + 1}: {nodes[worst[1]]}); deep e-prop's differs from "
                            f"BPTT's by at most {max(c for c in deep['max_relative_difference'] if c is not None):.1e} "
                            "(relative) on every node" if deep else "")
    same = _same_training(folder, by_method)
    if same:
        lines += [f"{same[0].upper()}{same[1:]}.", ""]
        findings.append(f"zucchet2023: {same}")
    table, found, compute = learning_section(config, choices, folder, figures, report_dir, name=FOLDER,
                                             level="###")
    lines += table
    findings += [f"zucchet2023 {line}" for line in found]
    bptt, eprop = by_method.get("bptt"), by_method.get("eprop")
    if bptt and eprop and bptt.get("seeds") and eprop.get("seeds"):
        values = {m: [e["metric"] for e in by_method[m]["seeds"].values() if e["status"] == "finished"]
                  for m in ("bptt", "eprop")}
        if all(len(v) > 1 for v in values.values()):
            a, b = summarize(values["bptt"]), summarize(values["eprop"])

            p = _welch(values["eprop"], values["bptt"])
            apart = a["low"] > b["high"] or b["low"] > a["high"]
            findings.append(f"zucchet2023: BPTT {a['mean']:.3f} [{a['low']:.3f}, {a['high']:.3f}], e-prop "
                            f"(Zucchet et al.'s rule) {b['mean']:.3f} [{b['low']:.3f}, {b['high']:.3f}] test accuracy "
                            f"after {bptt['iterations']} iterations (Welch p = {p:.2g}): "
                            + ("the intervals are apart" if apart else "the intervals overlap"))
    speed_lines, speed_found = _loss_and_speed(folder, conf, by_method, figures, report_dir)
    lines += speed_lines
    findings += speed_found
    check_path = os.path.join(folder, FOLDER, "online_check.json")
    if os.path.exists(check_path):
        check = read_json(check_path)
        ref = check["reference"]
        for other, gaps in check["relative_gap"].items():
            runs = check["runs"]
            text = (f"{check['method']}, seed {check['seed']}, lr {check['lr']:g}: the first "
                    f"{runs[other]['iterations'][-1]} iterations rerun with the `{other}` evaluation beside `{ref}`: "
                    "relative gap of the test loss at iterations "
                    + ", ".join(str(i) for i in runs[other]["iterations"]) + ": " + ", ".join(f"{g:.1e}" for g in gaps)
                    + f" (test accuracy {_fmt(runs[other]['test_metric'][-1])} against "
                    f"{_fmt(runs[ref]['test_metric'][-1])} at the end); wall-clock "
                    f"{_fmt(runs[other].get('seconds'), 0)} s against {_fmt(runs[ref].get('seconds'), 0)} s")
            lines += ["**Online evaluation, same curve.** " + text + ".", ""]
            findings.append(f"zucchet2023: {text}")
    else:
        lines += ["The online-evaluation rerun (`online_check.json`) has not run yet: it follows e-prop's final seeds.",
                  ""]
    return lines, [f for f in findings if f], compute


def _loss_and_speed(folder: str, conf: dict, by_method: dict, figures: str, report_dir: str,
                    level: float = 0.99) -> tuple[list[str], list[str]]:
    """Where the accuracy saturates, what still tells the rules apart: the final test loss (cross-entropy) and the
    first evaluation at which the test accuracy reached ``level``, per seed, with 95% intervals and Welch's test
    against BPTT."""
    from ..runfolder import read_metrics

    values = {}
    for method in conf["methods"]:
        choice = by_method.get(method)
        if not choice or not choice.get("seeds"):
            continue
        losses, reached = [], []
        for entry in choice["seeds"].values():
            if entry["status"] != "finished":
                continue
            rows = read_metrics(os.path.join(folder, FOLDER, TASK, method, entry["out"], "metrics.jsonl"))
            losses.append(rows[-1]["test_loss"])
            hit = next((r["iteration"] for r in rows if r["test_metric"] >= level), None)
            reached.append(float(hit) if hit is not None else float("nan"))
        values[method] = (losses, reached)
    if not values:
        return [], []
    every = dict(conf["tasks"][TASK], **conf.get("overrides", {})).get("eval_every")
    lines = ["The final test loss (the training loss: cross-entropy on the recall steps) and the iteration of the "
             "first "
             f"evaluation at which the test accuracy reached {level:.2f} (every {every} "
             "iterations), mean [95% interval] over the final seeds, Welch's p against BPTT:", "",
             "| method | final test loss | p | first iteration at accuracy >= " + f"{level:.2f} | p | never reached |",
             "|---|---|---|---|---|---|"]
    found = []
    reference = values.get("bptt")
    for method, (losses, reached) in values.items():
        loss = summarize(losses)
        hits = [r for r in reached if np.isfinite(r)]
        speed = summarize(hits)
        p_loss = _welch(losses, reference[0]) if reference and method != "bptt" else None
        p_speed = (_welch(hits, [r for r in reference[1] if np.isfinite(r)])
                   if reference and method != "bptt" else None)
        lines.append(f"| {method} | {_interval(loss)} | {'' if p_loss is None else f'{p_loss:.2g}'} | "
                     f"{_interval(speed, 0)} | {'' if p_speed is None else f'{p_speed:.2g}'} | "
                     f"{len(reached) - len(hits)} of {len(reached)} |")
        if method == "eprop" and reference and loss["mean"] is not None:
            ref = summarize(reference[0])
            apart = ref["high"] is not None and loss["low"] is not None and (
                loss["low"] > ref["high"] or ref["low"] > loss["high"])
            found.append(f"zucchet2023: final test loss e-prop {_interval(loss)}, BPTT {_interval(ref)} "
                         f"(Welch p = {_fmt(p_loss, 2)}): " + ("outside each other's 95% intervals" if apart
                                                               else "the intervals overlap"))
    lines.append("")
    path = _loss_figure(folder, conf, by_method, os.path.join(figures, f"{FOLDER}_loss.png"))
    if path is not None:
        lines += [f"![test loss of the final runs]({os.path.relpath(path, report_dir)})", ""]
    return lines, found


def _loss_figure(folder: str, conf: dict, by_method: dict, path: str) -> str | None:
    """The final runs' test loss against the iteration (log scale), mean over seeds, band min to max."""
    from ..runfolder import read_metrics

    figure, (ax,) = _figure(6.0, 3.2)
    drawn = False
    for method in conf["methods"]:
        choice = by_method.get(method)
        if not choice or not choice.get("seeds"):
            continue
        curves = [read_metrics(os.path.join(folder, FOLDER, TASK, method, e["out"], "metrics.jsonl"))
                  for e in choice["seeds"].values() if e["status"] == "finished"]
        curves = [c for c in curves if c]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        xs = [r["iteration"] for r in curves[0][:length]]
        ys = np.array([[r["test_loss"] for r in c[:length]] for c in curves])
        line, = ax.plot(xs, ys.mean(0), label=f"{method} (lr {choice['lr']:g})",
                        linestyle="--" if method == "deep_eprop" else "-")
        ax.fill_between(xs, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.15)
        drawn = True
    if not drawn:
        return None
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("test loss")
    ax.set_title("copy task: test loss, mean over seeds (band: min to max)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(figure, os.path.dirname(path), os.path.basename(path))

