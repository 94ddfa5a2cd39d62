"""Property-based tests of the public boundaries (Hypothesis): ``DeepRNN``, ``gradients``,
``OnlineLearner.train_sequence``, ``make_engine`` and the tasks' ``batch``.

Each example breaks at most one argument (or none) with a random bad value, the others random and valid.
Valid: it runs, with the documented shapes and finite results (no NaN in gradients or weights). Broken: it
raises ``ValueError`` naming the argument; any other exception fails the test. Networks are tiny, batch shapes
fixed per boundary so that each compiled function is reused across examples; examples are derandomised.

``DEEPEPROP_TALLY=path.json`` writes the count of examples per boundary and outcome (with ``-n 0``).
"""
from __future__ import annotations

import collections
import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deepeprop as dp
from deepeprop.engines.eprop import FEEDBACKS
from deepeprop.builders import READOUTS
from deepeprop.network import RECURRENCES
from deepeprop.tasks import TASKS, get_task

FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
PER_CASE = settings(FAST, max_examples=10)  # tests parametrised by the argument they break
TALLY = collections.Counter()


@pytest.fixture(autouse=True, scope="module")
def _write_tally():
    yield
    if os.environ.get("DEEPEPROP_TALLY"):
        with open(os.environ["DEEPEPROP_TALLY"], "w") as handle:
            json.dump({" / ".join(key): n for key, n in sorted(TALLY.items())}, handle, indent=1)


def expect(boundary: str, broken: str | None, names, call):
    """Run ``call``: with nothing broken it must return; with ``broken`` it must raise ValueError naming one of
    ``names``. Returns the result (None when refused)."""
    if broken is None:
        result = call()
        TALLY[(boundary, "valid", "ran")] += 1
        return result
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert any(name in message for name in names), (broken, message)
    TALLY[(boundary, "bad " + broken, "ValueError naming it")] += 1
    return None


def not_in(choices):
    return st.text(max_size=6).filter(lambda s: s not in choices)


BAD_COUNT = st.one_of(st.integers(max_value=0), st.just(True), st.floats(), st.text(max_size=3), st.none(),
                      st.just([2]))
BAD_POSITIVE = st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf")), st.just("1.0"),
                         st.just(True), st.none())


# ----------------------------------------------------------------------------- DeepRNN
DEEPRNN_ARGS = ["n_in", "n_out", "hidden", "neuron", "recurrence", "readout", "dtype", "tau_m", "tau_out", "input_gain",
                "self_connections", "skip", "neuron_options"]


@pytest.mark.parametrize("broken", [None] + DEEPRNN_ARGS)
@PER_CASE
@given(data=st.data())
def test_deeprnn(broken, data):
    depth = data.draw(st.integers(1, 3))
    valid = dict(n_in=data.draw(st.integers(1, 3)), hidden=data.draw(st.lists(st.integers(1, 3), min_size=depth,
                                                                                max_size=depth)),
                 n_out=data.draw(st.integers(1, 3)),
                 neuron=data.draw(st.sampled_from(["leaky", "lif", "alif", "gelu", "tanh"])),
                 recurrence=data.draw(st.sampled_from(RECURRENCES)), readout=data.draw(st.sampled_from(READOUTS)),
                 dtype=data.draw(st.sampled_from(["float32", "float64", jnp.float32, jnp.float64])),
                 tau_m=data.draw(st.one_of(st.none(), st.floats(1.0, 50.0))), tau_out=data.draw(st.floats(1.0, 50.0)),
                 input_gain=data.draw(st.floats(0.1, 3.0)), self_connections=data.draw(st.booleans()),
                 skip=data.draw(st.sampled_from([[], [(0, 2)]])), neuron_options=None)
    bad = {
        "n_in": BAD_COUNT, "n_out": BAD_COUNT,
        "hidden": st.one_of(st.just([]), st.just(3), st.text(max_size=3),
                            st.lists(st.sampled_from([0, -1, 1.5, "a", None, True]), min_size=1, max_size=3)),
        "neuron": st.one_of(not_in(dp.NEURONS), st.integers(), st.just(["lif"] * (depth + 1))),
        "recurrence": st.one_of(not_in(RECURRENCES), st.none(), st.integers()),
        "readout": st.one_of(not_in(READOUTS), st.none(), st.integers()),
        "dtype": st.sampled_from(["bogus", "float16", "int32", jnp.int32, jnp.complex64, None, 3]),
        "tau_m": st.one_of(BAD_POSITIVE.filter(lambda v: v is not None), st.just(jnp.ones(7)), st.just("abc"),
                           st.just([1.0] * (depth + 1))),  # (None is the default)
        "tau_out": BAD_POSITIVE, "input_gain": BAD_POSITIVE,
        "self_connections": st.sampled_from(["yes", 1, None, 0.5]),
        "skip": st.sampled_from([[(2, 1)], [(0, 99)], "0:2", [(0,)], [(1, 1)], [("a", 2)], 5]),
        "neuron_options": st.sampled_from([1, "threshold=1", {"bogus": 1}, [1, 2], {"threshold": -1.0}]),
    }
    assert sorted(bad) == sorted(DEEPRNN_ARGS)
    args = dict(valid)
    if broken:
        args[broken] = data.draw(bad[broken])
    names = {"neuron_options": ("neuron_options", "threshold"), "tau_m": ("tau_m",), "hidden": ("hidden",)}
    kwargs = {k: v for k, v in args.items() if k not in ("n_in", "hidden", "n_out")}
    model = expect("DeepRNN", broken, names.get(broken, (broken,)),
                   lambda: dp.DeepRNN(args["n_in"], args["hidden"], args["n_out"], key=jax.random.PRNGKey(0),
                                      **kwargs))
    if broken is None:
        assert isinstance(model, dp.Network)
        assert model.hidden_sizes == tuple(valid["hidden"])
        assert model.n_in == valid["n_in"] and model.n_out == valid["n_out"]
        assert model.dtype == jnp.dtype(valid["dtype"])


# ----------------------------------------------------------------------------- gradients and train_sequence
N_IN, N_OUT, T, B = 3, 2, 4, 2
MODEL = dp.DeepRNN(N_IN, [3], N_OUT, neuron="lif", recurrence="dense", readout="leaky", key=jax.random.PRNGKey(1),
                   dtype=jnp.float64, input_gain=2.0, tau_m=5.0, tau_out=4.0)


@st.composite
def batches(draw, loss, broken):
    """``(inputs, targets, mask)`` with ``broken`` (one of them, or None) given a bad value."""
    finite = st.floats(-5.0, 5.0)
    inputs = np.asarray(draw(st.lists(finite, min_size=T * B * N_IN, max_size=T * B * N_IN))).reshape(T, B, N_IN)
    inputs = inputs.astype(draw(st.sampled_from([np.float64, np.float32, np.int32, np.bool_])))
    if loss == "cross_entropy":
        targets = np.asarray(draw(st.lists(st.integers(-1, N_OUT - 1), min_size=T * B, max_size=T * B)),
                             np.int32).reshape(T, B)
    else:
        targets = np.asarray(draw(st.lists(finite, min_size=T * B * N_OUT, max_size=T * B * N_OUT))).reshape(
            T, B, N_OUT)
    mask = draw(st.one_of(st.none(), st.just(np.ones((T, B))),
                          st.lists(st.floats(0.0, 2.0), min_size=T * B, max_size=T * B).map(
                              lambda v: np.asarray(v).reshape(T, B))))
    where = (draw(st.integers(0, T - 1)), draw(st.integers(0, B - 1)))
    if broken == "inputs":
        inputs = draw(st.sampled_from([
            np.where(np.arange(inputs.size).reshape(inputs.shape) == where[0], np.nan, inputs.astype(float)),
            np.full(inputs.shape, np.inf), inputs[0], inputs[..., :2], inputs[:0], inputs[:, :0],
            np.full(inputs.shape, "x"), inputs.astype(np.complex64), np.asarray([[1.0, 2.0], [3.0]], dtype=object),
            inputs[None]]))
    elif broken == "targets":
        if loss == "cross_entropy":
            targets = draw(st.sampled_from([targets.copy(), targets[:, :1], targets.astype(np.float64),
                                            np.full(targets.shape, "a")]))
            if targets.dtype == np.int32 and targets.shape == (T, B):
                targets[where] = draw(st.one_of(st.integers(N_OUT, 100), st.integers(-100, -2)))
        else:
            targets = draw(st.sampled_from([targets.copy(), targets[..., :1], targets[0], np.full(targets.shape, "a")]))
            if targets.shape == (T, B, N_OUT) and targets.dtype.kind == "f":
                targets[where] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif broken == "mask":
        mask = draw(st.sampled_from([-np.ones((T, B)), np.ones((T,)), np.full((T, B), np.nan), np.ones((B, T)),
                                     np.full((T, B), "1")]))
    return inputs, targets, mask


def finite_tree(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(eqx.filter(tree,
                                                                                                  eqx.is_inexact_array)))


@pytest.mark.parametrize("broken", [None, "inputs", "targets", "mask", "method", "option", "loss", "model"])
@PER_CASE
@given(data=st.data(), method=st.sampled_from(["eprop", "deep_eprop"]))
def test_gradients(broken, data, method):
    loss = data.draw(st.sampled_from(["mse", "cross_entropy"]))
    inputs, targets, mask = data.draw(batches(loss, broken if broken in ("inputs", "targets", "mask") else None))
    model, options = MODEL, {}
    if broken in ("method", "option", "loss", "model"):  # break the call instead of the batch
        if broken == "method":
            method = "backprop"
        elif broken == "option":
            options = {"feedback": "sideways"} if method == "eprop" else {"feedbak": 1}
        elif broken == "loss":
            loss = "l1"
        else:
            model = object()
    names = {"option": ("feedback", "feedbak"), "targets": ("targets", "labels")}.get(broken, (broken,))
    grads = expect("gradients", broken, names,
                   lambda: dp.gradients(model, inputs, targets, method=method, loss=loss, mask=mask, **options))
    if broken is None:
        assert finite_tree(grads)
        assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(eqx.filter(MODEL, eqx.is_array))


LEARNERS = {k: dp.OnlineLearner("eprop", optax.sgd(0.05), loss="cross_entropy", update_every=k) for k in (None, 2)}
STATES = {k: learner.init(MODEL) for k, learner in LEARNERS.items()}


@pytest.mark.parametrize("broken", [None, "inputs", "targets", "mask"])
@settings(FAST, max_examples=12)
@given(data=st.data(), update_every=st.sampled_from([None, 2]))
def test_train_sequence(broken, data, update_every):
    inputs, targets, mask = data.draw(batches("cross_entropy", broken))
    learner, state = LEARNERS[update_every], STATES[update_every]
    names = {"targets": ("targets", "labels")}.get(broken, (broken,))
    out = expect("train_sequence", broken, names, lambda: learner.train_sequence(state, inputs, targets, mask))
    if broken is None:
        new, losses, ys = out
        assert losses.shape == (T,) and ys.shape == (T, B, N_OUT)
        assert bool(jnp.all(jnp.isfinite(losses))) and finite_tree(new.model)  # never a silent NaN in the weights


# ----------------------------------------------------------------------------- make_engine
OPTIONS = {  # engine -> option -> whether a value is valid
    "bptt": {}, "deep_eprop_factored": {},
    "eprop": {"feedback": lambda v: isinstance(v, str) and v in FEEDBACKS,
              "feedback_seed": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "factorize": lambda v: v is None or isinstance(v, bool),
              "readout_filter": lambda v: isinstance(v, bool)},
    "deep_eprop": {"factorize": lambda v: isinstance(v, bool)},
    "rtrl": {"max_trace_elements": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1},
}


@settings(FAST, max_examples=100)
@given(st.one_of(st.sampled_from(sorted(OPTIONS)), st.sampled_from(["backprop", "", "EPROP", 3, None])),
       st.dictionaries(st.sampled_from(["feedback", "feedback_seed", "factorize", "readout_filter",
                                        "max_trace_elements", "bogus", "exact", "name"]),
                       st.one_of(st.booleans(), st.integers(-2, 3), st.text(max_size=4), st.none(),
                                 st.floats(allow_nan=True), st.sampled_from(FEEDBACKS)), max_size=3))
def test_make_engine(method, options):
    if method not in OPTIONS:
        broken, names = "method", ("method",)
    else:
        bad = [k for k, v in options.items() if k not in OPTIONS[method] or not OPTIONS[method][k](v)]
        broken, names = ("option", bad) if bad else (None, ())
    engine = expect("make_engine", broken, names, lambda: dp.make_engine(method, **options))
    if broken is None:
        assert isinstance(engine, dp.ENGINES[method])
        assert all(getattr(engine, k) == v for k, v in options.items())


# ----------------------------------------------------------------------------- tasks' batch
TASK_NAMES = sorted(set(TASKS) - {"shd", "mnist1d"})  # shd reads local files; mnist1d is tested in test_tasks


@pytest.mark.parametrize("broken", [None, "seed", "batch_size", "split", "options"])
@PER_CASE
@given(name=st.sampled_from(TASK_NAMES), seed=st.integers(0, 10 ** 6), batch_size=st.integers(1, 3),
       split=st.sampled_from(["train", "test"]), data=st.data())
def test_task_batch(broken, name, seed, batch_size, split, data):
    options = {}
    if broken == "seed":
        seed = data.draw(st.one_of(st.integers(max_value=-1), st.floats(), st.just("1"), st.none(), st.just(True)))
    elif broken == "batch_size":
        batch_size = data.draw(st.one_of(st.integers(max_value=0), st.just(2.0), st.just("2"), st.none(),
                                         st.just(True)))
    elif broken == "split":
        split = data.draw(st.one_of(st.sampled_from(["val", "TRAIN", ""]), st.none(), st.integers()))
    elif broken == "options":
        options = {"bogus_option": 1}
    names = {"options": ("bogus_option",)}.get(broken, (broken,))
    batch = expect("task.batch", broken, names, lambda: get_task(name, **options).batch(seed, batch_size, split))
    if broken is None:
        task = get_task(name)
        assert batch.inputs.shape == (task.n_steps, batch_size, task.n_in) and batch.inputs.dtype == jnp.float32
        assert batch.mask.shape == (task.n_steps, batch_size) and bool(jnp.all(batch.mask >= 0))
        assert bool(jnp.all(jnp.isfinite(batch.inputs)))
        if task.loss == "cross_entropy":
            assert batch.targets.shape == (task.n_steps, batch_size) and batch.targets.dtype == jnp.int32
            assert bool(jnp.all((batch.targets >= -1) & (batch.targets < task.n_out)))
        else:
            assert batch.targets.shape == (task.n_steps, batch_size, task.n_out)
            assert bool(jnp.all(jnp.isfinite(batch.targets)))
