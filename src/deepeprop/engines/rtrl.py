"""Real-time recurrent learning across time and depth: exact forward-mode gradients (docs/math.md, "RTRL").

Equation, for every node ``l`` and every node ``k`` that is ``l`` or one of its descendants (the readout is
the last node):

    G[l,l,t] = J[l,t] @ G[l,l,t-1] + dbarM_l/dtheta_l
    G[k,l,t] = J[k,t] @ G[k,l,t-1] + sum_{j in parents(k), j = l or below l} D[k<-j,t] @ G[j,l,t]
    dE/dtheta_l = sum_t dE_t/dy[t] @ G[N,l,t]

with the full within-node Jacobian ``J = own + ds_dI (x) W diag(dz_prev)`` and the depth Jacobian of an
edge ``D[k<-j] = ds_dI[k] (x) U_{k<-j} diag(dz[j])`` (:mod:`deepeprop.jacobians`).

Cost: ``G[k,l]`` holds ``B * n_k * d_k * n_l * P_l`` numbers (``~B n^3`` per ancestor pair), each step a
matrix product with ``W`` and with ``U`` of every edge on a path from ``l`` (``~B n^4``); constant in
sequence length.

Drops: nothing: equals BPTT to rounding error. Small networks only (``max_trace_elements`` guards memory).
"""
from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from ..validation import check_int
from . import paths
from .base import Engine, EngineState, forward_linearized, zero_theta_grads
from .plan import RTRLPlan
from .traces import apply_block, edge_matrix, error_contract, immediate, project_state


def _off_diagonal(W):
    return W - jnp.diag(jnp.diagonal(W))


class RTRL(Engine):
    """Exact real-time recurrent learning across time and depth (module docstring: equation and cost).

    Args:
        max_trace_elements: the most influence-matrix numbers per batch element it agrees to carry;
            :meth:`check_model` refuses a larger network (default 50 million).
        detach_reset: the reset choice for neurons that leave it to the rule (``detach_reset=None``, the default
            of LIF and ALIF): ``None`` (default) is the rule's, keep the reset path (the network as it runs); ``True`` /
            ``False`` overrides it (docs/concepts/networks.md, "The reset: a choice of the rule").
    """

    name = "rtrl"
    regularization_paths = paths.EXACT  # a loss on hidden outputs: deepeprop.engines.paths
    exact = True
    max_trace_elements: int = eqx.field(static=True, default=50_000_000)
    detach_reset: bool | None = eqx.field(static=True, default=None)  # None: keep (reset_default)

    def _make_plan(self, model):
        return RTRLPlan()

    def __post_init__(self):
        check_int("max_trace_elements", self.max_trace_elements, minimum=1)

    @staticmethod
    def _influence_shapes(model, batch):
        """Per node ``l``: the shapes of ``G[k,l]`` for ``k`` in ``(l,) + descendants(l)``."""
        nodes, graph = model.nodes, model.graph
        return [[(batch, nodes[k - 1].size, nodes[k - 1].neuron.state_size, nodes[l - 1].size, nodes[l - 1].row_size)
                 for k in (l,) + graph.descendants[l]] for l in graph.nodes]

    def check_model(self, model):
        # Python ints: no fixed-width product that could wrap around
        total = sum(math.prod(s) for row in self._influence_shapes(model, 1) for s in row)
        if total > self.max_trace_elements:
            raise ValueError(f"rtrl needs {total} numbers of influence matrix per batch element, above "
                             f"max_trace_elements={self.max_trace_elements}: use a smaller network, raise "
                             "max_trace_elements, or use method='deep_eprop'")

    def init(self, model, batch):
        influence = tuple(tuple(jnp.zeros(shape, model.dtype) for shape in row)
                          for row in self._influence_shapes(model, batch))
        return EngineState(net=model.init_state(batch), traces=influence, grads=zero_theta_grads(model))

    def step(self, model, state, x, target, mask, loss):
        nodes, graph = model.nodes, model.graph
        steps = forward_linearized(model, state.net, x)
        y = steps[-1].z
        loss_t, delta = jax.value_and_grad(loss)(y, target, mask)  # delta: (B, n_out)

        def apply_within(k, G):  # J[k,t] @ G
            out = apply_block(steps[k - 1].block, G)
            if nodes[k - 1].recurrence == "dense":
                W = nodes[k - 1].recurrent_matrix()
                out = out + project_state(_off_diagonal(W), steps[k - 1].ds_dI, steps[k - 1].dz_prev, G)
            return out

        influence, grads = [], []
        for l in graph.nodes:
            eye = jnp.eye(nodes[l - 1].size, dtype=model.dtype)
            fresh = immediate(steps[l - 1])[:, :, :, None, :] * eye[None, :, None, :, None]  # (B, n, d, n, P)
            previous = dict(zip((l,) + graph.descendants[l], state.traces[l - 1]))
            new = {l: apply_within(l, previous[l]) + fresh}  # G[l,l]
            for k in graph.descendants[l]:  # topological order: every parent on a path from l is done
                G = apply_within(k, previous[k])
                for slot, j in enumerate(graph.parents[k]):
                    if j in new:  # j is l or one of its descendants
                        G = G + project_state(edge_matrix(model, k, slot), steps[k - 1].ds_dI, steps[j - 1].dz, new[j])
                new[k] = G
            influence.append(tuple(new[k] for k in (l,) + graph.descendants[l]))
            grads.append(state.grads[l - 1] + error_contract(delta, new[graph.readout]))
        return EngineState(net=tuple(s.state for s in steps), traces=tuple(influence), grads=tuple(grads)), (y, loss_t)

