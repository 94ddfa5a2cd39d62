"""Tests of the task data generators (deepeprop.tasks)."""

from __future__ import annotations

import math
import os
import random

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepeprop.tasks import TASKS, Batch, Task, get_task
from deepeprop.tasks.base import holdout_split, nmse, sequence_accuracy, step_accuracy
from deepeprop.tasks.cue_accumulation import BACKGROUND, BELLEC2020, LEFT, RECALL, RIGHT
from deepeprop.tasks.digits import load_digits_arrays
from deepeprop.tasks.shd import N_CHANNELS

# Short versions of every task, so that the whole file runs in seconds.
SHORT_CUE = dict(n_cues=3, cue_steps=10, gap_steps=5, delay_steps=20, recall_steps=10)
SHORT = {
    "cue_accumulation": SHORT_CUE,
    "pattern_generation": dict(n_in=20, n_out=2, n_steps=200),
    "delayed_copy": dict(n_symbols=4, seq_len=3, symbol_steps=2, delay=5),
    "copy": dict(pattern_length=3, n_symbols=4, delay=2),
    "adding": dict(n_steps=20),
    "digits": dict(read="rows", label_steps=2),
    "mnist1d": dict(num_samples=500),
    "shd": dict(n_steps=50, dt=0.01),  # + path of the synthetic file
}
SEEDED = [name for name in SHORT if name != "pattern_generation"]  # the batch depends on the seed


# --------------------------------------------------------------------------------------
# Synthetic SHD files
# --------------------------------------------------------------------------------------


def write_shd(path, times, units, labels, time_dtype=np.float64):
    """An HDF5 file in the layout of shd_train.h5 / shd_test.h5."""
    with h5py.File(path, "w") as f:
        spikes = f.create_group("spikes")
        t = spikes.create_dataset("times", (len(times),), dtype=h5py.vlen_dtype(np.dtype(time_dtype)))
        u = spikes.create_dataset("units", (len(units),), dtype=h5py.vlen_dtype(np.dtype(np.uint16)))
        for i, (ti, ui) in enumerate(zip(times, units)):
            t[i] = np.asarray(ti, dtype=time_dtype)
            u[i] = np.asarray(ui, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint8))


def random_shd_examples(rng, n_examples, dt=0.01, max_steps=70):
    """Random examples whose spike times lie inside bins (away from bin edges)."""
    times, units = [], []
    for _ in range(n_examples):
        n = rng.integers(0, 400)
        steps = rng.integers(0, max_steps, size=n)
        times.append((steps + rng.uniform(0.05, 0.95, size=n)) * dt)
        units.append(rng.integers(0, N_CHANNELS, size=n))
    return times, units, rng.integers(0, 20, size=n_examples)


def reference_binning(times, units, n_steps, dt, counts=False):
    """Slow, obvious binning of one example -> (T, 700)."""
    out = np.zeros((n_steps, N_CHANNELS))
    for t, u in zip(times, units):
        step = math.floor(t / dt)
        if 0 <= step < n_steps:
            out[step, u] += 1
    return out if counts else np.minimum(out, 1)


@pytest.fixture(scope="module")
def shd_files(tmp_path_factory):
    rng = np.random.default_rng(123)
    root = tmp_path_factory.mktemp("shd")
    train, test = root / "shd_train.h5", root / "shd_test.h5"
    train_data, test_data = random_shd_examples(rng, 30), random_shd_examples(rng, 12)
    write_shd(train, *train_data, time_dtype=np.float16)
    write_shd(test, *test_data)
    return {"train": str(train), "test": str(test), "train_data": train_data, "test_data": test_data}


@pytest.fixture
def make_task(shd_files):
    def make(name, **overrides):
        options = dict(SHORT[name])
        if name == "shd":
            options["path"] = shd_files["train"]
        options.update(overrides)
        return get_task(name, **options)

    return make


def perfect_outputs(task: Task, batch: Batch) -> jax.Array:
    """The readout of a perfect network: one-hot logits of the labels, or the targets."""
    if task.loss == "mse":
        return batch.targets
    return jax.nn.one_hot(batch.targets, task.n_out) * batch.mask[..., None]  # label -1 -> all zero


# --------------------------------------------------------------------------------------
# Every task
# --------------------------------------------------------------------------------------


def test_registry_covers_every_task():
    assert set(TASKS) == set(SHORT)
    for name, cls in TASKS.items():
        assert cls.name == name and issubclass(cls, Task)


@pytest.mark.parametrize("name", sorted(SHORT))
def test_shapes_dtypes_and_attributes(make_task, name):
    task = make_task(name)
    batch = task.batch(seed=0, batch_size=5)
    T, B = task.n_steps, 5
    assert isinstance(batch, Batch)
    assert batch.inputs.shape == (T, B, task.n_in) and batch.inputs.dtype == jnp.float32
    assert batch.mask.shape == (T, B) and batch.mask.dtype == jnp.float32
    assert task.loss in ("mse", "cross_entropy")
    if task.loss == "mse":
        assert batch.targets.shape == (T, B, task.n_out) and batch.targets.dtype == jnp.float32
        assert task.metric_name == "nmse" and not task.higher_is_better and task.chance == 1.0
    else:
        assert batch.targets.shape == (T, B) and batch.targets.dtype == jnp.int32
        assert task.metric_name == "accuracy" and task.higher_is_better
        assert task.chance == pytest.approx(1.0 / task.n_out)
    assert np.all(np.isfinite(np.asarray(batch.inputs)))
    # shapes depend only on the options and batch_size
    other = task.batch(seed=7, batch_size=5, split="test")
    assert jax.tree_util.tree_map(jnp.shape, other) == jax.tree_util.tree_map(jnp.shape, batch)


@pytest.mark.parametrize(
    "name, shape",
    [
        ("cue_accumulation", (2200, 40, 2)),
        ("pattern_generation", (1000, 100, 1)),
        ("delayed_copy", (31, 9, 8)),
        ("adding", (100, 2, 1)),
        ("digits", (8, 8, 10)),
        ("mnist1d", (40, 1, 10)),
    ],
)
def test_default_shapes(name, shape):
    task = TASKS[name]()
    assert (task.n_steps, task.n_in, task.n_out) == shape


def test_shd_default_shape(shd_files):
    task = get_task("shd", path=shd_files["train"])
    assert (task.n_steps, task.n_in, task.n_out) == (100, 700, 20)


@pytest.mark.parametrize("name", sorted(SHORT))
def test_deterministic_per_seed(make_task, name):
    task = make_task(name)
    a, b = task.batch(3, 6), task.batch(3, 6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # a fresh instance with the same options gives the same batch too
    c = make_task(name).batch(3, 6)
    np.testing.assert_array_equal(np.asarray(a.inputs), np.asarray(c.inputs))


@pytest.mark.parametrize("name", SEEDED)
def test_different_seeds_and_splits_differ(make_task, name):
    task = make_task(name)
    base = task.batch(0, 8)
    assert not np.array_equal(np.asarray(base.inputs), np.asarray(task.batch(1, 8).inputs))
    assert not np.array_equal(np.asarray(base.inputs), np.asarray(task.batch(0, 8, split="test").inputs))


@pytest.mark.parametrize("name", sorted(SHORT))
def test_labels_and_mask_consistent(make_task, name):
    task = make_task(name)
    batch = task.batch(1, 16)
    mask = np.asarray(batch.mask)
    assert set(np.unique(mask)) <= {0.0, 1.0} and mask.sum() > 0
    if task.loss == "cross_entropy":
        labels = np.asarray(batch.targets)
        assert labels.min() >= -1 and labels.max() < task.n_out
        np.testing.assert_array_equal(mask, (labels >= 0).astype(np.float32))
    else:
        targets = np.asarray(batch.targets)
        assert np.all(targets[mask == 0] == 0.0)


@pytest.mark.parametrize("name", sorted(SHORT))
def test_metric_perfect_and_chance(make_task, name):
    task = make_task(name)
    batch = task.batch(2, 400)
    perfect = float(task.metric(perfect_outputs(task, batch), batch))
    if task.loss == "mse":
        assert perfect == pytest.approx(0.0, abs=1e-6)
        masked = np.asarray(batch.mask)[..., None] > 0
        mean = np.asarray(batch.targets)[np.broadcast_to(masked, batch.targets.shape)].reshape(-1, task.n_out).mean(0)
        mean_outputs = jnp.broadcast_to(jnp.asarray(mean), batch.targets.shape)
        assert float(task.metric(mean_outputs, batch)) == pytest.approx(task.chance, rel=1e-4)
    else:
        assert perfect == 1.0
        noise = jax.random.normal(jax.random.PRNGKey(0), (*batch.mask.shape, task.n_out))
        random_score = float(task.metric(noise, batch))
        assert abs(random_score - task.chance) < 0.08
    # jit-compatible and the same value
    jitted = jax.jit(task.metric)(perfect_outputs(task, batch), batch)
    assert float(jitted) == pytest.approx(perfect, abs=1e-6)


@pytest.mark.parametrize("name", sorted(SHORT))
def test_metric_rejects_wrong_output_shape(make_task, name):
    task = make_task(name)
    batch = task.batch(0, 4)
    with pytest.raises(ValueError, match="outputs"):
        task.metric(jnp.zeros((task.n_steps, 4, task.n_out + 1)), batch)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(seed=0, batch_size=0), "batch_size must be a positive int, got 0"),
        (dict(seed=0, batch_size=2.5), "batch_size"),
        (dict(seed=0, batch_size=True), "batch_size"),
        (dict(seed=-1, batch_size=2), "seed"),
        (dict(seed=0.5, batch_size=2), "seed"),
        (dict(seed=0, batch_size=2, split="val"), r"split must be one of \['train', 'test'\]"),
    ],
)
def test_bad_batch_arguments(make_task, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_task("adding").batch(**kwargs)


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("cue_accumulation", dict(n_cues=4), "n_cues must be odd"),
        ("cue_accumulation", dict(n_cues=0), "n_cues"),
        ("cue_accumulation", dict(cue_steps=0), "cue_steps"),
        ("cue_accumulation", dict(rate=2000.0), "rate"),
        ("cue_accumulation", dict(background_rate=-1.0), "background_rate"),
        ("cue_accumulation", dict(delay_steps=1.5), "delay_steps must be an int"),
        ("pattern_generation", dict(n_in=0), "n_in"),
        ("pattern_generation", dict(frequencies_hz=()), "frequencies_hz"),
        ("pattern_generation", dict(frequencies_hz=(1.0, -2.0)), "frequencies_hz"),
        ("pattern_generation", dict(noise_rate=float("nan")), "noise_rate"),
        ("delayed_copy", dict(n_symbols=1), "n_symbols"),
        ("delayed_copy", dict(delay=-1), "delay"),
        ("adding", dict(n_steps=1), "n_steps"),
        ("digits", dict(read="columns"), r"read must be one of \['rows', 'pixels'\]"),
        ("digits", dict(label_steps=9), "label_steps"),
        ("digits", dict(test_fraction=1.0), "test_fraction"),
        ("mnist1d", dict(num_samples=505), "num_samples"),
        ("mnist1d", dict(label_steps=0), "label_steps"),
        ("shd", dict(dt=0.0), "dt"),
        ("shd", dict(counts="yes"), "counts"),
        ("shd", dict(label_steps=51), "label_steps"),
    ],
)
def test_bad_options(make_task, name, options, match):
    with pytest.raises(ValueError, match=match):
        make_task(name, **options)


def test_get_task_errors():
    with pytest.raises(ValueError, match=r"unknown task 'nope'.*adding.*cue_accumulation"):
        get_task("nope")
    with pytest.raises(ValueError, match="unknown option.*'n_cue'"):
        get_task("cue_accumulation", n_cue=3)


def test_options_round_trip(make_task):
    task = make_task("cue_accumulation")
    assert get_task(task.name, **task.options) == task
    assert task.options["n_cues"] == 3


# --------------------------------------------------------------------------------------
# Shared metrics
# --------------------------------------------------------------------------------------


def test_metric_helpers_by_hand():
    # sequence accuracy: the readout summed over the window decides
    labels = jnp.array([[-1, -1], [1, 0], [1, 0]])  # (T=3, B=2)
    mask = (labels >= 0).astype(jnp.float32)
    outputs = jnp.array([[[9.0, 0.0], [0.0, 9.0]], [[0.0, 1.0], [2.0, 0.0]], [[0.5, 0.0], [0.0, 1.0]]])
    # window sums: ex 0 (0.5, 1) -> class 1, ex 1 (2, 1) -> class 0: both right
    # (summing over all steps, step 0 outside the window, would get both wrong)
    assert float(sequence_accuracy(outputs, labels, mask)) == 1.0
    assert float(sequence_accuracy(outputs, labels, jnp.ones_like(mask))) == 0.0
    # step accuracy: 2 of the 4 masked steps are right (step 1 of each example)
    assert float(step_accuracy(outputs, labels, mask)) == 0.5
    # nmse: targets 1, 3 (variance 1), prediction off by 1 on one of them -> mse 0.5
    targets = jnp.array([[[1.0], [3.0]]])
    assert float(nmse(jnp.array([[[2.0], [3.0]]]), targets, jnp.ones((1, 2)))) == pytest.approx(0.5)


# --------------------------------------------------------------------------------------
# Cue accumulation
# --------------------------------------------------------------------------------------


def test_cue_accumulation_label_is_majority_side():
    task = get_task("cue_accumulation", **SHORT_CUE)
    batch = task.batch(5, 64)
    sides = task.cue_sides(5, 64)  # (B, n_cues)
    assert sides.shape == (64, 3) and set(np.unique(sides)) <= {0, 1}
    majority = (sides.sum(axis=1) >= 2).astype(np.int32)
    labels = np.asarray(batch.targets)
    np.testing.assert_array_equal(labels[task.recall_start:], np.broadcast_to(majority, (task.recall_steps, 64)))
    assert np.all(labels[: task.recall_start] == -1)
    assert 0 < majority.sum() < 64  # both classes occur


def test_cue_accumulation_spikes_encode_cues():
    # rate 1000 Hz = one spike per step: the active groups are exactly visible
    task = get_task("cue_accumulation", **SHORT_CUE, rate=1000.0, background_rate=0.0)
    x = np.asarray(task.batch(4, 16).inputs)  # (T, B, 40)
    sides = task.cue_sides(4, 16)
    expected = np.zeros_like(x)
    for k in range(task.n_cues):
        start, stop = task.cue_window(k)
        for b in range(16):
            group = LEFT if sides[b, k] == 0 else RIGHT
            expected[start:stop, b, task.group_channels(group)] = 1.0
    expected[task.recall_start:, :, task.group_channels(RECALL)] = 1.0
    np.testing.assert_array_equal(x, expected)


def test_cue_accumulation_rates_at_default_options():
    task = get_task("cue_accumulation", n_cues=1, cue_steps=500, gap_steps=0, delay_steps=0, recall_steps=500)
    x = np.asarray(task.batch(0, 40).inputs)  # (1000, 40, 40)
    sides = task.cue_sides(0, 40)[:, 0]
    assert set(np.unique(x)) <= {0.0, 1.0}
    background = x[:, :, task.group_channels(BACKGROUND)].mean()
    assert background == pytest.approx(0.010, abs=0.001)  # 10 Hz at 1 ms
    cue = x[:500, :, :20].reshape(500, 40, 2, 10)[:, np.arange(40), sides].mean()
    assert cue == pytest.approx(0.040, abs=0.003)  # 40 Hz during its cue
    other = x[:500, :, :20].reshape(500, 40, 2, 10)[:, np.arange(40), 1 - sides]
    assert other.sum() == 0
    assert x[500:, :, task.group_channels(RECALL)].mean() == pytest.approx(0.040, abs=0.003)
    assert x[:500, :, task.group_channels(RECALL)].sum() == 0


def test_cue_accumulation_bellec2020_timing():
    """The trial of Bellec et al.'s code: cue k on [50 + 150 k, 150 + 150 k), recall on the last 150 of 2250 steps,
    loss there only."""
    task = get_task("cue_accumulation", **BELLEC2020)
    assert task.n_steps == 2250 and task.n_in == 40 and task.recall_start == 2100
    assert [task.cue_window(k) for k in range(7)] == [(50 + 150 * k, 150 + 150 * k) for k in range(7)]
    mask = np.asarray(task.batch(0, 8).mask)
    np.testing.assert_array_equal(mask[2100:], 1.0)
    np.testing.assert_array_equal(mask[:2100], 0.0)
    # rate 1000 Hz: spikes exactly where the cues are; nothing in the lead, the gaps or the delay
    x = np.asarray(get_task("cue_accumulation", **dict(BELLEC2020, rate=1000.0, background_rate=0.0))
                   .batch(3, 8).inputs)  # (T, B, 40)
    cue_steps = np.zeros(2250, bool)
    for k in range(7):
        cue_steps[50 + 150 * k:150 + 150 * k] = True
    on = x[:, :, :20].sum(axis=(1, 2)) > 0  # (T,)
    np.testing.assert_array_equal(on, cue_steps)
    np.testing.assert_array_equal(x[:, :, 20:30].any(axis=(1, 2)), np.arange(2250) >= 2100)


def test_cue_accumulation_bellec2020_rates():
    """40 Hz cue and recall channels, 10 Hz background (Bellec et al.: f0 = 40 Hz, background f0 / 4)."""
    task = get_task("cue_accumulation", **BELLEC2020)
    x = np.asarray(task.batch(1, 64).inputs)  # (2250, 64, 40)
    sides = task.cue_sides(1, 64)  # (64, 7)
    active, silent = [], []
    for k in range(7):
        start, stop = task.cue_window(k)
        chunk = x[start:stop, :, :20].reshape(stop - start, 64, 2, 10)
        active.append(chunk[:, np.arange(64), sides[:, k]])
        silent.append(chunk[:, np.arange(64), 1 - sides[:, k]])
    assert np.mean(active) == pytest.approx(0.040, abs=0.002)
    assert np.sum(silent) == 0
    assert x[:, :, task.group_channels(BACKGROUND)].mean() == pytest.approx(0.010, abs=0.0005)
    assert x[2100:, :, task.group_channels(RECALL)].mean() == pytest.approx(0.040, abs=0.003)
    assert x[:2100, :, task.group_channels(RECALL)].sum() == 0


def test_cue_accumulation_p_group_statistics():
    """p_group: each trial favours one side (half the trials each); a cue falls on the other side with
    probability p_group; the label is the majority of the cues drawn (not the favoured side)."""
    task = get_task("cue_accumulation", **BELLEC2020)
    sides = task.cue_sides(7, 4000)  # (B, 7)
    counts = sides.sum(axis=1)  # right cues per trial
    favoured_right = counts >= 4
    assert favoured_right.mean() == pytest.approx(0.5, abs=0.03)
    minority = np.minimum(counts, 7 - counts)
    # P(5 or more of 7 on one side) = 0.676 for p = 0.3 (Bin(7, 0.7) >= 5 or <= 2), 0.453 for fair coins
    assert (minority <= 2).mean() == pytest.approx(0.676, abs=0.025)
    fair = get_task("cue_accumulation", **dict(BELLEC2020, p_group=None)).cue_sides(7, 4000).sum(axis=1)
    assert (np.minimum(fair, 7 - fair) <= 2).mean() == pytest.approx(0.453, abs=0.025)
    # the fraction of cues against the majority is below p_group (trials whose draw flipped the majority count
    # for the other side): E = 0.2726 for p = 0.3
    assert (minority / 7).mean() == pytest.approx(0.2726, abs=0.01)
    labels = np.asarray(task.batch(7, 256).targets)[-1]  # (a full batch of 4000 trials of 2250 steps is slow)
    np.testing.assert_array_equal(labels, (task.cue_sides(7, 256).sum(axis=1) >= 4).astype(np.int32))
    one_sided = get_task("cue_accumulation", **dict(BELLEC2020, p_group=0.0)).cue_sides(7, 64)
    assert np.all(one_sided == one_sided[:, :1])  # p = 0: every cue on the favoured side


def test_cue_accumulation_is_deterministic_from_the_seed():
    task = get_task("cue_accumulation", **BELLEC2020)
    a, b, c = task.batch(11, 16), task.batch(11, 16), task.batch(12, 16)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(a.inputs), np.asarray(c.inputs))
    assert not np.array_equal(np.asarray(task.batch(11, 16, "test").inputs), np.asarray(a.inputs))
    np.testing.assert_array_equal(task.cue_sides(11, 16), task.cue_sides(11, 16))


def test_cue_accumulation_old_statistics_unchanged():
    """The defaults keep the older task (no lead, a fair coin per cue, T = 2200): the same cue sides as
    before ``lead_steps`` and ``p_group`` existed (numpy's integers(0, 2) draw from the (seed, split) stream)."""
    task = get_task("cue_accumulation")
    assert task.n_steps == 2200 and task.cue_window(0) == (0, 100)
    expected = np.random.default_rng([3, 0]).integers(0, 2, size=(5, 7))
    np.testing.assert_array_equal(task.cue_sides(3, 5), expected)


@pytest.mark.parametrize("options,match", [(dict(p_group=1.5), "p_group"), (dict(p_group="x"), "p_group"),
                                           (dict(lead_steps=-1), "lead_steps")])
def test_cue_accumulation_refuses_bad_new_options(options, match):
    with pytest.raises(ValueError, match=match):
        get_task("cue_accumulation", **options)


# --------------------------------------------------------------------------------------
# Pattern generation
# --------------------------------------------------------------------------------------


def test_pattern_generation_is_frozen():
    task = get_task("pattern_generation", **SHORT["pattern_generation"])
    a, b = task.batch(0, 4), task.batch(9, 3, split="test")
    np.testing.assert_array_equal(np.asarray(a.inputs[:, 0]), np.asarray(b.inputs[:, 2]))
    np.testing.assert_array_equal(np.asarray(a.targets[:, 1]), np.asarray(a.targets[:, 3]))
    np.testing.assert_array_equal(np.asarray(a.mask), 1.0)
    other = get_task("pattern_generation", **SHORT["pattern_generation"], pattern_seed=1).batch(0, 4)
    assert not np.array_equal(np.asarray(a.inputs), np.asarray(other.inputs))
    assert not np.array_equal(np.asarray(a.targets), np.asarray(other.targets))


def test_pattern_generation_targets_are_the_paper_sinusoids():
    task = get_task("pattern_generation", n_out=3)
    batch = task.batch(0, 2)
    y = np.asarray(batch.targets[:, 0, :], dtype=np.float64)  # (1000, 3)
    fourier = np.fft.rfft(y, axis=0)  # (501, 3), 1 Hz bins
    spectrum = np.abs(fourier) * 2 / 1000  # amplitude per frequency
    freqs = [1, 2, 3, 5]
    for f in freqs:
        assert np.all((spectrum[f] > 0.5 - 1e-3) & (spectrum[f] < 2 + 1e-3))
    assert np.delete(spectrum, freqs, axis=0).max() < 1e-3
    # rebuild y = sum_f a_f sin(2 pi f t + phi_f) from the amplitudes and phases
    phases = np.angle(fourier[freqs]) + np.pi / 2  # (4, 3)
    t = np.arange(1000) * 1e-3
    rebuilt = sum(spectrum[f] * np.sin(2 * np.pi * f * t[:, None] + phases[i]) for i, f in enumerate(freqs))
    np.testing.assert_allclose(rebuilt, y, atol=1e-4)
    assert np.ptp(np.mod(phases, 2 * np.pi)) > 1.0  # random phases, not all equal
    assert not np.allclose(y[:, 0], y[:, 1])  # outputs have their own amplitudes and phases
    rate = float(np.asarray(batch.inputs).mean())
    assert rate == pytest.approx(0.010, abs=0.002)  # 10 Hz input pattern
    # zero readout is about chance (the targets have zero mean over whole periods)
    assert float(task.metric(jnp.zeros_like(batch.targets), batch)) == pytest.approx(1.0, abs=1e-3)


def test_pattern_generation_noise_depends_on_seed():
    task = get_task("pattern_generation", **SHORT["pattern_generation"], noise_rate=20.0)
    clean = get_task("pattern_generation", **SHORT["pattern_generation"]).batch(0, 4)
    a, b, c = task.batch(0, 4), task.batch(1, 4), task.batch(0, 4, split="test")
    assert not np.array_equal(np.asarray(a.inputs), np.asarray(b.inputs))
    assert not np.array_equal(np.asarray(a.inputs), np.asarray(c.inputs))
    assert np.all(np.asarray(a.inputs) >= np.asarray(clean.inputs))  # pattern spikes kept
    np.testing.assert_array_equal(np.asarray(a.targets), np.asarray(clean.targets))


# --------------------------------------------------------------------------------------
# Delayed copy
# --------------------------------------------------------------------------------------


def test_delayed_copy_recall_repeats_the_input_symbols():
    task = get_task("delayed_copy", **SHORT["delayed_copy"])  # 3 symbols x 2 steps, delay 5
    batch = task.batch(0, 32)
    x, labels = np.asarray(batch.inputs), np.asarray(batch.targets)
    span = 6
    assert task.n_steps == 6 + 5 + 1 + 6 and task.n_in == 5
    np.testing.assert_array_equal(x[:span].sum(-1), 1.0)  # one symbol per presentation step
    shown = np.argmax(x[:span], axis=-1)  # (span, B)
    assert shown.max() < task.n_symbols  # never the go channel
    np.testing.assert_array_equal(labels[task.go_step + 1:], shown)
    assert np.all(labels[: task.go_step + 1] == -1)
    assert np.all(x[span:task.go_step] == 0) and np.all(x[task.go_step + 1:] == 0)
    np.testing.assert_array_equal(x[task.go_step, :, task.go_channel], 1.0)
    assert x[task.go_step].sum() == 32


# --------------------------------------------------------------------------------------
# Adding
# --------------------------------------------------------------------------------------


def test_adding_target_is_sum_of_marked_values():
    task = get_task("adding", n_steps=20)
    batch = task.batch(0, 50)
    values, marker = np.asarray(batch.inputs[..., 0]), np.asarray(batch.inputs[..., 1])  # (T, B)
    assert np.all((values >= 0) & (values <= 1))
    np.testing.assert_array_equal(marker[:10].sum(0), 1.0)  # one marker in each half
    np.testing.assert_array_equal(marker[10:].sum(0), 1.0)
    expected = (values * marker).sum(0)  # (B,)
    np.testing.assert_allclose(np.asarray(batch.targets[-1, :, 0]), expected, rtol=1e-6)
    mask = np.asarray(batch.mask)
    assert np.all(mask[-1] == 1.0) and np.all(mask[:-1] == 0.0)


# --------------------------------------------------------------------------------------
# Digits
# --------------------------------------------------------------------------------------


def test_digits_split_is_fixed_and_disjoint():
    task = get_task("digits")
    train_idx, test_idx = task.split_indices()
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    assert len(train_idx) + len(test_idx) == 1797 and len(test_idx) == round(0.2 * 1797)
    images, labels = load_digits_arrays()
    test = task.test_set()
    assert test.inputs.shape == (8, len(test_idx), 8)
    np.testing.assert_array_equal(np.swapaxes(np.asarray(test.inputs), 0, 1), images[test_idx])
    np.testing.assert_array_equal(np.asarray(test.targets[-1]), labels[test_idx])
    assert float(images.max()) == 1.0 and float(images.min()) == 0.0
    # every train example comes from the train split, every test example from the test split
    flat = images.reshape(1797, -1)
    lookup = {row.tobytes(): i for i, row in enumerate(flat) if i in set(train_idx)}
    train_batch = np.swapaxes(np.asarray(task.batch(0, 64).inputs), 0, 1).reshape(64, -1)
    assert all(row.tobytes() in lookup for row in train_batch)
    x_test, _ = task.examples("test")
    test_rows = {row.tobytes() for row in x_test.reshape(len(x_test), -1)}
    test_batch = np.swapaxes(np.asarray(task.batch(0, 64, "test").inputs), 0, 1).reshape(64, -1)
    assert all(row.tobytes() in test_rows for row in test_batch)
    # the split does not depend on other options
    np.testing.assert_array_equal(get_task("digits", read="pixels").split_indices()[1], test_idx)


def test_digits_pixels_and_label_window():
    rows, pixels = get_task("digits", label_steps=3), get_task("digits", read="pixels", label_steps=3)
    a, b = rows.batch(1, 10), pixels.batch(1, 10)
    assert b.inputs.shape == (64, 10, 1)
    np.testing.assert_array_equal(
        np.asarray(b.inputs)[:, :, 0], np.asarray(a.inputs).transpose(0, 2, 1).reshape(64, 10)
    )
    labels = np.asarray(a.targets)
    assert np.all(labels[:5] == -1) and np.all(labels[5:] >= 0)
    np.testing.assert_array_equal(labels[5], labels[7])


def test_dataset_examples_are_read_only():
    x, y = get_task("digits").examples("train")
    with pytest.raises(ValueError):
        x[0, 0, 0] = 5.0
    with pytest.raises(ValueError):
        y[0] = 3


# --------------------------------------------------------------------------------------
# MNIST-1D
# --------------------------------------------------------------------------------------


def test_mnist1d_generated_locally_without_side_effects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.random.seed(1234)
    random.seed(1234)
    expected_np, expected_py = np.random.rand(), random.random()
    np.random.seed(1234)
    random.seed(1234)
    task = get_task("mnist1d", num_samples=130, data_seed=7)  # args not generated elsewhere in this file
    x, y = task.examples("train")
    assert np.random.rand() == expected_np and random.random() == expected_py  # global RNGs untouched
    assert os.listdir(tmp_path) == []  # nothing written
    assert x.shape == (104, 40, 1) and task.n_examples("test") == 26
    assert set(np.unique(y)) <= set(range(10))
    test = task.test_set()
    assert test.inputs.shape == (40, 26, 1)
    labels = np.asarray(test.targets)
    assert np.all(labels[:-1] == -1) and np.all(labels[-1] >= 0)


def test_mnist1d_default_split_sizes():
    task = get_task("mnist1d", **SHORT["mnist1d"])
    assert task.n_examples("train") == 400 and task.n_examples("test") == 100
    assert len(np.unique(task.labels("train"))) == 10


# --------------------------------------------------------------------------------------
# SHD
# --------------------------------------------------------------------------------------


def test_shd_binning_matches_reference(shd_files):
    task = get_task("shd", path=shd_files["train"], test_path=shd_files["test"], n_steps=50, dt=0.01)
    test = task.test_set()  # the test file, in file order
    times, units, labels = shd_files["test_data"]
    assert test.inputs.shape == (50, 12, 700)
    for i in range(12):
        np.testing.assert_array_equal(np.asarray(test.inputs[:, i]), reference_binning(times[i], units[i], 50, 0.01))
    np.testing.assert_array_equal(np.asarray(test.targets), np.broadcast_to(labels, (50, 12)))  # every step
    np.testing.assert_array_equal(np.asarray(test.mask), 1.0)
    # spikes past the window (steps 50..69 exist in the data) were dropped
    late = sum(int(np.sum(np.floor(np.asarray(t) / 0.01) >= 50)) for t in times)
    assert late > 0


def test_shd_bin_edges_and_counts(tmp_path):
    path = tmp_path / "edges.h5"
    # 0.29 / 0.01 == 28.999999999999996 in floating point: still step 29
    times = [[0.0, 0.29, 0.2945, 0.2999, 0.499, 0.5, 2.0], [0.25]]
    units = [[0, 1, 1, 1, 699, 3, 4], [2]]
    write_shd(path, times, units, [4, 19])
    task = get_task("shd", path=str(path), test_path=str(path), n_steps=50, dt=0.01)
    x = np.asarray(task.test_set().inputs)  # (50, 2, 700)
    assert x[0, 0, 0] == 1 and x[29, 0, 1] == 1 and x[49, 0, 699] == 1 and x[25, 1, 2] == 1
    assert x.sum() == 4  # three spikes in one bin clipped to 1; t = 0.5 and 2.0 dropped
    counted = np.asarray(get_task("shd", path=str(path), test_path=str(path), n_steps=50,
                                  counts=True).test_set().inputs)
    assert counted[29, 0, 1] == 3 and counted.sum() == 6
    np.testing.assert_array_equal(np.asarray(task.test_set().targets[0]), [4, 19])


def test_shd_holdout_split_and_label_window(shd_files):
    task = get_task("shd", path=shd_files["train"], n_steps=50, label_steps=5)
    train_idx, test_idx = task.split_indices("train"), task.split_indices("test")
    assert len(np.intersect1d(train_idx, test_idx)) == 0 and len(train_idx) + len(test_idx) == 30
    expected_train, expected_test = holdout_split(30, 0.2, 0)
    np.testing.assert_array_equal(test_idx, expected_test)
    _, _, labels = shd_files["train_data"]
    np.testing.assert_array_equal(task.labels("test"), labels[test_idx])
    batch = task.test_set()
    assert batch.inputs.shape == (50, len(test_idx), 700)
    targets = np.asarray(batch.targets)
    assert np.all(targets[:45] == -1)
    np.testing.assert_array_equal(targets[45:], np.broadcast_to(labels[test_idx], (5, len(test_idx))))
    # float16 times in the train file: binned example equals the reference
    times, units, _ = shd_files["train_data"]
    i = int(test_idx[0])
    t16 = np.asarray(times[i], dtype=np.float16).astype(np.float64)
    reference = reference_binning(t16, units[i], 50, 0.01)
    np.testing.assert_array_equal(np.asarray(batch.inputs[:, 0]), reference)


def test_shd_file_errors(tmp_path, shd_files):
    with pytest.raises(ValueError, match="path is required"):
        get_task("shd")
    with pytest.raises(ValueError, match="path must be an existing HDF5 file"):
        get_task("shd", path=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="path must be an existing HDF5 file"):
        get_task("shd", path=str(tmp_path))  # a directory
    with pytest.raises(ValueError, match="test_path must be an existing HDF5 file"):
        get_task("shd", path=shd_files["train"], test_path=str(tmp_path / "missing.h5"))
    text = tmp_path / "not_hdf5.h5"
    text.write_text("hello")
    with pytest.raises(ValueError, match="could not be read as an HDF5 file"):
        get_task("shd", path=str(text))
    no_labels = tmp_path / "no_labels.h5"
    with h5py.File(no_labels, "w") as f:
        f.create_dataset("spikes/times", data=np.zeros(3))
    with pytest.raises(ValueError, match="missing dataset 'spikes/units'"):
        get_task("shd", path=str(no_labels))
    bad_units = tmp_path / "bad_units.h5"
    write_shd(bad_units, [[0.1], [0.2]], [[700], [0]], [0, 1])
    with pytest.raises(ValueError, match="units must be ints"):
        get_task("shd", path=str(bad_units))
    bad_labels = tmp_path / "bad_labels.h5"
    write_shd(bad_labels, [[0.1], [0.2]], [[1], [0]], [0, 20])
    with pytest.raises(ValueError, match="labels must be ints"):
        get_task("shd", path=str(bad_labels))


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_dataset_delay_and_validation_holdout(name):
    """delay appends zero-input steps before the label; holdout="validation" splits the train split in two
    (disjoint, covering it) and leaves the test split untouched."""
    plain = get_task(name)
    delayed = get_task(name, delay=7, label_steps=2)
    assert delayed.n_steps == plain.n_steps + 7
    batch = delayed.batch(3, 5)
    assert batch.inputs.shape == (plain.n_steps + 7, 5, plain.n_in)
    assert np.all(np.asarray(batch.inputs[plain.n_steps:]) == 0)
    assert np.all(np.asarray(batch.mask[-2:]) == 1) and np.all(np.asarray(batch.mask[:-2]) == 0)
    x_plain, _ = plain.examples("train")
    validation = get_task(name, holdout="validation")
    x_fit, y_fit = validation.examples("train")
    x_val, y_val = validation.examples("validation")
    assert len(y_fit) + len(y_val) == len(plain.labels("train"))
    assert abs(len(y_val) / len(plain.labels("train")) - 0.2) < 0.01
    rows = {row.tobytes() for row in np.asarray(x_plain).reshape(len(x_plain), -1)}
    fit_rows = {row.tobytes() for row in np.asarray(x_fit).reshape(len(x_fit), -1)}
    val_rows = {row.tobytes() for row in np.asarray(x_val).reshape(len(x_val), -1)}
    assert fit_rows | val_rows <= rows and not (fit_rows & val_rows)
    test_rows = {row.tobytes() for row in np.asarray(plain.examples("test")[0]).reshape(-1, x_plain[0].size)}
    assert not (val_rows & test_rows)
    with pytest.raises(ValueError, match="holdout"):
        get_task(name, holdout="train")
    # the held-out split is named: test is held back under holdout="validation", and validation needs it
    assert validation.splits == ("train", "validation") and validation.evaluation_split == "validation"
    assert plain.splits == ("train", "test") and plain.evaluation_split == "test"
    with pytest.raises(ValueError, match="split 'test' is held back by holdout='validation'"):
        validation.batch(0, 4, "test")
    with pytest.raises(ValueError, match="split 'test' is held back"):
        validation.test_set()
    with pytest.raises(ValueError, match="split 'validation' needs holdout='validation'"):
        plain.examples("validation")
    np.testing.assert_array_equal(np.asarray(validation.evaluation_set().inputs), np.swapaxes(x_val, 0, 1))
    with pytest.raises(ValueError, match="delay"):
        get_task(name, delay=-1)
