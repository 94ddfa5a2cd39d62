"""The immediate baseline: e-prop without eligibility traces (instantaneous derivatives only).

Equation, for each hidden node ``l`` (the learning signal ``L[l,t]`` exactly as in :mod:`.eprop`):

    e[l,t] = dz[l,t]/ds * ds[l,t]/dtheta_l        (this step's derivative: no  Jb[l,t] * eps[l,t-1] term)
    dE/dtheta_l ~= sum_t L[l,t] * e[l,t]

that is, e-prop with every hidden layer's own Jacobian ``Jb`` replaced by zero in the trace recursion. A weight
gets credit only for its effect on the loss at the same time step, through the same-time Jacobians of the
layers above (and, with ``readout_filter=True``, through the leaky readout's memory). The readout's own
parameters keep their exact gradient, as in e-prop. ``feedback`` is e-prop's (``"symmetric"`` or ``"random"``
matrices for the learning signal; ``"adaptive"`` as in e-prop).

It is the baseline that asks how much of an online rule's learning comes from its traces at all: it equals
``eprop`` (with the same ``readout_filter``) whenever no hidden layer has memory (memoryless neurons, no
recurrence: then ``Jb = 0`` and e-prop's trace is this step's derivative too), and it is what a per-step,
spatial-backprop-only rule computes.

Cost: no eligibility carried between steps: ``~B n_l P_l`` work per step and per layer (one outer product
per step, a matmul when the layer's presynaptic vector is shared), memory ``B P_l`` (factorised) or
``B n_l d_l P_l`` for the step's own derivative; with ``readout_filter=True`` the filtered trace
``ebar`` (``B n_l P_l``) is carried as in e-prop. Evaluations as in e-prop (step, chunked, reverse): with
``chunk_size`` the per-step outer products of a chunk are summed as one matrix product over its ``(K B)`` rows
(``chunk_size=1``: step by step), for every neuron model (the chunk's backward recursion has ``Jb = 0``);
``evaluation="reverse"`` is one chunk as long as the window.

Drops (relative to RTRL): every path through time except the readout's own leak (and that one too for the
hidden layers unless ``readout_filter=True``): the within-layer Jacobians entirely, and every later-time path
through the layers above.
"""
from __future__ import annotations

import equinox as eqx

from . import paths
from .eprop import LocalRule


class Immediate(LocalRule):
    """The :class:`~deepeprop.engines.eprop.LocalRule` whose eligibility is this step's derivative only (module
    docstring); its options are the family's, with ``readout_filter=False`` by default."""

    name = "immediate"
    regularization_paths = paths.INSTANT  # a loss on hidden outputs: deepeprop.engines.paths
    carries_eligibility = False
    readout_filter: bool = eqx.field(static=True, default=False)
