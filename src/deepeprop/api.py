"""The one entry point: :func:`gradients` (and :func:`loss_and_gradients`).

Both may be called inside a user's ``jax.jit`` / ``equinox.filter_jit``: shapes, dtypes and names are
checked at trace time, values (finite inputs, label range) with ``equinox.error_if``
(:mod:`deepeprop.validation`).
"""
from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .engines import ENGINES, make_engine, with_evaluation
from .losses import make_loss
from .network import Network
from .registry import document
from .batch_checks import check_batch
from .regularization import add_trees, check_regularization, make_regularization, rate_gradients
from .validation import checked


@eqx.filter_jit
def _run(engine, loss_fn, regularization, model, inputs, targets, mask):
    with checked():  # the batch was checked once, before: the engine's entry points add nothing inside
        state = engine.init(model, inputs.shape[1])
        s0 = state.net
        state, _, losses = engine.sequence(model, state, inputs, targets, mask, loss_fn)
        value, grads = jnp.sum(losses), engine.grads(model, state)
        if regularization is not None:
            penalty, _, extra = rate_gradients(regularization, engine, model, s0, inputs)
            value, grads = value + penalty, add_trees(grads, extra)
        return value, grads


def loss_and_gradients(model: Network, inputs, targets, *, method, loss="mse", mask=None, evaluation=None,
                       regularization=None, **options):
    """Like :func:`gradients`, also returning the loss ``E`` of the sequence.

    Args:
        model, inputs, targets, method, loss, mask, evaluation, regularization, **options: as for :func:`gradients`.

    Returns:
        ``(E, grads)``: the scalar loss ``E = sum_t E_t`` (plus the penalty ``R`` with a ``regularization``) and the
        gradients (``equinox.filter_grad``'s structure).
    """
    engine = with_evaluation(make_engine(method, **options), evaluation)
    regularization = make_regularization(regularization)
    inputs, targets, mask = check_batch(model, inputs, targets, loss, mask)
    engine.check_model(model)
    check_regularization(regularization, model, engine)
    return _run(engine, make_loss(loss), regularization, model, inputs, targets, mask)


def gradients(model: Network, inputs, targets, *, method, loss="mse", mask=None, evaluation=None,
              regularization=None, **options):
    """Gradients of ``E = sum_t E_t`` (each ``E_t`` averaged over the batch) computed by one engine.

    Args:
        model: a :class:`~deepeprop.Network` (from :func:`~deepeprop.DeepRNN` or :func:`~deepeprop.build_network`).
        inputs: ``(T, B, n_in)``.
        targets: ``(T, B, n_out)`` for ``loss="mse"``; ``(T, B)`` integer labels for ``"cross_entropy"``
            with ``-1`` meaning no loss at that step.
        method: an engine object (``dp.DeepEProp()``, ``dp.EProp(feedback="random")``) or its name: ``"bptt"``,
            ``"rtrl"``, ``"eprop"``, ``"deep_eprop"``, ``"deep_eprop_factored"``, ``"immediate"``
            (:data:`deepeprop.ENGINES`).
        loss: a loss object (``dp.MSE()``, ``dp.CrossEntropy()``) or its name, ``"mse"`` or ``"cross_entropy"``.
        mask: optional ``(T, B)`` weights of the per-step loss (1 where it counts).
        evaluation: how the rule's gradient is computed (docs/math.md, "Rules and their evaluations"): an
            evaluation object (``dp.Step()``, ``dp.Chunked(64)``, ``dp.Reverse()``) or its name (``"step"``,
            ``"chunked"``, ``"chunked:32"``, ``"reverse"``); ``None`` (default) keeps the engine's own, the
            fastest online one it has. Every evaluation a rule has gives the same gradient (up to rounding).
        regularization: an optional firing-rate penalty on the spiking hidden nodes
            (:class:`~deepeprop.RateRegularization`, :class:`~deepeprop.RunningRateRegularization`, or the names
            ``"simple"``, ``"running"`` with their defaults), differentiated by the rule through its own paths
            (:mod:`deepeprop.regularization`) and added to the gradient.
        **options: the options of an engine given by name (e.g. ``feedback="random"`` for ``eprop``).

    Returns:
        A pytree with the structure ``equinox.filter_grad`` gives for ``model`` (zeros for the fixed
        constants). ``method="bptt"`` equals ``equinox.filter_grad`` of the same loss.
    """
    return loss_and_gradients(model, inputs, targets, method=method, loss=loss, mask=mask, evaluation=evaluation,
                              regularization=regularization, **options)[1]


document(gradients, ENGINES=ENGINES)
