"""Tutorial: build a network with skip connections (docs/tutorials/skip-connections.md).

A chain with skip edges (``DeepRNN(skip=...)``), a residual identity edge, and an arbitrary DAG
(``build_network``); deep e-prop follows every edge and stays exact without dense recurrence. ``--quick`` (for the
tests) runs a shorter sequence, and deep e-prop on the DAG only.
"""
import os
import sys

import jax
import jax.numpy as jnp

import deepeprop as dp
from deepeprop.gradcheck import compare

QUICK = "--quick" in sys.argv or os.environ.get("DEEPEPROP_QUICK") == "1"
jax.config.update("jax_enable_x64", True)
key = jax.random.PRNGKey(0)
T, B = (8, 2) if QUICK else (60, 4)

# Node ids: 0 is the input, 1..L the hidden layers, L+1 the readout. Edges (i, j) run from lower to higher ids.
chain = dp.DeepRNN(8, [16, 16, 16], 3, neuron="lif", recurrence="diagonal", skip=[(0, 2), (1, 3), (1, 4)],
                   key=key, dtype=jnp.float64, input_gain=2.0)
print("chain with skips, edges (src, dst):", chain.edges)

# a residual edge is a fixed identity (no weights): node 3 adds node 1's spikes to its current (equal widths)
residual = dp.DeepRNN(8, [16, 16, 16], 3, neuron="lif", recurrence="diagonal", residual=[(1, 3)],
                      key=key, dtype=jnp.float64, input_gain=2.0)
print("residual edge 1 -> 3 is an identity:", residual.nodes[2].inputs[1].weight is None)

# any DAG: two branches from the input, joined in node 3; the readout (node 4) reads node 3 and node 1
dag = dp.build_network(8, [dp.LayerSpec(16, "lif", "none"), dp.LayerSpec(16, "lif", "diagonal"),
                           dp.LayerSpec(8, "alif", "diagonal")], 3,
                       edges=[(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (1, 4)], key=key, dtype=jnp.float64,
                       input_gain=2.0)
print("DAG parents per node:", [node.sources for node in dag.nodes])

inputs = jax.random.bernoulli(key, 0.2, (T, B, 8)).astype(jnp.float64)  # (T, B, n_in)
targets = jax.random.normal(jax.random.PRNGKey(1), (T, B, 3), jnp.float64)  # (T, B, n_out)
models = (("chain + skips", chain), ("residual", residual), ("DAG", dag))
for name, model in models[-1:] if QUICK else models:
    # BPTT on the rules' reset choice (the LIF layers leave it to the rule: deep_eprop and eprop drop the reset path)
    exact = dp.gradients(model, inputs, targets, method=dp.BPTT(detach_reset=True))
    for method in ("deep_eprop",) if QUICK else ("deep_eprop", "eprop"):
        rows = compare(dp.gradients(model, inputs, targets, method=method), exact)
        cosines = " ".join(f"{row['cosine']:.4f}" for row in rows)  # per node, readout last
        print(f"{name:<14} {method:<11} cosine to BPTT per node: {cosines}")
        if method == "deep_eprop":
            assert all(row["relative_error"] < 1e-9 for row in rows), name  # exact: no dense recurrence
