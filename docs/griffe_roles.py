"""A griffe extension for the API reference.

* Sphinx roles in docstrings (``:class:`~deepeprop.Network```) become Markdown code (``Network``), since the pages
  are rendered by mkdocstrings' Markdown, not by Sphinx.
* A list of names next to a registry (``"bptt"``, ``"rtrl"`` (:data:`deepeprop.ENGINES`), or :data:`TASKS`
  (``"digits"``, ...)) is replaced by every name the registry holds when the site is built, so the reference cannot
  fall behind a new engine, task, neuron model, loss or evaluation. Lists that name anything else stay as written.
"""
import pathlib
import re
import sys

import griffe

ROLE = re.compile(r":(?:class|func|meth|data|mod|attr|obj|exc):`(~?)([^`]+)`")
REGISTRIES = ("ENGINES", "TASKS", "NEURONS", "LOSSES", "EVALUATIONS")


def _code(match: re.Match) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.split('.')[-1] if short else target}`"


def registries() -> dict:
    """``{"ENGINES": [names], ...}`` of the source tree being documented."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))
    try:
        import deepeprop
    finally:
        sys.path.pop(0)
    return {name: list(getattr(deepeprop, name)) for name in REGISTRIES}


def complete_lists(text: str, names: dict) -> str:
    """:func:`deepeprop.registry.complete_lists` (one implementation for the site and the docstrings)."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))
    try:
        from deepeprop.registry import complete_lists as complete
    finally:
        sys.path.pop(0)
    return complete(text, names)


class SphinxRoles(griffe.Extension):
    """Completes the registry lists, then rewrites the roles, of every docstring griffe loads."""

    def __init__(self) -> None:
        super().__init__()
        self.names = registries()

    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, complete_lists(obj.docstring.value, self.names))
