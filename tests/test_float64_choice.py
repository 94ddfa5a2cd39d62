"""float64 is the caller's choice or the CLI flag's, never switched inside the library (issue 19, item 6)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"

# run in a fresh process: this test process has float64 switched on by conftest
SCRIPT = r"""
import jax, pytest
from deepeprop import bench, gradcheck, training
from deepeprop.errors import UsageError

config = training.resolve_config(dict(task="delayed_copy", task_options=dict(n_symbols=3, seq_len=2, delay=2),
                                      method="eprop", neuron="leaky", hidden=[3], iterations=1, batch_size=2,
                                      eval_every=1, eval_batch_size=4, dtype="float64", out=OUT))
assert not jax.config.jax_enable_x64, "resolve_config switched float64 on"
with pytest.raises(UsageError, match="jax_enable_x64"):
    training.train(config, progress=False, plots=False)
assert not jax.config.jax_enable_x64, "train switched float64 on"
with pytest.raises(ValueError, match="jax_enable_x64"):
    gradcheck.run_gradcheck(hidden=(3,), steps=3, batch=2, dtype="float64", methods=["eprop"])
assert not jax.config.jax_enable_x64, "gradcheck switched float64 on"
jax.config.update("jax_enable_x64", True)  # the caller's choice
summary = training.train(config, progress=False, plots=False, overwrite=True)
assert summary["iterations"] == 1
print("ok")
"""


def test_the_library_never_switches_float64_on(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "JAX_ENABLE_X64"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    script = SCRIPT.replace("OUT", repr(str(tmp_path / "run")))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_the_cli_flag_switches_float64_on(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "JAX_ENABLE_X64"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "deepeprop", "train", "--task", "delayed_copy", "--task-option",
                           "n_symbols=3", "--task-option", "seq_len=2", "--task-option", "delay=2", "--method", "eprop",
                           "--neuron", "leaky", "--hidden", "3", "--iterations", "1", "--batch-size", "2",
                           "--eval-batch-size", "4", "--dtype", "float64", "--out", str(tmp_path / "run"),
                           "--no-progress", "--no-plots"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"dtype": "float64"' in (tmp_path / "run" / "config.json").read_text()
