"""The reverse evaluation of a rule as an engine (docs/math.md, "Rules and their evaluations").

:class:`Reversed` wraps a rule whose ``evaluations`` include :class:`~deepeprop.engines.evaluation.Reverse`:
its ``sequence`` is the rule's ``reverse`` (one backward pass through the rule's surrogate over the window),
everything else is the rule's. Like BPTT it is not online: memory grows with the window's length, there is no
single ``step``, and a window starts its traces at zero (a truncation at the window's start).

:func:`with_evaluation` sets any engine to one of its evaluations (here, beside :class:`Reversed`, which it builds).
"""
from __future__ import annotations

import dataclasses

from .base import Engine
from .evaluation import Chunked, Reverse, make_evaluation


class Reversed(Engine):
    """``rule`` evaluated in reverse (module docstring). Built by ``with_evaluation(rule, "reverse")``."""

    rule: Engine
    online = False

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def evaluation(self):
        return Reverse()

    @property
    def regularization_paths(self):
        return self.rule.regularization_paths

    @property
    def adaptive_feedback(self) -> bool:
        return self.rule.adaptive_feedback

    def check_model(self, model):
        self.rule.check_model(model)

    def plan(self, model):
        return self.rule.plan(model)

    def cost(self, model, batch, T=1):
        return self.rule.plan(model).cost(model, batch, T, reverse=True)

    def prepare(self, model):
        return self.rule.prepare(model)

    @property
    def reset_choice(self) -> bool:
        return self.rule.reset_choice

    def init(self, model, batch):
        return self.rule.init(model, batch)

    def step(self, model, state, x, target, mask, loss):
        raise TypeError(f"{self.rule.name} evaluated in reverse is not online: it has no single step; use "
                        "sequence() on a whole sequence, or the 'step' or 'chunked' evaluation")

    def grads(self, model, state):
        return self.rule.grads(model, state)

    def reset_grads(self, model, state):
        return self.rule.reset_grads(model, state)

    def sequence(self, model, state, inputs, targets, mask, loss):
        return self.rule.reverse(model, state, inputs, targets, mask, loss)


def with_evaluation(engine, evaluation):
    """``engine`` set to compute its gradient by ``evaluation`` (an object, a name, or ``None``: unchanged).

    ``Step`` and ``Chunked(K)`` set an engine's ``chunk_size`` (1 and ``K``); ``Reverse`` wraps the engine in
    :class:`Reversed`, whose ``sequence`` is the rule's ``reverse``.

    Raises:
        ValueError: the engine does not have this evaluation (the message lists those it has).
    """
    evaluation = make_evaluation(evaluation)
    if evaluation is None:
        return engine
    rule = engine.rule if isinstance(engine, Reversed) else engine
    kinds = type(rule).evaluations
    if type(evaluation) not in kinds:
        have = ", ".join(cls.name for cls in kinds)
        raise ValueError(f"method {rule.name!r} has no {evaluation.name!r} evaluation; it has: {have}")
    if isinstance(evaluation, Reverse):
        return rule if rule.evaluation == evaluation else Reversed(rule)
    if not hasattr(rule, "chunk_size"):
        return rule
    size = evaluation.size if isinstance(evaluation, Chunked) else 1
    return dataclasses.replace(rule, chunk_size=size)
