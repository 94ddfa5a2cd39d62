"""Tutorial: train a spiking network online with deep e-prop (docs/tutorials/train-online.md).

A 2-layer LIF network reads scikit-learn's 8x8 digits one row per time step and learns with ``deep_eprop``,
updating its weights *during* each sequence (every 4 steps) instead of after it. ``--quick`` (or
``DEEPEPROP_QUICK=1``) runs a few iterations only, for the tests.
"""
import os
import sys
import time

import jax
import jax.numpy as jnp
import optax

import deepeprop as dp

QUICK = "--quick" in sys.argv or os.environ.get("DEEPEPROP_QUICK") == "1"
ITERATIONS, EVAL_EVERY, BATCH = (4, 2, 8) if QUICK else (300, 100, 32)

# 1. A task: batches are time-major, (T, B, n_in) inputs, (T, B) labels (-1 where no loss), (T, B) mask.
task = dp.get_task("digits", read="rows")
test = task.test_set()  # the held-out images as one Batch
print(f"task: {task.name}, T = {task.n_steps}, n_in = {task.n_in}, {task.n_out} classes, "
      f"{test.inputs.shape[1]} test images, chance {task.chance:.2f}")

# 2. A network: 2 hidden layers of LIF neurons with dense recurrence, a leaky readout.
model = dp.DeepRNN(task.n_in, [32, 32], task.n_out, neuron="lif", recurrence="dense", readout="leaky",
                   key=jax.random.PRNGKey(0), input_gain=2.0)

# 3. An online learner: an engine (here by name), an optax optimiser, the task's loss, an update every 4 steps.
learner = dp.OnlineLearner("deep_eprop", optax.adam(3e-3), loss=task.loss, update_every=4)
state = learner.init(model)  # LearnerState(model, opt_state, feedback)


@jax.jit
def accuracy(model, batch):
    _, ys = model.run(batch.inputs)  # (T, B, n_out) readout
    return task.metric(ys, batch)


print(f"before training: test accuracy {float(accuracy(state.model, test)):.3f}")
start = time.perf_counter()
for iteration in range(1, ITERATIONS + 1):
    batch = task.batch(iteration, BATCH, "train")  # a pure function of (seed, batch size, split)
    # one compiled call: the engine runs the sequence, the optimiser updates every 4 steps
    state, losses, ys = learner.train_sequence(state, batch.inputs, batch.targets, batch.mask)
    if iteration % EVAL_EVERY == 0:
        print(f"iteration {iteration:4d}: train loss {float(jnp.sum(losses)):.3f}, "
              f"test accuracy {float(accuracy(state.model, test)):.3f}")
final = float(accuracy(state.model, test))
print(f"after {ITERATIONS} iterations ({time.perf_counter() - start:.0f} s): test accuracy {final:.3f} "
      f"(chance {task.chance:.2f})")
assert QUICK or final > 3 * task.chance, "deep e-prop should learn this task well above chance"
