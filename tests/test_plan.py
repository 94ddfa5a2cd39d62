"""Each engine's static plan (deepeprop.engines.plan): computed once per engine and model structure, read by the
engine, and the source of its cost."""
from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import deepeprop as dp
from deepeprop.engines import plan as plans
from helpers import make_model


def every_engine_and_evaluation():
    for name, cls in dp.ENGINES.items():
        for evaluation in cls.evaluations:
            yield pytest.param(name, evaluation, id=f"{name}-{evaluation.name}")


@pytest.mark.parametrize("name, evaluation", list(every_engine_and_evaluation()))
def test_plan_is_memoised_per_structure_and_gives_the_cost(name, evaluation):
    model = make_model("lif", "dense", depth=2, detach_reset=True, self_connections=False, per_neuron_tau=False)
    engine = dp.with_evaluation(dp.make_engine(name), evaluation())
    plan = engine.plan(model)
    assert isinstance(plan, plans.Plan)
    assert engine.plan(model) is plan  # computed once
    heavier = eqx.tree_at(lambda m: m.nodes[0].b, model, model.nodes[0].b + 1.0)
    assert engine.plan(heavier) is plan  # values do not enter a plan
    wider = make_model("lif", "dense", depth=2, width=6, detach_reset=True, self_connections=False,
                       per_neuron_tau=False)
    assert engine.plan(wider) is not engine.plan(model)
    elements, flops = engine.cost(model, 4, 50)
    assert (elements, flops) == plan.cost(engine.prepare(model), 4, 50, reverse=evaluation is dp.Reverse)
    assert flops > 0 and elements > 0


def test_plans_follow_the_structure():
    factorisable = make_model("lif", "dense", depth=2, detach_reset=True, self_connections=False,
                              per_neuron_tau=False)
    exact_reset = make_model("alif", "dense", depth=2)
    eprop = dp.EProp()
    assert eprop.plan(factorisable).layouts == ("factorised", "factorised")
    assert eprop.plan(exact_reset).layouts == ("components", "components")
    assert dp.EProp(chunk_size=1).plan(exact_reset).layouts == ("general", "general")
    assert dp.EProp(factorize=False).plan(factorisable).layouts == ("scalar", "scalar")
    assert dp.DeepEProp(chunk_size=1).plan(factorisable).factorised_hops[0] == (2,)  # node 1 -> node 2 (ids)
    assert dp.DeepEProp().plan(factorisable).factorised_hops[0] == (2,)  # the hybrid factorises the same pairs
    assert dp.DeepEProp(factorize=False).plan(factorisable).factorised_hops[0] == ()
    factored = dp.FactoredDeepEProp().plan(factorisable)
    assert factored.prefixes[0] == ((2,), (2, 3))  # node 2, then the leaky readout (node 3) above it
    assert factored.batch_major == (True, True)


def test_the_engine_reads_its_plan():
    """init lays the traces out as the plan says: a plan changed by hand changes the traces' shapes."""
    model = make_model("lif", "dense", depth=1, detach_reset=True, self_connections=False, per_neuron_tau=False)
    engine = dp.EProp()
    state = engine.init(model, 3)
    assert state.traces.eligibility[0].shape == (3, model.nodes[0].row_size)  # factorised: (B, P)
    from deepeprop.engines import base

    prepared = engine.prepare(model)
    base._PLANS[base._structure_key(engine, prepared)] = dataclasses.replace(engine.plan(model), layouts=("scalar",))
    try:
        state = engine.init(model, 3)
        assert state.traces.eligibility[0].shape == (3, model.nodes[0].size, model.nodes[0].row_size)
    finally:
        base._PLANS.clear()


def test_plan_under_jit_is_static():
    model = make_model("alif", "diagonal", depth=2)
    engine = dp.DeepEProp()

    @jax.jit
    def decided(m):
        assert isinstance(engine.plan(m), plans.DeepEPropPlan)  # decided at trace time, from structure only
        return jnp.sum(m.nodes[0].b)

    assert jnp.isfinite(decided(model))
