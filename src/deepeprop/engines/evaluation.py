"""How a rule's gradient is evaluated, apart from the rule (docs/math.md, "Rules and their evaluations").

Every engine is a *rule*: which paths of the exact gradient it keeps, i.e. reverse-mode differentiation of a
surrogate network. The same sum can be computed three ways, with the same result (up to rounding):

* :class:`Step`: forward, one time step at a time: traces carried in time, memory constant in ``T``, weights
  may change at every step. The reference form of every online rule (``engine.step``).
* :class:`Chunked` ``(size)``: forward across chunks of ``size`` steps, reverse inside each chunk
  (Schmidhuber 1992's hybrid): the traces are touched once per chunk; memory constant in ``T`` (the chunk's
  records grow with ``size``). Online: chunks never straddle a weight update.
* :class:`Reverse`: one backward pass through the rule's surrogate over the whole window: memory grows with
  ``T``, cost about BPTT's. Not online: it starts the window's traces at zero (as BPTT truncates at the
  window's start), so it equals the online rule only when the weights change once per sequence.

An engine declares the evaluations it has in ``evaluations`` (a tuple of these classes). The API takes an
evaluation object or its name (``"step"``, ``"chunked"``, ``"chunked:32"``, ``"reverse"``); ``None`` keeps the
engine's own (``engine.evaluation``: the fastest online one it has).
"""
from __future__ import annotations

from typing import ClassVar

import equinox as eqx

from ..validation import check_int


class Evaluation(eqx.Module):
    """Base class of the evaluations (module docstring)."""

    name: ClassVar[str] = ""
    online: ClassVar[bool] = True  # memory constant in T, weights may change within a sequence

    def __str__(self) -> str:
        return self.name


class Step(Evaluation):
    """Forward, one time step at a time (every rule's reference form)."""

    name = "step"


class Chunked(Evaluation):
    """Forward across chunks of ``size`` steps, reverse inside each chunk.

    Args:
        size: steps per chunk (``>= 1``); ``size=1`` is :class:`Step`.
    """

    name = "chunked"
    size: int = eqx.field(static=True, default=64)

    def __post_init__(self):
        check_int("size", self.size, minimum=1)

    def __str__(self) -> str:
        return f"chunked:{self.size}"


class Reverse(Evaluation):
    """One backward pass through the rule's surrogate over the whole window (not online)."""

    name = "reverse"
    online = False


EVALUATIONS = {cls.name: cls for cls in (Step, Chunked, Reverse)}


def make_evaluation(evaluation) -> Evaluation | None:
    """An :class:`Evaluation` from an object, a name (``"chunked:32"`` gives the size) or ``None`` (kept)."""
    if evaluation is None or isinstance(evaluation, Evaluation):
        return evaluation
    if isinstance(evaluation, str):
        name, _, size = evaluation.partition(":")
        if name in EVALUATIONS:
            if not size:
                return EVALUATIONS[name]()
            if name == "chunked" and size.isdigit() and int(size) >= 1:
                return Chunked(int(size))
    raise ValueError(f"evaluation must be an Evaluation object (dp.Step(), dp.Chunked(64), dp.Reverse()) or one "
                     f"of 'step', 'chunked', 'chunked:K' (K a positive int), 'reverse'; got {evaluation!r}")
