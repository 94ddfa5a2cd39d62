"""Per-layer neurons, recurrences and skip edges as command-line flags and TOML values.

One place for the parsing and the checks that ``deepeprop train`` and ``deepeprop gradcheck`` share:

* ``--neuron lif`` or ``--neuron lif,alif,leaky`` (TOML ``neuron = "lif"`` or ``neuron = ["lif", "alif"]``);
* ``--recurrence dense`` or ``--recurrence none,diagonal`` (the same forms);
* ``--skip 1:3,0:2`` (TOML ``skip = [[1, 3], [0, 2]]``): extra same-time edges ``(i, j)``, ``0`` the input,
  ``1..L`` the hidden layers, ``L+1`` the readout (:func:`deepeprop.DeepRNN`);
* ``--residual 2:3,0:3`` (TOML ``residual = [[2, 3], [0, 3]]``): fixed identity edges, one on a chain edge
  replacing it.

A single value stays a string and a list stays a list, so a config written to ``config.json`` reads back
the same.
"""
from __future__ import annotations

from .builders import chain_edges
from .network import RECURRENCES
from .neurons import NEURONS
from .validation import check_number


def layer_sizes(name: str, value) -> list[int]:
    """``"16,16,16"`` or ``[16, 16, 16]`` -> ``[16, 16, 16]``: positive ints, with a clear error for anything else."""
    expected = f"{name} must be a comma-separated list of positive ints like 64,64 (TOML: [64, 64]), got {value!r}"
    if isinstance(value, str):
        try:
            value = [int(part) for part in value.split(",")]
        except ValueError:
            raise ValueError(expected) from None
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError(expected)
    return list(value)


def per_layer_choice(name: str, value, choices, depth: int):
    """``"lif"`` / ``"lif,alif"`` / ``["lif", "alif"]`` -> ``"lif"`` or a list of ``depth`` names.

    Raises ``ValueError`` naming ``name`` for an unknown choice or a list of the wrong length.
    """
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(f"{name} must be one of {sorted(choices)} or a list of them (one per hidden layer), "
                         f"got {value!r}")
    for item in items:
        if not isinstance(item, str) or item not in choices:
            raise ValueError(f"{name} must be one of {sorted(choices)} (or a comma-separated list of them, one per "
                             f"hidden layer), got {item!r}")
    if len(items) == 1 and isinstance(value, str):
        return items[0]
    if len(items) != depth:
        raise ValueError(f"{name} must be one value or a list of {depth} (one per hidden layer), got {len(items)}: "
                         f"{value!r}")
    return items


def neuron_names(name: str, value, depth: int):
    return per_layer_choice(name, value, NEURONS, depth)


def recurrences(name: str, value, depth: int):
    return per_layer_choice(name, value, RECURRENCES, depth)


def per_layer_number(name: str, value, depth: int):
    """A time constant or gain: ``20`` / ``"2,50"`` / ``[2, 50]`` -> ``20.0`` or a list of ``depth`` floats > 0."""
    if isinstance(value, str):
        try:
            items = [float(part) for part in value.split(",")]
        except ValueError:
            raise ValueError(f"{name} must be a number > 0 or a comma-separated list of them (one per hidden layer), "
                             f"got {value!r}") from None
        value = items[0] if len(items) == 1 else items
    if not isinstance(value, (list, tuple)):
        return check_number(name, value, minimum=0, exclusive_minimum=True)
    if len(value) != depth:
        raise ValueError(f"{name} must be one number or a list of {depth} (one per hidden layer), got {len(value)}: "
                         f"{value!r}")
    return [check_number(name, item, minimum=0, exclusive_minimum=True) for item in value]


def per_layer_flag(name: str, value, depth: int):
    """``True`` / ``[True, False]`` -> itself, checked: a bool or a list of ``depth`` bools."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(item, bool) for item in items) or (isinstance(value, (list, tuple)) and len(items) != depth):
        raise ValueError(f"{name} must be true or false, or a list of {depth} of them (one per hidden layer), "
                         f"got {value!r}")
    return list(value) if isinstance(value, (list, tuple)) else value


def per_layer_options(name: str, value, depth: int):
    """Neuron keyword arguments: one table ``{"detach_reset": True}`` or a list of ``depth`` tables."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(key, str) for key in item):
            raise ValueError(f"{name} must be a table of NAME = VALUE or a list of {depth} such tables (one per hidden "
                             f"layer), got {value!r}")
    if isinstance(value, (list, tuple)):
        if len(items) != depth:
            raise ValueError(f"{name} must be one table or a list of {depth} (one per hidden layer), "
                             f"got {len(items)}")
        return [dict(item) for item in items]
    return dict(value)


def _parse_edges(name: str, value) -> list[list[int]]:
    if value is None or value == "" or value == []:
        return []
    edges = []
    if isinstance(value, str):
        for part in value.split(","):
            pieces = part.strip().split(":")
            try:
                if len(pieces) != 2:
                    raise ValueError
                edges.append([int(pieces[0]), int(pieces[1])])
            except ValueError:
                raise ValueError(f"{name} must be edges I:J separated by commas (e.g. 1:3,0:2), "
                                 f"got {value!r}") from None
    elif isinstance(value, (list, tuple)):
        for edge in value:
            if (not isinstance(edge, (list, tuple)) or len(edge) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in edge)):
                raise ValueError(f"{name} must be a list of [i, j] pairs of node ids, got {value!r}")
            edges.append([int(edge[0]), int(edge[1])])
    else:
        raise ValueError(f"{name} must be edges I:J separated by commas (e.g. 1:3) or a list of [i, j] pairs, "
                         f"got {value!r}")
    return edges


def skip_edges(name: str, value, depth: int, residual=()) -> list[list[int]]:
    """``"1:3,0:2"`` / ``[[1, 3], [0, 2]]`` -> ``[[1, 3], [0, 2]]``, checked against a chain of ``depth`` layers
    (and the already parsed ``residual`` edges)."""
    edges = _parse_edges(name, value)
    chain_edges(depth, edges, residual, skip_name=name)
    return edges


def residual_edges(name: str, value, depth: int) -> list[list[int]]:
    """Fixed identity edges in the same forms as :func:`skip_edges`; one on a chain edge replaces it."""
    edges = _parse_edges(name, value)
    chain_edges(depth, (), edges, residual_name=name)
    return edges


def is_rate_model(neuron, position: int = 0) -> bool:
    """Whether hidden layer ``position`` (default the first) is a non-spiking model in this (normalised) value."""
    names = [neuron] if isinstance(neuron, str) else list(neuron)
    return not NEURONS[names[min(position, len(names) - 1)]].spiking
