"""Deep e-prop as BPTT through a surrogate network, and its reverse evaluation (docs/math.md, "Rules and their
evaluations").

**The surrogate.** Deep e-prop keeps every path of the exact gradient except those through the off-diagonal
part of a node's own recurrent Jacobian. Reverse-mode differentiation of a network whose values are unchanged
and whose recurrent input keeps only its diagonal derivative through ``z[t-1]``,

    I_rec[t] = W @ stop_gradient(z[t-1]) + diag(W) * (z[t-1] - stop_gradient(z[t-1]))

(``W``'s own derivative still sees ``z[t-1]`` as its presynaptic factor; the neuron's own state, reset and
adaptation are differentiated as the neuron defines them), gives exactly the deep e-prop recursion. With no or
diagonal recurrence the surrogate is the network itself.

**Reverse** (:func:`reverse_gradients`): one backward pass through the surrogate over the window. Memory
``O(T B sum_k n_k d_k)`` (it grows with ``T``), cost about BPTT's. Not online.

The chunk hybrid, which runs this surrogate chunk by chunk, is :mod:`deepeprop.engines.hybrid`.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


# ---------------------------------------------------------------------------- the surrogate network
def surrogate_current(node, z_prev, sources):
    """The node's input current with the recurrent derivative through ``z_prev`` kept on the diagonal only."""
    held = jax.lax.stop_gradient(z_prev)
    current = node.current(held, sources)  # W @ sg(z_prev) + U z + b: W's derivative sees z_prev
    if node.has_own_recurrence:  # value 0, derivative diag(W) with respect to z_prev
        current = current + node.recurrent_diagonal() * (z_prev - held)
    return current


def surrogate_node_step(node, s_prev, sources):
    """One step of ``node`` in the surrogate: the same value as ``node.step``."""
    z_prev = node.output(s_prev)
    return node.neuron.step(s_prev, node.neuron_current(surrogate_current(node, z_prev, sources)))


def surrogate_run(model, inputs, s0, perturbations=None):
    """Run the surrogate from ``s0``: ``inputs`` (T, B, n_in) -> (final state, per-step states (per node
    (T, B, n_k, d_k)), ys (T, B, n_out)). ``perturbations`` (per node (T, B, n_k, d_k), zeros) are added to each
    step's new state, so that a VJP with respect to them is the adjoint of every step's state."""
    if perturbations is None:
        perturbations = tuple(jnp.zeros((inputs.shape[0],) + s.shape, s.dtype) for s in s0)

    def body(state, xs):
        x, added = xs
        outputs, new = [x], []
        for node, s_prev, extra in zip(model.nodes, state, added):
            s = surrogate_node_step(node, s_prev, [outputs[source] for source in node.sources]) + extra
            outputs.append(node.output(s))
            new.append(s)
        return tuple(new), (tuple(new), outputs[-1])

    final, (states, ys) = jax.lax.scan(body, tuple(s0), (inputs, tuple(perturbations)))
    return final, states, ys


def model_grads_to_theta(model, grads) -> tuple:
    """A gradient with ``model``'s structure (``equinox.filter_grad``'s) -> per node ``(n_k, R_k)`` rows of theta."""
    return tuple(node_grads.theta() for node_grads in grads.nodes)


def reverse_gradients(model, s0, inputs, targets, mask, loss):
    """One backward pass through the surrogate from ``s0`` (held fixed): ``-> (final, ys, losses, theta grads)``."""
    s0 = jax.lax.stop_gradient(tuple(s0))

    @eqx.filter_value_and_grad(has_aux=True)
    def total(m):
        final, _, ys = surrogate_run(m, inputs, s0)
        losses = jax.vmap(loss)(ys, targets, mask)  # (T,)
        return jnp.sum(losses), (final, ys, losses)

    (_, (final, ys, losses)), grads = total(model)
    return jax.lax.stop_gradient(final), ys, losses, model_grads_to_theta(model, grads)
