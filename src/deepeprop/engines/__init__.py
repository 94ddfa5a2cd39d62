"""Gradient engines, one module each, behind one interface (:mod:`deepeprop.engines.base`)."""
from __future__ import annotations

import dataclasses

from ..registry import Registry, document
from .base import Engine, EngineState
from .bptt import BPTT
from .deep_eprop import DeepEProp
from .deep_eprop_factored import FactoredDeepEProp
from .eprop import EProp
from .evaluation import EVALUATIONS, Chunked, Evaluation, Reverse, Step, make_evaluation
from .immediate import Immediate
from .reverse import Reversed, with_evaluation
from .rtrl import RTRL

# the engines by name; ENGINES.register(MyEngine) adds one (deepeprop.registry)
ENGINES = Registry("engine", {cls.name: cls for cls in (BPTT, RTRL, EProp, DeepEProp, FactoredDeepEProp,
                                                          Immediate)})


def make_engine(method, **options) -> Engine:
    """The engine called ``method`` with its ``options``, or ``method`` itself when it is an engine object.

    Args:
        method: an engine name from :data:`ENGINES` (``"bptt"``, ``"rtrl"``, ``"eprop"``, ``"deep_eprop"``,
            ``"deep_eprop_factored"``, ``"immediate"``) or an :class:`Engine` object (then no options).
        **options: the engine's constructor options, e.g. ``feedback="random"`` for ``"eprop"``.

    Returns:
        An :class:`Engine`.

    Raises:
        ValueError: an unknown name, an option the engine does not take, or options with an engine object.
    """
    if isinstance(method, Engine):
        if options:
            raise ValueError(f"engine options {sorted(options)} apply to an engine given by name; this one is an "
                             f"object already built ({type(method).__name__}): give them to its constructor")
        return method
    if not isinstance(method, str) or method not in ENGINES:
        raise ValueError(f"method must be one of {tuple(ENGINES)} or an Engine object, got {method!r}")
    cls = ENGINES[method]
    accepted = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]  # ClassVars excluded
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) if accepted else "none"
        raise ValueError(f"method {method!r} does not take option(s) {unknown}; its options: {valid}")
    return cls(**options)


document(make_engine, ENGINES=ENGINES)


__all__ = ["Evaluation", "Step", "Chunked", "Reverse", "EVALUATIONS", "make_evaluation", "with_evaluation",
           "Reversed", "BPTT", "RTRL", "EProp", "DeepEProp", "FactoredDeepEProp", "Immediate", "Engine", "EngineState",
           "ENGINES", "make_engine"]
