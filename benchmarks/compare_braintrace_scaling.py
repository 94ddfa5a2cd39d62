"""deepeprop vs braintrace on braintrace's memory-and-speed benchmark, across T, the two libraries interleaved.

The benchmark (braintrace's ``examples/003-snn-memory-and-speed-evaluation-all.py``, and ``-batched.py``
beside it; the BrainScale paper's ``task-memory-and-speed-evaluation.py`` in
chaobrain/braintrace-snn-experiments): 3 recurrent layers of 512 LIF neurons (delta synapses, dense recurrence
through ``concat(x, s_prev) @ W``, soft reset, threshold 1, tau_mem 10 drawn per neuron N(10, 1), ReluGrad
surrogate (0.3, 1)), a leaky readout of 11 (tau 10), input 128*128*2 = 32768 Bernoulli(0.1) channels (the DVS
Gesture frame size), batch 128, per-step softmax cross-entropy against one label per sequence, float32,
ES-D-RTRL with decay 0.9, T in 50 .. 1000. It times a whole training iteration (incl. an Adam update) and
reads memory as the device's bytes in use.

What is timed here, for every row: one jitted call of forward + gradient over the whole sequence (no optimiser
update: it does not depend on T or the algorithm), ``block_until_ready``; ``per_step_ms`` = median over
``--repeats`` calls / T. Rows:

  ours  bptt                          deepeprop's BPTT
  ours  eprop[readout_filter=False]   e-prop on the factorisable model, without the readout filter on the hidden
                                      traces (braintrace's approximation): one presynaptic trace per layer
  ours  deep_eprop_factored           factored deep e-prop on the same model (the readout filter kept)
  theirs es_d_rtrl                    braintrace.ES_D_RTRL (= pp_prop), via braintrace.compile + etrace_grad
                                      (one fused scan: faster than the example's Python loop over a jitted step)
  theirs bptt                         brainstate.transform.grad over brainstate.transform.for_loop

Our model is the factorisable variant of the same network: LIF with ``detach_reset`` (the reset carries no
gradient), no self-connections in W, one tau_mem = 10 per layer (the factorised traces need a shared leak;
braintrace draws one per neuron, which does not change its cost); our LIF resets after the leak and has a
readout bias. Weights N(0, ff_scale/fan_in) and N(0, rec_scale/H) with the example's ff_scale 10, rec_scale 2.

Interleaving: braintrace runs in its own virtualenv (it pins its own brainstate/jax), so it runs in a second,
long-lived Python process: ``brainscale_reference.py --serve``, driven over a pipe with one JSON request and
one JSON reply per line. For each T both sides build and compile everything first (ours in this process,
theirs in the worker); then ``--repeats`` rounds, each a round robin over all rows with the two libraries
alternating (ours, theirs, ours, theirs, ours) and the starting row rotated by one each round. Only one
process computes at a time (the other waits on the pipe), each call is timed inside the process that runs it
(perf_counter around the call and block_until_ready: the pipe is not in the time), and load from other jobs
hits both libraries alike. Both processes use the same Python, jax and jaxlib (checked and recorded).

Memory, the same measure for both libraries: XLA's compiled ``memory_analysis()`` of the jitted training step
(ours: ``deepeprop.bench.compile_engine``; theirs: ``train.lower(xs, ys).compile()``): ``peak`` = temp +
argument + output bytes; ``engine`` = peak minus the bytes of the (T, B, .) inputs and targets (and our mask),
which every algorithm is handed whole and which grow with T; ``engine`` is the figure compared across T.

Also (``--exactness``, on by default, a second or so): at a small size (2 layers of 32, B 4, T 50) the cosine
per layer between ``deep_eprop_factored`` and ``deep_eprop`` (the exact deep trace; too big to run at 512) on
this model with a linear readout (where the factored trace is exact across the two layers) and with the leaky
readout (where it approximates beyond the first hop).

Commands (braintrace in its own venv: ``python3 -m venv /tmp/bsenv && /tmp/bsenv/bin/pip install
braintrace==0.2.6``):

    python benchmarks/compare_braintrace_scaling.py --quick                       # smoke run, ~1 min
    python benchmarks/compare_braintrace_scaling.py --size cpu \\
        --json benchmarks/results/braintrace_scaling_cpu.json                     # the CPU run
    python benchmarks/compare_braintrace_scaling.py --size example \\
        --json braintrace_scaling_gpu.json                                         # the example's size (GPU)

On a GPU both venvs need a CUDA jax (``pip install "jax[cuda12]==<same version>"`` in each); the two processes
share the device, so this script sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` for both (unless already set)
so that neither grabs 75% of the memory up front.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # two processes share one GPU

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import deepeprop as dp  # noqa: E402
from deepeprop.bench import check_engines, compile_engine  # noqa: E402
from deepeprop.errors import UsageError  # noqa: E402
from deepeprop.gradcheck import compare  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# the example's fixed settings (both libraries)
FIXED = dict(n_out=11, in_rate=0.1, tau_mem=10.0, tau_out=10.0, v_th=1.0, ff_scale=10.0, rec_scale=2.0,
             gamma=0.3, decay=0.9, loss="ce", tau_mem_sigma_theirs=1.0)
# sizes: "example" is the example's own; "cpu" the one that fits a 2-core CPU in ~10 min; "quick" a smoke run
SIZES = {
    "example": dict(layers=3, hidden=512, batch=128, n_in=32768, T=[50, 100, 200, 500, 1000], repeats=5),
    "cpu": dict(layers=3, hidden=512, batch=16, n_in=100, T=[50, 100, 200, 500, 1000], repeats=5),
    "quick": dict(layers=3, hidden=32, batch=4, n_in=100, T=[20, 50], repeats=3),
}
OURS = ("bptt", "eprop[readout_filter=False]", "deep_eprop_factored")
THEIRS = ("es_d_rtrl", "bptt")
ES = "theirs es_d_rtrl"
TARGETS = (  # (ours, theirs, time ratio at most): the issue's targets
    ("ours eprop[readout_filter=False]", ES, 0.8),
    ("ours deep_eprop_factored", ES, 1.5),
)


# --------------------------------------------------------------------------- theirs: the worker process

class Worker:
    """``brainscale_reference.py --serve`` in braintrace's venv: one JSON request / reply per line."""

    def __init__(self, python, quiet):
        cmd = [python, os.path.join(HERE, "brainscale_reference.py"), "--serve"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     stderr=subprocess.DEVNULL if quiet else None, bufsize=1)

    def request(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the braintrace worker exited (code {self.proc.poll()}) on {req.get('cmd')!r}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"braintrace worker, {req.get('cmd')!r}: {reply.get('error')}")
        return reply

    def close(self):
        try:
            self.request(cmd="quit")
        except (RuntimeError, OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def their_argv(cfg, T):
    return ["--T", str(T), "--batch", str(cfg["batch"]), "--hidden", str(cfg["hidden"]),
            "--layers", str(cfg["layers"]), "--n-in", str(cfg["n_in"]), "--n-out", str(FIXED["n_out"]),
            "--algos", ",".join(cfg["algos"]), "--loss", FIXED["loss"], "--decay", str(FIXED["decay"]),
            "--tau-mem", str(FIXED["tau_mem"]), "--tau-mem-sigma", str(FIXED["tau_mem_sigma_theirs"]),
            "--tau-out", str(FIXED["tau_out"]), "--v-th", str(FIXED["v_th"]),
            "--ff-scale", str(FIXED["ff_scale"]), "--rec-scale", str(FIXED["rec_scale"]),
            "--in-rate", str(FIXED["in_rate"]), "--seed", "0"]


# --------------------------------------------------------------------------- ours

def our_model(layers, hidden, n_in, readout="leaky"):
    return dp.DeepRNN(n_in, [hidden] * layers, FIXED["n_out"], neuron="lif", recurrence="dense", readout=readout,
                      tau_m=FIXED["tau_mem"], tau_out=FIXED["tau_out"],
                      neuron_options={"threshold": FIXED["v_th"], "gamma": FIXED["gamma"], "detach_reset": True},
                      self_connections=False, input_gain=math.sqrt(FIXED["ff_scale"]),
                      recurrent_gain=math.sqrt(FIXED["rec_scale"]), key=jax.random.PRNGKey(0))


def our_data(T, batch, n_in):
    shape = (T, batch, n_in)  # (jitted: no float32 uniform of that size in between)
    x = jax.jit(lambda k: (jax.random.uniform(k, shape) < FIXED["in_rate"]).astype(jnp.float32))(jax.random.PRNGKey(1))
    labels = jax.random.randint(jax.random.PRNGKey(2), (batch,), 0, FIXED["n_out"], jnp.int32)
    return x, jnp.broadcast_to(labels, (T, batch)), jnp.ones((T, batch), jnp.float32)


def memory_fields(memory, data_bytes):
    if memory is None:
        return {}
    temp, arg, out = (int(memory.temp_size_in_bytes), int(memory.argument_size_in_bytes),
                      int(memory.output_size_in_bytes))
    return dict(temp_bytes=temp, argument_bytes=arg, output_bytes=out, peak_bytes=temp + arg + out,
                data_bytes=data_bytes, engine_peak_bytes=temp + arg + out - data_bytes)


def build_ours(cfg, T):
    model = our_model(cfg["layers"], cfg["hidden"], cfg["n_in"])
    data = our_data(T, cfg["batch"], cfg["n_in"])
    data_bytes = int(sum(a.nbytes for a in data))
    ready, info = {}, {}
    for method in cfg["engines"]:
        try:  # (one engine out of memory, say, leaves the others)
            fn, args, compile_s, memory = compile_engine(method, model, data, loss="cross_entropy")
            start = time.perf_counter()
            out = jax.block_until_ready(fn(*args))
        except Exception as e:
            info[method] = dict(error=f"{type(e).__name__}: {e}"[:2000])
            continue
        ready[method] = (fn, args)
        info[method] = dict(compile_s=compile_s, first_call_s=time.perf_counter() - start, loss=float(out[0]),
                            **memory_fields(memory, data_bytes))
    return ready, info


def time_ours(fn, args, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return times


def exactness(T=50, batch=4, hidden=32, layers=2, n_in=100):
    """Cosine per layer (hidden layers, then readout) of deep_eprop_factored's gradient vs deep_eprop's."""
    data = our_data(T, batch, n_in)
    out = {}
    for readout in ("linear", "leaky"):
        model = our_model(layers, hidden, n_in, readout=readout)
        grads = {}
        for method in ("deep_eprop", "deep_eprop_factored"):
            fn, args, _, _ = compile_engine(method, model, data, loss="cross_entropy")
            grads[method] = jax.block_until_ready(fn(*args))[1]
        rows = compare(grads["deep_eprop_factored"], grads["deep_eprop"])
        out[readout] = dict(cosine=[None if r["cosine"] is None else round(r["cosine"], 6) for r in rows],
                            relative_error=[None if r["relative_error"] is None else float(f"{r['relative_error']:.3g}")
                                            for r in rows])
    return dict(config=dict(T=T, batch=batch, hidden=hidden, layers=layers, n_in=n_in, dtype="float32",
                            reference="deep_eprop"), per_layer=out)


# --------------------------------------------------------------------------- the run

def interleave(ours, theirs):
    """[o1, t1, o2, t2, ...]: the two libraries alternate."""
    out = []
    for i in range(max(len(ours), len(theirs))):
        out += ours[i:i + 1] + theirs[i:i + 1]
    return out


def run_T(cfg, T, worker, log):
    log(f"T={T}: building ours ...")
    ready, info = build_ours(cfg, T)
    log(f"T={T}: building theirs ...")
    theirs = worker.request(cmd="build", argv=their_argv(cfg, T))["cases"]
    rows = {f"ours {m}": dict(library="deepeprop", engine=m, **info[m]) for m in cfg["engines"]}
    for algo, rec in theirs.items():
        rec["learner"] = rec.pop("engine", None)  # braintrace's learner class
        rows[f"theirs {algo}"] = dict(library="braintrace", engine=algo, **rec)
    for name, rec in rows.items():
        if "error" in rec:
            log(f"T={T}: {name} failed: {rec['error'][:300]}")
    slots = interleave([f"ours {m}" for m in cfg["engines"] if m in ready],
                       [f"theirs {a}" for a in cfg["algos"] if "error" not in theirs.get(a, {"error": 1})])
    times = {name: [] for name in slots}
    for r in range(cfg["repeats"]):
        order = slots[r % len(slots):] + slots[:r % len(slots)]
        for name in order:
            if name.startswith("ours "):
                times[name] += time_ours(*ready[name[5:]], cfg["calls"])
            else:
                times[name] += worker.request(cmd="time", algo=name[7:], calls=cfg["calls"])["times"]
    for name, samples in times.items():
        rows[name].update(T=T, per_step_ms=statistics.median(samples) / T * 1e3,
                          per_step_ms_min=min(samples) / T * 1e3, call_times_s=samples)
    del ready
    jax.clear_caches()
    gc.collect()
    worker.request(cmd="free")
    return rows


def _get(rows, name, key="per_step_ms"):
    """``rows[name][key]``, or None where the row failed or lacks it."""
    value = rows.get(name, {}).get(key)
    return value if value else None


def _ratio(rows, a, b, key="per_step_ms"):
    x, y = _get(rows, a, key), _get(rows, b, key)
    return x / y if x is not None and y is not None else None


def summarize(results, cfg):
    """Ratios ours/theirs per T, memory flatness in T, and the targets."""
    Ts = sorted(results)
    ratios = {}
    for T in Ts:
        rows, r = results[T], {}
        for ours, theirs, _ in TARGETS:
            r[f"{ours[5:]} / es_d_rtrl time"] = _ratio(rows, ours, theirs)
            r[f"{ours[5:]} / es_d_rtrl engine memory"] = _ratio(rows, ours, theirs, "engine_peak_bytes")
        r["bptt / bptt time"] = _ratio(rows, "ours bptt", "theirs bptt")
        ratios[T] = {k: v for k, v in r.items() if v is not None}
    flat = {}
    for name in results[Ts[0]]:
        a, b = _get(results[Ts[0]], name, "engine_peak_bytes"), _get(results[Ts[-1]], name, "engine_peak_bytes")
        if len(Ts) > 1 and a and b:
            flat[name] = b / a
    targets = {}
    for ours, theirs, limit in TARGETS:
        vals = [v for v in (_ratio(results[T], ours, theirs) for T in Ts) if v is not None]
        mems = [v for v in (_ratio(results[T], ours, theirs, "engine_peak_bytes") for T in Ts) if v is not None]
        if vals:
            targets[f"{ours[5:]} <= {limit}x es_d_rtrl per step"] = dict(
                limit=limit, worst=max(vals), median=statistics.median(vals),
                met_at_every_T=all(v <= limit for v in vals) and len(vals) == len(Ts))
        if mems:
            targets[f"{ours[5:]} engine memory <= es_d_rtrl's, flat in T"] = dict(
                worst_ratio=max(mems), no_larger_at_every_T=all(v <= 1.0 for v in mems) and len(mems) == len(Ts),
                growth_T_max_over_T_min=flat.get(ours), flat=None if ours not in flat else flat[ours] <= 1.05)
    return dict(ratios=ratios, memory_growth_T_max_over_T_min=flat, targets=targets)


def _fmt(value, spec, width):
    return f"{value:{width}{spec}}" if value is not None else f"{'n/a':>{width}}"


def print_table(results, summary, cfg, backend):
    mb = 2 ** 20
    print(f"\n{cfg['layers']}x{cfg['hidden']} LIF, batch {cfg['batch']}, n_in {cfg['n_in']}, n_out {FIXED['n_out']}, "
          f"float32, {backend}; per-step ms = median of {cfg['repeats'] * cfg['calls']} calls / T")
    hdr = (f"{'T':>5} {'row':<36} {'ms/step':>9} {'min':>9} {'engine MB':>10} {'peak MB':>9} {'1st call s':>10}"
           f" {'/ES-D-RTRL':>10}")
    print(hdr)
    print("-" * len(hdr))
    for T in sorted(results):
        rows = results[T]
        for name, r in rows.items():
            if "error" in r:
                print(f"{T:>5} {name:<36} FAILED: {r['error'][:70]}")
                continue
            eng, peak = _get(rows, name, "engine_peak_bytes"), _get(rows, name, "peak_bytes")
            first = r["first_call_s"] + r.get("compile_s", 0.0)  # trace + compile + one run, both libraries
            print(f"{T:>5} {name:<36} {_fmt(r.get('per_step_ms'), '.4f', 9)} "
                  f"{_fmt(r.get('per_step_ms_min'), '.4f', 9)} "
                  f"{_fmt(eng and eng / mb, '.2f', 10)} {_fmt(peak and peak / mb, '.2f', 9)} {first:10.2f} "
                  f"{_fmt(_ratio(rows, name, ES), '.3f', 10)}")
    print("\nratios ours/theirs per T:")
    for T, r in summary["ratios"].items():
        print(f"  T={T:<5} " + ", ".join(f"{k}: {v:.3f}" for k, v in r.items()))
    print("engine memory, T_max / T_min: " + ", ".join(
        f"{k}: {v:.3f}" for k, v in summary["memory_growth_T_max_over_T_min"].items()))
    print("targets:")
    for k, v in summary["targets"].items():
        print(f"  {k}: {v}")


def markdown(payload) -> str:
    """The docs' tables (markdown) from a ``--json`` file: time per step and ratios, then engine memory."""
    results, cfg = payload["results"], payload["config"]
    nf, fact = "ours eprop[readout_filter=False]", "ours deep_eprop_factored"
    short = {nf: "ours eprop[readout_filter=False]", fact: "ours deep_eprop_factored", "ours bptt": "ours bptt",
             ES: "braintrace ES-D-RTRL", "theirs bptt": "braintrace BPTT"}
    names = [n for n in short if any(n in rows for rows in results.values())]

    def cell(value, spec):
        return "n/a" if value is None else f"{value:{spec}}"

    lines = [f"{cfg['layers']}x{cfg['hidden']} LIF, batch {cfg['batch']}, {cfg['n_in']} inputs, "
             f"{payload['backend']}; ms per step (median of {cfg['repeats'] * cfg['calls']} interleaved calls / T)",
             "", "| T | " + " | ".join(short[n] for n in names) + " | eprop / ES-D-RTRL | factored / ES-D-RTRL |",
             "|---" * (len(names) + 3) + "|"]
    for T, rows in results.items():
        cells = [cell(_get(rows, n), ".3f") for n in names]
        lines.append(f"| {T} | " + " | ".join(cells) + f" | {cell(_ratio(rows, nf, ES), '.2f')} | "
                     f"{cell(_ratio(rows, fact, ES), '.2f')} |")
    lines += ["", "Engine peak memory (MiB; XLA compiled memory_analysis, inputs and targets excluded):", "",
              "| T | " + " | ".join(short[n] for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for T, rows in results.items():
        cells = [cell(_get(rows, n, "engine_peak_bytes") and _get(rows, n, "engine_peak_bytes") / 2 ** 20, ".2f")
                 for n in names]
        lines.append(f"| {T} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=tuple(SIZES), default="cpu",
                   help="example: 3x512, B 128, 32768 inputs (braintrace's own; GPU); cpu (default): 3x512, B 16, "
                        "100 inputs; quick: a smoke run")
    p.add_argument("--quick", action="store_true", help="same as --size quick")
    p.add_argument("--T", default=None, help="comma-separated sequence lengths (overrides the size's)")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--n-in", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None, help="round-robin rounds per T (median)")
    p.add_argument("--calls", type=int, default=1, help="timed calls per row and round")
    p.add_argument("--engines", default=",".join(OURS), help="ours, comma-separated (options in [] with ';')")
    p.add_argument("--algos", default=",".join(THEIRS), help="braintrace's: es_d_rtrl, d_rtrl, eprop, bptt")
    p.add_argument("--venv-python", default="/tmp/bsenv/bin/python", help="python of braintrace's venv")
    p.add_argument("--no-exactness", action="store_true", help="skip the small deep_eprop_factored exactness check")
    p.add_argument("--quiet", action="store_true", help="hide the braintrace worker's stderr")
    p.add_argument("--json", default=None)
    p.add_argument("--report", default=None, metavar="JSON",
                   help="run nothing: print the markdown tables of a --json file written earlier")
    args = p.parse_args(argv)
    if args.report:
        with open(args.report) as handle:
            print(markdown(json.load(handle)))
        return 0

    cfg = dict(SIZES["quick" if args.quick else args.size])
    size = "quick" if args.quick else args.size
    for key in ("layers", "hidden", "batch", "n_in", "repeats"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.T:
        cfg["T"] = [int(t) for t in args.T.split(",") if t.strip()]
    cfg.update(calls=args.calls, engines=[e for e in args.engines.split(",") if e],
               algos=[a for a in args.algos.split(",") if a])
    try:
        check_engines(cfg["engines"])  # names and options, before anything runs
    except UsageError as err:
        p.error(str(err))
    if not os.path.exists(args.venv_python):
        p.error(f"--venv-python {args.venv_python!r} does not exist: python3 -m venv /tmp/bsenv && "
                "/tmp/bsenv/bin/pip install braintrace==0.2.6")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    worker = Worker(args.venv_python, args.quiet)
    try:
        their_info = worker.request(cmd="info")
        import importlib.metadata as md
        our_versions = {"python": sys.version.split()[0], "jax": jax.__version__}
        for pkg in ("jaxlib", "equinox", "optax", "deepeprop", "numpy"):
            try:
                our_versions[pkg] = md.version(pkg)
            except md.PackageNotFoundError:
                pass
        if (our_versions["jax"], our_versions["python"]) != (their_info["versions"]["jax"],
                                                             their_info["versions"]["python"]):
            log(f"note: the two venvs differ: ours {our_versions}, theirs {their_info['versions']}")
        log(f"ours: {our_versions}, backend {jax.default_backend()}; theirs: {their_info['versions']}, "
            f"backend {their_info['backend']}; config {cfg}")
        exact = None if args.no_exactness else exactness()
        if exact:
            log(f"exactness (deep_eprop_factored vs deep_eprop, per layer): {exact['per_layer']}")
        results = {}
        for T in cfg["T"]:
            results[T] = run_T(cfg, T, worker, log)
            log(f"T={T} done ({time.perf_counter() - start:.0f} s): " + ", ".join(
                f"{k} {v['per_step_ms']:.4f}" for k, v in results[T].items() if "per_step_ms" in v))
    finally:
        worker.close()
    summary = summarize(results, cfg)
    print_table(results, summary, cfg, jax.default_backend())
    if exact:
        print(f"exactness check {exact['config']}, per layer (hidden..., readout): {exact['per_layer']}")
    wall = time.perf_counter() - start
    print(f"total wall time {wall:.0f} s")
    if args.json:
        payload = dict(
            benchmark="braintrace memory-and-speed example (examples/003-snn-memory-and-speed-evaluation-all.py)",
            size=size, config=cfg, fixed=FIXED, backend=jax.default_backend(), their_backend=their_info["backend"],
            devices=[str(d) for d in jax.devices()], machine=platform.machine(), cpu=their_info["cpu"],
            versions=dict(ours=our_versions, theirs=their_info["versions"]), wall_s=wall,
            results={str(T): rows for T, rows in results.items()}, exactness=exact,
            **{k: ({str(t): v for t, v in val.items()} if k == "ratios" else val) for k, val in summary.items()},
        )
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
