"""NIR with the torch libraries (optional): snnTorch and norse run our exports, and we run snnTorch's.

Each peer lives in a venv of its own, never in deepeprop's environment. A test finds the peer's Python through an
environment variable and runs the peer's side (tests/nir_peers/peer.py) in a subprocess; the .nir file, the input
and the peer's spikes travel through a temporary folder. Without the variable the test is skipped with a message.

    python -m venv /path/snntorch && /path/snntorch/bin/pip install torch==2.13.0 snntorch==1.0.0 nirtorch==2.6 nir
    python -m venv /path/norse && /path/norse/bin/pip install torch==2.13.0 nir nirtorch==2.6 setuptools_scm
    /path/norse/bin/pip install --no-deps --no-build-isolation norse==1.1.0   # its torchvision pin is not needed
    DEEPEPROP_SNNTORCH_PYTHON=/path/snntorch/bin/python DEEPEPROP_NORSE_PYTHON=/path/norse/bin/python \\
        python -m pytest -q -s tests/test_nir_peers.py

Every side runs in float64, so a spike differs only where the dynamics do. What the tests establish (and
docs/concepts/nir.md names, with the conversions):

* snnTorch's ``Leaky``/``RLeaky`` with its default reset (by subtraction, applied at the next step) is deepeprop's
  LIF: our exports run in snnTorch to the same spikes, and snnTorch's exports in deepeprop.
* ``import_from_nir`` (snnTorch) and ``from_nir`` (norse) give a NIR ``LIF`` NIR's own reset, to ``v_reset`` at
  once: they run our parameters exactly as NIR's equations say (the spikes of a NIR-reset reference), which
  differs from deepeprop's LIF after each neuron's first spike.
* snnTorch 1.0.0's import of a recurrent LIF passes the layer's input through the recurrent weights (pinned below
  so that a release that fixes it shows up).

``DEEPEPROP_WRITE_NIR_FIXTURES=1`` also writes the snnTorch graphs and spikes under tests/data/, which the default
suite (tests/test_nir.py) reads without torch.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deepeprop as dp

nir = pytest.importorskip("nir", reason="the nir package is missing: python -m pip install -e '.[test]'")

HERE = Path(__file__).parent
PEER_SCRIPT = HERE / "nir_peers" / "peer.py"
DATA = HERE / "data"
KEY = jax.random.PRNGKey(0)


def _peer_python(peer: str) -> str:
    variable = f"DEEPEPROP_{peer.upper()}_PYTHON"
    python = os.environ.get(variable)
    if not python:
        pytest.skip(f"{peer} is not installed for the cross-library NIR tests: set {variable} to the Python of a venv "
                    f"that has it (see the docstring of tests/test_nir_peers.py)")
    if not Path(python).exists():
        pytest.skip(f"{variable}={python} does not exist")
    return python


def _run_peer(peer: str, mode: str, folder: Path, x: np.ndarray, **job) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "x.npy", np.asarray(x, dtype=np.float64))
    (folder / "job.json").write_text(json.dumps({"peer": peer, **job}))
    done = subprocess.run([_peer_python(peer), str(PEER_SCRIPT), mode, str(folder)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{peer} {mode} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    with np.load(folder / "result.npz") as result:
        out = {k: result[k] for k in result.files}
    out["versions"] = json.loads(str(out["versions"]))
    return out


def _inputs(n_in, T=50, B=3, seed=1):
    return np.asarray(jax.random.bernoulli(jax.random.PRNGKey(seed), 0.3, (T, B, n_in)), dtype=np.float64)


MODELS = {  # (recurrence of layer 1) -> a two-layer LIF network with a linear readout (neither peer reads LI)
    kind: (lambda kind=kind: dp.DeepRNN(4, [6, 5], 3, neuron="lif", recurrence=[kind, "none"], readout="linear",
                                        tau_m=[10.0, 15.0], key=KEY, dtype=jnp.float64, input_gain=3.0))
    for kind in ("none", "dense", "diagonal")
}


def _nir_reset_reference(model, x, *, input_through_recurrent=False):
    """Our network's parameters run with NIR's reset (``v <- v_reset = 0`` as soon as ``v > thr``), in numpy:
    ``v[t] = a*v'[t-1] + I[t]``, ``z[t] = v[t] > thr``, ``v'[t] = 0 where z[t] else v[t]``. With
    ``input_through_recurrent`` the current is ``W_rec (drive + z[t-1])`` (snnTorch 1.0.0's recurrent import)."""
    outs, spikes = [x], []
    for node in model.nodes:
        drive = sum(np.einsum("ij,tbj->tbi", np.asarray(p.weight), outs[p.source]) if p.weight is not None
                    else outs[p.source] for p in node.inputs) + np.asarray(node.b)  # (T, B, n)
        if node.recurrence == "dense":
            W = np.asarray(node.recurrent_matrix())
            rec = lambda z, W=W: z @ W.T  # noqa: E731
        elif node.recurrence == "diagonal":
            w = np.asarray(node.W)
            rec = lambda z, w=w: z * w  # noqa: E731
        else:
            rec = None
        neuron = node.neuron
        if not neuron.spiking:  # the linear readout: y = I
            outs.append(drive)
            continue
        a, thr = np.broadcast_to(np.asarray(neuron.decay), drive.shape[2:]), neuron.threshold
        v, z, zs = np.zeros(drive.shape[1:]), np.zeros(drive.shape[1:]), []
        for t in range(drive.shape[0]):
            if rec is None:
                current = drive[t]
            elif input_through_recurrent:
                current = rec(drive[t] + z)
            else:
                current = drive[t] + rec(z)
            v = a * v + current
            z = (v > thr).astype(np.float64)
            v = np.where(z > 0, 0.0, v)
            zs.append(z)
        outs.append(np.stack(zs))
        spikes.append(outs[-1])
    return spikes, outs[-1]


def _mismatch(theirs: list, ours: list) -> str:
    """How far two spike records are apart: differing entries and the earliest step at which they differ."""
    diff = [np.argwhere(np.asarray(a) != np.asarray(b)) for a, b in zip(theirs, ours)]
    count = sum(len(d) for d in diff)
    first = min((int(d[0][0]) for d in diff if len(d)), default=None)
    total = sum(np.asarray(a).size for a in ours)
    return f"{count} of {total} spike entries differ" + ("" if first is None else f", the first at step {first}")


def _report(peer, versions, what, text):
    print(f"\n[nir-peers] {peer} {versions}: {what}: {text}", file=sys.stderr)


# ---------------------------------------------------------------------------- our export, their import
@pytest.mark.parametrize("kind", list(MODELS))
def test_snntorch_runs_our_export_to_the_same_spikes(kind, tmp_path):
    """With snnTorch's own default reset on the imported neurons (import_from_nir sets NIR's reset to zero) and
    its recurrent subgraph wired as NIR says (the bug pinned below), snnTorch runs our export to our spikes."""
    _peer_python("snntorch")  # skip before any work when the peer is missing
    model = MODELS[kind]()
    x = _inputs(model.n_in)
    nir.write(tmp_path / "graph.nir", dp.to_nir(model, dt=1e-4, discretisation="euler"))  # snnTorch: dt = 1e-4
    result = _run_peer("snntorch", "import", tmp_path, x, reset="deepeprop", fix_rnn_subgraph=True)
    _, y, zs = model.run(jnp.asarray(x), record=True)
    theirs = [result[f"spikes_{i}"] for i in range(len(zs))]
    assert all(0.05 < float(jnp.mean(z)) < 0.95 for z in zs)
    _report("snntorch", result["versions"], f"our {kind} export, deepeprop's reset", _mismatch(theirs, zs))
    for a, b in zip(theirs, zs):
        np.testing.assert_array_equal(a, np.asarray(b))
    # snnTorch builds beta in float32 before the cast: the potentials agree to float32's rounding
    np.testing.assert_allclose(result["output"], np.asarray(y), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("gain", ["r", "weights"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_snntorchs_import_runs_our_export_as_nirs_equations_say(kind, gain, tmp_path):
    """snnTorch's import as it stands: NIR's reset to zero; our parameters (time constants, thresholds, the input
    gain written as r or folded into the weights) exactly as NIR states them. A recurrent layer needs the
    subgraph fix; without it the spikes are those of input through W_rec (pinned in the next test)."""
    _peer_python("snntorch")  # skip before any work when the peer is missing
    model = MODELS[kind]()
    x = _inputs(model.n_in)
    nir.write(tmp_path / "graph.nir", dp.to_nir(model, dt=1e-4, discretisation="euler", gain=gain))
    result = _run_peer("snntorch", "import", tmp_path, x, reset="peer", fix_rnn_subgraph=True)
    reference, out = _nir_reset_reference(model, x)
    theirs = [result[f"spikes_{i}"] for i in range(len(reference))]
    for a, b in zip(theirs, reference):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(result["output"], out, rtol=1e-6, atol=1e-6)
    _, _, zs = model.run(jnp.asarray(x), record=True)
    _report("snntorch", result["versions"], f"our {kind} export (gain={gain}), snnTorch's reset to zero, against "
            "deepeprop's LIF", _mismatch(theirs, zs))


@pytest.mark.parametrize("kind", ["dense", "diagonal"])
def test_snntorchs_recurrent_import_passes_the_input_through_the_recurrent_weights(kind, tmp_path):
    """snnTorch 1.0.0 (import_nir._create_rnn_subgraph) wires ``input -> w_rec`` inside the subgraph it makes of a
    recurrent LIF, so the layer's input is multiplied by W_rec. Pinned: when this fails, snnTorch has fixed it, and
    the fix_rnn_subgraph patch in tests/nir_peers/peer.py can go."""
    _peer_python("snntorch")  # skip before any work when the peer is missing
    model = MODELS[kind]()
    x = _inputs(model.n_in)
    nir.write(tmp_path / "graph.nir", dp.to_nir(model, dt=1e-4, discretisation="euler"))
    result = _run_peer("snntorch", "import", tmp_path, x, reset="peer", fix_rnn_subgraph=False)
    buggy, _ = _nir_reset_reference(model, x, input_through_recurrent=True)
    right, _ = _nir_reset_reference(model, x)
    theirs = [result[f"spikes_{i}"] for i in range(len(buggy))]
    for a, b in zip(theirs, buggy):
        np.testing.assert_array_equal(a, b)
    assert any(np.any(a != b) for a, b in zip(theirs, right))
    _report("snntorch", result["versions"], f"our {kind} export, stock recurrent import, against NIR's equations",
            _mismatch(theirs, right))


@pytest.mark.parametrize("kind", list(MODELS))
def test_norse_runs_our_export_as_nirs_equations_say(kind, tmp_path):
    """norse 1.1.0 ignores a LIF's ``r`` (it warns): our export folds the input gain into the weights
    (``gain="weights"``); it resets to ``v_reset`` at once. It runs our parameters as NIR's equations say."""
    _peer_python("norse")  # skip before any work when the peer is missing
    model = MODELS[kind]()
    x = _inputs(model.n_in)
    nir.write(tmp_path / "graph.nir", dp.to_nir(model, dt=1e-3, discretisation="euler", gain="weights"))
    result = _run_peer("norse", "import", tmp_path, x, dt=1e-3)
    reference, out = _nir_reset_reference(model, x)
    theirs = [result[f"spikes_{i}"] for i in range(len(reference))]
    _, _, zs = model.run(jnp.asarray(x), record=True)
    _report("norse", result["versions"], f"our {kind} export, against NIR's equations", _mismatch(theirs, reference))
    _report("norse", result["versions"], f"our {kind} export, against deepeprop's LIF", _mismatch(theirs, zs))
    for a, b in zip(theirs, reference):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(result["output"], out, rtol=1e-6, atol=1e-6)  # norse casts weights to float32 first


# ---------------------------------------------------------------------------- their export, our import
@pytest.mark.parametrize("kind", ["feedforward", "recurrent", "recurrent_diagonal"])
def test_deepeprop_runs_snntorchs_export_to_the_same_spikes(kind, tmp_path):
    """snnTorch's export_to_nir of Leaky / RLeaky layers (dt = 1e-4 and Euler steps, as snnTorch writes them; its
    default reset by subtraction, which is ours), read by from_nir: the same spikes and outputs."""
    _peer_python("snntorch")  # skip before any work when the peer is missing
    x = _inputs(4, T=40)
    result = _run_peer("snntorch", "export", tmp_path, x, kind=kind, seed=0)
    graph = nir.read(tmp_path / "graph.nir")
    model = dp.from_nir(graph, dt=1e-4, discretisation="euler")  # dtype from the graph: float64 here
    assert model.dtype == jnp.float64
    expected = {"feedforward": ["none", "none", "none"], "recurrent": ["dense", "none"],
                "recurrent_diagonal": ["diagonal", "none"]}[kind]
    assert [n.recurrence for n in model.nodes] == expected and model.readout_is_linear
    _, y, zs = model.run(jnp.asarray(x), record=True)
    theirs = [result[f"spikes_{i}"] for i in range(len(zs))]
    assert all(0.05 < float(np.mean(z)) < 0.95 for z in theirs)
    _report("snntorch", result["versions"], f"snnTorch's {kind} export read by deepeprop", _mismatch(theirs, zs))
    for a, b in zip(theirs, zs):
        np.testing.assert_array_equal(np.asarray(b), a)
    np.testing.assert_allclose(np.asarray(y), result["output"], rtol=1e-12, atol=1e-12)
    if os.environ.get("DEEPEPROP_WRITE_NIR_FIXTURES"):
        DATA.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "graph.nir", DATA / f"snntorch_{kind}.nir")
        np.savez(DATA / f"snntorch_{kind}.npz", x=x, output=result["output"],
                 versions=np.array(json.dumps(result["versions"])), **{f"spikes_{i}": s for i, s in enumerate(theirs)})
