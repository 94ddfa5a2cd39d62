"""Argument checks shared by every boundary (network, engines, learner, tasks, ``train``, ``bench``).

One wording everywhere: ``"<name> must be <what was expected>, got <what was given>"``. A bad argument
raises ``ValueError`` at the boundary it was given to (the command line prints it as
``deepeprop: error: ...`` and exits with code 2), before anything is computed or written.

Checks under ``jit``. :func:`deepeprop.gradients` and :meth:`deepeprop.OnlineLearner.train_sequence` may
be called inside a user's ``jax.jit`` / ``equinox.filter_jit``:

* static checks (types, ranks, shapes, dtypes, names, options) raise ``ValueError`` at trace time, as
  outside ``jit``;
* value checks (finite inputs, label range, non-negative mask) on traced arrays go through
  :func:`equinox.error_if`: the compiled program raises when it runs, with the same message
  (``equinox.EquinoxRuntimeError`` under ``eqx.filter_jit``; jax's ``JaxRuntimeError`` under
  ``jax.jit``), and returns nothing: no gradient is returned and no weight is updated.

Outside ``jit`` (concrete arrays) the value checks raise ``ValueError`` directly.

Checked once, at the boundary. A compiled loop pays nothing per step: :func:`deepeprop.gradients`, the learner
and ``engine.sequence`` check a whole sequence before its scan, and the calls made inside it (an engine's
``step`` in its own scan) skip the checks (:func:`checked`). ``engine.step`` called by your own loop checks its
step's arguments each time it is traced; under ``jit`` the shape and dtype checks cost nothing when it runs,
and the value checks are an ``equinox.error_if`` on the step's ``x``, ``target`` and ``mask``.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import operator
import threading
from typing import Any, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def describe(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, with the type for anything but str/int/float/None."""
    text = repr(value)
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    if value is None or isinstance(value, (str, bool, int, float)):
        return text
    return f"{text} ({type(value).__name__})"


def fail(name: str, expected: str, value: Any) -> ValueError:
    """The error of one bad argument, in the shared wording."""
    return ValueError(f"{name} must be {expected}, got {describe(value)}")


# ---------------------------------------------------------------------------- scalars and names
def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int (numpy ints accepted; bools and floats refused), in range."""
    if minimum == 1 and maximum is None:
        expected = "a positive int"
    elif minimum is not None and maximum is not None:
        expected = f"an int in [{minimum}, {maximum}]"
    elif minimum is not None:
        expected = f"an int >= {minimum}"
    elif maximum is not None:
        expected = f"an int <= {maximum}"
    else:
        expected = "an int"
    if isinstance(value, (bool, np.bool_)) or isinstance(value, jax.core.Tracer):
        raise fail(name, expected, value)
    try:
        value = operator.index(value)
    except TypeError:
        raise fail(name, expected, value) from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise fail(name, expected, value)
    return int(value)


def check_number(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                 exclusive_minimum: bool = False, exclusive_maximum: bool = False) -> float:
    """``value`` as a finite Python float (ints accepted, bools refused), in range."""
    if minimum is not None and maximum is not None:
        expected = (f"a finite number in {'(' if exclusive_minimum else '['}{minimum}, "
                    f"{maximum}{')' if exclusive_maximum else ']'}")
    elif minimum is not None:
        expected = f"a finite number {'>' if exclusive_minimum else '>='} {minimum}"
    elif maximum is not None:
        expected = f"a finite number {'<' if exclusive_maximum else '<='} {maximum}"
    else:
        expected = "a finite number"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise fail(name, expected, value)
    value = float(value)
    if not math.isfinite(value):
        raise fail(name, expected, value)
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        raise fail(name, expected, value)
    if maximum is not None and (value >= maximum if exclusive_maximum else value > maximum):
        raise fail(name, expected, value)
    return value


def check_bool(name: str, value: Any, *, optional: bool = False) -> bool | None:
    """``True`` or ``False`` (``None`` too when ``optional``); strings such as ``"maybe"`` are refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if optional and value is None:
        return None
    raise fail(name, "None, True or False" if optional else "True or False", value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of ``choices`` (compared by equality; unhashable values are refused, not a TypeError)."""
    try:
        ok = any(value is choice or (isinstance(value, type(choice)) and value == choice) for choice in choices)
    except Exception:  # an array compared with a name
        ok = False
    if not ok:
        raise fail(name, f"one of {list(choices)}", value)
    return value


# ---------------------------------------------------------------------------- arrays
def is_traced(array: Any) -> bool:
    """Whether ``array`` is a tracer (inside ``jit``, ``vmap``, ``grad``): its values are unknown."""
    return isinstance(array, jax.core.Tracer)


def as_array(name: str, value: Any) -> jax.Array:
    """``value`` as a JAX array of real numbers (float, int or bool): strings, objects and complex refused."""
    if isinstance(value, (jax.Array, jax.core.Tracer)):
        array = value
    else:
        try:
            array = np.asarray(value)
        except Exception as err:  # ragged nested lists
            raise fail(name, "an array of real numbers", value) from err
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "fiub":
        raise ValueError(f"{name} must be an array of real numbers (float, int or bool), got dtype {dtype}")
    return jnp.asarray(array)


def check_array_shape(name: str, value: Any, shape: tuple, names: str) -> jax.Array:
    """``value`` as a real array of ``shape`` (``None`` entries: any size), else ``ValueError`` naming ``names``."""
    array = as_array(name, value)
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        labels = names.strip("()").split(", ")
        wanted = ", ".join(label if want is None else str(want) for label, want in zip(labels, shape))
        raise ValueError(f"{name} must have shape {names} = ({wanted}), got shape {array.shape}")
    return array


def check_values(array: jax.Array, bad, message: str) -> jax.Array:
    """Raise ``ValueError(message)`` if ``bad(array)`` (a scalar bool) holds; inside ``jit``, the same check as
    an :func:`equinox.error_if` on the returned array (use the returned array afterwards)."""
    if is_traced(array):
        pending = getattr(_SCOPE, "pending", None)
        if pending is not None:  # deferred (:func:`deferred_value_checks`): attached to a small array later
            pending.append((bad(array), message))
            return array
        return eqx.error_if(array, bad(array), message)
    with jax.ensure_compile_time_eval():  # a concrete array inside a trace is checked now, not staged out
        if bool(bad(array)):
            raise ValueError(message)
    return array


def check_finite(name: str, array: jax.Array) -> jax.Array:
    """Every entry finite (no nan or inf)."""
    return check_values(array, lambda a: ~jnp.all(jnp.isfinite(a)), f"{name} contains non-finite values (nan or inf)")


_SCOPE = threading.local()


@contextlib.contextmanager
def checked():
    """Inside: the arguments have been checked at the boundary; engine entry points called here skip their checks
    (so that a scan over steps adds no per-step checking work)."""
    depth = getattr(_SCOPE, "depth", 0)
    _SCOPE.depth = depth + 1
    try:
        yield
    finally:
        _SCOPE.depth = depth


@contextlib.contextmanager
def deferred_value_checks():
    """Inside: the value checks of traced arrays are collected (``(bad, message)`` pairs, yielded as a list)
    instead of wrapping each array in ``equinox.error_if``; :func:`attach_value_checks` puts them on another,
    small array that the computation needs, so that a long sequence is not copied to be checked."""
    previous = getattr(_SCOPE, "pending", None)
    _SCOPE.pending = []
    try:
        yield _SCOPE.pending
    finally:
        _SCOPE.pending = previous


def attach_value_checks(tree, pending):
    """``tree`` with the deferred value checks ``pending`` attached (``equinox.error_if``: the compiled program
    raises with the first failing check's message when it runs)."""
    for bad, message in pending:
        tree = eqx.error_if(tree, bad, message)
    return tree


def checks_done() -> bool:
    """Whether this call runs inside :func:`checked` (its arguments were checked at the boundary)."""
    return getattr(_SCOPE, "depth", 0) > 0


def check_model(model) -> None:
    """A :class:`~deepeprop.Network` (from ``DeepRNN`` or ``build_network``)."""
    from .network import Network

    if not isinstance(model, Network):
        raise ValueError(f"model must be a deepeprop.DeepRNN or build_network result (a deepeprop.Network), "
                         f"got {type(model).__name__}")


def _check_targets(model, targets, loss_fn, lead: tuple, lead_names: str, name: str):
    """``targets`` of one step (``lead = (B,)``) or a sequence (``(T, B)``), converted (shared wording)."""
    targets = as_array(name, targets)
    if loss_fn.labels:
        if targets.shape != lead:
            raise ValueError(f"{name} for loss 'cross_entropy' must be integer labels of shape {lead_names} = {lead}, "
                             f"got shape {targets.shape}")
        if not jnp.issubdtype(targets.dtype, jnp.integer):
            raise ValueError(f"{name} for loss 'cross_entropy' must be integer labels, got dtype {targets.dtype}")
        n_out = model.n_out

        def out_of_range(t):
            return jnp.any((t < -1) | (t >= n_out))

        if is_traced(targets):
            message = f"{name} (labels) must be in [0, {n_out - 1}] or -1 (no loss at that step)"
        else:
            with jax.ensure_compile_time_eval():
                low, high = int(jnp.min(targets)), int(jnp.max(targets))
            message = (f"{name} (labels) must be in [0, {n_out - 1}] or -1 (no loss at that step), "
                       f"got values in [{low}, {high}]")
        return check_values(targets, out_of_range, message).astype(jnp.int32)
    shape = lead + (model.n_out,)
    if targets.shape != shape:
        raise ValueError(f"{name} for loss 'mse' must have shape {lead_names.rstrip(',)')}, n_out) = {shape}, "
                         f"got shape {targets.shape}")
    return check_finite(name, targets.astype(model.dtype))


def _check_mask(model, mask, lead: tuple, lead_names: str):
    if mask is None:
        return jnp.ones(lead, model.dtype)
    mask = as_array("mask", mask)
    if mask.shape != lead:
        raise ValueError(f"mask must have shape {lead_names} = {lead}, got shape {mask.shape}")
    mask = check_finite("mask", mask.astype(model.dtype))
    return check_values(mask, lambda m: jnp.any(m < 0), "mask must be >= 0 (1 where the loss counts, 0 elsewhere)")


def check_step(model, batch: int | None, x, target, loss, mask=None):
    """Validate and convert one time step at ``engine.step``: ``(x, target, mask)`` in the model's dtype (labels
    int32). ``x`` (B, n_in) real, finite, ``B`` the state's ``batch``; ``target`` (B, n_out) for a regression loss
    or (B,) integer labels in ``[0, n_out)`` or ``-1``; ``mask`` (B,) ``>= 0`` (``None``: ones)."""
    from .losses import make_loss

    check_model(model)
    loss_fn = make_loss(loss)
    x = as_array("x", x)
    if x.ndim != 2 or x.shape[1] != model.n_in or (batch is not None and x.shape[0] != batch):
        expected = f"(B, n_in) = {(batch, model.n_in)}" if batch is not None else f"(B, n_in) = (B, {model.n_in})"
        raise ValueError(f"x must have shape {expected} (the state's batch B and the model's n_in), "
                         f"got shape {x.shape}")
    lead = (x.shape[0],)
    x = check_finite("x", x.astype(model.dtype))
    return x, _check_targets(model, target, loss_fn, lead, "(B,)", "target"), _check_mask(model, mask, lead, "(B,)")


def check_batch(model, inputs, targets, loss, mask=None):
    """Validate and convert one batch at the API boundary: ``(inputs, targets, mask)`` in the model's dtype
    (labels int32). Static checks raise at once; value checks work under ``jit`` (see the module docstring).

    ``inputs`` (T, B, n_in) real, finite; ``targets`` (T, B, n_out) real and finite for a regression loss,
    (T, B) integer labels in ``[0, n_out)`` or ``-1`` for a label loss; ``mask`` (T, B), finite and ``>= 0``.
    """
    from .losses import make_loss

    check_model(model)
    loss_fn = make_loss(loss)
    inputs = as_array("inputs", inputs)
    if inputs.ndim != 3:
        raise ValueError(f"inputs must have shape (T, B, n_in) = (T, B, {model.n_in}), got shape {inputs.shape}")
    T, B, n_in = inputs.shape
    if T == 0:
        raise ValueError("inputs must have at least one time step (T >= 1), got T = 0")
    if B == 0:
        raise ValueError("inputs must have a batch of at least one sequence (B >= 1), got B = 0")
    if n_in != model.n_in:
        raise ValueError(f"inputs must have shape (T, B, n_in) with n_in = {model.n_in} (the model's), "
                         f"got {inputs.shape}")
    inputs = check_finite("inputs", inputs.astype(model.dtype))

    targets = _check_targets(model, targets, loss_fn, (T, B), "(T, B)", "targets")
    mask = _check_mask(model, mask, (T, B), "(T, B)")
    return inputs, targets, mask
