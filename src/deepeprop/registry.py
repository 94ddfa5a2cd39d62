"""Registries of named things (engines, tasks, neurons, losses) and their names as help texts give them.

Imports nothing of the package, so that every module (the command-line parsers included) may import it.
"""
from __future__ import annotations

import re


def names(registry) -> str:
    """The names of a registry (``ENGINES``, ``TASKS``, ...) for a help text: ``"a, b or c"``."""
    keys = [str(key) for key in registry]
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " or " + keys[-1]


class Registry(dict):
    """The named things of one ``kind`` (``"engine"``, ``"task"``, ``"neuron model"``, ``"loss"``): a dict from
    name to class, with the texts made from it.

    ``ENGINES``, ``TASKS``, ``NEURONS`` and ``LOSSES`` are registries. A new entry is one call,
    ``ENGINES.register(MyEngine)`` (its ``name`` attribute, or ``name=``), or the decorator ``@ENGINES.register``;
    the command-line help (``--method``, ``--task``, ``--neuron``) lists it from then on, and the docstrings that
    name the entries (:func:`document`) list those registered when the module was imported.
    """

    def __init__(self, kind: str, entries=()):
        super().__init__(entries)
        self.kind = kind

    def register(self, entry=None, *, name: str | None = None):
        """Add ``entry`` under ``name`` (default ``entry.name``); returns ``entry`` (usable as a decorator)."""
        def add(entry):
            key = name or getattr(entry, "name", None)
            if not isinstance(key, str) or not key:
                raise ValueError(f"a registered {self.kind} needs a name: give name=... or a 'name' attribute")
            if key in self and self[key] is not entry:
                raise ValueError(f"{self.kind} {key!r} is registered already ({self[key].__name__})")
            self[key] = entry
            return entry

        return add if entry is None else add(entry)

    def names(self) -> str:
        """``"a, b or c"`` (a help text)."""
        return names(self)

    def listing(self) -> str:
        """``"a"``, ``"b"`` as a docstring writes them: ````"a"``, ``"b"````."""
        return ", ".join(f'``"{key}"``' for key in self)


_NAME = r'``"[A-Za-z_][\w:]*"``'
_LIST = rf'(?P<list>{_NAME}(?:(?:,\s+or\s+|,\s+|\s+or\s+){_NAME})*(?P<more>,\s*\.\.\.)?)'


def complete_lists(text: str, names: dict) -> str:
    """``text`` with every list of names beside a registry reference (``"bptt"``, ``"rtrl"`` (:data:`ENGINES`), or
    :data:`TASKS` (``"digits"``, ...)) replaced by all the names of that registry in ``names`` (``{"ENGINES":
    [...]}``); a list that names something outside the registry is kept as written. The API reference
    (docs/griffe_roles.py) and :func:`document` both use it."""
    ref = rf':data:`~?(?:deepeprop\.)?(?P<registry>{"|".join(map(re.escape, names))})`'
    patterns = (re.compile(rf'{_LIST}\s*\({ref}\)'), re.compile(rf'{ref}\s*\({_LIST}\)'))

    def replace(match: re.Match) -> str:
        listed = re.findall(r'``"([^"]+)"``', match.group("list"))
        known = list(names[match.group("registry")])
        if not set(listed) <= set(known):
            return match.group(0)
        full = ", ".join(f'``"{name}"``' for name in known)
        start, end = match.span("list")
        whole = match.group(0)
        return whole[:start - match.start()] + full + whole[end - match.start():]

    for pattern in patterns:
        text = pattern.sub(replace, text)
    return text


def document(function, **registries: Registry):
    """Complete the registry lists in ``function``'s docstring (:func:`complete_lists`; the keywords name the
    registries as the docstring refers to them, e.g. ``ENGINES=ENGINES``); returns ``function``."""
    if function.__doc__:
        function.__doc__ = complete_lists(function.__doc__, {key: list(value) for key, value in registries.items()})
    return function
