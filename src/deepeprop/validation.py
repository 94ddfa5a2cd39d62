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
"""
from __future__ import annotations

import math
import numbers
import operator
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


def check_values(array: jax.Array, bad, message: str) -> jax.Array:
    """Raise ``ValueError(message)`` if ``bad(array)`` (a scalar bool) holds; inside ``jit``, the same check as
    an :func:`equinox.error_if` on the returned array (use the returned array afterwards)."""
    if is_traced(array):
        return eqx.error_if(array, bad(array), message)
    with jax.ensure_compile_time_eval():  # a concrete array inside a trace is checked now, not staged out
        if bool(bad(array)):
            raise ValueError(message)
    return array


def check_finite(name: str, array: jax.Array) -> jax.Array:
    """Every entry finite (no nan or inf)."""
    return check_values(array, lambda a: ~jnp.all(jnp.isfinite(a)), f"{name} contains non-finite values (nan or inf)")


def check_batch(model, inputs, targets, loss, mask=None):
    """Validate and convert one batch at the API boundary: ``(inputs, targets, mask)`` in the model's dtype
    (labels int32). Static checks raise at once; value checks work under ``jit`` (see the module docstring).

    ``inputs`` (T, B, n_in) real, finite; ``targets`` (T, B, n_out) real and finite for a regression loss,
    (T, B) integer labels in ``[0, n_out)`` or ``-1`` for a label loss; ``mask`` (T, B), finite and ``>= 0``.
    """
    from .losses import make_loss
    from .network import Network

    if not isinstance(model, Network):
        raise ValueError(f"model must be a deepeprop.DeepRNN or build_network result (a deepeprop.Network), "
                         f"got {type(model).__name__}")
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

    targets = as_array("targets", targets)
    if loss_fn.labels:
        if targets.shape != (T, B):
            raise ValueError(f"targets for loss 'cross_entropy' must be integer labels of shape (T, B) = {(T, B)}, "
                             f"got shape {targets.shape}")
        if not jnp.issubdtype(targets.dtype, jnp.integer):
            raise ValueError(f"targets for loss 'cross_entropy' must be integer labels, got dtype {targets.dtype}")
        n_out = model.n_out

        def out_of_range(t):
            return jnp.any((t < -1) | (t >= n_out))

        if is_traced(targets):
            message = f"targets (labels) must be in [0, {n_out - 1}] or -1 (no loss at that step)"
        else:
            with jax.ensure_compile_time_eval():
                low, high = int(jnp.min(targets)), int(jnp.max(targets))
            message = (f"targets (labels) must be in [0, {n_out - 1}] or -1 (no loss at that step), "
                       f"got values in [{low}, {high}]")
        targets = check_values(targets, out_of_range, message).astype(jnp.int32)
    else:
        if targets.shape != (T, B, model.n_out):
            raise ValueError(f"targets for loss 'mse' must have shape (T, B, n_out) = {(T, B, model.n_out)}, "
                             f"got shape {targets.shape}")
        targets = check_finite("targets", targets.astype(model.dtype))

    if mask is None:
        mask = jnp.ones((T, B), model.dtype)
    else:
        mask = as_array("mask", mask)
        if mask.shape != (T, B):
            raise ValueError(f"mask must have shape (T, B) = {(T, B)}, got shape {mask.shape}")
        mask = check_finite("mask", mask.astype(model.dtype))
        mask = check_values(mask, lambda m: jnp.any(m < 0), "mask must be >= 0 (1 where the loss counts, 0 elsewhere)")
    return inputs, targets, mask
