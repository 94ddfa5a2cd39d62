"""Tutorial: export a trained network to NIR and read it back (docs/tutorials/nir.md).

``dp.to_nir`` writes a LIF network as a NIR graph (``nir.write`` saves it as HDF5 for other tools);
``dp.from_nir`` reads one back. ``--quick`` has nothing to shorten: this runs in seconds.
"""
import tempfile

import jax
import jax.numpy as jnp
import nir

import deepeprop as dp

jax.config.update("jax_enable_x64", True)
key = jax.random.PRNGKey(0)
model = dp.DeepRNN(4, [8, 6], 2, neuron="lif", recurrence=["dense", "none"], skip=[(1, 3)], readout="leaky",
                   tau_m=[10.0, 20.0], key=key, dtype=jnp.float64, input_gain=3.0)

# one step of ours stands for dt = 1 ms: tau_nir = tau_steps * dt ("exact"), or dt / (1 - a) for Euler simulators
graph = dp.to_nir(model, dt=1e-3)
for name, node in graph.nodes.items():
    detail = f"tau = {node.tau[0]:.4f} s" if hasattr(node, "tau") else ""
    print(f"{name:<22} {type(node).__name__:<8} {detail}")
print("edges:", graph.edges)

with tempfile.TemporaryDirectory() as folder:
    nir.write(f"{folder}/model.nir", graph)
    back = dp.from_nir(nir.read(f"{folder}/model.nir"), dt=1e-3, dtype=jnp.float64)

inputs = jax.random.bernoulli(key, 0.3, (50, 2, 4)).astype(jnp.float64)  # (T, B, n_in)
_, y = model.run(inputs)
_, y_back = back.run(inputs)
difference = float(jnp.max(jnp.abs(y - y_back)))
print(f"read back: same edges {back.edges == model.edges}, largest output difference {difference:.1e}")
assert difference < 1e-12

try:  # what NIR cannot express is refused by name
    dp.to_nir(dp.DeepRNN(4, [8], 2, neuron="alif", key=key), dt=1e-3)
except ValueError as err:
    print("ALIF:", err)
