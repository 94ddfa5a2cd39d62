"""Bellec et al. (2020), Fig. 3, at the paper's size: evidence accumulation with 100 ALIF neurons, T = 2250.

    deepeprop experiment bellec2020                       # every method and seed of bellec2020.toml
    deepeprop experiment bellec2020 --methods bptt --seeds 0    # one run (runs may go in parallel processes)
    deepeprop experiment report                           # docs/results.md, this experiment first

Each run is :func:`deepeprop.training.train` (the ``deepeprop train`` code path) with the config's ``[base]``
options, the method's engine (``methods.toml``) and its evaluation (``[evaluation]``), in its own folder
``OUT/NAME/METHOD/seed-K`` (``NAME``: the config's ``name``, default ``bellec2020``; ``config.json`` beside
``summary.json`` and ``metrics.jsonl``). A finished run
(with ``summary.json``) is not redone; an interrupted one resumes from its checkpoint. Training stops by Bellec et
al.'s criterion (``early_stopping``: test error below 7%, confirmed on 8 more batches) or after ``iterations``.

After a run, ``diagnostics.json`` records what explains its outcome: the firing rates of the hidden neurons at
initialisation and at the end (Hz, over the evaluation batch), and, for every rule other than BPTT, the cosine
and norm ratio of its gradient to BPTT's on the network as it runs, at initialisation, per parameter.
``raster.npz`` holds one test example of the final network (input and hidden spikes, the readout's softmax) for
the Fig. 3 raster of the report.

Why this file is long: it reproduces one figure of one paper end to end (its runs per method and seed, and its
section of the report: the table, the figure and the comparison with the paper's numbers), so that each claim it
prints sits beside the code that measures it.
"""
from __future__ import annotations

import os

import numpy as np

from .common import machine, machine_text, methods as method_specs, write_json
from .learning import train_run

FOLDER = "bellec2020"
ONLINE = "bellec2020_online"  # the variant that reruns a seed with an online evaluation


def run_config(config: dict, method_name: str, spec: dict, seed: int, out: str) -> dict:
    """The validated ``train`` config of one run."""
    from .. import training

    base = dict(config["base"])
    base.update(config.get("overrides", {}))
    evaluation = config.get("evaluation", {}).get(method_name)
    explicit = dict(base, method=spec["method"], method_options=dict(spec["options"]), seed=int(seed), out=out,
                    evaluation=evaluation)
    return training.resolve_config(explicit)


def _hidden_rates(model, inputs) -> np.ndarray:
    """Firing rate of every hidden neuron in Hz (1 step = 1 ms), averaged over time and batch: ``(n,)``."""
    import equinox as eqx

    _, _, zs = eqx.filter_jit(lambda m, x: m.run(x, record=True))(model, inputs)
    return np.concatenate([np.asarray(z).mean(axis=(0, 1)) for z in zs]) * 1000.0


def _rate_summary(rates: np.ndarray, groups: dict) -> dict:
    summary = {"mean": float(rates.mean()), "min": float(rates.min()), "max": float(rates.max()),
               "silent": int(np.sum(rates == 0))}
    for name, (start, stop) in groups.items():
        summary[f"mean_{name}"] = float(rates[start:stop].mean())
    return summary


def alignment_at_init(config: dict, model, batch) -> dict:
    """Cosine and norm ratio of the run's rule to BPTT (the network as it runs, reset path kept), per parameter
    leaf, at the initial weights, on ``batch``."""
    import equinox as eqx
    import jax

    from .. import api, training

    rule = training.as_config(config).make_engine()
    reference_config = training.resolve_config(
        {**{k: config[k] for k in training.DEFAULTS if k not in ("method_options", "feedback", "evaluation",
                                                                  "neuron_options")},
         "method": "bptt", "neuron_options": _without_reset(config["neuron_options"])})
    _, reference_model, _ = training.build(reference_config)
    g_rule = api.gradients(model, batch.inputs, batch.targets, mask=batch.mask, method=rule, loss="cross_entropy",
                           evaluation=config["evaluation"])
    g_bptt = api.gradients(reference_model, batch.inputs, batch.targets, mask=batch.mask, method="bptt",
                           loss="cross_entropy")
    leaves_rule = jax.tree_util.tree_flatten_with_path(eqx.filter(g_rule, eqx.is_inexact_array))[0]
    leaves_bptt = jax.tree_util.tree_leaves(eqx.filter(g_bptt, eqx.is_inexact_array))
    result = {}
    for (path, a), b in zip(leaves_rule, leaves_bptt):
        a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
        nb = np.linalg.norm(b)
        if nb == 0 or a.size < 2:
            continue
        na = np.linalg.norm(a)
        result[jax.tree_util.keystr(path)] = {"cosine": float(a @ b / max(na * nb, 1e-300)),
                                              "norm_ratio": float(na / nb)}
    return result


def _without_reset(options):
    if isinstance(options, list):
        return [{k: v for k, v in o.items() if k != "detach_reset"} for o in options]
    return {k: v for k, v in options.items() if k != "detach_reset"}


def diagnose(config: dict, groups: dict) -> dict:
    """``diagnostics.json`` and ``raster.npz`` of a finished run (module docstring)."""
    import equinox as eqx
    import jax

    from .. import training

    out = config["out"]
    task, model, learner = training.build(config)
    test = training.eval_batch(task, config, model.dtype)
    state, _ = training.load_checkpoint(os.path.join(out, training.CHECKPOINT), learner.init(model))
    final = state.model
    diagnostics = {"rates_init_hz": _rate_summary(_hidden_rates(model, test.inputs), groups),
                   "rates_final_hz": _rate_summary(_hidden_rates(final, test.inputs), groups)}
    if config["method"] != "bptt":
        diagnostics["alignment_at_init"] = alignment_at_init(config, model, training.train_batch(task, config, 1,
                                                                                               model.dtype))
    write_json(os.path.join(out, "diagnostics.json"), diagnostics)
    _, ys, zs = eqx.filter_jit(lambda m, x: m.run(x, record=True))(final, test.inputs[:, :1])
    label = int(np.max(np.asarray(test.targets[:, 0])))
    np.savez_compressed(os.path.join(out, "raster.npz"), inputs=np.asarray(test.inputs[:, 0], np.uint8),
                        spikes=np.concatenate([np.asarray(z[:, 0]) for z in zs], axis=-1).astype(np.uint8),
                        softmax=np.asarray(jax.nn.softmax(ys[:, 0], axis=-1), np.float32), label=label)
    return diagnostics


def run(config: dict, out: str, *, methods=None, seeds=None, progress: bool = True) -> list[dict]:
    """Every (seed, method) of the config, or those given; seed by seed, so that a partial run is balanced."""
    specs = method_specs()
    chosen = methods or config["methods"]
    unknown = [m for m in chosen if m not in specs]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; known: {sorted(specs)}")
    folder = os.path.join(out, config.get("name", FOLDER))
    write_json(os.path.join(folder, "config.json"), {"config": config, "machine": machine()})
    groups = {name: tuple(bounds) for name, bounds in config.get("groups", {}).items()}
    results = []
    for seed in seeds if seeds is not None else config["seeds"]:
        for method_name in chosen:
            run_folder = os.path.join(folder, method_name, f"seed-{seed}")
            resolved = run_config(config, method_name, specs[method_name], seed, run_folder)
            result = train_run(resolved)
            if result["status"] == "finished" and not os.path.exists(os.path.join(run_folder, "diagnostics.json")):
                diagnose(resolved, groups)
            stopping = result.get("early_stopping") or {}
            if progress:
                print(f"bellec2020 {method_name} seed {seed}: {result['status']}, criterion met at "
                      f"{stopping.get('met_at')}, final test {result.get('metric_name')} {result.get('final_metric')}",
                      flush=True)
            results.append(dict(result, method=method_name, seed=seed))
    return results


# ---------------------------------------------------------------------------------------------- the report
PAPER = ("Bellec et al. 2020 (their code's README: e-prop with random feedback, batch 32, reaches the criterion "
         "after around 200-500 iterations)")


DIFFERENCES = [
    "Where this run differs from Bellec et al.'s code:", "",
    "- No refractory period (their `n_ref` = 5 steps): the library does not have one yet.",
    "- The readout is the library's leaky integrator `y[t] = k y[t-1] + W_out z[t]` with a trained bias (theirs "
    "filters the spikes with `(1 - k)` and has no bias), and the hidden neurons have trained biases (theirs none).",
    "- The task loss sums the cross-entropy over the 150 recall steps (theirs averages it; Adam's steps do not depend "
    "on that scale), so their regularisation weight `reg_f = 1` is `regularization_strength = 150` here.",
    "- Validation uses one fixed batch of 64 sequences every 10 iterations (theirs a fresh batch each time); the "
    "confirmation draws 8 fresh batches, as theirs does, but only at validations (theirs re-checks the latest "
    "validation error at every iteration).",
    "- Batch 64, their code's default (their README's figure used 32).", "",
]

# what a variant changed, for the report (the variant's config is saved under results/NAME/config.json)
VARIANTS = {
    "bellec2020_online": "The same gradient evaluated online: e-prop (symmetric feedback), seed 0, with the "
                         "chunked evaluation (chunks of 64 steps: forward across chunks, reverse inside each, memory "
                         "constant in T) instead of the reverse one; the weights still change once per sequence, "
                         "so the run should follow the reverse run's curve up to float32 rounding.",
    "bellec2020_all_alif": "A variant run before the library had per-neuron adaptation strengths and firing-rate "
                           "regularisation: all 100 neurons ALIF with the one beta of Bellec et al.'s heuristic "
                           "(0.0174), no regularisation, no refractory period; otherwise the paper's configuration "
                           "(the same task, sizes, optimiser and criterion).",
}


def load(folder: str, name: str) -> tuple[dict | None, list[dict]]:
    """The experiment's saved config and every run folder's results under ``folder/name``."""
    import glob
    import json

    root = os.path.join(folder, name)
    path = os.path.join(root, "config.json")
    if not os.path.exists(path):
        return None, []
    with open(path) as handle:
        saved = json.load(handle)
    runs = []
    for run_dir in sorted(glob.glob(os.path.join(root, "*", "seed-*"))):
        entry = {"method": os.path.basename(os.path.dirname(run_dir)),
                 "seed": int(os.path.basename(run_dir).removeprefix("seed-")), "folder": run_dir}
        for key, file in (("config", "config.json"), ("summary", "summary.json"), ("diagnostics", "diagnostics.json"),
                          ("stopped", "stopped.json")):
            file_path = os.path.join(run_dir, file)
            if os.path.exists(file_path):
                with open(file_path) as handle:
                    entry[key] = json.load(handle)
        metrics = os.path.join(run_dir, "metrics.jsonl")
        entry["rows"] = []
        if os.path.exists(metrics):
            with open(metrics) as handle:
                entry["rows"] = [json.loads(line) for line in handle if line.strip()]
        if "config" in entry:
            runs.append(entry)
    return saved, runs


def _seconds_per_iteration(rows: list[dict]) -> float | None:
    if len(rows) < 2:
        return None
    return (rows[-1]["wall_time"] - rows[0]["wall_time"]) / (rows[-1]["iteration"] - rows[0]["iteration"])


def _evaluation_text(config: dict) -> str:
    if config["method"] == "bptt":
        return "BPTT (reverse)"
    return config.get("evaluation") or "the engine's own (chunked:64)"


def _curves_figure(runs: list[dict], labels: dict, threshold: float, path: str) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 3.2), dpi=90)
    axis = figure.subplots()
    colours = {}
    for run in runs:
        rows = run["rows"]
        if not rows:
            continue
        colour = colours.setdefault(run["method"], f"C{len(colours)}")
        axis.plot([r["iteration"] for r in rows], [1.0 - r["test_metric"] for r in rows], color=colour, lw=1.0,
                  alpha=0.85, label=labels.get(run["method"], run["method"]) if run["seed"] == min(
                      r["seed"] for r in runs if r["method"] == run["method"]) else None)
        met = ((run.get("summary") or {}).get("early_stopping") or {}).get("met_at")
        if met is not None:
            axis.axvline(met, color=colour, lw=0.6, ls=":")
    axis.axhline(threshold, color="k", lw=0.8, ls="--", label=f"criterion ({threshold:.0%})")
    axis.axvspan(200, 500, color="grey", alpha=0.15, label="paper: met after 200-500")
    axis.set_xlabel("iteration")
    axis.set_ylabel("validation error")
    axis.set_ylim(0, 0.6)
    axis.legend(fontsize=7)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path)
    return path


def _raster_figure(runs: list[dict], labels: dict, groups: dict, path: str) -> str | None:
    """Fig. 3's panels for one test example of each method's first seed: input spikes (left, right, recall,
    background), hidden spikes, the readout's probability of "right"."""
    from matplotlib.figure import Figure

    shown = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        file = os.path.join(run["folder"], "raster.npz")
        if run["method"] not in shown and os.path.exists(file):
            shown[run["method"]] = (run, np.load(file))
    if not shown:
        return None
    figure = Figure(figsize=(3.3 * len(shown), 5.2), dpi=90)
    axes = figure.subplots(3, len(shown), squeeze=False, gridspec_kw={"height_ratios": [1.0, 1.6, 0.8]})
    for column, (method, (_, data)) in enumerate(shown.items()):
        inputs, spikes, softmax = data["inputs"], data["spikes"], data["softmax"]
        top, middle, bottom = axes[0, column], axes[1, column], axes[2, column]
        t, channel = np.nonzero(inputs)
        group = channel // (inputs.shape[1] // 4)  # left, right, recall, background
        for index, colour in enumerate(("C3", "C0", "C2", "0.5")):
            top.plot(t[group == index], channel[group == index], ls="none", marker="|", ms=2.0, mew=0.5, color=colour)
        top.set_ylim(-0.5, inputs.shape[1] - 0.5)
        top.set_title(labels.get(method, method), fontsize=8)
        top.set_ylabel("input\n(L, R, recall, noise)", fontsize=7)
        t, neuron = np.nonzero(spikes)
        middle.plot(t, neuron, ls="none", marker="|", ms=1.2, mew=0.4, color="k")
        for name, (start, stop) in groups.items():
            if start > 0:
                middle.axhline(start - 0.5, color="C1", lw=0.6)
            middle.text(inputs.shape[0], (start + stop) / 2, f" {name}", fontsize=6, va="center", clip_on=False)
        middle.set_ylim(-0.5, spikes.shape[1] - 0.5)
        middle.set_ylabel("hidden neuron", fontsize=7)
        bottom.plot(softmax[:, 1], color="purple", lw=0.8)
        bottom.axhline(0.5, color="0.5", lw=0.6, ls="--")
        bottom.set_ylim(-0.05, 1.05)
        bottom.set_ylabel('p("right")', fontsize=7)
        bottom.set_xlabel(f"time (ms); label {'right' if int(data['label']) == 1 else 'left'}", fontsize=7)
        for axis in (top, middle, bottom):
            axis.set_xlim(0, inputs.shape[0])
            axis.tick_params(labelsize=6)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path)
    return path


def section(folder: str, figures: str, report_dir: str, labels: dict) -> tuple[list[str], list[str], float]:
    """The report's lines for every Bellec et al. experiment under ``folder`` (``bellec2020*``), its findings and
    the compute behind it (seconds)."""
    import glob

    lines, findings, compute = [], [], 0.0
    names = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(folder, "bellec2020*",
                                                                                            "config.json")))
    for name in sorted(names, key=lambda n: (n != FOLDER, n)):
        saved, runs = load(folder, name)
        if saved is None or not runs:
            continue
        config = saved["config"]
        base = {k: runs[0]["config"].get(k, v) for k, v in dict(config["base"], **config.get("overrides", {})).items()}
        threshold = base.get("early_stopping") or 0.07
        groups = {k: tuple(v) for k, v in config.get("groups", {}).items()}
        title = ("Bellec et al. 2020, Fig. 3 at the paper's size: evidence accumulation" if name == FOLDER
                 else f"Bellec et al. 2020, Fig. 3: variant `{name}`")
        lines += [f"## {title}", "", VARIANTS.get(name, config.get("description", "")), "",
                  "- Command: `deepeprop experiment bellec2020` (config `src/deepeprop/experiments/bellec2020.toml`; "
                  f"results under `results/{name}`)" if name == FOLDER else
                  f"- Command: `deepeprop experiment bellec2020 --config results/{name}/variant.toml` (results under "
                  f"`results/{name}`)",
                  f"- Network: {base['hidden']} {base['neuron']} neurons, {base['recurrence']} recurrence "
                  f"(self-connections {str(base.get('self_connections')).lower()}), tau_m {base['tau_m']}, "
                  f"tau_a {base['tau_a']}, neuron options `{base.get('neuron_options', {})}`, leaky readout "
                  f"tau_out {base['tau_out']}; Adam lr {base['lr']}, batch {base['batch_size']}, at most "
                  f"{base['iterations']} iterations, validation every {base['eval_every']} iterations on "
                  f"{base['eval_batch_size']} sequences",
                  f"- Task: `{base['task_options']}` (T = {runs[0]['config'].get('n_steps')} steps)",
                  f"- Criterion: validation error below {threshold:.0%}, confirmed on "
                  f"{base.get('early_stopping_batches', 8)} more batches (Bellec et al.'s rule)",
                  f"- Paper: {PAPER}", f"- Machine: {machine_text(saved.get('machine', {}))}; other jobs shared its 2 "
                  "cores while these runs ran (load average 8-17), so the seconds per iteration below are wall-clock "
                  "under that load, not the library's speed (`deepeprop bench` measures that)", "",
                  *(DIFFERENCES if name == FOLDER else []),
                  "| method | evaluation | seed | criterion met at iteration | paper | last validation error | "
                  "iterations run | s / iteration | rate at end (Hz) |", "|---|---|---|---|---|---|---|---|---|"]
        met_by_method: dict[str, list] = {}
        for run in sorted(runs, key=lambda r: (list(config["methods"]).index(r["method"])
                                               if r["method"] in config["methods"] else 99, r["seed"])):
            summary, rows = run.get("summary"), run["rows"]
            met = ((summary or {}).get("early_stopping") or {}).get("met_at")
            status = ("met" if met is not None else "not met") if summary is not None else (
                f"stopped by hand at {rows[-1]['iteration'] if rows else 0}, not met" if "stopped" in run
                else "running")
            met_by_method.setdefault(run["method"], []).append((met, status))
            last = 1.0 - rows[-1]["test_metric"] if rows else None
            seconds = _seconds_per_iteration(rows)
            compute += rows[-1]["wall_time"] if rows else 0.0
            rates = (run.get("diagnostics") or {}).get("rates_final_hz", {})
            if status.endswith("not met") and rates:
                aligned = (run.get("diagnostics") or {}).get("alignment_at_init", {})
                cosines = ", ".join(f"{k} {v['cosine']:.2f}" for k, v in aligned.items()
                                    if k.startswith(".nodes[0]"))
                findings.append(f"{name}: {labels.get(run['method'], run['method'])}, seed {run['seed']}, did not meet "
                                f"the criterion in {rows[-1]['iteration'] if rows else 0} iterations: at its end the "
                                f"hidden neurons fired at {rates['mean']:.0f} Hz on average "
                                f"(max {rates['max']:.0f} Hz, "
                                f"{rates['silent']} of them silent); its hidden-layer gradient's cosine to BPTT's at "
                                f"initialisation: {cosines or 'n/a'}")
            lines.append(f"| {labels.get(run['method'], run['method'])} | {_evaluation_text(run['config'])} | "
                         f"{run['seed']} | {met if met is not None else status} | 200-500 | "
                         f"{'n/a' if last is None else f'{last:.3f}'} | {rows[-1]['iteration'] if rows else 0} | "
                         f"{'n/a' if seconds is None else f'{seconds:.2f}'} | "
                         f"{'n/a' if not rates else format(rates['mean'], '.1f')} |")
        lines.append("")
        for method, entries in met_by_method.items():
            done = [m for m, s in entries if m is not None]
            ended = [s for _, s in entries if s != "running"]
            running = len(entries) - len(ended)
            findings.append(f"{name}: {labels.get(method, method)} met the criterion in {len(done)} of "
                            f"{len(ended)} runs" + (f", at iterations {sorted(done)} (paper: 200-500)" if done else "")
                            + (f" ({running} still running)" if running else ""))
        if name == ONLINE:
            found = _same_curve(folder, runs, labels)
            lines += [f"- {line}" for line in found] + [""]
            findings += [f"{name}: {line}" for line in found]
        alignment = [(run, run["diagnostics"]["alignment_at_init"]) for run in runs
                     if "alignment_at_init" in run.get("diagnostics", {})]
        if alignment:
            lines += ["Gradient alignment at initialisation against BPTT (the network as it runs, reset path kept), on "
                      "the first training batch: cosine (norm ratio) per parameter.", "",
                      "| method | seed | " + " | ".join(alignment[0][1]) + " |",
                      "|---|---|" + "---|" * len(alignment[0][1])]
            for run, values in alignment:
                lines.append(f"| {labels.get(run['method'], run['method'])} | {run['seed']} | " + " | ".join(
                    f"{values[k]['cosine']:.3f} ({values[k]['norm_ratio']:.2f})" if k in values else "n/a"
                    for k in alignment[0][1]) + " |")
            lines.append("")
        curves = _curves_figure(runs, labels, threshold, os.path.join(figures, f"{name}_curves.png"))
        lines += [f"![validation error of every run]({os.path.relpath(curves, report_dir)})", ""]
        raster = _raster_figure(runs, labels, groups, os.path.join(figures, f"{name}_raster.png"))
        if raster is not None:
            lines += ["One validation example after training (first seed of each method), as in their Fig. 3: input "
                      "spikes (left cue red, right cue blue, recall green, background grey), the hidden neurons' "
                      "spikes and the readout's probability of \"right\".", "",
                      f"![raster of one validation example]({os.path.relpath(raster, report_dir)})", ""]
    return lines, findings, compute


def _same_curve(folder: str, runs: list[dict], labels: dict) -> list[str]:
    """How far each run of the online-evaluation variant is from the reverse-evaluation run of the same method and
    seed: the largest relative difference of the validation loss over the evaluations both made."""
    _, reference = load(folder, FOLDER)
    found = []
    for run in runs:
        twin = next((r for r in reference if r["method"] == run["method"] and r["seed"] == run["seed"]), None)
        if twin is None or not run["rows"]:
            continue
        theirs = {r["iteration"]: r for r in twin["rows"]}
        shared = [(r, theirs[r["iteration"]]) for r in run["rows"] if r["iteration"] in theirs]
        if not shared:
            continue
        gaps = [abs(a["test_loss"] - b["test_loss"]) / abs(b["test_loss"]) for a, b in shared]
        same = sum(a["test_metric"] == b["test_metric"] for a, b in shared)
        met = [((r.get("summary") or {}).get("early_stopping") or {}).get("met_at") for r in (run, twin)]
        found.append(f"{labels.get(run['method'], run['method'])}, seed {run['seed']}, evaluation "
                     f"{run['config'].get('evaluation')} against {twin['config'].get('evaluation')}: relative gap of "
                     f"the validation loss {gaps[0]:.1e} at iteration {shared[0][0]['iteration']}, then "
                     + ", ".join(f"{g:.1e}" for g in gaps[1:]) + f" at the later evaluations (float32 rounding, "
                     "amplified by the spikes it flips, as the weights move apart); the same validation accuracy at "
                     f"{same} of {len(shared)} evaluations; criterion met at {met[0]} and {met[1]}")
    return found
