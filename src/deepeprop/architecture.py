"""Per-layer neurons, recurrences and skip edges as command-line flags and TOML values.

One place for the parsing and the checks that ``deepeprop train`` and ``deepeprop gradcheck`` share:

* ``--neuron lif`` or ``--neuron lif,alif,leaky`` (TOML ``neuron = "lif"`` or ``neuron = ["lif", "alif"]``);
* ``--recurrence dense`` or ``--recurrence none,diagonal`` (the same forms);
* ``--skip 1:3,0:2`` (TOML ``skip = [[1, 3], [0, 2]]``): extra same-time edges ``(i, j)``, ``0`` the input,
  ``1..L`` the hidden layers, ``L+1`` the readout (:func:`deepeprop.DeepRNN`).

A single value stays a string and a list stays a list, so a config written to ``config.json`` reads back
the same.
"""
from __future__ import annotations

from .network import RECURRENCES, check_edges
from .neurons import NEURONS


def per_layer_choice(value, name: str, choices, depth: int):
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


def neuron_names(value, depth: int, name: str = "--neuron"):
    return per_layer_choice(value, name, NEURONS, depth)


def recurrences(value, depth: int, name: str = "--recurrence"):
    return per_layer_choice(value, name, RECURRENCES, depth)


def skip_edges(value, depth: int, name: str = "--skip") -> list[list[int]]:
    """``"1:3,0:2"`` / ``[[1, 3], [0, 2]]`` -> ``[[1, 3], [0, 2]]``, checked against a chain of ``depth`` layers."""
    if value is None or value == "" or value == []:
        return []
    edges = []
    if isinstance(value, str):
        for part in value.split(","):
            pieces = part.strip().split(":")
            try:
                edges.append([int(pieces[0]), int(pieces[1])])
                if len(pieces) != 2:
                    raise ValueError
            except (ValueError, IndexError):
                raise ValueError(f"{name} must be edges I:J separated by commas (e.g. 1:3,0:2), got {value!r}") from None
    elif isinstance(value, (list, tuple)):
        for edge in value:
            if (not isinstance(edge, (list, tuple)) or len(edge) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in edge)):
                raise ValueError(f"{name} must be a list of [i, j] pairs of node ids, got {value!r}")
            edges.append([int(edge[0]), int(edge[1])])
    else:
        raise ValueError(f"{name} must be edges I:J separated by commas (e.g. 1:3) or a list of [i, j] pairs, "
                         f"got {value!r}")
    chain = [(i, i + 1) for i in range(depth + 1)]
    for edge in edges:
        if tuple(edge) in chain:
            raise ValueError(f"{name}: edge {tuple(edge)} is already in the chain (a skip must jump over a layer)")
    try:
        check_edges(chain + [tuple(e) for e in edges], depth + 1, what=name)
    except ValueError as err:
        raise ValueError(str(err)) from None
    return edges


def is_rate_model(neuron, position: int = 0) -> bool:
    """Whether hidden layer ``position`` (default the first) is a leaky rate layer in this (normalised) value."""
    names = [neuron] if isinstance(neuron, str) else list(neuron)
    return names[min(position, len(names) - 1)] == "leaky"
