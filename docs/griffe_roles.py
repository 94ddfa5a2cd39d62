"""A griffe extension for the API reference: Sphinx roles in docstrings (``:class:`~deepeprop.Network```) become
Markdown code (``Network``), since the pages are rendered by mkdocstrings' Markdown, not by Sphinx."""
import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|data|mod|attr|obj|exc):`(~?)([^`]+)`")


def _code(match: re.Match) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.split('.')[-1] if short else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring griffe loads."""

    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
