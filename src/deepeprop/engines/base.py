"""The interface every gradient engine implements.

An engine turns a network's steps into gradients. Online engines are used step by step:

    state = engine.init(model, batch)                                   # EngineState
    state, (y_t, loss_t) = engine.step(model, state, x_t, target_t, mask_t, loss)   # pure, scan-able
    grads = engine.grads(model, state)                                  # filter_grad's structure

``engine.sequence`` runs a chunk of steps (``lax.scan`` of ``step``) and is what
:func:`deepeprop.gradients` and the online learner call; BPTT implements ``sequence`` as autodiff through
the unrolled chunk (truncated at the chunk's start) and has no single ``step``. Accumulated gradients
carry on across chunks until :meth:`Engine.reset_grads`; network state and traces carry on regardless.

Every public method that takes ``model`` (``init``, ``step``, ``sequence``, ``reverse``, ``grads``,
``reset_grads``, ``check_model`` and the static capability queries such as ``factorised_layers``) is an
*entry point*: :class:`Engine` wraps it once, for every subclass (``__init_subclass__``), so that it

* checks its arguments in the shared wording (:mod:`deepeprop.validation`): the model, the batch size, the
  shapes and dtypes of ``x``/``target``/``mask`` or of a sequence against the model and the state, their
  values (``equinox.error_if`` under ``jit``), and takes a loss by name (``"mse"``) as well as an object. Only
  the outermost call checks: calls an engine makes to itself (``sequence`` running ``step`` inside its scan)
  and the library's own loops (:func:`deepeprop.gradients`, :class:`~deepeprop.OnlineLearner`, which check the
  whole sequence once) add no work per step;
* runs on :meth:`Engine.prepare` ``(model)``: the model as the rule differentiates it (the reset path of the
  neurons that leave it to the rule resolved to the rule's choice), so that ``engine.step`` users get the same
  rule as :func:`deepeprop.gradients`. ``grads`` returns the caller's model's pytree structure.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, ClassVar, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .. import batch_checks, validation
from ..jacobians import LayerStep, linearize
from ..losses import make_loss
from ..network import Node, Network
from ..neurons import has_reset_choice, with_detach_reset
from .evaluation import Chunked, Evaluation, Reverse, Step
from .paths import Paths
from .plan import Plan


class EngineState(eqx.Module):
    """Everything an engine carries between steps: none of it grows with sequence length.

    Args:
        net: the network state, per node ``(B, n_k, d_k)``, the readout last.
        traces: the engine's eligibility or influence traces (engine-specific).
        grads: the engine's accumulator of ``dE/dtheta`` (engine-specific; :meth:`Engine.grads` reads it).
    """

    net: tuple  # per layer (B, n_l, d_l), readout last
    traces: Any  # engine-specific
    grads: Any  # engine-specific accumulator of dE/dtheta


def source_outputs(steps: Sequence[LayerStep], x: Array, node: Node) -> list[Array]:
    """The outputs ``z[j,t]`` of ``node``'s sources (the input ``x`` for source 0), in its edges' order.
    ``steps`` holds one entry per node, ids ``1..N`` at positions ``0..N-1``."""
    return [x if source == 0 else steps[source - 1].z for source in node.sources]


def forward_linearized(model: Network, net_state: tuple, x: Array) -> list[LayerStep]:
    """One network step with every node's local derivatives, in topological order (readout last)."""
    steps: list[LayerStep] = []
    for node, s_prev in zip(model.nodes, net_state):
        steps.append(linearize(node, s_prev, source_outputs(steps, x, node)))
    return steps


def zero_theta_grads(model: Network) -> tuple:
    """Per node (readout last), zeros shaped like ``theta_k`` (n_k, P_k)."""
    return tuple(jnp.zeros((node.size, node.row_size), model.dtype) for node in model.nodes)


def theta_grads_to_model(model: Network, theta_grads: tuple):
    """Per-node ``(n_k, P_k)`` gradients -> a pytree with the structure ``equinox.filter_grad`` gives.

    Fixed constants (time constants) get zeros, as ``filter_grad`` gives them; a masked ``W_jj`` gets zero.
    """
    grads = jax.tree_util.tree_map(jnp.zeros_like, eqx.filter(model, eqx.is_inexact_array))
    for index, theta in enumerate(theta_grads):
        node = model.nodes[index]
        weights, W, b, neuron = node.split_theta(theta)

        def where(g, i=index):
            n = g.nodes[i]
            return (tuple(p.weight for p in n.inputs if p.weight is not None) + ((n.W,) if n.W is not None else ())
                    + (n.b,) + tuple(getattr(n.neuron, name) for name in n.trained_neuron_parameters))

        values = tuple(w for w in weights if w is not None) + ((W,) if W is not None else ()) + (b,) + neuron
        grads = eqx.tree_at(where, grads, values)
    return grads


def resolve_reset(model: Network, detach: bool, *, given: bool | None = None, rule: str = "the engine") -> Network:
    """``model`` with every neuron that leaves its reset path to the rule (``detach_reset=None``) set to ``detach``.

    A neuron's explicit ``True`` / ``False`` is the model's choice and is kept. ``given`` is the engine's explicit
    option (``None``: the rule's default): when it disagrees with a neuron's explicit choice the call is refused
    (``ValueError`` naming the node), since one of the two would be silently ignored.
    """
    changed = {}
    for index, node in enumerate(model.nodes):
        neuron = node.neuron
        if not has_reset_choice(neuron):
            continue
        if neuron.detach_reset is None:
            changed[index] = with_detach_reset(neuron, detach)
        elif given is not None and bool(neuron.detach_reset) != bool(given):
            raise ValueError(
                f"detach_reset is given twice and disagrees: node {index + 1}'s {type(neuron).__name__} has "
                f"detach_reset={neuron.detach_reset} (the model's choice), {rule} was given detach_reset={given}; "
                "give it once: build the neuron with detach_reset=None (the default: the rule decides) or leave "
                "out the engine's detach_reset option")
    if not changed:
        return model
    return eqx.tree_at(lambda m: [m.nodes[i].neuron for i in changed], model, [changed[i] for i in changed])


def _model_structure_like(tree, model: Network):
    """``tree`` (a pytree shaped like ``model``'s inexact arrays, possibly with other static fields, e.g. a resolved
    ``detach_reset``) with the pytree structure of ``model`` itself (same leaves)."""
    structure = jax.tree_util.tree_structure(eqx.filter(model, eqx.is_inexact_array))
    leaves = jax.tree_util.tree_leaves(tree)
    if structure.num_leaves != len(leaves):
        return tree
    return jax.tree_util.tree_unflatten(structure, leaves)


def _state_batch(state) -> int | None:
    net = getattr(state, "net", None)
    if isinstance(net, tuple) and net and hasattr(net[0], "shape") and len(net[0].shape) == 3:
        return int(net[0].shape[0])
    return None


def _check_entry(name: str, arguments: dict) -> None:
    """The checks of entry point ``name`` on its bound ``arguments`` (converted in place)."""
    model = arguments["model"]
    batch_checks.check_model(model)
    if name == "init":
        arguments["batch"] = validation.check_int("batch", arguments["batch"], minimum=1)
        return
    if "state" in arguments and not isinstance(arguments["state"], EngineState):
        raise validation.fail("state", "an EngineState (from engine.init(model, batch))", arguments["state"])
    batch = _state_batch(arguments.get("state"))
    if name == "step":
        arguments["x"], arguments["target"], arguments["mask"] = batch_checks.check_step(
            model, batch, arguments["x"], arguments["target"], arguments["loss"], arguments["mask"])
    elif name in ("sequence", "reverse"):
        # the value checks of a traced sequence go on the state's network part, not on a copy of the sequence
        with validation.deferred_value_checks() as pending:
            inputs, targets, mask = batch_checks.check_batch(model, arguments["inputs"], arguments["targets"],
                                                           arguments["loss"], arguments["mask"])
        if batch is not None and inputs.shape[1] != batch:
            raise ValueError(f"inputs must have shape (T, B, n_in) with B = {batch} (the state's batch, from "
                             f"engine.init(model, {batch})), got {inputs.shape}")
        arguments["inputs"], arguments["targets"], arguments["mask"] = inputs, targets, mask
        if pending:
            state = arguments["state"]
            arguments["state"] = eqx.tree_at(lambda s: s.net, state,
                                             validation.attach_value_checks(state.net, pending))


def _entry_point(name: str, method):
    """``method`` (an engine method taking ``model`` first) as an entry point (module docstring)."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def entry(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        if "loss" in arguments and arguments["loss"] is not None:
            arguments["loss"] = make_loss(arguments["loss"])
        model = arguments["model"]
        if validation.checks_done():  # a call from inside an engine or a loop that checked its batch
            arguments["model"] = self.prepare(model)
            out = method(**arguments)
        else:
            _check_entry(name, arguments)
            arguments["model"] = self.prepare(model)
            with validation.checked():
                out = method(**arguments)
        if name == "grads" and arguments["model"] is not model:
            out = _model_structure_like(out, model)
        return out

    entry.entry_point = True
    return entry


def _wrap_entry_points(cls) -> None:
    """Make every public method of ``cls`` (its own, not inherited) whose first argument is ``model`` an entry point."""
    for attribute, value in list(vars(cls).items()):
        if (attribute.startswith("_") or attribute == "prepare" or not inspect.isfunction(value)
                or getattr(value, "entry_point", False)):
            continue
        parameters = list(inspect.signature(value).parameters)
        if len(parameters) >= 2 and parameters[1] == "model":
            setattr(cls, attribute, _entry_point(attribute, value))


class Engine(eqx.Module):
    """Base class: see the module docstring. Subclasses set ``name`` and implement the methods.

    The reset choice (docs/concepts/networks.md, "The reset: a choice of the rule"): a rule class declares
    ``reset_default`` (``True``: the rule drops the reset path, as the e-prop family does; ``False``, the
    default here: it keeps it, as ``bptt`` and ``rtrl`` do) and a field ``detach_reset: bool | None = None``
    (``None``: ``reset_default``). :meth:`prepare` resolves the neurons that leave the choice to the rule.
    """

    name: ClassVar[str] = ""
    online: ClassVar[bool] = True
    # Declared capabilities (the tests pick engines from the registry by these):
    exact: ClassVar[bool] = False  # equals BPTT on every network
    exact_elementwise: ClassVar[bool] = False  # equals BPTT when every node's recurrence is element-wise
    # The evaluations this rule has (deepeprop.engines.evaluation): Step, Chunked, Reverse classes.
    evaluations: ClassVar[tuple[type[Evaluation], ...]] = (Step,)
    # The rule's reset choice for neurons that leave it to the rule (detach_reset=None): True drops the reset
    # path (the e-prop family), False keeps it (the network as it runs: bptt, rtrl, and plain autodiff).
    reset_default: ClassVar[bool] = False
    # The derivative paths through which the rule differentiates a loss on the hidden outputs (firing-rate
    # regularisation; deepeprop.engines.paths): None for a rule that declares none (regularisation refused).
    regularization_paths: ClassVar[Paths | None] = None
    # The feedback choices of the learning signal the rule takes (its ``feedback`` option): () for none.
    feedbacks: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _wrap_entry_points(cls)

    def __check_init__(self):
        validation.check_bool("detach_reset", getattr(self, "detach_reset", None), optional=True)

    @property
    def adaptive_feedback(self) -> bool:
        """Whether the learner carries this rule's feedback matrices and moves them with ``W_out``
        (``feedback="adaptive"``): the one place the learner and the trainer ask."""
        return "adaptive" in self.feedbacks and getattr(self, "feedback", None) == "adaptive"

    @property
    def reset_choice(self) -> bool:
        """The reset choice this engine applies to undecided neurons: its ``detach_reset`` option, else the rule's
        ``reset_default``."""
        given = getattr(self, "detach_reset", None)
        return type(self).reset_default if given is None else bool(given)

    @property
    def evaluation(self) -> Evaluation:
        """How :meth:`sequence` evaluates the rule: ``Chunked(chunk_size)`` for an engine with a
        ``chunk_size > 1``, else ``Step()`` (BPTT: ``Reverse()``)."""
        size = getattr(self, "chunk_size", 1)
        return Chunked(size) if size > 1 else Step()

    def plan(self, model: Network) -> Plan:
        """The engine's static decisions for ``model`` (:mod:`deepeprop.engines.plan`): computed once per engine and
        model structure (sizes, classes, static options, shapes of the constants, graph), then read by ``init``,
        the steps, the chunk contractions and :meth:`cost`."""
        key = _structure_key(self, model)
        if key is None:
            return self._make_plan(model)
        if key not in _PLANS:
            if len(_PLANS) >= _MAX_PLANS:
                _PLANS.clear()
            _PLANS[key] = self._make_plan(model)
        return _PLANS[key]

    def _make_plan(self, model: Network) -> Plan:
        """The plan of ``model`` (computed by :meth:`plan`); an engine with structural decisions overrides it."""
        return Plan()

    def cost(self, model: Network, batch: int, T: int = 1) -> tuple[int, int]:
        """``(trace_elements, flops_per_step)`` of this engine and evaluation on ``model`` (its docstring's formula,
        from :meth:`plan`): the numbers carried between steps and the work per step."""
        return self.plan(model).cost(model, batch, T, reverse=isinstance(self.evaluation, Reverse))

    def prepare(self, model: Network) -> Network:
        """``model`` as this rule differentiates it: every neuron with ``detach_reset=None`` set to
        :attr:`reset_choice` (:func:`resolve_reset`; a neuron's explicit choice is kept, and refused when the
        engine was given the other one explicitly). Every entry point runs on it (module docstring)."""
        if not isinstance(model, Network):
            return model
        return resolve_reset(model, self.reset_choice, given=getattr(self, "detach_reset", None),
                             rule=f"method {self.name!r}")

    def reverse(self, model: Network, state: EngineState, inputs: Array, targets: Array, mask: Array, loss):
        """The rule's reverse evaluation over a window (``Reverse``): as :meth:`sequence`, but one backward pass
        through the rule's surrogate; the window's traces start at zero and are returned at zero."""
        raise NotImplementedError(f"{self.name} has no reverse evaluation")

    def check_model(self, model: Network) -> None:
        """Raise ``ValueError`` if this engine cannot compute gradients for ``model``."""

    def init(self, model: Network, batch: int) -> EngineState:
        raise NotImplementedError

    def step(self, model: Network, state: EngineState, x: Array, target: Array, mask: Array, loss):
        """One time step: ``x`` (B, n_in), ``target`` (B, n_out) or (B,), ``mask`` (B,) ->
        ``(state, (y, loss_t))``."""
        raise NotImplementedError

    def grads(self, model: Network, state: EngineState):
        return theta_grads_to_model(model, state.grads)

    def reset_grads(self, model: Network, state: EngineState) -> EngineState:
        return eqx.tree_at(lambda s: s.grads, state, jax.tree_util.tree_map(jnp.zeros_like, state.grads))

    def sequence(self, model: Network, state: EngineState, inputs: Array, targets: Array, mask: Array, loss):
        """Run ``inputs`` (T, B, n_in) with ``targets`` and ``mask`` (T, B).

        Returns ``(state, ys (T, B, n_out), losses (T,))``."""
        def body(carry, xs):
            x, target, m = xs
            carry, out = self.step(model, carry, x, target, m, loss)
            return carry, out

        state, (ys, losses) = jax.lax.scan(body, state, (inputs, targets, mask))
        return state, ys, losses


_PLANS: dict = {}  # (engine, model structure) -> Plan
_MAX_PLANS = 512


def _structure_key(engine: Engine, model) -> tuple | None:
    """What an engine's plan may depend on: the engine (its static fields) and the model's structure with the
    shapes and dtypes of its arrays; ``None`` when something in it cannot be hashed (the plan is then not kept)."""
    leaves, treedef = jax.tree_util.tree_flatten(model)
    shapes = tuple((getattr(x, "shape", None), str(getattr(x, "dtype", type(x).__name__))) for x in leaves)
    key = (engine, treedef, shapes)
    try:
        hash(key)
    except TypeError:
        return None
    return key


_wrap_entry_points(Engine)
