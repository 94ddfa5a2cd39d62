"""Argument checks shared by every boundary (network, engines, learner, tasks, ``train``, ``bench``).

One wording everywhere: ``"<name> must be <what was expected>, got <what was given>"``. A bad argument
raises ``ValueError`` at the boundary it was given to, before anything is computed or written; a command of the
command line turns the ``ValueError`` of a value the user gave into a :class:`~deepeprop.errors.UsageError`
(``deepeprop: error: ...``, exit code 2; :func:`deepeprop.errors.usage_errors`). The checks of a model and its
batch, which need the network, are in :mod:`deepeprop.batch_checks`.

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
