"""Gradient alignment: how close each engine's gradient comes to BPTT's, layer by layer.

For every point of the sweep (one factor of ``[base]`` replaced at a time), every seed and every method, the
gradient of one batch at initialisation is compared with BPTT's on the same model and batch: per node (hidden
layers bottom to top, then the readout), the cosine similarity and the norm ratio ``|g| / |g_bptt|``. A
cosine near 1 with a norm ratio near 1 is the exact gradient; a norm ratio near 0 means the method gives that
layer (almost) no credit. Each point is written to ``OUT/alignment/<key>.json`` as it finishes and is not
recomputed when it exists.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import UsageError
from .common import machine, methods, read_json, write_json

AXES = ("depth", "recurrence", "neuron", "profile", "loss_timing", "T")


def points(config: dict) -> list[dict]:
    """Every distinct point of the one-factor-at-a-time sweep, with the sweeps that contain it."""
    base = dict(config["base"])
    found: dict[str, dict] = {}
    for axis, values in config["sweeps"].items():
        if axis not in base:
            raise UsageError(f"alignment config: sweep {axis!r} is not a field of [base] ({sorted(base)})")
        for value in values:
            point = dict(base, **{axis: value})
            key = point_key(point)
            found.setdefault(key, {"point": point, "sweeps": []})["sweeps"].append(axis)
    return [dict(entry, key=key) for key, entry in found.items()]


def point_key(point: dict) -> str:
    return hashlib.sha256(json.dumps(point, sort_keys=True).encode()).hexdigest()[:16]


def time_constants(point: dict) -> list[float]:
    """Per hidden layer (bottom to top): uniform, or geometric from fast to slow (or slow to fast)."""
    depth, profile = point["depth"], point["profile"]
    fast, slow = float(point["tau_fast"]), float(point["tau_slow"])
    if profile == "uniform":
        return [float(point["tau_mid"])] * depth
    if depth == 1:
        return [slow]  # one layer: the slow end, where the memory is
    ramp = [fast * (slow / fast) ** (i / (depth - 1)) for i in range(depth)]
    if profile == "fast_below":
        return ramp
    if profile == "slow_below":
        return ramp[::-1]
    raise UsageError(f"alignment config: profile must be uniform, fast_below or slow_below, got {profile!r}")


# This experiment's model keeps the reset path of LIF/ALIF and dense W's diagonal (the library defaults when the
# committed results were computed; the library now defaults to the standard e-prop model). Pinned here, not in
# the point, so the point keys (the result file names) stay those of the committed results; a [base] or
# [sweeps] field ``detach_reset`` / ``self_connections`` overrides them.
EXPERIMENT_MODEL = {"detach_reset": False, "self_connections": True}
SPIKING = ("lif", "alif")


def build_model(point: dict, seed: int, dtype):
    from ..builders import DeepRNN

    recurrence, gain = point["recurrence"], 1.0
    if recurrence.startswith("dense:"):
        recurrence, gain = "dense", float(recurrence.split(":", 1)[1])
    taus = time_constants(point)
    model = {key: point.get(key, value) for key, value in EXPERIMENT_MODEL.items()}
    options = {"detach_reset": model["detach_reset"]} if point["neuron"] in SPIKING else None
    return DeepRNN(point["n_in"], [point["width"]] * point["depth"], point["n_out"], neuron=point["neuron"],
                   recurrence=recurrence, recurrent_gain=gain, readout=point["readout"], tau_out=point["tau_out"],
                   tau_m=taus, key=jax.random.PRNGKey(seed), dtype=dtype, neuron_options=options,
                   self_connections=model["self_connections"])


def make_batch(point: dict, seed: int, dtype):
    """Noise inputs ``(T, B, n_in)``; random labels ``(T, B)`` on every step or on the last only (``-1``: none)."""
    key_x, key_y = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 1))
    shape = (point["T"], point["batch"])
    inputs = jax.random.normal(key_x, (*shape, point["n_in"]), dtype)
    labels = jax.random.randint(key_y, shape, 0, point["n_out"])
    if point["loss_timing"] == "end":
        labels = jnp.full(shape, -1).at[-1].set(labels[-1])
    elif point["loss_timing"] != "every":
        raise UsageError(f"alignment config: loss_timing must be every or end, got {point['loss_timing']!r}")
    return inputs, labels


def compare_layers(grads, reference) -> tuple[list, list]:
    """Per node: cosine and norm ratio to the reference (``None`` where undefined: a zero gradient)."""
    from ..gradcheck import compare

    rows = compare(grads, reference)
    return [row["cosine"] for row in rows], [row["norm_ratio"] for row in rows]


def run_point(entry: dict, config: dict, specs: dict) -> dict:
    from ..api import gradients
    from ..engines import make_engine

    point = entry["point"]
    dtype = jnp.float64 if config.get("dtype") == "float64" else jnp.float32
    started = time.perf_counter()
    result = {"key": entry["key"], "point": point, "sweeps": entry["sweeps"], "seeds": list(config["seeds"]),
              "methods": {}, "time_constants": time_constants(point)}
    references = {}
    for seed in config["seeds"]:
        model = build_model(point, seed, dtype)
        inputs, labels = make_batch(point, seed, dtype)
        references[seed] = (model, inputs, labels,
                            gradients(model, inputs, labels, method="bptt", loss="cross_entropy"))
    for name in config["methods"]:
        spec = specs[name]
        engine = make_engine(spec["method"], **spec["options"])
        per_seed = {"cosine": [], "norm_ratio": []}
        try:
            for seed in config["seeds"]:
                model, inputs, labels, reference = references[seed]
                grads = gradients(model, inputs, labels, method=engine, loss="cross_entropy")
                cosines, ratios = compare_layers(grads, reference)
                per_seed["cosine"].append(cosines)
                per_seed["norm_ratio"].append(ratios)
        except ValueError as err:  # the engine refuses this model (e.g. the factored trace with dense recurrence)
            result["methods"][name] = {"refused": str(err)}
            continue
        result["methods"][name] = per_seed
    result["seconds"] = time.perf_counter() - started
    return result


def run(config: dict, out: str, *, progress: bool = True, shard=None) -> list[dict]:
    """Every point of the sweep (finished ones read back, not recomputed), or this ``shard``'s share of them (a
    :class:`deepeprop.experiments.Shard`: every ``count``-th point); returns their results."""
    specs = methods()
    unknown = [m for m in config["methods"] if m not in specs]
    if unknown:
        raise UsageError(f"alignment config: unknown methods {unknown}; known: {sorted(specs)}")
    folder = os.path.join(out, "alignment")
    every = points(config)
    entries = every if shard is None else shard.take(every)
    if shard is not None and shard.count > 1:
        print(f"alignment: shard {shard} takes {len(entries)} of the {len(every)} points", flush=True)
    write_json(os.path.join(folder, "config.json"), {"config": config, "machine": machine()})
    results = []
    from tqdm import tqdm

    bar = tqdm(total=len(entries), desc="alignment points", unit="point", dynamic_ncols=True, disable=not progress)
    for entry in entries:
        path = os.path.join(folder, f"{entry['key']}.json")
        if os.path.exists(path):
            result = read_json(path)
        else:
            result = run_point(entry, config, specs)
            result["machine"] = machine()
            write_json(path, result)
        results.append(result)
        bar.update(1)
    bar.close()
    return results


def summarize(values) -> dict:
    """Mean and 95% interval (Student t) of the defined values; ``None`` if none is defined."""
    data = [v for v in values if v is not None and math.isfinite(v)]
    if not data:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(np.mean(data))
    if len(data) < 2:
        return {"mean": mean, "low": mean, "high": mean, "n": 1}
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(data) - 1) * np.std(data, ddof=1) / math.sqrt(len(data)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(data)}
