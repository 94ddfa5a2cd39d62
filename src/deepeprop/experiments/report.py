"""``deepeprop experiment report``: the results report (Markdown tables, PNG figures) from the experiments' JSON.

Every number in the report is read from the files the ``alignment`` and ``learning`` subcommands wrote; the
report states the commands, configs, seeds, machine and compute time behind each table. Findings are
derived from the numbers (which method's 95% interval lies above which), not written by hand.

Why this file is long: it writes one document, docs/results.md, from the experiments' JSON; its sections (alignment,
learning, and the Bellec et al. reproduction from :mod:`~deepeprop.experiments.bellec2020`) and the listing of what
shards still miss read the same loaded results and share the formatting of intervals, tables and figures.
"""
from __future__ import annotations

import glob
import math
import os

import numpy as np

from ..errors import UsageError
from ..runfolder import read_metrics
from .alignment import AXES, points, summarize
from .bellec2020 import section as bellec_section
from .common import machine_text, read_json
from .common import methods as method_specs
from .learning import units

PER_LAYER = ("eprop", "eprop_random", "eprop_no_filter", "immediate")  # the per-layer (no depth traces) methods
DEEP = "deep_eprop"
# tasks of the learning experiment that are smaller versions of a paper's: said so where they are reported
SHRUNKEN = {"cue_accumulation": "**A shrunken version of Bellec et al.'s task** (not the paper's size, on which BPTT "
                                "stays at chance here; the paper's size is the first section). "}


def _fmt(value, digits=3):
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def _interval(summary, digits=3):
    if summary["mean"] is None:
        return "n/a"
    return f"{summary['mean']:.{digits}f} [{summary['low']:.{digits}f}, {summary['high']:.{digits}f}]"


def _figure(width=7.0, height=3.0, ncols=1):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=90)
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, axes


def _save(figure, folder, name) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    figure.tight_layout()
    figure.savefig(path)
    return path


# ---------------------------------------------------------------------------------------------- alignment
def load_alignment(folder: str) -> tuple[dict | None, list[dict]]:
    config_path = os.path.join(folder, "alignment", "config.json")
    if not os.path.exists(config_path):
        return None, []
    results = [read_json(p) for p in sorted(glob.glob(os.path.join(folder, "alignment", "*.json")))
               if os.path.basename(p) != "config.json"]
    return read_json(config_path), results


def _axis_points(config: dict, results: list[dict], axis: str) -> list[tuple]:
    """``(value, result)`` along one sweep, in the config's order."""
    base = config["config"]["base"]
    by_point = {}
    for result in results:
        by_point[repr(sorted(result["point"].items()))] = result
    out = []
    for value in config["config"]["sweeps"].get(axis, []):
        point = dict(base, **{axis: value})
        result = by_point.get(repr(sorted(point.items())))
        if result is not None:
            out.append((value, result))
    return out


def _layer_summary(entry: dict, quantity: str, layer: int) -> dict:
    return summarize([seed_values[layer] for seed_values in entry[quantity]])


def alignment_section(config: dict, results: list[dict], figures: str, report_dir: str) -> tuple:
    lines, findings = [], []
    methods = config["config"]["methods"]
    base = config["config"]["base"]
    seeds = config["config"]["seeds"]
    seconds = sum(r.get("seconds", 0.0) for r in results)
    lines += ["## Gradient alignment", "",
              "Per node (hidden layers bottom to top, then the readout): the cosine of each method's gradient with "
              "BPTT's, and the norm ratio `|g| / |g_bptt|`, on one batch at initialisation (noise inputs, random "
              "labels, cross-entropy). Each cell is the mean over seeds with its 95% interval (Student t). One factor "
              "of the base point is changed at a time.", "",
              "- Command: `deepeprop experiment alignment` (config: `src/deepeprop/experiments/alignment.toml`)",
              f"- Base point: `{_point_text(base)}`",
              f"- Seeds: {seeds}; methods: {', '.join(methods)} (BPTT is the reference)",
              f"- Machine: {machine_text(config.get('machine', {}))}; compute: {seconds:.0f} s for "
              f"{len(results)} points", ""]
    heat_rows, heat_cols = [], []
    for axis in AXES:
        along = _axis_points(config, results, axis)
        if not along:
            continue
        lines += [f"### {axis.replace('_', ' ')}", ""]
        figure, (ax_cos, ax_ratio) = _figure(9.0, 3.0, 2)
        for method in methods:
            xs, cos_mean, cos_err, ratio_mean = [], [], [], []
            for index, (_value, result) in enumerate(along):
                entry = result["methods"].get(method, {})
                if "cosine" not in entry:
                    continue
                cos = _layer_summary(entry, "cosine", 0)
                ratio = _layer_summary(entry, "norm_ratio", 0)
                if cos["mean"] is None:
                    continue
                xs.append(index)
                cos_mean.append(cos["mean"])
                cos_err.append(cos["high"] - cos["mean"])
                ratio_mean.append(max(ratio["mean"], 1e-12) if ratio["mean"] is not None else np.nan)
            if xs:
                ax_cos.errorbar(xs, cos_mean, yerr=cos_err, marker="o", capsize=3, label=method)
                ax_ratio.plot(xs, ratio_mean, marker="o", label=method)
        for ax, title in ((ax_cos, "cosine to BPTT, bottom layer"), (ax_ratio, "norm ratio to BPTT, bottom layer")):
            ax.set_xticks(range(len(along)))
            ax.set_xticklabels([str(v) for v, _ in along], fontsize=8)
            ax.set_xlabel(axis)
            ax.set_title(title, fontsize=9)
        ax_ratio.set_yscale("log")
        ax_cos.axhline(0.0, color="grey", lw=0.5)
        ax_cos.legend(fontsize=6)
        path = _save(figure, figures, f"alignment_{axis}.png")
        lines += [f"![alignment along {axis}]({os.path.relpath(path, report_dir)})", ""]
        max_depth = max(r["point"]["depth"] for _, r in along)
        header = "| " + axis + " | method | " + " | ".join(f"cos L{i + 1}" for i in range(max_depth)) + \
                 " | cos readout | norm ratio L1 |"
        lines += [header, "|" + "---|" * (max_depth + 4)]
        for value, result in along:
            depth = result["point"]["depth"]
            for method in methods:
                entry = result["methods"].get(method, {})
                if "refused" in entry:
                    lines.append(f"| {value} | {method} | refused: {entry['refused'][:80]}… |" + " |" * (max_depth + 1))
                    continue
                if "cosine" not in entry:
                    continue
                cells = [_interval(_layer_summary(entry, "cosine", i)) for i in range(depth)]
                cells += [""] * (max_depth - depth)
                readout = _interval(_layer_summary(entry, "cosine", depth))
                ratio = _layer_summary(entry, "norm_ratio", 0)
                lines.append(f"| {value} | {method} | " + " | ".join(cells) + f" | {readout} | "
                             f"{_ratio_text(ratio)} |")
                if method not in heat_rows:
                    heat_rows.append(method)
            heat_cols.append(f"{axis}={value}")
        lines.append("")
    if heat_cols:
        matrix = np.full((len(heat_rows), len(heat_cols)), np.nan)
        col = 0
        for axis in AXES:
            for _value, result in _axis_points(config, results, axis):
                for row, method in enumerate(heat_rows):
                    entry = result["methods"].get(method, {})
                    if "cosine" in entry:
                        mean = _layer_summary(entry, "cosine", 0)["mean"]
                        matrix[row, col] = np.nan if mean is None else mean
                col += 1
        figure, (ax,) = _figure(min(2.0 + 0.38 * len(heat_cols), 16.0), 0.8 + 0.38 * len(heat_rows))
        image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu", aspect="auto")
        ax.set_yticks(range(len(heat_rows)))
        ax.set_yticklabels(heat_rows, fontsize=7)
        ax.set_xticks(range(len(heat_cols)))
        ax.set_xticklabels(heat_cols, rotation=60, ha="right", fontsize=6)
        ax.set_title("cosine to BPTT of the bottom layer's gradient, every point", fontsize=9)
        figure.colorbar(image, ax=ax)
        path = _save(figure, figures, "alignment_heatmap.png")
        lines[lines.index("## Gradient alignment") + 2:lines.index("## Gradient alignment") + 2] = [
            f"![bottom-layer cosine at every point]({os.path.relpath(path, report_dir)})", ""]
    findings += _alignment_findings(config, results)
    return lines, findings, seconds


def _ratio_text(summary):
    if summary["mean"] is None:
        return "n/a"
    return f"{summary['mean']:.2g}"


def _point_text(point: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def _alignment_findings(config: dict, results: list[dict]) -> list[str]:
    """Where per-layer e-prop loses the bottom layer's gradient and deep e-prop keeps it."""
    out = []
    lost, kept = [], []
    for result in results:
        eprop, deep = result["methods"].get("eprop", {}), result["methods"].get(DEEP, {})
        if "cosine" not in eprop or "cosine" not in deep:
            continue
        e_ratio = _layer_summary(eprop, "norm_ratio", 0)["mean"]
        d_cos = _layer_summary(deep, "cosine", 0)["mean"]
        e_cos = _layer_summary(eprop, "cosine", 0)["mean"]
        if None in (e_ratio, d_cos, e_cos):
            continue
        label = ("the base point" if len(result["sweeps"]) > 1
                 else ", ".join(f"{axis}={result['point'][axis]}" for axis in result["sweeps"]))
        if d_cos > 0.9 and (e_cos < 0.5 or e_ratio < 0.1):
            lost.append(f"{label} (e-prop cos {e_cos:.2f}, norm ratio {e_ratio:.2g}; deep e-prop cos {d_cos:.2f})")
        if d_cos < 0.5:
            kept.append(f"{label} (deep e-prop cos {d_cos:.2f}, e-prop {e_cos:.2f})")
    if lost:
        out.append("Bottom layer: per-layer e-prop loses the gradient (cosine < 0.5 or norm ratio < 0.1) while deep "
                   "e-prop keeps it (cosine > 0.9) at: " + "; ".join(lost) + ".")
    if kept:
        out.append("Bottom layer: deep e-prop itself is far from BPTT (cosine < 0.5) at: " + "; ".join(kept) + ".")
    return out


# ---------------------------------------------------------------------------------------------- learning
def load_learning(folder: str, name: str = "learning") -> tuple[dict | None, list[dict]]:
    """The saved config and every ``choice.json`` of a learning-style experiment under ``folder/name``."""
    config_path = os.path.join(folder, name, "config.json")
    if not os.path.exists(config_path):
        return None, []
    choices = [read_json(p) for p in sorted(glob.glob(os.path.join(folder, name, "*", "*", "choice.json")))]
    return read_json(config_path), choices


def _welch(a, b):
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    if np.std(a) == 0 and np.std(b) == 0:
        return 0.0 if np.mean(a) != np.mean(b) else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _curves(folder: str, choice: dict):
    """Per finished seed: (iterations, test metric) from its metrics.jsonl."""

    out = []
    for entry in choice.get("seeds", {}).values():
        if entry["status"] != "finished":
            continue
        rows = read_metrics(os.path.join(folder, entry["out"], "metrics.jsonl"))
        out.append(([r["iteration"] for r in rows], [r["test_metric"] for r in rows]))
    return out


def learning_section(config: dict, choices: list[dict], folder: str, figures: str, report_dir: str,
                     name: str = "learning", level: str = "###", intro: list[str] | None = None,
                     diagnostics=None) -> tuple:
    """The report's lines of a learning-style experiment under ``folder/name``, its findings and its compute
    (seconds): ``learning`` with its heading and introduction; another experiment on the same runner either with its
    own ``intro`` lines (``deep_cue``: the tasks shallowest first, the machine named) or with none (``zucchet2023``
    writes its own); ``level``: the tasks' heading; ``diagnostics(config, root, task, choices) -> (lines, findings)``
    adds lines after each task's curves."""
    lines, findings = [], []
    conf = config["config"]
    tasks = [t for t in conf["tasks"] if any(c["task"] == t for c in choices)]
    order = [m for m in conf["methods"]]
    compute = 0.0
    root = os.path.join(folder, name)
    if intro is not None:  # the saved config's tasks are in alphabetical order: shallowest first instead
        tasks.sort(key=lambda t: len(conf["tasks"][t]["hidden"]))
    learning_intro = ["## Learning", "",
              "Online training (weights updated once per sequence with Adam) at the same budget for every method: "
              "the same iterations, batch size and model. Each method's learning rate is the best of a sweep on a "
              "validation split (digits: 20% of the train split held out; generated tasks: the sweep seed's own "
              f"evaluation batch), seed {conf['sweep_seed']}; the final runs use seeds {conf['seeds']} and the test "
              "split. Test metric: mean ± sd, the 95% interval of the mean (Student t) and Welch's t-test against "
              "deep e-prop. Time per iteration from each run's own log (compilation excluded; the median over seeds); "
              "peak memory is XLA's compiled peak of one training iteration. Times are wall-clock on the machine named "
              "below, which other jobs may have shared while the runs ran: compare them within a task, as ratios, "
              "and use `deepeprop bench` for timings on a quiet machine. A rate marked (edge) is the sweep's "
              "smallest or largest: a rate beyond it might do better.", "",
              "- Command: `deepeprop experiment learning` (config: `src/deepeprop/experiments/learning.toml`, methods: "
              "`src/deepeprop/experiments/methods.toml`)",
              f"- Machine: {machine_text(config.get('machine', {}))}", ""]
    if intro is not None:
        lines += intro + [f"- Machine: {machine_text(config.get('machine', {}))}", ""]
    elif name == "learning":
        lines += learning_intro
    for task in tasks:
        spec = dict(conf["tasks"][task], **conf.get("overrides", {}))
        description = spec.pop("description", "")
        heading = f"{level} {task}"
        lines += [heading, "", SHRUNKEN.get(task, "") + description, "",
                  f"Config: `{_point_text({k: v for k, v in spec.items()})}`", ""]
        by_method = {c["method"]: c for c in choices if c["task"] == task}
        metric_name, finals, per_iteration = "metric", {}, {}
        lines += ["| method | lr | test " + "metric | 95% interval | p vs deep e-prop | s / iteration | x BPTT time | "
                  "peak MiB | seeds | evaluation |", "|---|---|---|---|---|---|---|---|---|---|"]
        bptt_time = None
        if "bptt" in by_method:
            times = [e["seconds_per_iteration"] for e in by_method["bptt"].get("seeds", {}).values()
                     if e.get("seconds_per_iteration")]
            bptt_time = float(np.median(times)) if times else None
        for method in order:
            choice = by_method.get(method)
            if choice is None:
                continue
            if "refused" in choice:
                lines.append(f"| {method} | | refused: {choice['refused'][:90]}… | | | | | | | |")
                continue
            if "same_as" in choice:
                lines.append(f"| {method} | | = {choice['same_as']} ({choice['reason']}) | | | | | | | |")
                continue
            seeds = choice.get("seeds", {})
            values = [e["metric"] for e in seeds.values() if e["status"] == "finished" and e["metric"] is not None]
            diverged = sum(e["status"] == "diverged" for e in seeds.values())
            finals[method] = values
            for run_dir in [os.path.join(root, task, method, e["out"]) for e in seeds.values()]:
                summary_path = os.path.join(run_dir, "summary.json")
                if os.path.exists(summary_path):
                    summary = read_json(summary_path)
                    compute += summary.get("seconds", 0.0)
                    metric_name = summary.get("metric_name", metric_name)
            for lr_dir in glob.glob(os.path.join(root, task, method, "sweep", "lr-*", "summary.json")):
                compute += read_json(lr_dir).get("seconds", 0.0)
            times = [e["seconds_per_iteration"] for e in seeds.values() if e.get("seconds_per_iteration")]
            per_iteration[method] = float(np.median(times)) if times else None
            summary = summarize(values)
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            p = _welch(values, finals.get(DEEP, [])) if method != DEEP and DEEP in finals else None
            ratio = (per_iteration[method] / bptt_time) if per_iteration[method] and bptt_time else None
            peak = choice.get("peak_bytes")
            rates = sorted(float(r) for r in choice.get("sweep", {}))
            edge = " (edge)" if rates and len(rates) > 1 and choice["lr"] in (rates[0], rates[-1]) else ""
            lines.append(
                f"| {method} | {choice['lr']:g}{edge} | {_fmt(summary['mean'])} ± {sd:.3f} | "
                f"[{_fmt(summary['low'])}, {_fmt(summary['high'])}] | {'' if p is None else f'{p:.2g}'} | "
                f"{_fmt(per_iteration[method], 4)} | {_fmt(ratio, 1)} | "
                f"{'n/a' if peak is None else f'{peak / 2**20:.2f}'} | {len(values)}"
                f"{f' ({diverged} diverged)' if diverged else ''} | {choice.get('evaluation', 'engine default')} |")
        lines[lines.index(heading) + 6] = lines[lines.index(heading) + 6].replace("test metric", f"test {metric_name}")
        lines.append("")
        rates = sorted({lr for c in by_method.values() for lr in c.get("sweep", {})}, key=float)
        if rates:
            lines += ["Learning-rate sweep (validation " + metric_name + ", seed " + str(conf["sweep_seed"]) + "):", "",
                      "| method | " + " | ".join(f"lr {r}" for r in rates) + " | chosen |",
                      "|---|" + "---|" * (len(rates) + 1)]
            for method in order:
                choice = by_method.get(method)
                if choice is None or "sweep" not in choice:
                    continue
                cells = []
                for r in rates:
                    entry = choice["sweep"].get(r)
                    cells.append("" if entry is None else (_fmt(entry["metric"]) if entry["status"] == "finished"
                                                           else entry["status"]))
                lines.append(f"| {method} | " + " | ".join(cells) + f" | {choice['lr']:g} |")
            lines.append("")
        figure, (ax,) = _figure(6.0, 3.2)
        for method in order:
            choice = by_method.get(method)
            if choice is None or "seeds" not in choice:
                continue
            curves = _curves(os.path.join(root, task, method), choice)
            if not curves:
                continue
            length = min(len(c[0]) for c in curves)
            xs = curves[0][0][:length]
            ys = np.array([c[1][:length] for c in curves])
            line, = ax.plot(xs, ys.mean(0), label=method)
            if len(curves) > 1:
                ax.fill_between(xs, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.15)
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"test {metric_name}")
        ax.set_title(f"{task}: mean over seeds (band: min to max)", fontsize=9)
        ax.legend(fontsize=6)
        path = _save(figure, figures, f"{name}_{task}.png")
        lines += [f"![learning curves on {task}]({os.path.relpath(path, report_dir)})", ""]
        findings += _learning_findings(task, finals, per_iteration, metric_name)
        if diagnostics is not None:  # deep_cue: what explains the outcome (rates, alignment), the online check
            more, found = diagnostics(conf, root, task, [by_method[m] for m in order if m in by_method])
            lines += more
            findings += found
    return lines, findings, compute


def _learning_findings(task: str, finals: dict, per_iteration: dict, metric_name: str) -> list[str]:
    if DEEP not in finals or not finals[DEEP]:
        return []
    deep = summarize(finals[DEEP])
    rivals = {m: summarize(finals[m]) for m in PER_LAYER if finals.get(m)}
    if not rivals:
        return []
    beaten = [m for m, s in rivals.items() if s["high"] is not None and s["high"] < deep["low"]]
    not_beaten = [m for m in rivals if m not in beaten]
    out = []
    text = (f"{task}: deep e-prop {deep['mean']:.3f} [{deep['low']:.3f}, {deep['high']:.3f}] test {metric_name}; ")
    if not not_beaten:
        text += ("it beats every per-layer method by a margin outside the 95% intervals ("
                 + ", ".join(f"{m} {rivals[m]['mean']:.3f} [{rivals[m]['low']:.3f}, {rivals[m]['high']:.3f}]"
                             for m in rivals) + ").")
    else:
        text += ("intervals overlap or favour the per-layer method for "
                 + ", ".join(f"{m} {rivals[m]['mean']:.3f} [{rivals[m]['low']:.3f}, {rivals[m]['high']:.3f}]"
                             for m in not_beaten)
                 + (("; it beats " + ", ".join(beaten)) if beaten else "") + ".")
    if finals.get("bptt"):
        bptt = summarize(finals["bptt"])
        text += f" BPTT: {bptt['mean']:.3f} [{bptt['low']:.3f}, {bptt['high']:.3f}]."
    if per_iteration.get(DEEP) and per_iteration.get("bptt"):
        text += f" Deep e-prop's time per iteration: {per_iteration[DEEP] / per_iteration['bptt']:.1f}x BPTT's."
    out.append(text)
    return out


# ---------------------------------------------------------------------------------------------- completeness
def missing(folder: str) -> dict:
    """What the experiments' configs ask for and ``folder`` does not hold yet (the work of shards that have not
    run or not finished): ``{"alignment": [(key, point label), ...] or None, "learning": [(task, method), ...] or
    None, "alignment_total": n, "learning_total": m}`` (``None``: that experiment has not started)."""
    out = {"alignment": None, "learning": None, "deep_cue": None, "alignment_total": 0, "learning_total": 0,
           "deep_cue_total": 0}
    align_config, align_results = load_alignment(folder)
    if align_config is not None:
        expected = points(align_config["config"])
        done = {r["key"] for r in align_results}
        out["alignment_total"] = len(expected)
        out["alignment"] = [(e["key"], _point_label(e)) for e in expected if e["key"] not in done]
    for name in ("learning", "deep_cue"):
        learn_config, choices = load_learning(folder, name)
        if learn_config is not None:
            expected = units(learn_config["config"])
            done = {(c["task"], c["method"]) for c in choices if c.get("complete", True)}
            out[f"{name}_total"] = len(expected)
            out[name] = [unit for unit in expected if unit not in done]
    return out


def _point_label(entry: dict) -> str:
    base_axes = [axis for axis in entry["sweeps"]]
    if len(base_axes) > 1:
        return "the base point"
    axis = base_axes[0]
    return f"{axis}={entry['point'][axis]}"


def missing_text(folder: str, found: dict | None = None, sep: str = " ") -> str:
    """One paragraph: every experiment complete, or what is missing and how to finish it."""
    found = missing(folder) if found is None else found
    parts = []
    for name, noun in (("alignment", "points"), ("learning", "(task, method) units"),
                       ("deep_cue", "(task, method) units")):
        todo, total = found[name], found[f"{name}_total"]
        if todo is None:
            continue
        if not todo:
            parts.append(f"{name}: all {total} {noun} finished.")
            continue
        shown = ", ".join(label if name == "alignment" else "/".join(label) for label in
                          ([t[1] for t in todo] if name == "alignment" else todo)[:12])
        more = f" and {len(todo) - 12} more" if len(todo) > 12 else ""
        parts.append(f"{name}: {len(todo)} of {total} {noun} missing ({shown}{more}): run `deepeprop experiment "
                     f"{name}` again with the same --out (or the shards that did not finish); finished ones are "
                     "not redone.")
    return sep.join(parts) if parts else "no experiment has started."


# ---------------------------------------------------------------------------------------------- the report
def build_report(folder: str, report: str, *, figures: str | None = None, quick: bool = False,
                 sections: tuple = ()) -> str:
    """Write the Markdown report ``report`` (and its PNG figures) from the JSON under ``folder``. ``sections``:
    ``(name, builder)`` of the experiments whose sections follow Bellec et al.'s, each
    ``builder(folder, figures, report_dir) -> (lines, findings, seconds)`` (no lines: not run); the package passes
    deep_cue's and zucchet2023's (:mod:`deepeprop.experiments`), which import this module's tables."""
    report_dir = os.path.dirname(os.path.abspath(report))
    figures = figures or os.path.join(report_dir, "figures" if not quick else "figures-quick")
    labels = {name: spec["label"] for name, spec in method_specs().items()}
    align_config, align_results = load_alignment(folder)
    learn_config, choices = load_learning(folder)
    bellec_lines, bellec_found, bellec_seconds = bellec_section(folder, figures, report_dir, labels)
    extra = [(name, *builder(folder, figures, report_dir)) for name, builder in sections]
    if (align_config is None and learn_config is None and not bellec_lines
            and not any(lines for _, lines, _, _ in extra)):
        raise UsageError(f"--out: no experiment results under {folder!r}; run `deepeprop experiment alignment` and "
                         f"`deepeprop experiment learning` first")
    quick_flag = " --quick" if quick else ""
    sections, findings, compute = list(bellec_lines), list(bellec_found), {}
    if bellec_lines:
        compute["bellec2020"] = bellec_seconds
    for name, lines, found, seconds in extra:
        if lines:
            sections += lines
            findings += found
            compute[name] = seconds
    if learn_config is not None:
        lines, found, seconds = learning_section(learn_config, choices, folder, figures, report_dir)
        sections += lines
        findings += found
        compute["learning"] = seconds
    if align_config is not None:
        lines, found, seconds = alignment_section(align_config, align_results, figures, report_dir)
        sections += lines
        findings += found
        compute["alignment"] = seconds
    head = ["# Results: where deep e-prop assigns credit that per-layer e-prop cannot", "",
            "This page is generated: every number and figure comes from the JSON the experiments wrote under "
            f"`{folder}`. Regenerate it with:", "", "```bash",
            f"deepeprop experiment alignment{quick_flag}    # finished points are not recomputed",
            f"deepeprop experiment learning{quick_flag}     # finished runs are not redone",
            f"deepeprop experiment bellec2020{quick_flag}   # finished runs are not redone",
            f"deepeprop experiment deep_cue{quick_flag}     # finished runs are not redone",
            f"deepeprop experiment zucchet2023{quick_flag}  # finished runs are not redone",
            f"deepeprop experiment report{quick_flag}", "```", "",
            "Compute behind these numbers: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in compute.items())
            + " (sum of the runs' own wall-clock times).", "",
            "Methods (`src/deepeprop/experiments/methods.toml`): "
            + "; ".join(f"`{name}`: {label}" for name, label in labels.items()) + ".", "",
            "## Findings", ""]
    head += [f"- {line}" for line in findings] or ["- (no finished runs yet)"]
    head += ["", "## Completeness", "", missing_text(folder, sep="\n\n"), ""]
    os.makedirs(report_dir, exist_ok=True)
    with open(report, "w") as handle:
        handle.write("\n".join(head + sections) + "\n")
    return report
