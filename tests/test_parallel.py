"""Data-parallel training (deepeprop.parallel, ``deepeprop train --devices N``): a 2-device run equals a
1-device run. The CPU is split into 2 XLA devices in a subprocess (the flag must precede JAX's start)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from deepeprop.cli import main
from deepeprop.parallel import batch_mesh

SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np, equinox as eqx, optax
import deepeprop as dp
from deepeprop import parallel
from deepeprop.training import CHECKPOINT, load_checkpoint, resolve_config, train, build

assert len(jax.devices()) == 2, jax.devices()
out = sys.argv[1]
base = dict(task="delayed_copy", hidden=[6, 5], neuron="lif", method="deep_eprop", iterations=4, batch_size=8,
            eval_every=2, eval_batch_size=16, lr=3e-3, seed=3)
params, rows = {}, {}
for devices in (1, 2):
    config = resolve_config(dict(base, devices=devices, out=f"{out}/d{devices}"))
    summary = train(config, progress=False, plots=False)
    _, _, learner = build(config)
    state, _ = load_checkpoint(f"{out}/d{devices}/{CHECKPOINT}", learner.init(build(config)[1]))
    params[devices] = [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(state.model, eqx.is_inexact_array))]
    rows[devices] = [json.loads(line) for line in open(f"{out}/d{devices}/metrics.jsonl")]

# the program really is split: the batch lives on both devices and the gradient sums become all-reduces
task, model, learner = build(resolve_config(dict(base, out=f"{out}/x")))
mesh = parallel.batch_mesh(2)
batch = parallel.shard_batch(task.batch(0, 8), mesh)
state = parallel.replicate(learner.init(model), mesh)
step = eqx.filter_jit(lambda s, x, y, m: learner.sequence_update(s, x, y, m))
hlo = step.lower(state, batch.inputs, batch.targets, batch.mask).compile().compiled.as_text()
print(json.dumps({
    "max_rel": max(float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-30)) for a, b in zip(params[1], params[2])),
    "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(params[1], [np.asarray(a) for a in
                 jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))])),
    "loss_1": [r["test_loss"] for r in rows[1]], "loss_2": [r["test_loss"] for r in rows[2]],
    "batch_devices": len(batch.inputs.sharding.device_set),
    "per_device_batch": batch.inputs.addressable_shards[0].data.shape[1],
    "all_reduce": "all-reduce" in hlo,
}))
"""


def test_two_devices_equal_one_device(tmp_path):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env.pop("JAX_ENABLE_X64", None)  # float32, as a training run is by default
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["batch_devices"] == 2 and report["per_device_batch"] == 4 and report["all_reduce"]
    assert report["moved"] > 1e-4  # training changed the weights: the comparison below is not of the initial model
    assert report["max_rel"] < 1e-5, report  # float32: the same run up to summation order
    assert report["loss_1"] == pytest.approx(report["loss_2"], rel=1e-5)


def test_devices_are_checked(tmp_path, capsys):
    with pytest.raises(ValueError, match="devices must be a positive int"):
        batch_mesh(0)
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count=64"):
        batch_mesh(64)
    assert batch_mesh(1) is None  # one device: nothing is placed
    for argv, message in ((["--devices", "3", "--batch-size", "8"], "--batch-size 8 must be a multiple of --devices 3"),
                          (["--devices", "0"], "--devices must be an int >= 1")):
        with pytest.raises(SystemExit):
            main(["train", *argv, "--out", str(tmp_path)])
        assert message in capsys.readouterr().err


def test_devices_may_change_on_resume(tmp_path):
    from deepeprop.training import _resume_config, _write_json, resolve_config

    saved = resolve_config({"task": "delayed_copy", "hidden": [4], "batch_size": 8, "out": str(tmp_path)})
    _write_json(os.path.join(tmp_path, "config.json"), saved)
    resumed = _resume_config({"devices": 2, "out": str(tmp_path)}, None)
    assert resumed["devices"] == 2 and {k: v for k, v in resumed.items() if k != "devices"} == \
        {k: v for k, v in saved.items() if k != "devices"}
    with pytest.raises(ValueError, match="--batch-size 8 must be a multiple of --devices 3"):
        _resume_config({"devices": 3, "out": str(tmp_path)}, None)
