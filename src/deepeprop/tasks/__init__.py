"""Benchmark tasks: seeded batch generators with their loss and metric.

``TASKS`` maps each task name to its class; ``get_task(name, **options)``
builds one. See ``base.py`` for the conventions shared by all tasks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..registry import Registry, document
from .adding import Adding
from .base import Batch, Task
from .copy import Copy
from .cue_accumulation import CueAccumulation
from .delayed_copy import DelayedCopy
from .digits import Digits
from .mnist1d import MNIST1D
from .pattern_generation import PatternGeneration
from .shd import SHD

# the tasks by name; TASKS.register(MyTask) adds one (deepeprop.registry)
TASKS: Registry = Registry("task", {
    cls.name: cls for cls in (CueAccumulation, PatternGeneration, DelayedCopy, Copy, Adding, Digits, MNIST1D, SHD)
})


def get_task(name: str, **options: Any) -> Task:
    """The task ``name`` with the given options (the others at their defaults).

    Args:
        name: a task name from :data:`TASKS` (``"digits"``, ``"mnist1d"``, ``"cue_accumulation"``, ...).
        **options: the task's options (its dataclass fields), e.g. ``read="pixels"`` for ``"digits"``.

    Returns:
        A :class:`Task`: ``task.batch(seed, batch_size, split)`` gives a :class:`Batch` of ``(T, B, ...)`` arrays.

    Raises:
        ValueError: an unknown name or option, or an invalid option value.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid names: {sorted(TASKS)}")
    cls = TASKS[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for task {name!r}; valid options: {valid}")
    return cls(**options)


document(get_task, TASKS=TASKS)


__all__ = [
    "TASKS",
    "Adding",
    "Batch",
    "Copy",
    "CueAccumulation",
    "DelayedCopy",
    "Digits",
    "MNIST1D",
    "PatternGeneration",
    "SHD",
    "Task",
    "get_task",
]
