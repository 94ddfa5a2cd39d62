"""Factored deep e-prop: a deep trace at e-prop's cost (docs/math.md, "Factored deep traces").

Equation, for each hidden node ``l`` and each path ``p = (l, k1, ..., km = N)`` from ``l`` to the readout
``N`` (in a chain, the one path ``l, l+1, ..., L, N``), with the leak ``a_k`` of each node on it (the
readout's ``k``, or no filter for a linear readout):

    eps[l,t] = Jb[l,t] * eps[l,t-1] + dbarM_l/dtheta_l           e[l,t] = dz[l,t]/ds * eps[l,t]
    F[p,1,t] = a_k1 * F[p,1,t-1] + e[l,t]                         (exact first hop: S[k1,l] = U_{k1<-l} (x) F)
    F[p,i,t] = a_ki * F[p,i,t-1] + F[p,i-1,t]                     (carried through each leak on the path)
    g[p,N,t] = dE_t/dy[t] * ds_dI[N]    g[p,ki,t] = ds_dI[ki] dz[ki] * (U_{k(i+1)<-ki}^T g[p,k(i+1),t])
    dE/dtheta_l ~= sum_t sum_p (U_{k1<-l}^T g[p,k1,t]) * F[p,m,t]

Paths sharing a prefix share its ``F`` and paths sharing a suffix share its signal ``g``. The readout's own
parameters get their exact gradient (their trace factorises: ``k`` is shared).

Cost: ``eps[l]`` (``B n_l d_l P_l``, or ``B P_l`` when the node's own Jacobian is a shared constant, see
:mod:`deepeprop.engines.eprop`) plus one ``F`` of ``B n_l P_l`` numbers per leaky node on each path prefix
(``O(depth B n^2)`` per node in a chain); ``~B n_l P_l`` element-wise work per ``F`` and step, one
contraction per path. No ``n^3`` trace, no ``n^4`` product. Constant in sequence length.

Drops (relative to RTRL): what e-prop drops inside each node (the off-diagonal part of ``J[l]``), and,
beyond the first node above ``l``, the time-varying surrogate derivatives between the nodes above:
``S[N,l]`` is replaced by ``sum_p D_p[t] (U_{k1<-l} (x) F[p,t])`` with every ``D`` on the path taken at the
current step. Exact (equal to deep e-prop) when every path from ``l`` passes through at most one node with
a leak, that node's own Jacobian being a shared constant: e.g. two hidden layers with a linear readout,
or one hidden layer with any readout. Equal to BPTT in those cases when ``l`` has no dense recurrence.

Supported models (``check_model`` raises ``ValueError`` otherwise): every hidden node fed by another hidden
node needs ``Jb = a`` shared and state-independent with ``ds/dI = 1``: neuron ``"leaky"``, or ``"lif"`` with
``neuron_options={"detach_reset": True}``; recurrence ``"none"`` or ``"dense"`` with
``self_connections=False``; one scalar time constant per node. Nodes fed by the input only may be any model.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .base import Engine, EngineState, edge_matrix, forward_linearized, source_outputs, zero_theta_grads
from .eprop import check_readout_leak
from .traces import apply_block, collapse, has_constant_own_jacobian, immediate, shared_leak, signal_to_current


class FactoredDeepEProp(Engine):
    """Factored deep e-prop: the deep trace at e-prop's cost (module docstring: equation, cost, supported
    models). No options."""

    name = "deep_eprop_factored"

    def check_model(self, model):
        check_readout_leak(model, self.name)
        graph = model.graph
        for index, layer in enumerate(model.layers):
            if any(j >= 0 for j in graph.parents[index]) and not has_constant_own_jacobian(layer):
                raise ValueError(
                    f"deep_eprop_factored needs every hidden node fed by another hidden node to have a shared, "
                    f"state-independent own Jacobian (Jb = a); node {index + 1} does not. Use neuron 'leaky', or "
                    "'lif' with neuron_options={'detach_reset': True}; recurrence 'none', or 'dense' with "
                    "self_connections=False; one scalar tau_m per layer. Otherwise use method='deep_eprop'")

    @staticmethod
    def _prefixes(model, l) -> tuple[tuple[int, ...], ...]:
        """The path prefixes from ``l`` (``l`` excluded) that end at a node with a leak: one ``F`` each."""
        out = []
        for path in model.graph.paths(l):
            for i in range(1, len(path)):
                prefix = path[1:i + 1]
                if prefix[-1] == model.graph.readout and model.readout_is_linear:
                    continue  # a linear readout filters nothing
                if prefix not in out:
                    out.append(prefix)
        return tuple(out)

    def init(self, model, batch):
        self.check_model(model)
        dtype = model.dtype
        traces = []
        for l, layer in enumerate(model.layers):
            if has_constant_own_jacobian(layer):
                eps = jnp.zeros((batch, layer.row_size), dtype)
            else:
                eps = jnp.zeros((batch, layer.size, layer.neuron.state_size, layer.row_size), dtype)
            filtered = tuple(jnp.zeros((layer.size * layer.outputs, batch, layer.row_size), dtype)
                             for _ in self._prefixes(model, l))
            traces.append((eps, filtered))
        traces.append(jnp.zeros((batch, model.readout.row_size), dtype))  # the readout's own trace
        return EngineState(net=model.init_state(batch), traces=tuple(traces), grads=zero_theta_grads(model))

    def step(self, model, state, x, target, mask, loss):
        nodes, graph = model.nodes, model.graph
        top = graph.readout
        steps = forward_linearized(model, state.net, x)
        y = steps[-1].z
        loss_t, delta = jax.value_and_grad(loss)(y, target, mask)  # (B, n_out)
        k = shared_leak(model.readout)

        readout_trace = k * state.traces[-1] + model.readout.shared_presynaptic(
            steps[top].z_prev, source_outputs(steps, x, model.readout))
        grads = [None] * len(nodes)
        top_signal = delta * steps[top].ds_dI[:, :, 0, 0]  # (B, n_out): dE_t/dI of the readout
        grads[-1] = state.grads[-1] + top_signal.T @ readout_trace

        suffix_signals = {(top,): top_signal}

        def current_signal(suffix):  # dE_t/dI[suffix[0]] along the path suffix alone (memoised)
            if suffix not in suffix_signals:
                node, above = suffix[0], suffix[1:]
                weight = edge_matrix(model, above[0], graph.parents[above[0]].index(node))
                signal = current_signal(above) @ weight  # (B, n o) on z[node]
                suffix_signals[suffix] = signal_to_current(steps[node], signal)  # (B, n c)
            return suffix_signals[suffix]

        traces = [None] * len(model.layers)
        for l in reversed(range(len(model.layers))):
            step, layer = steps[l], model.layers[l]
            eps_prev, filtered_prev = state.traces[l]
            if eps_prev.ndim == 2:  # factorised: e = psi (x) xbar
                eps = shared_leak(layer) * eps_prev + layer.shared_presynaptic(
                    step.z_prev, source_outputs(steps, x, layer))
                psi = step.dz[:, :, 0, 0] * step.ds_dI[:, :, 0, 0]
                e = psi.T[:, :, None] * eps[None, :, :]  # (n_l, B, P_l)
            else:
                eps = apply_block(step.block, eps_prev) + immediate(step)
                e = jnp.swapaxes(collapse(step.dz, eps), 0, 1)  # (n_l o_l, B, R_l)
            prefixes = self._prefixes(model, l)
            previous = dict(zip(prefixes, filtered_prev))
            filtered = {}
            for prefix in prefixes:  # a prefix's parent prefix comes before it
                below = filtered[prefix[:-1]] if prefix[:-1] in filtered else e
                filtered[prefix] = shared_leak(nodes[prefix[-1]]) * previous[prefix] + below
            grad = state.grads[l]
            for path in graph.paths(l):
                above = path[1:]
                carried = e
                for i in range(len(above), 0, -1):  # the longest filtered prefix of this path
                    if above[:i] in filtered:
                        carried = filtered[above[:i]]
                        break
                weight = edge_matrix(model, above[0], graph.parents[above[0]].index(l))  # U_{k1<-l}
                signal = current_signal(above) @ weight  # (B, n_l o_l) on z[l]
                contribution = jnp.einsum("jbp,jb->jp", carried, signal.T)  # (n_l o_l, R_l)
                if layer.outputs > 1:  # sum each neuron's outputs
                    contribution = contribution.reshape(layer.size, layer.outputs, -1).sum(axis=1)
                grad = grad + contribution
            grads[l] = grad
            traces[l] = (eps, tuple(filtered[prefix] for prefix in prefixes))
        new_state = EngineState(net=tuple(s.state for s in steps), traces=tuple(traces) + (readout_trace,),
                                grads=tuple(grads))
        return new_state, (y, loss_t)
