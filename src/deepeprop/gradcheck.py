"""``deepeprop gradcheck``: every engine against BPTT, per layer (cosine similarity, relative error).

This is the tool to see where each approximation loses alignment with the exact gradient::

    deepeprop gradcheck --neuron lif --recurrence dense --hidden 16,16,16 --dtype float64
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from .api import gradients
from .engines import ENGINES, make_engine
from .builders import DeepRNN
from .network import DTYPES
from .architecture import is_rate_model, layer_sizes, neuron_names, recurrences, residual_edges, skip_edges
from .errors import UsageError, usage_errors


def layer_vectors(grads) -> list:
    """Per node (hidden then readout), all of its parameter gradients as one vector."""
    out = []
    for node in grads.nodes:
        parts = ([p.weight.ravel() for p in node.inputs if p.weight is not None] + [node.b.ravel()]
                 + ([] if node.W is None else [node.W.ravel()])
                 + [getattr(node.neuron, name).ravel() for name in node.trained_neuron_parameters])
        out.append(np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]))
    return out


def compare(grads, reference) -> list[dict]:
    """Per layer: cosine similarity, relative error ``|g - g_ref| / |g_ref|`` and norm ratio ``|g| / |g_ref|``.

    Either is ``None`` where it is undefined (a zero gradient)."""
    rows = []
    for index, (g, r) in enumerate(zip(layer_vectors(grads), layer_vectors(reference))):
        norm_g, norm_r = float(np.linalg.norm(g)), float(np.linalg.norm(r))
        # undefined (None, JSON null) for a layer whose gradient is exactly zero, e.g. a silent spiking layer
        cosine = float(g @ r / (norm_g * norm_r)) if norm_g > 0 and norm_r > 0 else None
        rel = float(np.linalg.norm(g - r) / norm_r) if norm_r > 0 else None
        ratio = norm_g / norm_r if norm_r > 0 else None  # |g| / |g_ref|: how much credit the layer gets
        rows.append({"layer": index, "cosine": cosine, "relative_error": rel, "norm": norm_g, "norm_ratio": ratio})
    return rows


def make_inputs(key, steps: int, batch: int, n_in: int, neuron, dtype):
    """Random inputs that make the network active: Gaussian when the first layer is a leaky rate layer,
    Bernoulli spikes otherwise."""
    if is_rate_model(neuron):
        return jax.random.normal(key, (steps, batch, n_in), dtype)
    return jax.random.bernoulli(key, 0.2, (steps, batch, n_in)).astype(dtype)


def run_gradcheck(*, neuron="lif", recurrence="dense", hidden=(16, 16, 16), readout="leaky", steps=50, batch=4,
                  seed=0, dtype="float64", n_in=8, n_out=3, loss="mse", methods=None, skip=(), residual=()) -> dict:
    """Build a network, run every engine on one random batch, and compare each with BPTT per layer.

    Each engine is compared with BPTT on the model it differentiates: the LIF/ALIF reset path resolved to the
    engine's reset choice (``engine.prepare``; the e-prop family drops it, ``rtrl`` keeps it), so that the numbers
    measure what the rule drops beyond its reset choice ("equals BPTT" claims hold on the same reset choice).

    ``neuron`` and ``recurrence``: one name or a list with one per hidden layer; ``skip`` and ``residual``:
    extra (trained or identity) edges ``(i, j)`` as in :func:`deepeprop.DeepRNN`.

    ``dtype="float64"`` needs float64 switched on by the caller (``jax.config.update("jax_enable_x64", True)``;
    ``deepeprop gradcheck --dtype float64`` does it): the library does not change a global setting.
    """
    return compare_engines(make_case(neuron=neuron, recurrence=recurrence, hidden=hidden, readout=readout,
                                     steps=steps, batch=batch, seed=seed, dtype=dtype, n_in=n_in, n_out=n_out,
                                     loss=loss, skip=skip, residual=residual), methods)


def make_case(*, neuron, recurrence, hidden, readout, steps, batch, seed, dtype, n_in, n_out, loss, skip,
              residual) -> dict:
    """The model, batch and config of :func:`run_gradcheck` (every argument checked here, nothing computed)."""
    if steps <= 0 or batch <= 0:
        raise ValueError(f"--steps and --batch must be positive, got {steps} and {batch}")
    depth = len(hidden)
    neuron = neuron_names("--neuron", neuron, depth)
    recurrence = recurrences("--recurrence", recurrence, depth)
    residual = residual_edges("--residual", list(residual), depth)
    skip = skip_edges("--skip", list(skip), depth, residual=residual)
    key = jax.random.PRNGKey(seed)
    k_model, k_x, k_y = jax.random.split(key, 3)
    all_rate = all(is_rate_model(neuron, i) for i in range(depth))
    model = DeepRNN(n_in, list(hidden), n_out, neuron=neuron, recurrence=recurrence, readout=readout,
                    key=k_model, dtype=DTYPES[dtype], input_gain=1.0 if all_rate else 2.0,
                    skip=[tuple(e) for e in skip], residual=[tuple(e) for e in residual])
    inputs = make_inputs(k_x, steps, batch, n_in, neuron, model.dtype)
    if loss == "mse":
        targets = jax.random.normal(k_y, (steps, batch, n_out), model.dtype)
    else:
        targets = jax.random.randint(k_y, (steps, batch), 0, n_out)
    config = {"neuron": neuron, "recurrence": recurrence, "hidden": list(hidden), "readout": readout, "skip": skip,
              "residual": residual, "steps": steps, "batch": batch, "seed": seed, "dtype": dtype, "n_in": n_in,
              "n_out": n_out, "loss": loss}
    return {"model": model, "inputs": inputs, "targets": targets, "config": config}


def compare_engines(case: dict, methods=None) -> dict:
    """Every engine of ``methods`` (default all but BPTT) on the case of :func:`make_case`, against BPTT."""
    model, inputs, targets, loss = case["model"], case["inputs"], case["targets"], case["config"]["loss"]
    methods = [m for m in ENGINES if m != "bptt"] if methods is None else list(methods)
    _, _, zs = model.run(inputs, record=True)
    references = {}  # BPTT per resolved model (per reset choice)

    def reference_for(engine):
        resolved = engine.prepare(model)
        key = tuple(getattr(node.neuron, "detach_reset", None) for node in resolved.nodes)
        if key not in references:
            references[key] = gradients(resolved, inputs, targets, method="bptt", loss=loss)
        return references[key]

    result = {
        "config": case["config"],
        "activity": [float(jnp.mean(z)) for z in zs],
        "engines": {},
    }
    for method in methods:
        try:
            grads = gradients(model, inputs, targets, method=method, loss=loss)
        except ValueError as err:  # an engine that does not support this case says so
            result["engines"][method] = {"error": str(err)}
            continue
        result["engines"][method] = {"layers": compare(grads, reference_for(make_engine(method)))}
    return result


def _describe(value) -> str:
    return value if isinstance(value, str) else ",".join(value)


def format_table(result: dict) -> str:
    config = result["config"]
    depth = len(config["hidden"])
    names = [f"layer {i + 1}" for i in range(depth)] + ["readout"]
    skips = "".join(f", skip {i}->{j}" for i, j in config.get("skip", []))
    skips += "".join(f", residual {i}->{j}" for i, j in config.get("residual", []))
    lines = [f"gradcheck: {_describe(config['neuron'])} neurons, {_describe(config['recurrence'])} recurrence, hidden "
             f"{','.join(map(str, config['hidden']))}{skips}, {config['readout']} readout, T={config['steps']}, "
             f"B={config['batch']}, {config['dtype']}, seed {config['seed']}",
             "mean activity per layer: " + ", ".join(f"{a:.3f}" for a in result["activity"]),
             "", f"{'engine':<21}{'layer':<10}{'cosine':>12}{'rel. error':>14}"]
    for method, entry in result["engines"].items():
        if "error" in entry:
            lines.append(f"{method:<21}{'-':<10}  not supported: {entry['error']}")
            continue
        for name, row in zip(names, entry["layers"]):
            cosine = "n/a" if row["cosine"] is None else f"{row['cosine']:.6f}"
            rel = "n/a" if row["relative_error"] is None else f"{row['relative_error']:.3e}"
            lines.append(f"{method:<21}{name:<10}{cosine:>12}{rel:>14}")
    return "\n".join(lines)


def _main(args) -> int:
    with usage_errors():
        hidden = layer_sizes("--hidden", args.hidden)
    if args.steps <= 0:
        raise UsageError(f"--steps must be a positive int, got {args.steps}")
    if args.batch <= 0:
        raise UsageError(f"--batch must be a positive int, got {args.batch}")
    methods = None
    if args.methods:
        methods = args.methods.split(",")
        unknown = [m for m in methods if m not in ENGINES or m == "bptt"]
        if unknown:
            raise UsageError(f"--methods must name engines among {[m for m in ENGINES if m != 'bptt']}, got {unknown}")
    with usage_errors():
        neuron = neuron_names("--neuron", args.neuron, len(hidden))
        recurrence = recurrences("--recurrence", args.recurrence, len(hidden))
        residual = residual_edges("--residual", args.residual, len(hidden))
        skip = skip_edges("--skip", args.skip, len(hidden), residual=residual)
    if args.dtype == "float64":  # the command's choice; the library never switches it
        jax.config.update("jax_enable_x64", True)
    with usage_errors():  # the network's own checks of the given options (e.g. a residual edge's widths)
        case = make_case(neuron=neuron, recurrence=recurrence, hidden=hidden, readout=args.readout, steps=args.steps,
                         batch=args.batch, seed=args.seed, dtype=args.dtype, n_in=8, n_out=3, loss=args.loss,
                         skip=skip, residual=residual)
    result = compare_engines(case, methods)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0
