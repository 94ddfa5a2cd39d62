"""Which derivative paths of the hidden outputs a rule keeps: the rule's surrogate for a loss on hidden spikes.

Every rule here is reverse-mode differentiation of a surrogate network (docs/math.md, "Rules and their
evaluations"): the network with some derivative paths cut by ``stop_gradient``, values unchanged. A loss on the
hidden outputs ``z[k,t]`` themselves (firing-rate regularisation, :mod:`deepeprop.regularization`) is
differentiated by each rule through the same surrogate. Three switches say what is kept, on top of the node's own
neuron dynamics (leak, reset as the rule resolved it, adaptation), which every rule keeps except ``immediate``:

* ``sources``: the path through the node's sources (the nodes below, at the same step), i.e. from ``z[k,t]``
  back to the parameters of the nodes below;
* ``recurrence``: the off-diagonal recurrent path through ``z[t-1]`` (the diagonal, a neuron's own ``W_jj``, is
  part of its own dynamics and kept with ``state``);
* ``state``: the path through the node's own previous state ``s[t-1]`` (its memory).

========================  =========  ==========  =======  ===============================================
paths                     sources    recurrence  state    rules
========================  =========  ==========  =======  ===============================================
:data:`EXACT`             yes        yes         yes      ``bptt``, ``rtrl`` (the network itself)
:data:`DEEP`              yes        no          yes      ``deep_eprop``, ``deep_eprop_factored``
:data:`LOCAL`             no         no          yes      ``eprop`` (each neuron's own eligibility trace)
:data:`INSTANT`           no         no          no       ``immediate`` (this step's derivative only)
========================  =========  ==========  =======  ===============================================

``LOCAL`` is Bellec et al.'s treatment of the regularisation's learning signal: ``dR/dz[j,t]`` meets neuron
``j``'s own eligibility trace ``e[j,t]``, nothing is sent to other neurons. ``DEEP`` is deep e-prop's surrogate
(:mod:`.surrogate`): the signal also reaches the nodes below through the deep traces.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax

from .surrogate import surrogate_current


@dataclass(frozen=True)
class Paths:
    """The derivative paths of the hidden outputs a rule keeps (module docstring)."""

    name: str
    sources: bool
    recurrence: bool
    state: bool


EXACT = Paths("exact", sources=True, recurrence=True, state=True)
DEEP = Paths("deep", sources=True, recurrence=False, state=True)
LOCAL = Paths("local", sources=False, recurrence=False, state=True)
INSTANT = Paths("instant", sources=False, recurrence=False, state=False)


def node_step(node, s_prev, sources, paths: Paths):
    """One step of ``node`` with the derivative paths ``paths`` cuts; the same value as ``node.step``."""
    if not paths.state:
        s_prev = jax.lax.stop_gradient(s_prev)
    if not paths.sources:
        sources = [jax.lax.stop_gradient(z) for z in sources]
    z_prev = node.output(s_prev)
    current = node.current(z_prev, sources) if paths.recurrence else surrogate_current(node, z_prev, sources)
    return node.neuron.step(s_prev, node.neuron_current(current))


def hidden_outputs(model, inputs, s0, paths: Paths):
    """Run ``model`` from ``s0`` with the derivative paths ``paths`` keeps: ``inputs`` (T, B, n_in) -> the hidden
    nodes' outputs, a tuple of (T, B, n_k o_k) (the readout is not run: nothing here depends on it)."""
    hidden = model.nodes[:-1]

    def body(state, x):
        outputs, new = [x], []
        for node, s_prev in zip(hidden, state):
            s = node_step(node, s_prev, [outputs[source] for source in node.sources], paths)
            outputs.append(node.output(s))
            new.append(s)
        return tuple(new), tuple(outputs[1:])

    _, zs = jax.lax.scan(body, tuple(s0[:-1]), inputs.astype(model.dtype))
    return zs


__all__ = ["Paths", "EXACT", "DEEP", "LOCAL", "INSTANT", "hidden_outputs"]
