"""The peer side of the cross-library NIR tests (tests/test_nir_peers.py): run by a torch library's own Python, in
a venv of its own (never deepeprop's environment; this file imports nothing of deepeprop).

    python peer.py import  FOLDER   # FOLDER/graph.nir + FOLDER/x.npy -> FOLDER/result.npz (the peer runs our graph)
    python peer.py export  FOLDER   # FOLDER/x.npy + FOLDER/job.json -> FOLDER/graph.nir + FOLDER/result.npz

``FOLDER/job.json`` names the peer (``snntorch`` or ``norse``) and, for ``import``, ``dt`` and ``reset`` (``"peer"``:
the library's own import as it stands; ``"deepeprop"``: snnTorch's neurons set back to snnTorch's own default
reset, by subtraction with the reset applied at the next step, which is deepeprop's LIF) and, for ``export``, the
network (``kind``: ``"feedforward"``, ``"recurrent"`` or ``"recurrent_diagonal"``, ``seed``). Inputs are
``(T, B, n_in)``; ``result.npz`` holds ``output`` ``(T, B, n_out)`` and ``spikes_<i>`` ``(T, B, n_i)`` for the
i-th spiking layer in the order the network runs them, and ``versions`` (a JSON string). Everything runs in
float64 (the modules are cast after import), so that a spike differs only where the dynamics differ.
"""
from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

import nir
import numpy as np
import torch

torch.set_default_dtype(torch.float64)


def _versions(peer: str) -> str:
    names = {"snntorch": ["snntorch", "nirtorch", "nir", "torch"], "norse": ["norse", "nirtorch", "nir", "torch"]}
    return json.dumps({name: metadata.version(name) for name in names[peer]})


def _run_steps(net, x: np.ndarray, neurons: list, stateful_call) -> dict:
    """Step ``net`` over ``x`` (T, B, n_in), recording the spikes of each module in ``neurons`` (forward hooks)."""
    records: list[list] = [[] for _ in neurons]
    hooks = []
    for i, module in enumerate(neurons):
        def hook(_module, _args, out, i=i):
            spikes = out[0] if isinstance(out, tuple) else out
            records[i].append(spikes.detach().clone())
        hooks.append(module.register_forward_hook(hook))
    outputs = []
    state = None
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = stateful_call(net, torch.as_tensor(x[t]), state)
            outputs.append(y.detach().clone())
    for h in hooks:
        h.remove()
    result = {"output": torch.stack(outputs).numpy()}
    for i, rec in enumerate(records):
        result[f"spikes_{i}"] = torch.stack(rec).numpy()
    return result


# ---------------------------------------------------------------------------- snnTorch
def _snntorch_neurons(net):
    import snntorch as snn

    return [m for m in net.modules() if isinstance(m, (snn.Leaky, snn.RLeaky))]


def _snntorch_reset_as_deepeprop(module) -> None:
    """snnTorch's default reset (``reset_mechanism="subtract"``, ``reset_delay=True``): deepeprop's LIF exactly.
    ``import_from_nir`` builds ``reset_mechanism="zero"``, ``reset_delay=False`` (NIR's reset to ``v_reset``)."""
    module.reset_mechanism = "subtract"
    module.state_function = module._base_sub
    module.reset_delay = True


def _snntorch_float64(net) -> None:
    """snnTorch's surrogate spike functions return float32 (``.float()``); forward only, the same Heaviside in the
    dtype of the potential keeps the whole network in float64."""
    for m in _snntorch_neurons(net):
        m.spike_grad = lambda mem_shift: (mem_shift > 0).to(mem_shift.dtype)


def _snntorch_call(net, x_t, state):
    out = net(x_t) if state is None else net(x_t, state)
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):  # nirtorch's GraphModule
        return out
    return (out[0] if isinstance(out, tuple) else out), state


def _snntorch_reset_states(net) -> None:
    for m in _snntorch_neurons(net):
        for name in ("mem", "spk"):
            if hasattr(m, name):
                setattr(m, name, torch.zeros(0))


def _snntorch_fix_rnn_subgraph() -> None:
    """snnTorch 1.0.0's ``_create_rnn_subgraph`` wires the subgraph's input into the recurrent weights (edges
    ``input -> w_rec``, ``w_rec <-> lif``), so nirtorch runs ``v <- a v + W_rec (I + z[t-1])``: the external input
    passes through ``W_rec``. Patched here: the same subgraph with the input going to the neurons (``input -> lif``)."""
    import snntorch.import_nir as sin

    original = sin._create_rnn_subgraph

    def fixed(graph, lif_nk, w_nk):
        graph = original(graph, lif_nk, w_nk)
        sub = graph.nodes[lif_nk.split(".")[0]]
        sub.edges = [(a, lif_nk) if (a.endswith(".input") and b == w_nk) else (a, b) for a, b in sub.edges]
        return graph

    sin._create_rnn_subgraph = fixed


def snntorch_import(folder: Path, job: dict) -> dict:
    from snntorch.import_nir import import_from_nir

    if job.get("fix_rnn_subgraph"):
        _snntorch_fix_rnn_subgraph()
    graph = nir.read(folder / "graph.nir")
    net = import_from_nir(graph).double()
    neurons = _snntorch_neurons(net)
    _snntorch_float64(net)
    if job["reset"] == "deepeprop":
        for m in neurons:
            _snntorch_reset_as_deepeprop(m)
    _snntorch_reset_states(net)
    return _run_steps(net, np.load(folder / "x.npy"), neurons, _snntorch_call)


def _snntorch_network(kind: str, n_in: int, seed: int):
    import snntorch as snn

    torch.manual_seed(seed)
    if kind == "feedforward":
        # per-neuron beta and threshold: with scalars snnTorch writes a 0-d tau and its own infer_types() fails
        # ("type mismatch: 0.output: [[7]] -> 1.input: []", as snnTorch issue 410 for Synaptic)
        net = torch.nn.Sequential(
            torch.nn.Linear(n_in, 7), snn.Leaky(beta=torch.linspace(0.85, 0.95, 7), threshold=torch.full((7,), 0.8),
                                              init_hidden=True),
            torch.nn.Linear(7, 5), snn.Leaky(beta=torch.full((5,), 0.8), threshold=torch.ones(5), init_hidden=True),
            torch.nn.Linear(5, 3))
        gains = [4.0, 2.5, 1.0]
    elif kind in ("recurrent", "recurrent_diagonal"):
        dense = kind == "recurrent"
        rleaky = snn.RLeaky(beta=0.85, threshold=0.9, init_hidden=True, all_to_all=dense,
                            linear_features=6 if dense else None, V=None if dense else torch.linspace(-0.6, 0.4, 6))
        net = torch.nn.Sequential(torch.nn.Linear(n_in, 6), rleaky, torch.nn.Linear(6, 3))
        gains = [4.0, 1.0]
    else:
        raise ValueError(f"kind must be feedforward, recurrent or recurrent_diagonal, got {kind!r}")
    with torch.no_grad():
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        for m, gain in zip(linears, gains):
            m.weight.mul_(gain)
        if kind == "recurrent":  # the dense recurrent weights, strong enough to matter
            net[1].recurrent.weight.mul_(3.0)
            net[1].recurrent.bias.zero_()  # deepeprop's recurrence has no bias of its own (it rides on the input's)
    net = net.double()
    _snntorch_float64(net)
    return net


def snntorch_export(folder: Path, job: dict) -> dict:
    from snntorch.export_nir import export_to_nir

    x = np.load(folder / "x.npy")
    net = _snntorch_network(job["kind"], x.shape[-1], job["seed"])
    graph = export_to_nir(net, torch.as_tensor(x[0, 0]), model_name="snntorch")  # no batch axis: NIR has none
    nir.write(folder / "graph.nir", graph)
    _snntorch_reset_states(net)
    return _run_steps(net, x, _snntorch_neurons(net), _snntorch_call)


# ---------------------------------------------------------------------------- norse
def norse_import(folder: Path, job: dict) -> dict:
    from norse.torch.module.lif_box import LIFBoxCell
    from norse.torch.utils.import_nir import from_nir

    net = from_nir(nir.read(folder / "graph.nir"), dt=job["dt"]).double()
    neurons = [m for m in net.modules() if isinstance(m, LIFBoxCell)]

    def call(net, x_t, state):
        return net(x_t) if state is None else net(x_t, state)

    return _run_steps(net, np.load(folder / "x.npy"), neurons, call)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("import", "export"):
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(argv[2])
    job = json.loads((folder / "job.json").read_text())
    peer = job["peer"]
    run = {("snntorch", "import"): snntorch_import, ("snntorch", "export"): snntorch_export,
           ("norse", "import"): norse_import}.get((peer, argv[1]))
    if run is None:
        print(f"peer.py: {argv[1]} is not available for {peer}", file=sys.stderr)
        return 2
    result = run(folder, job)
    np.savez(folder / "result.npz", versions=np.array(_versions(peer)), **result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
