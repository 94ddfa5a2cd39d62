"""The interface every gradient engine implements.

An engine turns a network's steps into gradients. Online engines are used step by step:

    state = engine.init(model, batch)                                   # EngineState
    state, (y_t, loss_t) = engine.step(model, state, x_t, target_t, mask_t, loss)   # pure, scan-able
    grads = engine.grads(model, state)                                  # filter_grad's structure

``engine.sequence`` runs a chunk of steps (``lax.scan`` of ``step``) and is what
:func:`deepeprop.gradients` and the online learner call; BPTT implements ``sequence`` as autodiff through
the unrolled chunk (truncated at the chunk's start) and has no single ``step``. Accumulated gradients
carry on across chunks until :meth:`Engine.reset_grads`; network state and traces carry on regardless.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..jacobians import LayerStep, linearize
from ..network import Layer, Network
from .evaluation import Chunked, Evaluation, Step


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


def source_outputs(steps: Sequence[LayerStep], x: Array, node: Layer) -> list[Array]:
    """The outputs ``z[j,t]`` of ``node``'s sources (the input ``x`` for source 0), in its edges' order."""
    return [x if source == 0 else steps[source - 1].z for source in node.sources]


def edge_matrix(model: Network, k: int, slot: int) -> Array:
    """The matrix of incoming edge ``slot`` of node position ``k``: its weight, or the identity (a residual edge)."""
    projection = model.nodes[k].inputs[slot]
    width = model.nodes[k].size * model.nodes[k].currents
    return projection.matrix(width, model.dtype)


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


class Engine(eqx.Module):
    """Base class: see the module docstring. Subclasses set ``name`` and implement the methods."""

    name: ClassVar[str] = ""
    online: ClassVar[bool] = True
    # Declared capabilities (the tests pick engines from the registry by these):
    exact: ClassVar[bool] = False  # equals BPTT on every network
    exact_elementwise: ClassVar[bool] = False  # equals BPTT when every node's recurrence is element-wise
    # The evaluations this rule has (deepeprop.engines.evaluation): Step, Chunked, Reverse classes.
    evaluations: ClassVar[tuple[type[Evaluation], ...]] = (Step,)

    @property
    def evaluation(self) -> Evaluation:
        """How :meth:`sequence` evaluates the rule: ``Chunked(chunk_size)`` for an engine with a
        ``chunk_size > 1``, else ``Step()`` (BPTT: ``Reverse()``)."""
        size = getattr(self, "chunk_size", 1)
        return Chunked(size) if size > 1 else Step()

    def prepare(self, model: Network) -> Network:
        """``model`` as this rule differentiates it (the identity here; a rule may fix per-model choices)."""
        return model

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
