"""Library hygiene: ruff passes, no matplotlib back-end switched at import, dependencies declared, every engine and
neuron model exported where users look for it. (Version and ``python -m deepeprop``: tests/test_reliability.py.)"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import deepeprop as dp

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ruff_check_passes():
    # the rule set is in pyproject.toml ([tool.ruff.lint]); ruff comes with the test extra
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks", "docs"],
                            cwd=ROOT,
                            capture_output=True, text=True)
    assert "No module named ruff" not in result.stderr, "ruff is missing: python -m pip install -e '.[test]'"
    assert result.returncode == 0, result.stdout + result.stderr


def test_plots_leave_the_matplotlib_back_end_alone(tmp_path):
    script = f"""
import sys, matplotlib
import deepeprop, deepeprop.plots as plots, deepeprop.training
path = plots.learning_curves([{{"iteration": 1, "train_loss": 1.0, "test_loss": 1.2, "test_metric": 0.5}}],
                             {str(tmp_path / 'curves.png')!r}, metric_name="accuracy", chance=0.1)
print(matplotlib.rcParams["backend"], "matplotlib.pyplot" in sys.modules, path)
"""
    env = dict(os.environ, MPLBACKEND="svg")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    backend, pyplot_imported, path = result.stdout.split()
    assert backend == "svg" and pyplot_imported == "False"
    assert pathlib.Path(path).read_bytes()[:4] == b"\x89PNG"


def _toml(path):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def test_imported_third_party_packages_are_declared():
    project = _toml(ROOT / "pyproject.toml")["project"]
    declared = {re.split(r"[<>=;\[ ]", req)[0].lower().replace("-", "_") for req in project["dependencies"]}
    sources = "\n".join(p.read_text() for p in (ROOT / "src" / "deepeprop").rglob("*.py"))
    imported = set(re.findall(r"^\s*(?:from|import) (\w+)", sources, flags=re.M))
    for package in ("jax", "equinox", "optax", "numpy", "matplotlib", "jaxtyping", "tqdm", "h5py"):
        assert package in imported  # the check below can fail: these are imported
        assert package in declared, f"{package} is imported by deepeprop but not declared in pyproject.toml"
    optional = project["optional-dependencies"]
    assert any(req.startswith("nir") for req in optional["nir"])  # imported only by to_nir / from_nir
    assert any(req.startswith("tensorboardX") for req in optional["tensorboard"])  # only with --tensorboard
    assert "deepeprop[docs,nir,tensorboard]" in optional["test"]  # the README's set-up installs what tests run


def test_every_engine_and_neuron_model_is_exported():
    names = set(dp.__all__)
    for cls in list(dp.ENGINES.values()) + list(dp.NEURONS.values()) + [dp.Integrator, dp.AbstractNeuron]:
        assert cls.__name__ in names and getattr(dp, cls.__name__) is cls
    for name in ("to_nir", "from_nir", "gradients", "OnlineLearner", "make_engine", "make_loss"):
        assert name in names and callable(getattr(dp, name))
    assert all(hasattr(dp, name) for name in dp.__all__)
