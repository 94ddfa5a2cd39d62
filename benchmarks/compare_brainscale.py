"""deepeprop vs braintrace (brainscale) on brainscale's 2-layer LIF benchmark, back to back in one run.

Network (the closest deepeprop equivalent of benchmarks/brainscale_reference.py's 'lif-delta' model):
2 hidden layers of H LIF neurons, tau_m = 10, threshold 1, soft reset, delta synapse, dense recurrence,
100 Bernoulli(0.05) inputs, leaky readout of 10 (tau_out = 10), surrogate gamma*max(0, 1-|v-thr|/thr)/thr
with gamma = 0.3 (= braintools ReluGrad(0.3, 1)), U ~ N(0, 2/n_in), W ~ N(0, 1/H), float32, MSE.
Differences: deepeprop resets after the leak (v = a*v + I - thr*z) where brainpy leaks the reset
(v = a*(v - z) + I); deepeprop has a readout bias. Neither changes the cost.

Rows: bptt; eprop on the exact-reset model (detach_reset=False, self_connections=True, pinned: the reset path
kept and W with its diagonal, so the full eligibility vector); eprop on the factorisable standard model
(detach_reset=True, self_connections=False, the library defaults, pinned too: one presynaptic trace per
layer + the leaky readout's ebar);
and the same with readout_filter=False (drops the readout filter from the hidden layers' traces, as
braintrace's online algorithms do: one presynaptic trace per layer, one matmul per step).
Then braintrace's ES-D-RTRL (an approximation: eligibility = outer product of a presynaptic trace and a
postsynaptic trace, exponentially smoothed), its BPTT and its EProp, run from the isolated venv.

    python benchmarks/compare_brainscale.py --T 1000 --batch 32 --hidden 64 --repeats 5 --json /tmp/cmp.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

import deepeprop as dp
from deepeprop.bench import compile_engine

HERE = os.path.dirname(os.path.abspath(__file__))


def ours(args):
    T, B, H = args.T, args.batch, args.hidden
    common = dict(neuron="lif", recurrence="dense", readout="leaky", tau_m=10.0, tau_out=10.0,
                  input_gain=math.sqrt(2.0), recurrent_gain=1.0, key=jax.random.PRNGKey(0))
    exact = dp.DeepRNN(100, [H, H], 10, neuron_options={"threshold": 1.0, "gamma": 0.3, "detach_reset": False},
                       self_connections=True, **common)
    fact = dp.DeepRNN(100, [H, H], 10, neuron_options={"threshold": 1.0, "gamma": 0.3, "detach_reset": True},
                      self_connections=False, **common)
    x = (jax.random.uniform(jax.random.PRNGKey(1), (T, B, 100)) < 0.05).astype(jnp.float32)
    y = jax.random.normal(jax.random.PRNGKey(2), (T, B, 10))
    data = (x, y, jnp.ones((T, B)))
    runs = {"deepeprop bptt": ("bptt", exact), "deepeprop eprop (exact options)": ("eprop", exact),
            "deepeprop eprop (factorised)": ("eprop", fact),
            "deepeprop eprop (factorised, readout_filter=False)": ("eprop_nofilter", fact)}
    compiled = {}
    for name, (method, model) in runs.items():
        if method == "eprop_nofilter":
            fn, fargs, compile_s, _ = compile_engine("eprop", model, data, readout_filter=False)
        else:
            fn, fargs, compile_s, _ = compile_engine(method, model, data)
        jax.block_until_ready(fn(*fargs))
        compiled[name] = (fn, fargs, compile_s)
    times = {name: [] for name in compiled}
    for _ in range(args.repeats):
        for name, (fn, fargs, _) in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*fargs))
            times[name].append(time.perf_counter() - start)
    return {name: dict(per_step_ms=statistics.median(v) / T * 1e3, per_step_ms_min=min(v) / T * 1e3,
                       compile_s=compiled[name][2]) for name, v in times.items()}


def theirs(args):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        path = handle.name
    cmd = [args.venv_python, os.path.join(HERE, "brainscale_reference.py"), "--T", str(args.T), "--batch",
           str(args.batch), "--hidden", str(args.hidden), "--repeats", str(args.repeats), "--json", path,
           "--algos", args.algos]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if args.quiet else None)
    with open(path) as handle:
        payload = json.load(handle)
    return {f"braintrace {r['algo']}": dict(per_step_ms=r["per_step_ms"], per_step_ms_min=r["per_step_ms_min"],
                                            compile_s=r["compile_s"])
            for r in payload["results"] if "error" not in r}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--venv-python", default="/tmp/bsenv/bin/python")
    p.add_argument("--algos", default="es_d_rtrl,bptt,eprop")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = ours(args)
    rows.update(theirs(args))
    ref = rows.get("braintrace es_d_rtrl", {}).get("per_step_ms")
    print(f"\nT={args.T} batch={args.batch} hidden={args.hidden} float32, {jax.default_backend()}")
    print(f"{'run':<52} {'ms/step':>9} {'min':>9} {'compile_s':>9} {'/ES-D-RTRL':>10}")
    for name, r in rows.items():
        ratio = r["per_step_ms"] / ref if ref else float("nan")
        print(f"{name:<52} {r['per_step_ms']:9.4f} {r['per_step_ms_min']:9.4f} {r['compile_s']:9.2f} {ratio:10.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(config=vars(args), rows=rows), handle, indent=1)


if __name__ == "__main__":
    sys.exit(main())
