"""Registries of named things (engines, tasks, neurons, losses) and their names as help texts give them.

Imports nothing of the package, so that every module (the command-line parsers included) may import it.
"""
from __future__ import annotations


def names(registry) -> str:
    """The names of a registry (``ENGINES``, ``TASKS``, ...) for a help text: ``"a, b or c"``."""
    keys = [str(key) for key in registry]
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " or " + keys[-1]
