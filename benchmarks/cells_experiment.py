"""Element-wise recurrent cells trained online: the copy task and MNIST-1D, engine against engine.

Every run is ``deepeprop train`` (the same code path as the CLI) with one config per (experiment, method,
seed), written to ``runs/cells/...`` with its config.json beside its results; finished runs are not redone.
For each run the table gives the final test metric, the time per training iteration (from the run's own
wall-clock log, compilation excluded) and the compiled peak memory of one training iteration (XLA's
``memory_analysis``: temp + argument + output bytes). With ``--alignment`` it also prints the cosine per
node between each engine's gradient and BPTT's at initialisation (why an engine learns or does not).

    python benchmarks/cells_experiment.py copy --seeds 0,1,2 --json benchmarks/results/cells_copy.json
    python benchmarks/cells_experiment.py mnist1d --methods deep_eprop --seeds 0
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np

from deepeprop import runfolder, training
from deepeprop.experiments.learning import peak_memory_bytes
from deepeprop.gradcheck import compare

# Reduced from the paper's copy setup (4 LRU layers, pattern 20) for a 2-core CPU: two residual blocks
# x -> lru -> gelu -> (+ x) of 32 complex units (model width 9, the one-hot input's), patterns of 10 tokens out
# of 8, delay 5 (T = 26); deep_eprop's deep traces cost ~0.25 s per iteration at this size.
EXPERIMENTS = {
    "copy": dict(task="copy", task_options={"pattern_length": 10, "n_symbols": 8, "delay": 5},
                 neuron=["lru", "gelu", "identity", "lru", "gelu", "identity"], hidden=[32, 9, 9, 32, 9, 9],
                 recurrence="none", residual=[[2, 3], [0, 3], [5, 6], [3, 6]], readout="linear",
                 iterations=800, batch_size=32, lr=3e-3, eval_every=100, eval_batch_size=512),
    # the MNIST-1D reference trains 6000 iterations of batch 100
    "mnist1d": dict(task="mnist1d", task_options={}, neuron="mingru", hidden=[64, 64], recurrence="none",
                    readout="linear", iterations=6000, batch_size=100, lr=3e-3, eval_every=500),
}
METHODS = ("bptt", "deep_eprop", "eprop")


def run_config(name: str, method: str, seed: int, root: str) -> dict:
    base = dict(EXPERIMENTS[name])
    options = base.pop("task_options")
    out = os.path.join(root, name, method, f"seed{seed}")
    explicit = dict(base, method=method, seed=seed, out=out, task_options=options)
    return training.resolve_config(explicit)


def alignment(config: dict, methods) -> dict:
    """Cosine per node to BPTT at initialisation, on one training batch (float32)."""
    from deepeprop import gradients

    task, model, _ = training.build(config)
    batch = training.train_batch(task, config, 1, model.dtype)
    reference = gradients(model, batch.inputs, batch.targets, method="bptt", loss=task.loss, mask=batch.mask)
    out = {}
    for method in methods:
        grads = gradients(model, batch.inputs, batch.targets, method=method, loss=task.loss, mask=batch.mask)
        out[method] = [row["cosine"] for row in compare(grads, reference)]
    return out


def run(name: str, methods, seeds, root: str, log=print) -> list[dict]:
    rows = []
    for method in methods:
        for seed in seeds:
            config = run_config(name, method, seed, root)
            summary_path = os.path.join(config["out"], "summary.json")
            if os.path.exists(summary_path):  # finished: not redone
                with open(summary_path) as handle:
                    summary = json.load(handle)
            else:
                summary = training.train(config, overwrite=True, progress=False, plots=False)  # unfinished: afresh
            metrics = runfolder.read_metrics(os.path.join(config["out"], "metrics.jsonl"))
            first, last = metrics[0], metrics[-1]
            if len(metrics) > 1:  # between the first and the last evaluation: compilation excluded
                per_iteration = (last["wall_time"] - first["wall_time"]) / (last["iteration"] - first["iteration"])
            else:
                per_iteration = summary["seconds"] / config["iterations"]
            row = {"experiment": name, "method": method, "seed": seed, "final_metric": summary["final_metric"],
                   "metric_name": summary["metric_name"], "chance": summary["chance"],
                   "seconds_per_iteration": per_iteration, "peak_bytes": peak_memory_bytes(config),
                   "iterations": config["iterations"], "out": config["out"]}
            log(f"{name:<8} {method:<12} seed {seed}: {row['metric_name']} {row['final_metric']:.4f} "
                f"(chance {row['chance']:.3f}), {per_iteration * 1e3:.1f} ms/iteration, "
                f"peak {row['peak_bytes'] / 2**20:.1f} MiB")
            rows.append(row)
    return rows


def table(rows) -> str:
    lines = [f"{'experiment':<10}{'method':<12}{'seeds':>6}{'mean':>9}{'sd':>8}{'min':>8}{'max':>8}"
             f"{'ms/iter':>10}{'peak MiB':>10}"]
    keys = sorted({(r["experiment"], r["method"]) for r in rows}, key=lambda k: (k[0], METHODS.index(k[1])
                                                                                   if k[1] in METHODS else 9))
    for experiment, method in keys:
        group = [r for r in rows if r["experiment"] == experiment and r["method"] == method]
        values = [r["final_metric"] for r in group]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"{experiment:<10}{method:<12}{len(values):>6}{statistics.mean(values):>9.4f}{sd:>8.4f}"
                     f"{min(values):>8.4f}{max(values):>8.4f}"
                     f"{statistics.median(r['seconds_per_iteration'] for r in group) * 1e3:>10.1f}"
                     f"{statistics.median(r['peak_bytes'] for r in group) / 2**20:>10.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--root", default="runs/cells", help="where the runs are written (resumable)")
    parser.add_argument("--iterations", type=int, default=None, help="override the experiment's iterations")
    parser.add_argument("--eval-every", type=int, default=None, help="override the experiment's eval_every")
    parser.add_argument("--alignment", action="store_true", help="cosine per node to BPTT at initialisation")
    parser.add_argument("--json", default=None, help="write the rows (and alignment) to this JSON file")
    args = parser.parse_args(argv)
    if args.iterations is not None:
        EXPERIMENTS[args.experiment]["iterations"] = args.iterations
    if args.eval_every is not None:
        EXPERIMENTS[args.experiment]["eval_every"] = args.eval_every
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = run(args.experiment, methods, seeds, args.root)
    print(table(rows))
    result = {"experiment": args.experiment, "config": EXPERIMENTS[args.experiment], "rows": rows,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
                          "backend": jax.default_backend()},
              "command": "python benchmarks/cells_experiment.py "
              + " ".join(argv if argv is not None else sys.argv[1:])}
    if args.alignment:
        result["alignment_at_init"] = alignment(run_config(args.experiment, "bptt", seeds[0], args.root),
                                                [m for m in methods if m != "bptt"])
        for method, cosines in result["alignment_at_init"].items():
            print(f"alignment at init, {method}: " + ", ".join("n/a" if c is None else f"{c:.3f}" for c in cosines))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1,
                      default=lambda v: float(v) if isinstance(v, (np.floating, jnp.ndarray)) else str(v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
