"""Online learning: an engine + an optax optimizer, weights updated per sequence or every ``k`` steps.

    learner = OnlineLearner(make_engine("deep_eprop"), optax.adam(1e-3), loss="cross_entropy", update_every=10)
    state = learner.init(model)                                   # LearnerState(model, opt_state, feedback)
    state, losses, ys = learner.train_sequence(state, inputs, targets, mask)   # one jitted call

``update_every=None``: the engine runs the whole sequence, then one optimizer update.
``update_every=k``: truly online. The sequence is cut into chunks of ``k`` steps; after each chunk the
engine's accumulated gradient is applied (``engine.grads`` -> optax -> ``eqx.apply_updates``) and reset
(``engine.reset_grads``), while the network state and the engine's traces carry on into the next chunk
with the *new* weights, as in RTRL. All chunks of a sequence run in ONE compiled function: a
``lax.scan`` over the ``T // k`` full chunks with the parameters and the optimizer state in its carry,
then, when ``k`` does not divide ``T``, one final shorter chunk of ``T % k`` steps (compiled once with
the rest; its update is applied like the others). For ``bptt`` a chunk is a truncation window: its
``sequence`` starts the backward pass at the chunk's first step (truncated BPTT over windows of ``k``).

Only the synaptic parameters (the edge weights ``U``, ``W``, ``b`` of every node and of the readout) and the
neuron parameters a model declares ``trainable`` (an LRU's ``nu``, ``theta``) are trained; the neurons'
fixed constants (decays, thresholds) are outside the optimizer's parameter tree and never change
(``eqx.partition`` by :func:`trainable_spec`).

Adaptive feedback (Bellec et al. 2020, "adaptive e-prop"): with ``eprop``'s ``feedback="adaptive"`` the
engine sends the readout error down through feedback matrices ``B_out`` (shapes of ``W_out``'s edges) that start
random; after every update the learner moves ``B_out`` by the same step as ``W_out`` and applies the same
weight decay to both (``X <- X - feedback_decay * X``), so that ``B_out`` aligns with ``W_out``. The
feedback matrices live in :class:`LearnerState` and carry over from sequence to sequence; the rest of the
engine state (network state, traces, gradient accumulators) starts afresh with every sequence.

Memory: the online engines' state does not grow with ``T``; the compiled step keeps only the readout
``ys`` (T, B, n_out) and the per-step losses (T,) as outputs.
"""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .engines import Engine, Reversed, make_engine, with_evaluation
from .losses import make_loss
from .network import Network
from .batch_checks import check_batch, check_model
from .regularization import add_trees, check_regularization, make_regularization, rate_gradients
from .validation import check_int, check_number, checked, fail


class LearnerState(eqx.Module):
    """Everything that carries from one training sequence to the next.

    Args:
        model: the network (:class:`~deepeprop.Network`) with its current weights.
        opt_state: the optax state of the trainable parameters.
        feedback: e-prop's adaptive feedback matrices (per node, per edge; readout last), else ``None``.
    """

    model: Network
    opt_state: Any  # optax state of the trainable parameters
    feedback: Any  # eprop's adaptive feedback matrices (per node, per edge; readout last), else None


def trainable_spec(model: Network):
    """A pytree of bools with ``model``'s structure: True at the trained ``U``, ``W``, ``b`` arrays only."""
    spec = jax.tree_util.tree_map(lambda _: False, model)

    def where(m):
        out = []
        for node in m.nodes:
            out += [p.weight for p in node.inputs if p.weight is not None] + [node.b]
            out += ([] if node.W is None else [node.W])
            out += [getattr(node.neuron, name) for name in node.trained_neuron_parameters]
        return out

    return eqx.tree_at(where, spec, replace=[True] * len(where(model)))


class OnlineLearner(eqx.Module):
    """An engine and an optax optimizer (see the module docstring).

    Args:
        engine: an engine object (``dp.DeepEProp()``) or its name (``"deep_eprop"``).
        optimizer: an ``optax.GradientTransformation`` (e.g. ``optax.adam(1e-3)``).
        loss: a loss object (``dp.MSE()``, ``dp.CrossEntropy()``) or its name, ``"mse"`` or ``"cross_entropy"``.
        update_every: ``None`` (one update per sequence) or a positive int ``k`` (an update every ``k``
            time steps, during the sequence).
        feedback_decay: with adaptive feedback, the weight decay applied to ``W_out`` and ``B_out`` at
            every update (``X <- X - feedback_decay * X``); ignored otherwise.
        evaluation: how the engine evaluates its rule (``"step"``, ``"chunked"``, ``"chunked:K"``,
            ``"reverse"`` or an evaluation object; ``None`` keeps the engine's own). ``"reverse"`` needs
            ``update_every=None``: it starts every window's traces at zero, so with updates during the sequence
            it would not compute the online rule (it is refused; use ``"chunked"``, which keeps the traces).
        regularization: an optional firing-rate penalty (:class:`~deepeprop.RateRegularization`,
            :class:`~deepeprop.RunningRateRegularization`, or ``"simple"`` / ``"running"``), per update window (the
            sequence, or each ``update_every`` chunk), differentiated by the engine's rule
            (:mod:`deepeprop.regularization`; its gradient needs the window's hidden states: memory ``O(window)``).
    """

    engine: Engine
    optimizer: optax.GradientTransformation = eqx.field(static=True)
    loss: Any
    update_every: int | None = eqx.field(static=True, default=None)
    feedback_decay: float = eqx.field(static=True, default=0.0)
    regularization: Any = None

    def __init__(self, engine: Engine | str, optimizer, *, loss="mse", update_every: int | None = None,
                 feedback_decay: float = 0.0, evaluation=None, regularization=None):
        if isinstance(engine, str):  # a name is shorthand for make_engine(name)
            engine = make_engine(engine)
        if not isinstance(engine, Engine):
            raise fail("engine", "a deepeprop Engine object or an engine name", engine)
        engine = with_evaluation(engine, evaluation)
        if isinstance(engine, Reversed) and update_every is not None:
            raise ValueError(f"evaluation 'reverse' of {engine.name!r} needs update_every=None (one update per "
                             f"sequence), got update_every={update_every}: a reverse window starts its traces at "
                             "zero, so updates within the sequence would truncate the rule; use evaluation "
                             "'chunked' (traces carried, memory constant in T) for online updates")
        if not isinstance(optimizer, optax.GradientTransformation):
            raise fail("optimizer", "an optax.GradientTransformation (e.g. optax.adam(1e-3))", optimizer)
        if update_every is not None:
            update_every = check_int("update_every", update_every, minimum=1)
        feedback_decay = check_number("feedback_decay", feedback_decay, minimum=0.0, maximum=1.0,
                                      exclusive_maximum=True)
        self.engine = engine
        self.optimizer = optimizer
        self.loss = make_loss(loss)
        self.update_every = update_every
        self.feedback_decay = float(feedback_decay)
        self.regularization = make_regularization(regularization)
        if self.regularization is not None and engine.regularization_paths is None:
            check_regularization(self.regularization, None, engine)  # raises: the rule declares no paths

    # ------------------------------------------------------------------ state
    def init(self, model: Network) -> LearnerState:
        """The optimizer state of ``model``'s trainable parameters, and the initial feedback matrices."""
        check_model(model)
        self.engine.check_model(model)
        check_regularization(self.regularization, model, self.engine)
        params = eqx.filter(model, trainable_spec(model))
        feedback = None
        if self.engine.adaptive_feedback:
            feedback = self.engine.init(model, 1).traces.feedback
        return LearnerState(model=model, opt_state=self.optimizer.init(params), feedback=feedback)

    # ------------------------------------------------------------------ one update
    def apply_grads(self, model: Network, opt_state, feedback, grads):
        """One optimizer update from engine gradients (model structure) -> ``(model, opt_state, feedback)``."""
        spec = trainable_spec(model)
        params = eqx.filter(model, spec)
        updates, opt_state = self.optimizer.update(eqx.filter(grads, spec), opt_state, params)
        new_model = eqx.apply_updates(model, updates)
        if feedback is not None:  # every readout edge: B moves with W_out, both decay
            decay = self.feedback_decay
            trained = [slot for slot, p in enumerate(model.readout.inputs) if p.trainable]
            steps = {slot: updates.readout.inputs[slot].weight for slot in trained}  # W_out's update, per edge
            w_out = [new_model.readout.inputs[slot].weight - decay * model.readout.inputs[slot].weight
                     for slot in trained]
            new_model = eqx.tree_at(lambda m: [m.readout.inputs[slot].weight for slot in trained], new_model, w_out)
            b_out = tuple(b + steps[slot] - decay * b if slot in steps else b for slot, b in enumerate(feedback[-1]))
            feedback = feedback[:-1] + (b_out,)
        return new_model, opt_state, feedback

    def _with_feedback(self, estate, feedback):
        if feedback is None:
            return estate
        return eqx.tree_at(lambda s: s.traces.feedback, estate, feedback)

    def _chunk(self, model, opt_state, feedback, estate, inputs, targets, mask):
        """Run one chunk, update, reset the accumulated gradients. Traces and network state carry on."""
        estate = self._with_feedback(estate, feedback)
        s0 = estate.net
        estate, ys, losses = self.engine.sequence(model, estate, inputs, targets, mask, self.loss)
        grads = self.engine.grads(model, estate)
        if self.regularization is not None:  # the window's firing-rate penalty, through the rule's paths
            grads = add_trees(grads, rate_gradients(self.regularization, self.engine, model, s0, inputs)[2])
        model, opt_state, feedback = self.apply_grads(model, opt_state, feedback, grads)
        estate = self.engine.reset_grads(model, estate)
        return model, opt_state, feedback, estate, ys, losses

    def sequence_update(self, state: LearnerState, inputs, targets, mask):
        """Train on one batch of sequences (traceable, unchecked; :meth:`train_sequence` checks the batch and jits it).

        ``inputs`` (T, B, n_in), ``targets`` (T, B, n_out) or (T, B), ``mask`` (T, B)
        -> ``(state, losses (T,), ys (T, B, n_out))``.
        """
        with checked():  # unchecked by contract: the engine's entry points add no checks inside its loop
            return self._sequence_update(state, inputs, targets, mask)

    def _sequence_update(self, state: LearnerState, inputs, targets, mask):
        T, B = inputs.shape[0], inputs.shape[1]
        model, opt_state, feedback = state.model, state.opt_state, state.feedback
        estate = self.engine.init(model, B)
        k = self.update_every
        if k is None or k >= T:
            model, opt_state, feedback, estate, ys, losses = self._chunk(
                model, opt_state, feedback, estate, inputs, targets, mask)
            return LearnerState(model, opt_state, feedback), losses, ys

        n_full, rest = divmod(T, k)
        head = n_full * k

        def chunks(a):  # (T, ...) -> (n_full, k, ...)
            return a[:head].reshape((n_full, k) + a.shape[1:])

        dynamic, static = eqx.partition(model, eqx.is_array)

        def body(carry, xs):
            dyn, opt_s, fb, es = carry
            m = eqx.combine(dyn, static)
            m, opt_s, fb, es, ys_c, losses_c = self._chunk(m, opt_s, fb, es, *xs)
            return (eqx.filter(m, eqx.is_array), opt_s, fb, es), (ys_c, losses_c)

        (dynamic, opt_state, feedback, estate), (ys, losses) = jax.lax.scan(
            body, (dynamic, opt_state, feedback, estate), (chunks(inputs), chunks(targets), chunks(mask)))
        model = eqx.combine(dynamic, static)
        ys = ys.reshape((head,) + ys.shape[2:])  # (head, B, n_out)
        losses = losses.reshape((head,))
        if rest:  # the final shorter chunk
            model, opt_state, feedback, estate, ys_r, losses_r = self._chunk(
                model, opt_state, feedback, estate, inputs[head:], targets[head:], mask[head:])
            ys = jnp.concatenate([ys, ys_r], axis=0)
            losses = jnp.concatenate([losses, losses_r], axis=0)
        return LearnerState(model, opt_state, feedback), losses, ys

    def train_sequence(self, state: LearnerState, inputs, targets, mask=None):
        """Check the batch, then run the jitted :meth:`sequence_update`: ``-> (state, losses (T,), ys (T, B, n_out))``.

        ``inputs`` (T, B, n_in) finite; ``targets`` (T, B, n_out) finite, or (T, B) integer labels in
        ``[0, n_out)`` or ``-1``; ``mask`` (T, B) ``>= 0`` (``None``: ones). A bad batch raises ``ValueError``
        naming the argument and the weights are not updated. May be called inside a user's ``jax.jit`` /
        ``eqx.filter_jit``: shapes and dtypes are checked at trace time, values with ``equinox.error_if``
        (:mod:`deepeprop.validation`): the compiled call raises instead of returning updated weights.
        """
        if not isinstance(state, LearnerState):
            raise fail("state", "the LearnerState of learner.init(model)", state)
        inputs, targets, mask = check_batch(state.model, inputs, targets, self.loss, mask)
        return self._train_sequence(state, inputs, targets, mask)

    @eqx.filter_jit
    def _train_sequence(self, state: LearnerState, inputs, targets, mask):
        return self.sequence_update(state, inputs, targets, mask)


def is_finite_tree(tree) -> jax.Array:
    """A scalar bool: every inexact array leaf of ``tree`` is finite (traceable)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)
