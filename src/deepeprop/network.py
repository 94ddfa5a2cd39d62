"""The deep recurrent network (MATH.md section 1).

    I[l,t] = W_l @ z[l,t-1] + U_l @ z[l-1,t] + b_l        s[l,t] = M_l(s[l,t-1], z[l,t-1], I[l,t])

Layers ``l = 1..L`` feed the layer above at the same time step; ``z[0,t] = x[t]``. The readout is one
more layer on top: an :class:`~deepeprop.neurons.Integrator` with ``y[t] = k*y[t-1] + W_out @ z[L,t]
+ b_out`` (``k = 0`` for a linear readout), so every engine treats it as layer ``L+1``.

For the engines, a layer's trainable parameters are viewed as one matrix ``theta_l`` of shape
``(n_l, P_l)`` whose row ``j`` holds everything neuron ``j``'s current depends on:
``[U_l[j, :] | W_l[j, :] (dense) or W_l[j] (diagonal) | b_l[j]]``. ``presynaptic`` gives, per neuron, the
vector that row multiplies, so ``dI[l,t,j]/dtheta_l[j, :] = presynaptic[j, :]``.
"""
from __future__ import annotations

import math
from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .neurons import NEURONS, Integrator, NeuronModel

RECURRENCES = ("none", "diagonal", "dense")
READOUTS = ("linear", "leaky")
DTYPES = {"float32": jnp.float32, "float64": jnp.float64}

# Per layer of states: a tuple (s[1], ..., s[L], y) of (B, n_l, d_l) arrays.
NetState = tuple


class Layer(eqx.Module):
    """One layer: synapses ``U`` (feed-forward), ``W`` (within-layer), ``b``, and a neuron model."""

    U: Array  # (n, n_in)
    W: Array | None  # (n, n) dense, (n,) diagonal, or None
    b: Array  # (n,)
    neuron: NeuronModel
    recurrence: str = eqx.field(static=True)
    # Dense recurrence without self-connections: ``W_jj`` is masked to zero (fixed, never trained), so the
    # only within-neuron dynamics are the neuron's own. Lets engines factorise e-prop's traces.
    self_connections: bool = eqx.field(static=True, default=True)
    # True when every neuron of the layer has the same leak (set from the concrete time constants at
    # construction; the decay is a fixed constant). Engines read it to decide statically on factorising.
    shared_leak: bool = eqx.field(static=True, default=False)

    @property
    def size(self) -> int:
        return self.U.shape[0]

    @property
    def n_in(self) -> int:
        return self.U.shape[1]

    @property
    def row_size(self) -> int:
        """``P``: the number of parameters in row ``j`` of ``theta`` (see the module docstring)."""
        extra = {"none": 0, "diagonal": 1, "dense": self.size}[self.recurrence]
        return self.n_in + extra + 1

    def recurrent_diagonal(self) -> Array:
        """``W_jj`` per neuron (zeros without recurrence): the part of ``W`` inside each neuron."""
        if self.recurrence == "none" or (self.recurrence == "dense" and not self.self_connections):
            return jnp.zeros((self.size,), self.U.dtype)
        if self.recurrence == "diagonal":
            return self.W
        return jnp.diagonal(self.W)

    def current(self, z_prev: Array, x: Array) -> Array:
        """``I = W @ z_prev + U @ x + b``: (B, n), (B, n_in) -> (B, n)."""
        current = x @ self.U.T + self.b
        if self.recurrence == "diagonal":
            current = current + z_prev * self.W
        elif self.recurrence == "dense":
            current = current + z_prev @ self.recurrent_matrix().T
        return current

    def recurrent_matrix(self) -> Array:
        """Dense ``W`` as used in the forward pass (diagonal masked out without self-connections)."""
        if self.self_connections:
            return self.W
        return self.W * (1.0 - jnp.eye(self.size, dtype=self.W.dtype))

    def step(self, s_prev: Array, x: Array) -> Array:
        """One time step of the layer: ``s_prev`` (B, n, d), input ``x`` (B, n_in) -> ``s`` (B, n, d)."""
        z_prev = self.neuron.output(s_prev)  # (B, n)
        return self.neuron.step(s_prev, self.current(z_prev, x))

    def presynaptic(self, z_prev: Array, x: Array) -> Array:
        """Per neuron, the vector its row of ``theta`` multiplies: (B, n), (B, n_in) -> (B, n, P)."""
        batch, n = z_prev.shape
        ones = jnp.ones((batch, 1), x.dtype)
        if self.recurrence == "dense":
            shared = jnp.concatenate([x, z_prev, ones], axis=-1)  # (B, P)
            return jnp.broadcast_to(shared[:, None, :], (batch, n, shared.shape[-1]))
        x_b = jnp.broadcast_to(x[:, None, :], (batch, n, x.shape[-1]))  # (B, n, n_in)
        ones_b = jnp.ones((batch, n, 1), x.dtype)
        if self.recurrence == "diagonal":
            return jnp.concatenate([x_b, z_prev[..., None], ones_b], axis=-1)
        return jnp.concatenate([x_b, ones_b], axis=-1)

    def theta(self) -> Array:
        """The layer's parameters as one ``(n, P)`` matrix (see the module docstring)."""
        parts = [self.U]
        if self.recurrence == "diagonal":
            parts.append(self.W[:, None])
        elif self.recurrence == "dense":
            parts.append(self.W)
        parts.append(self.b[:, None])
        return jnp.concatenate(parts, axis=1)

    def split_theta(self, theta: Array) -> tuple[Array, Array | None, Array]:
        """Inverse of :meth:`theta`: ``(n, P)`` -> ``(U, W, b)``."""
        n_in = self.n_in
        U = theta[:, :n_in]
        if self.recurrence == "diagonal":
            W = theta[:, n_in]
        elif self.recurrence == "dense":
            W = theta[:, n_in:n_in + self.size]
        else:
            W = None
        return U, W, theta[:, -1]


def _per_layer(value, depth: int, name: str) -> list:
    """A scalar/array for every layer, or a list with one entry per layer."""
    if isinstance(value, (list, tuple)):
        if len(value) != depth:
            raise ValueError(f"{name} must be one value or a list of {depth} (one per hidden layer), got {len(value)}")
        return list(value)
    return [value] * depth


def _check_size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (hasattr(value, "__index__")):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    value = int(value)
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def _check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def _resolve_dtype(dtype):
    try:
        resolved = jnp.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    if resolved == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs jax_enable_x64: call "
                         "jax.config.update('jax_enable_x64', True) before creating arrays")
    return resolved


class DeepRNN(eqx.Module):
    """A deep recurrent (rate or spiking) network with a linear or leaky readout.

    Args:
        n_in: input channels.
        hidden: hidden layer sizes, bottom to top (any depth >= 1), e.g. ``[64, 64, 64]``.
        n_out: readout units.
        neuron: ``"leaky"`` (rate, ``tanh``), ``"lif"`` or ``"alif"``.
        recurrence: within-layer recurrence ``W_l``: ``"none"``, ``"diagonal"`` (element-wise) or ``"dense"``.
        readout: ``"linear"`` (``y = W_out z + b_out``) or ``"leaky"`` (``y[t] = k*y[t-1] + W_out z + b_out``).
        key: a ``jax.random`` key.
        dtype: ``jnp.float32`` (default) or ``jnp.float64``.
        tau_m: membrane time constant in time steps: a number, an ``(n_l,)`` array (per neuron), or a
            list with one of those per hidden layer. Fixed, not trained.
        tau_a: adaptation time constant (ALIF only), same forms as ``tau_m``.
        tau_out: the leaky readout's time constant (``k = exp(-1/tau_out)``).
        neuron_options: passed to the neuron model (``threshold``, ``gamma``, ``beta``, ``surrogate``,
            ``detach_reset``).
        input_gain, recurrent_gain: scale of the initial ``U`` and ``W``.
        self_connections: with ``recurrence="dense"``, ``False`` masks ``W``'s diagonal to zero (no neuron
            feeds itself; its gradient is zero). Then e-prop's eligibility factorises per presynaptic
            input when the neuron's own Jacobian is a shared constant (see :mod:`deepeprop.engines.eprop`).

    Initialisation: ``U ~ N(0, 1/n_in)``, dense ``W ~ N(0, 1/n)``, diagonal ``W ~ U(-0.5, 0.5)``,
    ``W_out ~ N(0, 1/n_L)``, biases zero. For leaky rate units each row is also scaled by ``1 - a_j``
    (and ``W_out`` by ``1 - k``) so that potentials stay O(1) at the leaky integrator's steady state.
    """

    layers: tuple[Layer, ...]
    readout: Layer
    # "linear" or "leaky": lets engines skip the readout filter statically when k = 0.
    readout_kind: str = eqx.field(static=True, default="leaky")

    def __init__(self, n_in: int, hidden: Sequence[int], n_out: int, *, neuron: str = "lif",
                 recurrence: str = "dense", readout: str = "leaky", key, dtype=jnp.float32,
                 tau_m=20.0, tau_a=200.0, tau_out: float = 20.0, neuron_options: dict | None = None,
                 input_gain: float = 1.0, recurrent_gain: float = 1.0, self_connections: bool = True):
        n_in = _check_size(n_in, "n_in")
        n_out = _check_size(n_out, "n_out")
        if isinstance(hidden, (int,)) or not isinstance(hidden, (list, tuple)):
            raise ValueError(f"hidden must be a non-empty list of positive ints (layer sizes), got {hidden!r}")
        if len(hidden) == 0:
            raise ValueError("hidden must be a non-empty list of positive ints (layer sizes), got []")
        hidden = [_check_size(h, f"hidden[{i}]") for i, h in enumerate(hidden)]
        neuron_cls = NEURONS.get(neuron)
        if neuron_cls is None:
            raise ValueError(f"neuron must be one of {tuple(NEURONS)}, got {neuron!r}")
        _check_choice(recurrence, "recurrence", RECURRENCES)
        _check_choice(readout, "readout", READOUTS)
        dtype = _resolve_dtype(dtype)
        if not isinstance(key, jax.Array) or key.shape not in ((2,), ()):
            raise ValueError("key must be a jax.random key (jax.random.PRNGKey(seed) or jax.random.key(seed))")
        for gain_name, gain in (("input_gain", input_gain), ("recurrent_gain", recurrent_gain), ("tau_out", tau_out)):
            if not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain <= 0:
                raise ValueError(f"{gain_name} must be a finite number > 0, got {gain!r}")
        if not isinstance(self_connections, bool):
            raise ValueError(f"self_connections must be True or False, got {self_connections!r}")
        options = dict(neuron_options or {})
        if neuron == "alif":
            tau_as = _per_layer(tau_a, len(hidden), "tau_a")
        tau_ms = _per_layer(tau_m, len(hidden), "tau_m")

        layers = []
        keys = jax.random.split(key, len(hidden) + 1)
        fan_in = n_in
        for i, n in enumerate(hidden):
            kwargs = dict(options, tau_m=tau_ms[i], dtype=dtype)
            if neuron == "alif":
                kwargs["tau_a"] = tau_as[i]
            try:
                cell = neuron_cls(n, **kwargs)
            except TypeError as err:
                raise ValueError(f"neuron_options not accepted by neuron {neuron!r}: {err}") from None
            ku, kw = jax.random.split(keys[i])
            U = jax.random.normal(ku, (n, fan_in), dtype) * (input_gain / math.sqrt(fan_in))
            if recurrence == "dense":
                W = jax.random.normal(kw, (n, n), dtype) * (recurrent_gain / math.sqrt(n))
                if not self_connections:
                    W = W * (1.0 - jnp.eye(n, dtype=dtype))
            elif recurrence == "diagonal":
                W = jax.random.uniform(kw, (n,), dtype, -0.5, 0.5) * recurrent_gain
            else:
                W = None
            if neuron == "leaky":
                row_scale = 1.0 - cell.decay  # (n,)
                U = U * row_scale[:, None]
                if W is not None:
                    W = W * (row_scale[:, None] if W.ndim == 2 else row_scale)
            shared = bool(jnp.all(cell.decay == cell.decay[0]))
            layers.append(Layer(U, W, jnp.zeros((n,), dtype), cell, recurrence,
                                self_connections=self_connections or recurrence != "dense", shared_leak=shared))
            fan_in = n
        k = math.exp(-1.0 / tau_out) if readout == "leaky" else 0.0
        W_out = jax.random.normal(keys[-1], (n_out, fan_in), dtype) * ((1.0 - k) / math.sqrt(fan_in))
        if neuron != "leaky":
            W_out = W_out / (1.0 - k)
        self.layers = tuple(layers)
        self.readout_kind = readout
        self.readout = Layer(W_out, None, jnp.zeros((n_out,), dtype), Integrator(n_out, decay=k, dtype=dtype), "none",
                             shared_leak=True)

    # ----------------------------------------------------------------- structure
    @property
    def all_layers(self) -> tuple[Layer, ...]:
        """Hidden layers then the readout: the ``L+1`` layers every engine iterates over."""
        return self.layers + (self.readout,)

    @property
    def n_in(self) -> int:
        return self.layers[0].n_in

    @property
    def n_out(self) -> int:
        return self.readout.size

    @property
    def hidden(self) -> tuple[int, ...]:
        return tuple(layer.size for layer in self.layers)

    @property
    def dtype(self):
        return self.readout.U.dtype

    @property
    def recurrence(self) -> str:
        return self.layers[0].recurrence

    # ----------------------------------------------------------------- dynamics
    def init_state(self, batch: int) -> NetState:
        """Zero state: a tuple of ``(B, n_l, d_l)`` arrays, the readout's last."""
        return tuple(layer.neuron.init_state(batch, self.dtype) for layer in self.all_layers)

    def step(self, state: NetState, x: Array) -> tuple[NetState, Array]:
        """One time step: ``x`` (B, n_in) -> new state and readout ``y`` (B, n_out)."""
        new_state = []
        signal = x
        for layer, s_prev in zip(self.all_layers, state):
            s = layer.step(s_prev, signal)
            signal = layer.neuron.output(s)
            new_state.append(s)
        return tuple(new_state), signal

    def run(self, inputs: Array, state: NetState | None = None, *, record: bool = False):
        """Run over a sequence: ``inputs`` (T, B, n_in) -> (final state, ``y`` (T, B, n_out)).

        With ``record=True`` also returns the hidden outputs ``z``: a tuple of (T, B, n_l) arrays.
        """
        if state is None:
            state = self.init_state(inputs.shape[1])

        def body(carry, x):
            new_state, y = self.step(carry, x)
            if record:
                zs = tuple(layer.neuron.output(s) for layer, s in zip(self.layers, new_state[:-1]))
                return new_state, (y, zs)
            return new_state, y

        final, out = jax.lax.scan(body, state, inputs)
        if record:
            return final, out[0], out[1]
        return final, out
