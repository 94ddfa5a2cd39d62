"""Firing-rate regularisation toward a target rate (Bellec et al. 2020, Methods, "Firing rate regularization").

A penalty ``R`` on the spikes ``z[k,t]`` (T, B, n_k) of every spiking hidden node, added to the task loss:

* :class:`RateRegularization` (Bellec's "simple" form, the one their experiments use): the rate of neuron ``j`` is
  its spike count per step over the window and the batch, ``f_j = mean_{t,b} z[j,t,b]``, and

      R = strength * sum_j (f_j - f0)**2                                     (f0 = target_rate, per step)

* :class:`RunningRateRegularization` (Bellec's "online" form, written for a single agent): the batch's sequences
  are laid end to end as one agent's timeline of ``B T`` steps (example ``b`` after ``b - 1``), ``r_j[u]`` is the
  running mean of neuron ``j``'s spikes over the first ``u + 1`` steps of that timeline, and

      R = strength * sum_b sum_j mean_t (r_j[b, t] - f0)**2

  (summed over the batch, as in their code: the same ``strength`` weighs this form ``B`` times more).

Rates are per time step: with 1 ms steps, 10 Hz is ``target_rate=0.01``. Bellec's task loss is a mean over the
recall window while this library's ``E`` sums ``E_t`` over steps (:mod:`deepeprop.losses`), so their ``reg_f``
corresponds to ``strength = reg_f * (number of loss steps)``, or to a mask of ``1 / (number of loss steps)``.

**Each rule differentiates R through its own surrogate** (:mod:`deepeprop.engines.paths`): ``bptt`` and ``rtrl``
exactly; ``eprop`` locally, ``dR/dz[j,t]`` times neuron ``j``'s own eligibility trace, as Bellec et al. do
(``paths.LOCAL``); ``deep_eprop`` through its deep traces (``paths.DEEP``); ``immediate`` through this step's
derivative only. The gradient is computed by :func:`rate_gradients`: one forward run of the hidden nodes over the
window with the rule's paths, and one backward pass (memory ``O(T B sum_k n_k d_k)``, cost about a BPTT pass of the
hidden nodes). It is the same for every evaluation of a rule, so it is added per window (one update per sequence,
or per ``update_every`` chunk); a constant-memory streaming form is not built.
"""
from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .engines.base import theta_grads_to_model
from .engines.paths import Paths, hidden_outputs
from .engines.surrogate import model_grads_to_theta
from .validation import check_number, fail


class RateRegularization(eqx.Module):
    """Bellec's "simple" firing-rate penalty ``strength * sum_j (f_j - target_rate)**2`` (module docstring).

    Args:
        strength: the penalty's weight (``>= 0``; Bellec et al.'s ``reg_f``, see the module docstring for the
            scale of the task loss).
        target_rate: the target rate per time step, in ``[0, 1]`` (``0.01``: 10 Hz with 1 ms steps).
    """

    strength: float = eqx.field(static=True)
    target_rate: float = eqx.field(static=True)
    name: ClassVar[str] = "simple"

    def __init__(self, strength: float = 1.0, target_rate: float = 0.01):
        self.strength = float(check_number("strength", strength, minimum=0.0))
        self.target_rate = float(check_number("target_rate", target_rate, minimum=0.0, maximum=1.0))

    def rates(self, spikes):
        """Per node, each neuron's spikes per step over the window and the batch: (T, B, n) -> (n,)."""
        return tuple(jnp.mean(z, axis=(0, 1)) for z in spikes)

    def penalty(self, spikes) -> jax.Array:
        """``R`` of the spikes of the regularised nodes (a tuple of (T, B, n_k)): a scalar."""
        return self.strength * sum(jnp.sum((f - self.target_rate) ** 2) for f in self.rates(spikes))


class RunningRateRegularization(RateRegularization):
    """Bellec's "online" firing-rate penalty: the running rate of one agent's timeline (module docstring)."""

    name: ClassVar[str] = "running"

    def penalty(self, spikes) -> jax.Array:
        total = 0.0
        for z in spikes:  # (T, B, n)
            T, B, n = z.shape
            timeline = jnp.swapaxes(z, 0, 1).reshape(B * T, n)  # example b after example b - 1
            running = jnp.cumsum(timeline, axis=0) / jnp.arange(1, B * T + 1, dtype=z.dtype)[:, None]  # (B T, n)
            per_example = jnp.mean(((running - self.target_rate) ** 2).reshape(B, T, n), axis=1)  # (B, n)
            total = total + jnp.sum(per_example)
        return self.strength * total


REGULARIZATIONS = {cls.name: cls for cls in (RateRegularization, RunningRateRegularization)}


def make_regularization(regularization, **options):
    """A firing-rate regulariser from its name (``"simple"``, ``"running"``: :data:`REGULARIZATIONS`) and options
    (``strength``, ``target_rate``), or the object itself; ``None`` stays ``None`` (no regularisation)."""
    if regularization is None or isinstance(regularization, RateRegularization):
        if options:
            raise ValueError(f"regularisation options {sorted(options)} apply to a regulariser given by name")
        return regularization
    if not isinstance(regularization, str) or regularization not in REGULARIZATIONS:
        raise fail("regularization", f"one of {tuple(REGULARIZATIONS)}, a RateRegularization object or None",
                   regularization)
    return REGULARIZATIONS[regularization](**options)


def regularised_nodes(model) -> tuple[int, ...]:
    """The positions of the hidden nodes whose neurons spike: the nodes the penalty acts on."""
    return tuple(k for k, node in enumerate(model.nodes[:-1]) if node.neuron.spiking)


def check_regularization(regularization, model, engine) -> None:
    """Refuse a regulariser for a model with no spiking hidden node (its penalty would be zero), or with an engine
    whose rule declares no paths for a loss on the hidden outputs."""
    if regularization is None:
        return
    if engine.regularization_paths is None:
        raise ValueError(f"regularization: method {engine.name!r} declares no regularization_paths (how its rule "
                         "differentiates a loss on the hidden outputs; deepeprop.engines.paths), so it cannot add a "
                         "firing-rate penalty")
    if not regularised_nodes(model):
        raise ValueError("regularization: firing-rate regularisation acts on spiking hidden nodes, and this model "
                         "has none (its hidden neurons are " +
                         ", ".join(sorted({type(n.neuron).__name__ for n in model.nodes[:-1]})) + ")")


def rate_gradients(regularization: RateRegularization, engine, model, s0, inputs):
    """``R`` of one window and its gradient by ``engine``'s rule, from the network state ``s0`` (held fixed).

    Args:
        regularization: the penalty.
        engine: the engine whose rule differentiates it (its ``regularization_paths``, on ``engine.prepare(model)``:
            the reset path as the rule resolves it).
        model: the network.
        s0: the network state at the window's start (per node (B, n_k, d_k)).
        inputs: (T, B, n_in).

    Returns:
        ``(R, rates, grads)``: the penalty, each regularised node's per-neuron rate ((n_k,) each), and ``dR/dtheta``
        with the structure ``equinox.filter_grad`` gives for ``model`` (zeros for the readout and the fixed
        constants).
    """
    paths: Paths = engine.regularization_paths
    nodes = regularised_nodes(model)
    s0 = jax.lax.stop_gradient(tuple(s0))

    @eqx.filter_value_and_grad(has_aux=True)
    def total(m):
        zs = hidden_outputs(m, inputs, s0, paths)
        spikes = tuple(zs[k] for k in nodes)
        return regularization.penalty(spikes), regularization.rates(jax.lax.stop_gradient(spikes))

    prepared = engine.prepare(model)
    (value, rates), grads = total(prepared)
    return value, rates, theta_grads_to_model(model, model_grads_to_theta(prepared, grads))


def add_trees(a, b):
    """``a + b`` leaf by leaf (two gradients with the same structure)."""
    return jax.tree_util.tree_map(lambda x, y: x + y, a, b)
