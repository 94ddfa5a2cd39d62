"""The neuron interface every gradient engine relies on.

A neuron model is a small Equinox module holding *fixed* per-neuron constants (time constants,
threshold; they are not trained: every use goes through ``lax.stop_gradient``). It declares

* ``state_size`` -- ``d``, the number of state variables per neuron (1 for leaky rate and LIF,
  2 for ALIF: potential and threshold adaptation; one more for LIF and ALIF with a refractory period, whose
  ``state_size`` is a property of the instance);
* ``init_state(batch, dtype)`` -> ``(B, n, d)`` zeros;
* ``step(state, current)`` -> next state: ``s[t] = M(s[t-1], z[t-1], I[t])`` with
  ``z[t-1] = output(s[t-1])`` recomputed inside, shapes ``(B, n, d), (B, n) -> (B, n, d)``;
* ``output(state)`` -> ``z``, shape ``(B, n)``; spiking models give a Heaviside step whose
  derivative is the surrogate (``jax.custom_jvp``), so autodiff (BPTT) and the forward-mode local
  Jacobians of :mod:`deepeprop.jacobians` see the same derivative.

Contract: ``step`` and ``output`` act on each neuron independently (element-wise over ``B`` and
``n``). The local Jacobians are then read off with ``d`` forward-mode products, and a user's own
neuron model gets every engine for free. ``__init__(n, *, ..., dtype=...)`` takes the number of neurons first
and a ``dtype`` keyword (the networks build a class as ``cls(n, **neuron_options, dtype=dtype)``).

A reset whose gradient path is a choice (LIF, ALIF) is a static field ``detach_reset: bool | None``: ``None``
lets each engine's rule decide (:meth:`deepeprop.Engine.prepare` sets it with :func:`with_detach_reset`); a
user's neuron may declare the same field to take part.
"""
from __future__ import annotations

import abc
import copy
import dataclasses
import functools
import inspect
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .. import validation


SURROGATES = ("triangle", "fast_sigmoid")


def _triangle(x):
    # Bellec et al. 2020: psi = max(0, 1 - |x|), x = (v - A) / thr
    return jnp.maximum(0.0, 1.0 - jnp.abs(x))


def _fast_sigmoid(x):
    # Zenke & Ganguli 2018 (SuperSpike), slope 10 in units of the threshold
    return 1.0 / (1.0 + 10.0 * jnp.abs(x)) ** 2


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def spike_fn(x: Array, scale: Array, surrogate_id: int) -> Array:
    """Heaviside ``H(x)`` of the normalised distance to threshold ``x = (v - A)/thr``.

    Its derivative with respect to ``x`` is ``scale * psi(x)`` with ``psi`` the surrogate chosen by
    ``surrogate_id`` (index into :data:`SURROGATES`); ``scale`` is the dampening factor ``gamma``.

    Args:
        x: the normalised distance to threshold, any shape (e.g. ``(B, n)``).
        scale: the surrogate's scale, a scalar array.
        surrogate_id: ``0`` (triangle, Bellec et al. 2020) or ``1`` (fast sigmoid, SuperSpike); static.

    Returns:
        The spikes ``(x > 0)`` in ``x``'s shape and dtype.
    """
    del scale, surrogate_id
    return (x > 0).astype(x.dtype)


@spike_fn.defjvp
def _spike_fn_jvp(surrogate_id, primals, tangents):
    x, scale = primals
    dx = tangents[0]
    psi = _triangle(x) if surrogate_id == 0 else _fast_sigmoid(x)
    return spike_fn(x, scale, surrogate_id), scale * psi * dx


def decay_from_tau(name: str, tau, n: int, dtype) -> Array:
    """``exp(-1/tau)`` (time step 1): shape ``()`` for a scalar time constant (one leak shared by the
    node, which the factorised fast paths need), ``(n,)`` for a per-neuron one."""
    tau_arr = check_time_constant(name, tau).astype(dtype)
    if tau_arr.shape not in ((), (n,)):
        raise ValueError(f"{name} must be a scalar or an array of shape ({n},), got shape {tau_arr.shape}")
    return jnp.exp(-1.0 / tau_arr)


def check_time_constant(name: str, tau) -> Array:
    """A time constant in time steps: a number or an array of numbers (not bools), finite and > 0."""
    if isinstance(tau, bool) or getattr(tau, "dtype", None) == bool:  # noqa: E721 (a numpy dtype equals bool)
        raise validation.fail(name, "a number or an array of numbers (time steps)", tau)
    tau_arr = validation.as_array(name, tau)
    if not bool(jnp.all(jnp.isfinite(tau_arr))) or not bool(jnp.all(tau_arr > 0)):
        raise ValueError(f"{name} must be finite and > 0 (time constants in time steps)")
    return tau_arr


def check_positive(name: str, value) -> float:
    """A finite number > 0 (:func:`deepeprop.validation.check_number`)."""
    return validation.check_number(name, value, minimum=0, exclusive_minimum=True)


def check_surrogate(surrogate: str) -> int:
    return SURROGATES.index(validation.check_choice("surrogate", surrogate, SURROGATES))


class AbstractNeuron(eqx.Module):
    """Abstract neuron model: the contract of the module docstring (Equinox's abstract/final pattern).

    Subclasses are final: they set the class variables, implement ``size``, ``step`` and ``output``, and
    declare their capabilities by overriding :meth:`constant_leak` (and :meth:`input_scale` for the
    initialisation), never by a flag that could go stale: each is computed from the model's fields as
    they are. :func:`check_neuron` verifies a model against its declarations numerically.

    Attributes:
        state_size: ``d``, state variables per neuron (a class variable every model sets, or a property where it
            depends on the model's options, as LIF's and ALIF's counter with ``n_ref > 0``).
        spiking: whether the output is spikes (a class variable every model sets).
        n_currents: ``c``, input currents per neuron (default 1).
        n_outputs: ``o``, outputs per neuron (default 1).
        trainable: names of ``(n,)`` array fields that are trained (default none).
    """

    state_size: eqx.AbstractClassVar[int]
    spiking: eqx.AbstractClassVar[bool]
    # Input currents and outputs per neuron (``c``, ``o``): ``step`` gets a (B, n) current when c = 1 and a
    # (B, n, c) one otherwise; ``output`` gives (B, n) when o = 1 and (B, n, o) otherwise. Edges read the
    # outputs flattened neuron-major, (B, n*o), and feed the currents flattened the same way, (B, n*c).
    n_currents: ClassVar[int] = 1
    n_outputs: ClassVar[int] = 1
    # Names of per-neuron (n,) array fields that are trained (e.g. an LRU's nu, theta). Their step must not
    # stop their gradient; every other array field is a fixed constant.
    trainable: ClassVar[tuple[str, ...]] = ()

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """``n``: the number of neurons."""

    @abc.abstractmethod
    def step(self, state: Array, current: Array) -> Array:
        """``s[t] = M(s[t-1], z[t-1], I[t])``: ``(B, n, d), (B, n) -> (B, n, d)``."""

    @abc.abstractmethod
    def output(self, state: Array) -> Array:
        """``z[t] = f(s[t])``: ``(B, n, d) -> (B, n)``."""

    def init_state(self, batch: int, dtype) -> Array:
        return jnp.zeros((batch, self.size, self.state_size), dtype=dtype)  # (B, n, d)

    def constant_leak(self) -> Array | None:
        """Capability: the leak ``a`` when ``dM/ds[t-1] = a`` for every state (no reset or adaptation path),
        ``d = 1`` and ``dM/dI = 1``; ``None`` otherwise (the default).

        Shape ``()`` when one leak is shared by every neuron of the node, ``(n,)`` when it is per neuron.
        Engines store e-prop's eligibility as one presynaptic trace per node when it is shared (see
        ``docs/math.md``, "Factorised traces"). The value is read from the fields as they are.
        """
        return None

    def input_scale(self) -> Array | float:
        """Scale of the initial input weights per neuron ``(n,)`` or per current ``(n, c)`` (default 1);
        leaky rate units use ``1 - a``."""
        return 1.0


# The name the first version used; kept so that existing code and user neurons keep working.
NeuronModel = AbstractNeuron


def shared_constant_leak(neuron: AbstractNeuron) -> Array | None:
    """The neuron's :meth:`~AbstractNeuron.constant_leak` if it is one scalar shared by every neuron (and the
    neuron has one state variable, current and output, and no trained parameters), else ``None``."""
    leak = neuron.constant_leak()
    if (leak is None or jnp.ndim(leak) != 0 or neuron.state_size != 1 or neuron.n_currents != 1
            or neuron.n_outputs != 1 or neuron.trainable):
        return None
    return jax.lax.stop_gradient(jnp.asarray(leak))


def has_reset_choice(neuron: AbstractNeuron) -> bool:
    """Whether ``neuron`` has a reset whose gradient path is a choice: a dataclass field ``detach_reset``."""
    return any(f.name == "detach_reset" for f in dataclasses.fields(neuron))


def with_detach_reset(neuron: AbstractNeuron, detach: bool) -> AbstractNeuron:
    """A copy of ``neuron`` with its static ``detach_reset`` field set to ``detach`` (everything else shared)."""
    new = copy.copy(neuron)  # a frozen module: the field is set on the copy, as its __init__ would
    object.__setattr__(new, "detach_reset", bool(detach))
    return new


def takes_dtype(cls) -> bool:
    """Whether a neuron class's ``__init__`` takes the ``dtype`` keyword the contract asks for (or ``**kwargs``)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return any(p.name == "dtype" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def check_neuron(neuron: AbstractNeuron, *, batch: int = 3, key=None, scale: float = 1.0) -> None:
    """Verify a neuron model against the contract and its declared capabilities; raise ``ValueError`` if not.

    Checks that the class's ``__init__`` takes ``dtype=`` (the networks build a class as
    ``cls(n, **neuron_options, dtype=dtype)``), a ``detach_reset`` field's value (``None``, ``True`` or ``False``),
    then at random states and currents (float64 if enabled): the shapes of ``init_state``, ``step`` and
    ``output``; that neuron ``j``'s next state and output depend only on its own state and current (the
    element-wise contract the engines' block-diagonal Jacobians rely on); and, if
    :meth:`~AbstractNeuron.constant_leak` is declared, that ``dM/ds[t-1]`` equals it and ``dM/dI = 1``.

    Args:
        neuron: the model to check (an instance).
        batch: the batch size ``B`` of the random states.
        key: a ``jax.random`` key (default ``PRNGKey(0)``).
        scale: the standard deviation of the random states and currents.

    Returns:
        ``None`` when the model meets its contract.

    Raises:
        ValueError: naming the broken part of the contract.
    """
    if not isinstance(neuron, AbstractNeuron):
        raise ValueError(f"neuron must be a deepeprop.AbstractNeuron, got {type(neuron).__name__}")
    if not takes_dtype(type(neuron)):
        raise ValueError(f"{type(neuron).__name__}.__init__ must take a dtype keyword (the neuron contract: a class "
                         "is built as cls(n, **neuron_options, dtype=dtype))")
    if has_reset_choice(neuron) and neuron.detach_reset not in (None, True, False):
        raise validation.fail(f"{type(neuron).__name__}.detach_reset", "None, True or False", neuron.detach_reset)
    key = jax.random.PRNGKey(0) if key is None else key
    n, d = neuron.size, neuron.state_size
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    zero = neuron.init_state(batch, dtype)
    if zero.shape != (batch, n, d):
        raise ValueError(f"{type(neuron).__name__}.init_state must give shape (B, n, d) = {(batch, n, d)}, "
                         f"got {zero.shape}")
    c, o = neuron.n_currents, neuron.n_outputs
    for name in neuron.trainable:
        value = getattr(neuron, name, None)
        if not isinstance(value, jax.Array) or value.shape != (n,):
            raise ValueError(f"{type(neuron).__name__}.{name} is declared trainable but is not an array "
                             f"of shape ({n},)")
    k_s, k_i = jax.random.split(key)
    state = scale * jax.random.normal(k_s, (batch, n, d), dtype)
    current_shape = (batch, n) if c == 1 else (batch, n, c)
    current = scale * jax.random.normal(k_i, current_shape, dtype)
    nxt = neuron.step(state, current)
    if nxt.shape != (batch, n, d):
        raise ValueError(f"{type(neuron).__name__}.step must give shape (B, n, d) = {(batch, n, d)}, got {nxt.shape}")
    out = neuron.output(state)
    out_shape = (batch, n) if o == 1 else (batch, n, o)
    if out.shape != out_shape:
        raise ValueError(f"{type(neuron).__name__}.output must give shape {out_shape}, got {out.shape}")
    # every Jacobian with neuron axes (B, n) flattened, the per-neuron axes last
    full_s = jax.jacfwd(lambda s: neuron.step(s, current))(state).reshape(batch * n, d, batch * n, d)
    full_i = jax.jacfwd(lambda i: neuron.step(state, i))(current).reshape(batch * n, d, batch * n, c)
    dz = jax.jacfwd(neuron.output)(state).reshape(batch * n, o, batch * n, d)
    other = (1 - jnp.eye(batch * n, dtype=dtype))[:, None, :, None]
    leaks = [float(jnp.max(jnp.abs(full_s * other))), float(jnp.max(jnp.abs(full_i * other))),
             float(jnp.max(jnp.abs(dz * other)))]
    if max(leaks) > 0:
        raise ValueError(f"{type(neuron).__name__} is not element-wise: a neuron's step or output depends on "
                         "another neuron's state or current (the engines assume block-diagonal Jacobians)")
    leak = neuron.constant_leak()
    if leak is not None:
        if d != 1 or c != 1 or o != 1:
            raise ValueError(f"{type(neuron).__name__} declares constant_leak but has state_size {d}, {c} currents "
                             f"and {o} outputs per neuron (each must be 1)")
        if jnp.ndim(leak) not in (0, 1) or (jnp.ndim(leak) == 1 and jnp.shape(leak) != (n,)):
            raise ValueError(f"{type(neuron).__name__}.constant_leak must have shape () or ({n},), "
                             f"got {jnp.shape(leak)}")
        own = jnp.diagonal(full_s[:, 0, :, 0])  # (B n,)
        ds_dI = jnp.diagonal(full_i[:, 0, :, 0])
        expected = jnp.broadcast_to(jnp.asarray(leak, dtype), (batch, n)).reshape(-1)
        if not bool(jnp.allclose(own, expected, atol=1e-6)) or not bool(jnp.allclose(ds_dI, 1.0, atol=1e-6)):
            raise ValueError(f"{type(neuron).__name__} declares constant_leak, but its step's own Jacobian is "
                             "not that leak or dM/dI is not 1 at a random state: remove the declaration")


def check_size(name: str, value) -> int:
    """A positive Python int (numpy ints accepted; :func:`deepeprop.validation.check_int`)."""
    return validation.check_int(name, value, minimum=1)
