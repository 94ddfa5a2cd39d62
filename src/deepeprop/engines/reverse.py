"""The reverse evaluation of a rule as an engine (docs/math.md, "Rules and their evaluations").

:class:`Reversed` wraps a rule whose ``evaluations`` include :class:`~deepeprop.engines.evaluation.Reverse`:
its ``sequence`` is the rule's ``reverse`` (one backward pass through the rule's surrogate over the window),
everything else is the rule's. Like BPTT it is not online: memory grows with the window's length, there is no
single ``step``, and a window starts its traces at zero (a truncation at the window's start).
"""
from __future__ import annotations

from .base import Engine
from .costs import cost
from .evaluation import Reverse


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

    def check_model(self, model):
        self.rule.check_model(model)

    def cost(self, model, batch, T=1):
        return cost(self.rule, model, batch, T, reverse=True)

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
