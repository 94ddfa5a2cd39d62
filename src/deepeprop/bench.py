"""``deepeprop bench``: time and memory of every gradient engine across T, width, depth and batch.

What is timed, identically for every engine: one jitted call of forward + gradient over the whole
sequence (engine ``init``, ``sequence``, ``grads``: the computation of :func:`deepeprop.gradients`),
``block_until_ready``; median of ``--repeats`` calls after compilation, divided by ``T``. Compilation
(lower + XLA compile) is reported apart. Engines of one configuration are timed interleaved (round robin)
so that load from other processes hits them alike.

Memory: XLA's compiled ``memory_analysis()`` of that jitted function -- temp + argument + output bytes --
is the deterministic peak figure (``peak_bytes``). Its arguments include the input sequence, targets and
mask (``data_bytes``, ``T B (n_in + n_out + 1)`` numbers, which every engine must be handed when it is
called on a whole sequence); ``engine_peak_bytes = peak_bytes - data_bytes`` is what the engine itself
needs, the figure compared across ``T``. The process RSS growth over the first call is reported as
``rss_delta_mb`` (noisy, allocator-dependent).

Theory: each row carries the engine's cost formula (its docstring) evaluated for the configuration:
``trace_elements`` (numbers an online engine carries between steps, or BPTT's stored trajectory) and
``flops_per_step``; ``achieved_gflops`` = flops_per_step / time per step, next to ``peak_gflops``, a
``jnp.dot`` of two square matrices measured on the same machine. With ``--alignment``, the cosine per
layer (hidden layers, then readout) between each engine's gradient and BPTT's.

Why this file is long: ``deepeprop bench`` is one command whose parts share one row layout (``ROW_KEYS``): the
suites that make the cases, the measurement of one case (compile, time, memory, cost formula, alignment to BPTT),
and the table, JSON and Markdown that print the rows. The cost formulas themselves are the engines' plans
(:mod:`deepeprop.engines.plan`), not copied here; its parser is :mod:`deepeprop.parsers.bench`.
"""
from __future__ import annotations

import ast
import json
import os
import platform
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from .errors import UsageError

DEFAULT_ENGINES = ("bptt", "eprop", "deep_eprop", "deep_eprop_factored", "rtrl")
ROW_KEYS = ("suite", "case", "engine", "T", "width", "depth", "batch", "dtype", "model", "readout", "status",
            "compile_s", "per_step_ms", "per_step_ms_min", "peak_bytes", "temp_bytes", "argument_bytes",
            "output_bytes", "data_bytes", "engine_peak_bytes", "rss_delta_mb", "trace_elements", "flops_per_step",
            "achieved_gflops",
            "peak_gflops", "alignment")

# the paper-size deep cases: the default hybrid (chunks of 64), longer chunks (the per-chunk passes over the
# B n^3 trace amortised over 256 steps, for 1.3-1.6x the memory), and the hybrid without factorised pairs
DEEP_2X100 = ["bptt", "deep_eprop", "deep_eprop[chunk_size=256]", "deep_eprop[factorize=False]", "deep_eprop@reverse"]

# model presets, both pinned explicitly (not left to the library defaults): "exact" = LIF with the reset path
# kept, dense W with its diagonal (the exact-reset model: no engine can factorise it); "factorisable" = the
# standard e-prop model (the library defaults: LIF with detach_reset, no self-connections, one tau per layer)
# with a weaker W (gain 0.1: without the reset path's damping, a + psi*W makes BPTT's gradient explode at
# gain 1 at this size).
MODELS = {
    "exact": dict(neuron="lif", recurrence="dense", neuron_options={"detach_reset": False}, self_connections=True),
    "factorisable": dict(neuron="lif", recurrence="dense", neuron_options={"detach_reset": True},
                         self_connections=False, recurrent_gain=0.1),
    # the paper's network (Bellec et al. 2020, cue accumulation): ALIF with dense recurrence, no self-connections,
    # tau_a = 2000 (steps of 1 ms), 40 inputs (the key "n_in" is the model's input width, not a DeepRNN option)
    "paper_alif": dict(neuron="alif", recurrence="dense", self_connections=False, tau_a=2000.0, n_in=40),
    # the deep version of that network (the evaluations issue): a LIF layer below an ALIF layer, dense or diagonal
    "lif_alif": dict(neuron=["lif", "alif"], recurrence="dense", self_connections=False, tau_a=2000.0, n_in=40),
    "lif_alif_diagonal": dict(neuron=["lif", "alif"], recurrence="diagonal", tau_a=2000.0, n_in=40),
}

N_IN, N_OUT = 100, 10


def _cases(args):
    """The list of (case name, dict of config) to run."""
    base = dict(model=args.model, readout=args.readout, engines=args.engines, batch=args.batch)
    if args.suite == "quick":
        T = args.T or [100]
        widths = args.width or [32]
        depths = args.depth or [2]
        return [(f"T{t}_n{n}_L{d}", dict(base, T=t, width=n, depth=d, batch=4 if args.batch is None else args.batch))
                for t in T for n in widths for d in depths]
    if args.suite == "targets":
        return [
            ("eprop_vs_bptt_factorisable", dict(base, model="factorisable", readout="linear", T=500, width=256,
                                                depth=3, batch=32, engines=["bptt", "eprop", "eprop[chunk_size=1]"])),
            ("eprop_vs_bptt_factorisable_leaky", dict(base, model="factorisable", readout="leaky", T=500,
                                                      width=256, depth=3, batch=32,
                                                      engines=["bptt", "eprop", "eprop[chunk_size=1]",
                                                               "eprop[readout_filter=False]"])),
            ("eprop_vs_bptt_exact", dict(base, model="exact", readout="leaky", T=500, width=256, depth=3,
                                         batch=32, engines=["bptt", "eprop", "eprop[chunk_size=1]"])),
            ("eprop_vs_bptt_paper_alif", dict(base, model="paper_alif", readout="leaky", T=2250, width=100, depth=1,
                                              batch=64, engines=["bptt", "eprop", "eprop[chunk_size=1]",
                                                                 "eprop@reverse", "eprop[feedback=random]@reverse"])),
            # deep e-prop on the deep version of the paper's network: the chunk hybrid (the default evaluation);
            # the step form takes ~0.3 s per step here (2250 steps: minutes per call), see docs/performance.md
            ("deep_eprop_vs_bptt_2x100_dense", dict(base, model="lif_alif", readout="leaky", T=2250, width=100,
                                                    depth=2, batch=64, engines=DEEP_2X100)),
            ("deep_eprop_vs_bptt_2x100_diagonal", dict(base, model="lif_alif_diagonal", readout="leaky", T=2250,
                                                       width=100, depth=2, batch=64, engines=DEEP_2X100)),
            ("deep_eprop_vs_bptt_exact", dict(base, model="exact", readout="leaky", T=100, width=64, depth=3,
                                              batch=32, engines=["bptt", "deep_eprop", "deep_eprop[direct=False]",
                                                                 "deep_eprop[chunk_size=1]"])),
            ("deep_eprop_vs_bptt_factorisable", dict(base, model="factorisable", readout="leaky", T=100, width=64,
                                                     depth=3, batch=32,
                                                     engines=["bptt", "deep_eprop", "deep_eprop[factorize=False]",
                                                              "deep_eprop[chunk_size=1]", "deep_eprop_factored"])),
            ("deep_eprop_vs_bptt_4x64", dict(base, model="factorisable", readout="leaky", T=100, width=64, depth=4,
                                             batch=32, engines=["bptt", "deep_eprop", "deep_eprop[factorize=False]",
                                                                "deep_eprop[chunk_size=1]"])),
            ("reverse_vs_bptt", dict(base, model="exact", readout="leaky", T=500, width=64, depth=3, batch=32,
                                     engines=["bptt", "deep_eprop@reverse", "eprop@reverse",
                                              "eprop[feedback=random]@reverse", "immediate@reverse"])),
            ("deep_vs_rtrl", dict(base, model="factorisable", readout="leaky", T=20, width=64, depth=3, batch=4,
                                  engines=["rtrl", "deep_eprop", "deep_eprop_factored", "eprop", "bptt"])),
            ("memory_T1000", dict(base, model="factorisable", readout="leaky", T=1000, width=64, depth=2, batch=8,
                                  engines=["bptt", "eprop", "deep_eprop", "deep_eprop_factored"])),
            ("memory_T10000", dict(base, model="factorisable", readout="leaky", T=10000, width=64, depth=2,
                                   batch=8, engines=["bptt", "eprop", "deep_eprop", "deep_eprop_factored"])),
        ]
    if args.suite == "scaling":
        from .engines import ENGINES

        engines = args.engines or list(ENGINES)  # every engine; those too large for --max-trace-gb are skipped
        out = [(f"T{t}", dict(base, T=t, width=64, depth=2, batch=8, engines=engines)) for t in (100, 1000, 10000)]
        out += [(f"n{n}", dict(base, T=100, width=n, depth=1, batch=8, engines=engines)) for n in (64, 256, 1024)]
        out += [(f"L{d}", dict(base, T=100, width=64, depth=d, batch=8, engines=engines)) for d in (1, 2, 3, 4)]
        out += [(f"B{b}", dict(base, T=100, width=64, depth=2, batch=b, engines=engines)) for b in (1, 32, 128)]
        return out
    raise UsageError(f"--suite must be one of the suites, got {args.suite!r}")


def build_model(config, dtype):

    from .builders import DeepRNN

    options = dict(MODELS[config["model"]])
    n_in = options.pop("n_in", N_IN)
    return DeepRNN(n_in, [config["width"]] * config["depth"], N_OUT, readout=config["readout"],
                   key=jax.random.PRNGKey(0), dtype=dtype, tau_m=20.0, tau_out=20.0, **options)


def make_data(config, dtype):

    T, B = config["T"], config["batch"]
    n_in = MODELS[config["model"]].get("n_in", N_IN)
    inputs = (jax.random.uniform(jax.random.PRNGKey(1), (T, B, n_in)) < 0.05).astype(dtype)
    targets = jax.random.normal(jax.random.PRNGKey(2), (T, B, N_OUT), dtype)
    return inputs, targets, jnp.ones((T, B), dtype)


def theoretical_cost(method: str, model, batch: int, T: int) -> tuple[int, int]:
    """``(trace_elements, flops_per_step)`` of an engine as ``bench --engines`` names it (options in brackets, an
    evaluation after ``@``): its own :meth:`~deepeprop.Engine.cost`."""
    from .engines import make_engine, with_evaluation

    name, options = parse_method(method)
    engine = with_evaluation(make_engine(name, **options), split_evaluation(method)[1])
    return engine.cost(model, batch, T)


def measure_peak_gflops(dtype, size: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of ``jnp.dot`` of two ``size x size`` matrices on this machine (median)."""

    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), dtype)
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a, a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times) / 1e9


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def parse_method(method: str) -> tuple[str, dict]:
    """``"eprop[readout_filter=False,factorize=False]"`` -> ``("eprop", {...})``: an engine with options (an
    evaluation after ``@``, ``"deep_eprop@reverse"``, is read by :func:`split_evaluation`)."""

    method = split_evaluation(method)[0]
    if "[" not in method:
        return method, {}
    name, _, rest = method.partition("[")
    options = {}
    for item in rest.rstrip("]").split(";" if ";" in rest else ","):
        if item.strip():
            key, _, value = item.partition("=")
            try:
                options[key.strip()] = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                options[key.strip()] = value.strip()
    return name, options


def split_evaluation(method: str) -> tuple[str, str | None]:
    """``"eprop[feedback=random]@reverse"`` -> ``("eprop[feedback=random]", "reverse")``; no ``@``: ``None``."""
    name, at, evaluation = method.partition("@")
    return name, (evaluation if at else None)


def compile_engine(method, model, data, *, loss="mse", **options):
    """``(compiled function, args, compile seconds, memory_analysis)`` of one engine's whole sequence.

    ``data`` is ``(inputs, targets, mask)``; ``loss`` names the per-step loss (``"mse"``: float targets
    ``(T, B, n_out)``; ``"cross_entropy"``: int labels ``(T, B)``); ``options`` go to the engine.
    """

    from .engines import make_engine, with_evaluation
    from .losses import make_loss
    from .validation import checked

    evaluation = split_evaluation(method)[1]
    method, parsed = parse_method(method)
    engine = with_evaluation(make_engine(method, **{**parsed, **options}), evaluation)
    engine.check_model(model)
    loss = make_loss(loss)
    params, static = eqx.partition(model, eqx.is_array)

    def run(params, inputs, targets, mask):
        m = eqx.combine(params, static)
        with checked():  # the engine alone is timed: its entry points' argument checks are left out
            state = engine.init(m, inputs.shape[1])
            state, _, losses = engine.sequence(m, state, inputs, targets, mask, loss)
            return jnp.sum(losses), engine.grads(m, state)

    args = (params,) + tuple(data)
    start = time.perf_counter()
    compiled = jax.jit(run).lower(*args).compile()
    compile_s = time.perf_counter() - start
    return compiled, args, compile_s, compiled.memory_analysis()


def cosine_per_layer(grads, reference, model) -> list[float]:
    """Cosine per layer (hidden layers, then readout) to the reference, as ``deepeprop gradcheck`` reports it."""
    from .gradcheck import compare

    return [row["cosine"] for row in compare(grads, reference)]


def run_case(suite, case, config, *, dtype_name, repeats, alignment, peak_gflops, max_trace_gb=2.0,
             max_call_s=float("inf"), log=print):
    """Every engine of one configuration, timed interleaved; one row per engine."""

    dtype = {"float32": jnp.float32, "float64": jnp.float64}[dtype_name]
    model = build_model(config, dtype)
    data = make_data(config, dtype)
    engines = list(config["engines"] or DEFAULT_ENGINES)
    rows, ready, outputs = {}, {}, {}
    for method in engines:
        row = {key: None for key in ROW_KEYS}
        row.update(suite=suite, case=case, engine=method, T=config["T"], width=config["width"],
                   depth=config["depth"], batch=config["batch"], dtype=dtype_name, model=config["model"],
                   readout=config["readout"], peak_gflops=round(peak_gflops, 2))
        elements, flops = theoretical_cost(method, model, config["batch"], config["T"])
        row.update(trace_elements=int(elements), flops_per_step=int(flops))
        trace_gb = elements * jnp.dtype(dtype).itemsize / 1e9
        least_s = flops * config["T"] / (peak_gflops * 1e9)  # one call at the measured matmul peak: a lower bound
        if trace_gb > max_trace_gb or least_s > max_call_s:
            row["status"] = (f"skipped: its traces would need {trace_gb:.3g} GB (--max-trace-gb {max_trace_gb:g})"
                             if trace_gb > max_trace_gb else
                             f"skipped: one call needs {flops * config['T'] / 1e9:.3g} GFLOP, >= {least_s:.3g} s "
                             f"at the jnp.dot peak (--max-call-s {max_call_s:g})")
            rows[method] = row
            continue
        try:
            compiled, args, compile_s, memory = compile_engine(method, model, data)
        except ValueError as err:
            row["status"] = f"skipped: {err}"
            rows[method] = row
            continue
        rss = _rss_mb()
        outputs[method] = jax.block_until_ready(compiled(*args))  # first call, after compile
        row.update(status="ok", compile_s=round(compile_s, 3), rss_delta_mb=round(_rss_mb() - rss, 1))
        if memory is not None:
            temp, arg, out = (int(memory.temp_size_in_bytes), int(memory.argument_size_in_bytes),
                              int(memory.output_size_in_bytes))
            data_bytes = int(sum(a.nbytes for a in data))  # the (T, B, .) inputs, targets, mask: grow with T
            row.update(temp_bytes=temp, argument_bytes=arg, output_bytes=out, peak_bytes=temp + arg + out,
                       data_bytes=data_bytes, engine_peak_bytes=temp + arg + out - data_bytes)
        rows[method] = row
        ready[method] = (compiled, args)
    times = {method: [] for method in ready}
    for _ in range(repeats):
        for method, (compiled, args) in ready.items():
            start = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            times[method].append(time.perf_counter() - start)
    T = config["T"]
    for method, samples in times.items():
        row = rows[method]
        row["per_step_ms"] = statistics.median(samples) / T * 1e3
        row["per_step_ms_min"] = min(samples) / T * 1e3
        row["achieved_gflops"] = round(row["flops_per_step"] / (row["per_step_ms"] * 1e-3) / 1e9, 3)
    if alignment and "bptt" in outputs:
        reference = outputs["bptt"][1]
        for method, (_, grads) in outputs.items():
            rows[method]["alignment"] = [None if c is None else round(c, 6)
                                                for c in cosine_per_layer(grads, reference, model)]
    out = [rows[m] for m in engines]
    for row in out:
        log(format_row(row))
    return out


HEADER = (f"{'case':<34} {'engine':<20} {'T':>6} {'n':>5} {'L':>2} {'B':>4} {'ms/step':>9} {'compile_s':>9} "
          f"{'peak_MB':>9} {'trace_elts':>11} {'MFLOP/step':>10} {'GFLOP/s':>8} alignment")


def format_row(row) -> str:
    if row["status"] != "ok":
        return f"{row['case']:<34} {row['engine']:<20} {row['status'][:90]}"
    peak = row["peak_bytes"] / 2 ** 20 if row["peak_bytes"] is not None else float("nan")
    align = " ".join("n/a" if c is None else f"{c:.3f}" for c in row["alignment"]) if row["alignment"] else ""
    return (f"{row['case']:<34} {row['engine']:<20} {row['T']:>6} {row['width']:>5} {row['depth']:>2} "
            f"{row['batch']:>4} {row['per_step_ms']:>9.4f} {row['compile_s']:>9.2f} {peak:>9.2f} "
            f"{row['trace_elements']:>11} {row['flops_per_step'] / 1e6:>10.2f} {row['achieved_gflops']:>8.2f} {align}")


def run(args) -> dict:
    """Run the suite of ``args`` (``deepeprop bench``'s options); ``--dtype float64`` needs float64 switched on by
    the caller (``_main`` does it; the library does not change a global setting)."""
    peak = measure_peak_gflops(jnp.float32 if args.dtype == "float32" else jnp.float64)
    print(f"deepeprop bench: suite={args.suite} dtype={args.dtype} backend={jax.default_backend()} "
          f"devices={jax.devices()} jnp.dot peak {peak:.1f} GFLOP/s")
    print(HEADER)
    rows = []
    cases = _cases(args)
    if getattr(args, "cases", None):  # a subset of the suite's cases, by name
        unknown = sorted(set(args.cases) - {case for case, _ in cases})
        if unknown:
            raise UsageError(f"--cases: no case {unknown} in suite {args.suite!r}; its cases: "
                             f"{', '.join(case for case, _ in cases)}")
        cases = [(case, config) for case, config in cases if case in args.cases]
    for case, config in cases:
        rows += run_case(args.suite, case, config, dtype_name=args.dtype, repeats=args.repeats,
                         alignment=args.alignment, peak_gflops=peak, max_trace_gb=args.max_trace_gb,
                         max_call_s=args.max_call_s)
    result = {"suite": args.suite, "dtype": args.dtype, "backend": jax.default_backend(),
              "machine": platform.machine(), "cpu_count": os.cpu_count(), "jax": jax.__version__,
              "peak_gflops": peak, "keys": list(ROW_KEYS), "rows": rows, "ratios": ratios(rows)}
    for name, value in result["ratios"].items():
        print(f"ratio {name}: {value:.3f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
        print(f"wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(markdown(result))
        print(f"wrote {args.markdown}")
    return result


def markdown(result) -> str:
    """The rows as a Markdown table per case, then (scaling suite) how each engine grows along each axis,
    measured beside its cost formula (``trace_elements``, ``flops_per_step``)."""
    lines = [f"Suite `{result['suite']}`, {result['dtype']}, backend {result['backend']}, {result['cpu_count']} CPUs, "
             f"jax {result['jax']}; `jnp.dot` peak {result['peak_gflops']:.1f} GFLOP/s.", ""]
    lines += ["| case | engine | T | n | L | B | ms/step | engine peak MB | trace elements (formula) | "
              "MFLOP/step (formula) | GFLOP/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        head = f"| {row['case']} | `{row['engine']}` | {row['T']} | {row['width']} | {row['depth']} | {row['batch']} |"
        if row["status"] != "ok":
            lines.append(f"{head} {row['status']} | | {row['trace_elements']} | "
                         f"{row['flops_per_step'] / 1e6:.2f} | |")
            continue
        memory = row["engine_peak_bytes"] / 2 ** 20 if row["engine_peak_bytes"] is not None else float("nan")
        lines.append(f"{head} {row['per_step_ms']:.4f} | {memory:.2f} | {row['trace_elements']} | "
                     f"{row['flops_per_step'] / 1e6:.2f} | {row['achieved_gflops']:.2f} |")
    growth = scaling_growth(result["rows"])
    if growth:
        lines += ["", "Growth from the smallest to the largest value of each axis (measured / formula):", "",
                  "| axis | engine | time | time formula (flops) | engine memory | memory formula (trace) |",
                  "|---|---|---|---|---|---|"]
        for (axis, engine), g in growth.items():
            lines.append(f"| {axis} | `{engine}` | {g['time']:.2f}x | {g['flops']:.2f}x | {g['memory']:.2f}x | "
                         f"{g['trace']:.2f}x |")
    return "\n".join(lines) + "\n"


SCALING_AXES = {"T": "T", "n": "width", "L": "depth", "B": "batch"}


def scaling_growth(rows) -> dict:
    """Per (axis, engine) of the scaling suite: last/first ratios of total time per step, engine peak memory,
    and the formula's flops and trace elements (cases named ``T100``, ``n64``, ... in increasing order)."""
    out = {}
    for axis, key in SCALING_AXES.items():
        for engine in dict.fromkeys(r["engine"] for r in rows):
            series = [r for r in rows if r["suite"] == "scaling" and r["engine"] == engine and r["status"] == "ok"
                      and r["case"].startswith(axis) and r["case"][len(axis):].isdigit()]
            if len(series) < 2:
                continue
            series.sort(key=lambda r: r[key])
            first, last = series[0], series[-1]
            out[(f"{axis}: {first[key]} -> {last[key]}", engine)] = dict(
                time=last["per_step_ms"] / first["per_step_ms"],
                flops=last["flops_per_step"] / max(first["flops_per_step"], 1),
                memory=last["engine_peak_bytes"] / first["engine_peak_bytes"],
                trace=(last["trace_elements"] / first["trace_elements"]) if first["trace_elements"] else float("nan"))
    return out


def ratios(rows) -> dict:
    """Time ratios against BPTT / RTRL / e-prop within a case, and peak-memory ratios across T."""
    out = {}
    by_case = {}
    for row in rows:
        if row["status"] == "ok":
            by_case.setdefault(row["case"], {})[row["engine"]] = row
    for case, engines in by_case.items():
        for base in ("bptt", "rtrl", "eprop"):
            if base not in engines:
                continue
            for method, row in engines.items():
                if method != base and not (base == "eprop" and not method.startswith("deep_eprop")):
                    out[f"{case}: {method}/{base} time"] = row["per_step_ms"] / engines[base]["per_step_ms"]
    long, short = by_case.get("memory_T10000", {}), by_case.get("memory_T1000", {})
    for method in long:
        if method in short and long[method]["peak_bytes"] and short[method]["peak_bytes"]:
            out[f"{method} engine peak memory T=10000/T=1000"] = (long[method]["engine_peak_bytes"]
                                                                  / short[method]["engine_peak_bytes"])
            out[f"{method} peak memory incl. input data T=10000/T=1000"] = (long[method]["peak_bytes"]
                                                                            / short[method]["peak_bytes"])
    return out


def check_engines(methods) -> None:
    """Every ``--engines`` entry names an engine and options it takes (checked before anything runs)."""
    from .engines import ENGINES, make_engine, with_evaluation

    for method in methods or ():
        name, options = parse_method(method)
        if name not in ENGINES:
            raise UsageError(f"--engines: unknown engine {method!r}; choose from {tuple(ENGINES)}")
        try:
            with_evaluation(make_engine(name, **options), split_evaluation(method)[1])
        except ValueError as err:
            raise UsageError(f"--engines: {method!r}: {err}") from None


def check_json_path(flag: str, path) -> None:
    """``path`` (given to ``flag``) can be written: its folder exists and is writable (checked before the run)."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path!r} is a folder: give a file name, e.g. {os.path.join(path, 'bench.json')}")
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {path!r}: the folder {folder!r} does not exist: create it first")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path!r}: the folder {folder!r} is not writable")


def _main(args) -> int:
    check_engines(args.engines)
    check_json_path("--json", args.json)
    check_json_path("--markdown", args.markdown)
    if not args.max_trace_gb > 0:  # also NaN
        raise UsageError(f"--max-trace-gb must be a positive number of GB, got {args.max_trace_gb}")
    if not args.max_call_s > 0:
        raise UsageError(f"--max-call-s must be a positive number of seconds, got {args.max_call_s}")
    if args.dtype == "float64":  # the command's choice (--dtype); the library never switches it
        jax.config.update("jax_enable_x64", True)
    run(args)
    return 0
