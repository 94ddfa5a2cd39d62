"""``deepeprop demo``: a 2-layer ALIF spiking network learns with deep e-prop, in well under a minute on 2 CPU cores.

It trains on ``digits`` (scikit-learn's 8x8 handwritten digits, read one row per time step), prints the test
accuracy next to chance level and writes the learning curves, a spike raster and the readout over time of one
test example to ``--out`` (default ``./deepeprop-demo``).
"""
from __future__ import annotations

import time

DEMO = {
    "task": "digits",
    "method": "deep_eprop",
    "neuron": "alif",
    "hidden": [32, 32],
    "iterations": 600,
    "batch_size": 32,
    "lr": 3e-3,
    "eval_every": 100,
    "seed": 0,
}


def _main(args) -> int:
    from .training import resolve_config, train

    config = resolve_config(dict(DEMO, out=args.out))
    run, model = config.run, config.model
    print(f"deepeprop demo: {config.engine.method} trains a {model.depth}-layer {model.neuron[0].upper()} "
          f"spiking network (hidden {list(model.hidden_sizes)}) on '{run.task}' (8x8 digits, one row per time step), "
          f"{run.iterations} batches of {run.batch_size}")
    start = time.perf_counter()
    summary = train(config, overwrite=True, progress=not args.no_progress, log=True)  # the demo's folder is its own
    seconds = time.perf_counter() - start
    print(f"test {summary['metric_name']}: {summary['final_metric']:.3f}   (chance level: {summary['chance']:.3f})"
          f"   in {seconds:.0f} s")
    print(f"plots and results written to {run.out}/: " + ", ".join(
        p.rsplit('/', 1)[-1] for p in summary.get("plots", [])) + ", metrics.jsonl, summary.json, checkpoint.eqx")
    return 0
