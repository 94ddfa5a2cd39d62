"""Tutorial: write your own neuron model (docs/tutorials/custom-neuron.md).

An exponential integrate-and-fire (EIF) neuron, ``v[t] = a v[t-1] + I[t] + dT exp((v[t-1] - vT)/dT) - thr z[t-1]``:
subclass ``dp.AbstractNeuron``, declare ``state_size`` and ``spiking``, implement ``size``, ``step`` and ``output``
element-wise, check it with ``dp.check_neuron``, and every engine runs on it. ``--quick`` (for the tests) runs a
shorter sequence and one engine.
"""
import os
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

import deepeprop as dp

QUICK = "--quick" in sys.argv or os.environ.get("DEEPEPROP_QUICK") == "1"
jax.config.update("jax_enable_x64", True)  # float64, to compare engines to rounding error


class EIF(dp.AbstractNeuron):
    """Exponential integrate-and-fire: LIF with a spike-initiating exponential current.

    Args:
        n: the number of neurons.
        tau_m: membrane time constant in steps.
        threshold: the spike threshold ``thr`` (``z = H(v - thr)``); ``v_T = 0.7 thr``, ``delta_T = 0.1 thr``.
        dtype: the dtype of the fixed constants.
    """

    n: int = eqx.field(static=True)
    decay: jax.Array  # (): a = exp(-1/tau_m), fixed
    threshold: float = eqx.field(static=True)
    state_size = 1  # d: the membrane potential
    spiking = True

    def __init__(self, n, *, tau_m=20.0, threshold=1.0, dtype=jnp.float32):
        self.n = n
        self.decay = jnp.exp(-1.0 / jnp.asarray(tau_m, dtype))
        self.threshold = threshold

    @property
    def size(self):
        return self.n

    def step(self, state, current):  # (B, n, 1), (B, n) -> (B, n, 1)
        v = state[..., 0]
        z = self.output(state)  # (B, n): the spike of the previous step, for the reset
        delta, v_t = 0.1 * self.threshold, 0.7 * self.threshold
        boost = delta * jnp.exp(jnp.minimum((v - v_t) / delta, 5.0))  # clipped: no runaway
        v = lax.stop_gradient(self.decay) * v + current + boost - self.threshold * z
        return v[..., None]

    def output(self, state):  # (B, n, 1) -> (B, n): a Heaviside with a triangle surrogate derivative
        x = (state[..., 0] - self.threshold) / self.threshold
        return dp.spike_fn(x, jnp.asarray(0.3, x.dtype), 0)


# 1. The contract, checked numerically: shapes, element-wise dynamics (and a constant leak, if declared)
dp.check_neuron(EIF(5, dtype=jnp.float64))
print("check_neuron: EIF satisfies the neuron contract")

# 2. Use it in a network like any built-in model: a class (built per layer) or an instance
key = jax.random.PRNGKey(0)
model = dp.DeepRNN(6, [16, 16], 2, neuron=[EIF, "lif"], recurrence="diagonal", key=key, dtype=jnp.float64,
                   input_gain=2.0)
T = 10 if QUICK else 100
inputs = jax.random.bernoulli(key, 0.2, (T, 4, 6)).astype(jnp.float64)  # (T, B, n_in)
targets = jax.random.normal(jax.random.PRNGKey(1), (T, 4, 2), jnp.float64)  # (T, B, n_out)
_, _, (z1, z2) = model.run(inputs, record=True)
print(f"spike rates: EIF layer {float(z1.mean()):.3f}, LIF layer {float(z2.mean()):.3f}")

# 3. Every engine runs on it; with element-wise (diagonal) recurrence rtrl and deep_eprop equal BPTT on the same
#    reset choice (the LIF layer leaves its reset path to the rule: deep_eprop and eprop drop it, rtrl keeps it)
for method in ("deep_eprop",) if QUICK else ("rtrl", "deep_eprop", "eprop"):
    engine = dp.make_engine(method)
    exact = dp.gradients(model, inputs, targets, method=dp.BPTT(detach_reset=engine.reset_choice))
    grads = dp.gradients(model, inputs, targets, method=engine)
    error = float(jnp.linalg.norm(grads.hidden[0].U - exact.hidden[0].U) / jnp.linalg.norm(exact.hidden[0].U))
    print(f"{method:<11} layer-1 input weights: relative error to BPTT {error:.1e}")
    if method != "eprop":
        assert error < 1e-9, method
