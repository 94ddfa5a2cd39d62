"""E-prop (Bellec et al. 2020), run node by node: naive multi-layer e-prop (docs/math.md, "E-prop").

Equation, for each hidden node ``l`` (in a chain, ``children(l) = {l+1}``):

    eps[l,t] = Jb[l,t] * eps[l,t-1] + dbarM_l/dtheta_l       e[l,t] = dz[l,t]/ds * eps[l,t]
    ebar[l,t] = k * ebar[l,t-1] + e[l,t]                     (the leaky readout's filter; k = 0 if linear)
    g[N,t]   = dE_t/dy[t] * ds_dI[N]                         (dE_t/dI of the readout N)
    L[l,t]   = sum_{k in children(l)} B_{k<-l}^T @ g[k,t]     (learning signal on z[l,t])
    g[l,t]   = ds_dI[l] * dz[l] * L[l,t]                     (sent down through the same-time Jacobians)
    dE/dtheta_l ~= sum_t L[l,t] * ebar[l,t]

Feedback: ``"symmetric"`` (``B_{k<-l} = U_{k<-l}``: the instantaneous ``dE_t/dz``), ``"random"`` (fixed
random matrices of the same shapes, one per edge, drawn from ``feedback_seed``; Bellec's random e-prop,
extended through depth as feedback alignment) or ``"adaptive"`` (starts random; the online learner moves
the readout's ``B`` with its ``W_out``'s update and weight decay, as in Bellec et al.). The readout's own parameters
get their
exact gradient (their eligibility is filtered by the readout's leak ``k``, which must be shared by all
readout units).

Cost: ``eps[l]`` and ``ebar[l]``: ``B n_l (d_l + 1) P_l`` numbers (``~B n^2``), ``~B n^2`` work per step.
Constant in sequence length.

Factorised traces (``factorize``): when every neuron of layer ``l`` has the same state-independent own
Jacobian ``Jb = a_l`` and ``ds/dI = 1`` (leaky rate units, or LIF with ``detach_reset=True``; no diagonal
recurrence and no self-connection, ``DeepRNN(..., self_connections=False)``; a leak shared by the layer),
the presynaptic vector ``x_hat[t] = [z[l-1,t] | z[l,t-1] | 1]`` is shared by every row and

    eps[l,t,j,:] = xbar[l,t]        xbar[l,t] = a_l * xbar[l,t-1] + x_hat[l,t]       (B, P_l): one per layer
    e[l,t,j,:]   = psi[l,t,j] * xbar[l,t]

exactly (equal to the unfactorised recursion). With a linear readout (``k = 0``, known statically) the
gradient is one matrix product per step, ``grad_l += (L[l,t] * psi[l,t])^T @ xbar[l,t]``: memory
``B P_l`` per layer, work ``2 B n_l P_l`` (the cost of one forward matmul). With a leaky readout the filter
``ebar = k*ebar + psi (x) xbar`` does not factorise per presynaptic input (``ebar`` is a sum of ``t``
rank-one terms; the exact alternative, filtering the learning signal backwards in time, is not online),
so ``ebar`` stays ``(B, n_l, P_l)``: the eligibility vector is still never stored, and the work per step is
one element-wise update of ``ebar`` and one contraction. The readout's own trace always factorises
(``k`` is shared). ``factorize=None`` (default) factorises every layer that qualifies (decided from
static structure), ``True`` requires every hidden layer to qualify, ``False`` never factorises.

``readout_filter=False`` (an approximation, off by default) drops the leaky readout's filter from the hidden
layers' traces (``ebar -> e``: the learning signal acts only through the readout's same-step response), as
braintrace's online algorithms (ES-D-RTRL, D-RTRL) do; the readout's own gradient stays exact. With a
factorised layer this removes the last ``B n_l P_l`` array: memory ``B P_l``, one matmul per step.

Chunked contractions (``chunk_size``, default 64; docs/math.md, "Traces contracted per chunk"): ``sequence``
runs the steps in chunks of ``K`` and regroups ``sum_t L[t] ebar[t]`` exactly: with the learning signal
filtered backwards within the chunk, ``Lbar[s] = sum_{t>=s} k^(t-s) L[t]``, a factorised node's gradient is
one matrix product over the chunk's ``(K B)`` rows and ``ebar`` is read and written once per chunk. A scalar
node (one state, current and output) with a shared presynaptic vector whose own Jacobian depends on the state
(LIF with the reset kept, a self-connection) is regrouped the same way through a backward recursion over the
chunk. Work ``~4 B n_l P_l`` (``~6`` for the scalar form) per step in matrix products; extra memory the
chunk's records, ``K B (2 n_l + P_l)`` (``K B (4 n_l + P_l)``) numbers per node, constant in ``T``. Other
nodes (diagonal recurrence, ALIF) run step by step inside the chunk. The result equals the step-by-step form
(``chunk_size=1``) up to rounding.

Drops (relative to RTRL): the off-diagonal part of each within-layer Jacobian, and every path by which
a change in layer ``l`` at time ``t`` acts on the layers above at later times through their dynamics
(only the readout's own leak is kept). With one hidden layer and symmetric feedback it equals deep e-prop.
"""
from __future__ import annotations

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ..validation import check_bool, check_choice, check_int
from .base import EngineState, edge_matrix, forward_linearized, source_outputs, zero_theta_grads
from .chunks import ChunkedEngine, contract_batch_major, filter_backwards
from .traces import (apply_block, collapse, contract_rows, has_constant_own_jacobian, immediate, shared_leak,
                     signal_to_current)

FEEDBACKS = ("symmetric", "random", "adaptive")
_FEEDBACK_STREAM = 0xFEEDBAC  # folded into feedback_seed's key


class EPropTraces(eqx.Module):
    eligibility: tuple  # per hidden node: (B, P_l) factorised; (n_l, B, R_l) if d = c = o = 1; else (B, n_l, d_l, R_l)
    filtered: tuple  # per hidden node ebar: (n_l, B, R_l), or (B, n_l o_l, R_l) otherwise; (0,) if linear readout
    readout_eligibility: jax.Array  # (B, P_out): the readout's factorised trace
    feedback: tuple  # per node, per incoming edge: a matrix shaped like the edge's U (unused from the input)


class FactorisedRecord(NamedTuple):
    """One step of a factorised node, kept for the chunk's contraction: ``e = psi (x) xbar``."""

    psi: jax.Array  # (B, n_l) dz/ds * ds/dI
    xbar: jax.Array  # (B, P_l) the filtered presynaptic vector
    signal: jax.Array  # (B, n_l) the learning signal L


class ScalarRecord(NamedTuple):
    """One step of a scalar-neuron node with a shared presynaptic vector, kept for the chunk's contraction."""

    block: jax.Array  # (B, n_l) Jb, the neuron's own Jacobian (state-dependent)
    ds_dI: jax.Array  # (B, n_l)
    dz: jax.Array  # (B, n_l)
    presynaptic: jax.Array  # (B, P_l) x_hat, shared by every row
    signal: jax.Array  # (B, n_l) the learning signal L


class EProp(ChunkedEngine):
    """E-prop (Bellec et al. 2020) run node by node (module docstring: equation, cost, factorised traces).

    Args:
        feedback: how the learning signal is sent down: ``"symmetric"`` (the forward weights), ``"random"``
            (fixed random matrices) or ``"adaptive"`` (random at first, moved with ``W_out`` by the learner).
        feedback_seed: the seed of the random feedback matrices.
        factorize: ``None`` factorises every layer that qualifies, ``True`` requires all to, ``False`` never.
        readout_filter: ``False`` drops the leaky readout's filter from the hidden eligibilities (an
            approximation, as braintrace's ES-D-RTRL); default ``True`` (exact e-prop).
        chunk_size: steps per chunk of :meth:`sequence`'s trace contractions (module docstring); ``1`` runs
            step by step. The gradient does not depend on it (up to rounding).
        detach_reset: the reset choice for neurons that leave it to the rule (``detach_reset=None``, the default
            of LIF and ALIF): ``None`` (default) is the rule's, drop the reset path (Bellec et al.); ``True`` /
            ``False`` overrides it (docs/concepts/networks.md, "The reset: a choice of the rule").
    """

    name = "eprop"
    # whether a hidden layer's eligibility carries on in time through its own Jacobian (False: the immediate
    # engine, eligibility = this step's derivative only)
    carries_eligibility: ClassVar[bool] = True
    feedback: str = eqx.field(static=True, default="symmetric")
    feedback_seed: int = eqx.field(static=True, default=0)
    factorize: bool | None = eqx.field(static=True, default=None)
    readout_filter: bool = eqx.field(static=True, default=True)
    chunk_size: int = eqx.field(static=True, default=64)
    reset_default: ClassVar[bool] = True  # e-prop drops the reset path (detach_reset=None: this)
    detach_reset: bool | None = eqx.field(static=True, default=None)

    def __post_init__(self):
        check_choice("feedback", self.feedback, FEEDBACKS)
        check_int("chunk_size", self.chunk_size, minimum=1)
        check_bool("factorize", self.factorize, optional=True)  # None: automatic
        check_bool("readout_filter", self.readout_filter)
        check_int("feedback_seed", self.feedback_seed)

    def factorised_layers(self, model) -> tuple[bool, ...]:
        """Per hidden node, whether its eligibility is stored factorised (static structure only)."""
        if self.factorize is False:
            return tuple(False for _ in model.layers)
        return tuple(has_constant_own_jacobian(layer) for layer in model.layers)

    def check_model(self, model):
        check_readout_leak(model, self.name)
        if self.factorize is True and not all(self.factorised_layers(model)):
            raise ValueError("eprop with factorize=True needs every hidden layer to have a shared, "
                             "state-independent own Jacobian: neuron 'leaky', or 'lif' with "
                             "neuron_options={'detach_reset': True}; recurrence 'none', or 'dense' with "
                             "self_connections=False; one time constant per layer (scalar tau_m)")

    def init(self, model, batch):
        self.check_model(model)
        dtype = model.dtype
        hidden = model.layers
        # a key of its own (not the model's PRNGKey(seed)), else B_out would equal W_out for equal seeds
        feedback_key = jax.random.fold_in(jax.random.PRNGKey(self.feedback_seed), _FEEDBACK_STREAM)
        keys = jax.random.split(feedback_key, len(model.nodes))
        feedback = []  # per node, per incoming edge: the matrix the learning signal goes down through
        for key, node in zip(keys, model.nodes):
            per_edge = []
            for slot, projection in enumerate(node.inputs):
                if self.feedback == "symmetric" or not projection.trainable:
                    per_edge.append(jnp.zeros((0,), dtype))  # unused: the forward weights (or identity) are read
                    continue
                edge_key = key if slot == 0 else jax.random.fold_in(key, slot)
                shape = projection.weight.shape
                per_edge.append(jax.random.normal(edge_key, shape, dtype) / jnp.sqrt(shape[1]).astype(dtype))
            feedback.append(tuple(per_edge))
        factorised = self.factorised_layers(model)
        chunked = self.chunked_layers(model)
        leaky = not model.readout_is_linear and self.readout_filter

        def eligibility_shape(layer, fact, chunk):
            if fact:
                return (batch, layer.row_size)
            if chunk:
                return (batch, layer.size, layer.row_size)
            if _scalar_neuron(layer):
                return (layer.size, batch, layer.row_size)
            return (batch, layer.size, layer.neuron.state_size, layer.row_size)

        def filtered_shape(layer, fact, chunk):
            if not leaky:
                return (0,)
            if chunk:
                return (batch, layer.size, layer.row_size)
            if fact or _scalar_neuron(layer):
                return (layer.size, batch, layer.row_size)
            return (batch, layer.size * layer.outputs, layer.row_size)

        shapes = tuple(zip(hidden, factorised, chunked))
        traces = EPropTraces(
            eligibility=tuple(jnp.zeros(eligibility_shape(*shape), dtype) for shape in shapes),
            filtered=tuple(jnp.zeros(filtered_shape(*shape), dtype) for shape in shapes),
            readout_eligibility=jnp.zeros((batch, model.readout.row_size), dtype),
            feedback=tuple(feedback),
        )
        return EngineState(net=model.init_state(batch), traces=traces, grads=zero_theta_grads(model))

    def chunked_layers(self, model) -> tuple[bool, ...]:
        """Per hidden node, whether :meth:`sequence` contracts its traces once per chunk (static structure only):
        ``chunk_size > 1`` and a scalar neuron (one state, current and output) whose presynaptic vector is
        shared by its rows (recurrence ``"none"`` or ``"dense"``). Such a node stores its traces batch-major,
        (B, n_l, P_l); the others neuron-major, (n_l, B, P_l), where the contraction over B is faster on CPU."""
        if self.chunk_size == 1:
            return tuple(False for _ in model.layers)
        return tuple(fact or (_scalar_neuron(layer) and layer.recurrence != "diagonal")
                     for layer, fact in zip(model.layers, self.factorised_layers(model)))

    def _feedback_matrix(self, model, traces, node, slot):
        """The matrix the learning signal goes down through along edge ``slot`` of node ``node`` (position)."""
        if self.feedback == "symmetric" or not model.nodes[node].inputs[slot].trainable:
            return edge_matrix(model, node, slot)
        return traces.feedback[node][slot]

    def _carried(self, decayed):
        """The part of the eligibility carried over from the previous step (none for the immediate engine)."""
        return decayed if self.carries_eligibility else jnp.zeros_like(decayed)

    def _contract_chunk(self, model, state, records):
        """Add a chunk's deferred terms to the gradients and bring the deferred traces to the chunk's end.

        ``records``: per hidden node a :class:`FactorisedRecord`, a :class:`ScalarRecord` or ``None`` (a node
        run step by step), each field (K, B, ...); last, the readout's ``(dE_t/dI, trace)`` ((K, B, n_out),
        (K, B, P_out)). Indices below run over the chunk's steps ``t = 1..K``; ``_0`` is the chunk's start.
        """
        *hidden, (top_signal, readout_trace) = records
        size = top_signal.shape[0]
        grads = list(state.grads)
        grads[-1] = grads[-1] + jnp.einsum("tbo,tbp->op", top_signal, readout_trace)  # one matmul over (K B)
        eligibility, filtered = list(state.traces.eligibility), list(state.traces.filtered)
        leaky = not model.readout_is_linear and self.readout_filter
        k = shared_leak(model.readout) if leaky else jnp.zeros((), top_signal.dtype)
        powers = k ** jnp.arange(size + 1, dtype=top_signal.dtype)  # k^0 .. k^K (k^0 = 1 also for k = 0)
        for l, record in enumerate(hidden):
            if record is None:
                continue
            # Lbar[s] = sum_{t>=s} k^(t-s) L[t]: the learning signal filtered backwards within the chunk (= L if
            # there is no readout filter); sum_t L[t] ebar[t] = sum_t Lbar[t] e[t] + sum_t k^t L[t] ebar_0
            filtered_signal = filter_backwards(powers, record.signal) if leaky else record.signal
            if leaky:
                grads[l] = grads[l] + contract_batch_major(
                    filtered[l], jnp.einsum("t,tbj->bj", powers[1:], record.signal))  # (B, n_l, P_l) ebar_0
            if isinstance(record, FactorisedRecord):  # e[t] = psi[t] (x) xbar[t]: one matmul over (K B)
                grads[l] = grads[l] + jnp.einsum("tbj,tbp->jp", filtered_signal * record.psi, record.xbar)
                if leaky:  # ebar_K = k^K ebar_0 + sum_s k^(K-s) psi[s] (x) xbar[s]: per example (n_l, K) @ (K, P_l)
                    filtered[l] = powers[-1] * filtered[l] + jnp.einsum(
                        "tbj,tbp->bjp", powers[-2::-1, None, None] * record.psi, record.xbar)
                continue
            # ScalarRecord: eps[t] = a[t] eps[t-1] + g[t] x[t], e[t] = d[t] eps[t], per (b, j) scalars a, g, d
            # and the shared presynaptic vector x. With Phi(t, s) = a[s+1] ... a[t], and any weights u[t]:
            #   sum_t u[t] eps[t] = a[1] w[1] eps_0 + sum_s w[s] g[s] x[s],   w[s] = u[s] + a[s+1] w[s+1]
            # applied to u = d Lbar (the gradient), u = k^(K-t) d (ebar_K) and u = [t = K] (eps_K).
            a = self._carried(record.block)  # (K, B, n_l); zero for the immediate engine
            d = record.dz
            weights = [d * filtered_signal, jnp.zeros_like(d).at[-1].set(1)]  # gradient, eps_K
            if leaky:
                weights.append(powers[-2::-1, None, None] * d)  # ebar_K
            weights = jnp.stack(weights, axis=1)  # (K, m, B, n_l)
            following = jnp.concatenate([a[1:], jnp.zeros_like(a[:1])])[:, None]  # a[s+1], 0 after the chunk

            def backwards(w_next, xs):
                u, a_next = xs
                w = u + a_next * w_next
                return w, w

            _, w = jax.lax.scan(backwards, jnp.zeros_like(weights[0]), (weights, following), reverse=True)
            start = a[0][None] * w[0]  # (m, B, n_l): the coefficients of eps_0
            presynaptic_weights = w * record.ds_dI[:, None]  # (K, m, B, n_l)
            eps_start = eligibility[l]  # (B, n_l, P_l)
            grads[l] = (grads[l] + contract_batch_major(eps_start, start[0])
                        + jnp.einsum("tbj,tbp->jp", presynaptic_weights[:, 0], record.presynaptic))
            ends = jnp.einsum("tmbj,tbp->mbjp", presynaptic_weights[:, 1:], record.presynaptic)  # (m-1, B, n_l, P_l)
            eligibility[l] = start[1][:, :, None] * eps_start + ends[0]
            if leaky:
                filtered[l] = powers[-1] * filtered[l] + start[2][:, :, None] * eps_start + ends[1]
        traces = EPropTraces(tuple(eligibility), tuple(filtered), state.traces.readout_eligibility,
                             state.traces.feedback)
        return EngineState(net=state.net, traces=traces, grads=tuple(grads))

    def _advance(self, model, state, x, target, mask, loss, *, defer: bool):
        """One time step. ``defer=True`` leaves the factorised nodes' ``ebar`` and gradients, and the readout's
        gradient, to :meth:`_contract_chunk` and returns what it needs; ``False`` is the step-by-step form.

        Returns ``(state, (y, loss_t), records)`` (``records`` as :meth:`_contract_chunk` takes them, or None).
        """
        traces = state.traces
        graph = model.graph
        factorised = self.factorised_layers(model)
        leaky = not model.readout_is_linear and self.readout_filter
        steps = forward_linearized(model, state.net, x)
        y = steps[-1].z
        loss_t, delta = jax.value_and_grad(loss)(y, target, mask)  # delta: (B, n_out)
        k = shared_leak(model.readout)  # shared readout leak

        # the readout's eligibility factorises exactly: eps_out[o, :] = k * eps_out[o, :] + [z_parents | 1]
        top = steps[-1]
        readout_trace = k * traces.readout_eligibility + model.readout.shared_presynaptic(
            top.z_prev, source_outputs(steps, x, model.readout))
        grads = list(state.grads)
        current_signal = {graph.readout: delta * top.ds_dI[:, :, 0, 0]}  # dE_t/dI per node, same time step
        records = [None] * len(model.layers) + [(current_signal[graph.readout], readout_trace)]
        if not defer:
            grads[-1] = state.grads[-1] + current_signal[graph.readout].T @ readout_trace

        eligibility, filtered = list(traces.eligibility), list(traces.filtered)
        chunked = self.chunked_layers(model)
        for l in reversed(range(len(model.layers))):  # reverse topological order: children first
            step, layer = steps[l], model.layers[l]
            # learning signal on z[l,t]: sum over the children of D[k<-l]^T (feedback matrices for random)
            signal = sum(current_signal[c] @ self._feedback_matrix(model, traces, c, slot)
                         for c, slot in graph.children[l])  # (B, n_l)
            if factorised[l]:  # one presynaptic trace per layer: e = psi (x) xbar
                xbar = self._carried(shared_leak(layer) * traces.eligibility[l]) + layer.shared_presynaptic(
                    step.z_prev, source_outputs(steps, x, layer))
                psi = step.dz[:, :, 0, 0] * step.ds_dI[:, :, 0, 0]  # (B, n_l)
                eligibility[l] = xbar
                if defer:
                    records[l] = FactorisedRecord(psi, xbar, signal)
                elif leaky and chunked[l]:  # (B, n_l, P_l)
                    filtered[l] = k * traces.filtered[l] + psi[:, :, None] * xbar[:, None, :]
                    grads[l] = state.grads[l] + contract_batch_major(filtered[l], signal)
                elif leaky:  # (n_l, B, P_l)
                    filtered[l] = k * traces.filtered[l] + psi.T[:, :, None] * xbar[None, :, :]
                    grads[l] = state.grads[l] + jnp.einsum("jbp,jb->jp", filtered[l], signal.T)
                else:
                    grads[l] = state.grads[l] + (signal * psi).T @ xbar
            elif chunked[l] and defer:  # eps, ebar left to the chunk's contraction
                records[l] = ScalarRecord(step.block[..., 0, 0], step.ds_dI[:, :, 0, 0], step.dz[:, :, 0, 0],
                                          layer.shared_presynaptic(step.z_prev, source_outputs(steps, x, layer)),
                                          signal)
            elif chunked[l]:  # d = c = o = 1, batch-major (B, n_l, P_l) traces
                eps = (self._carried(step.block[..., 0] * traces.eligibility[l])
                       + step.ds_dI[..., 0] * step.presynaptic)
                e = step.dz[:, :, 0] * eps
                eligibility[l] = eps
                if leaky:
                    filtered[l] = k * traces.filtered[l] + e
                grads[l] = state.grads[l] + contract_batch_major(filtered[l] if leaky else e, signal)
            elif _scalar_neuron(layer):  # d = c = o = 1: neuron-major (n_l, B, P_l) traces, fast contraction over B
                jb = step.block[..., 0, 0].T[:, :, None]  # (n_l, B, 1)
                pre = jnp.swapaxes(step.presynaptic, 0, 1)  # (n_l, B, P_l)
                eps = self._carried(jb * traces.eligibility[l]) + step.ds_dI[:, :, 0, 0].T[:, :, None] * pre
                e = step.dz[:, :, 0, 0].T[:, :, None] * eps
                eligibility[l] = eps
                if leaky:
                    filtered[l] = k * traces.filtered[l] + e
                grads[l] = state.grads[l] + jnp.einsum("jbp,jb->jp", filtered[l] if leaky else e, signal.T)
            else:
                # (B, n_l, d_l, R_l)
                eps = self._carried(apply_block(step.block, traces.eligibility[l])) + immediate(step)
                e = collapse(step.dz, eps)  # (B, n_l o_l, R_l)
                eligibility[l] = eps
                if leaky:
                    filtered[l] = k * traces.filtered[l] + e
                grads[l] = state.grads[l] + contract_rows(signal, filtered[l] if leaky else e, layer.outputs)
            if any(j >= 0 for j in graph.parents[l]):  # a hidden node below: pass dE_t/dI[l] on
                current_signal[l] = signal_to_current(step, signal)  # (B, n_l c_l)
        new_traces = EPropTraces(tuple(eligibility), tuple(filtered), readout_trace, traces.feedback)
        new_state = EngineState(net=tuple(s.state for s in steps), traces=new_traces, grads=tuple(grads))
        return new_state, (y, loss_t), (tuple(records) if defer else None)


def _scalar_neuron(layer) -> bool:
    """One state variable, current and output per neuron and no trained neuron parameters (static)."""
    return (layer.neuron.state_size == 1 and layer.currents == 1 and layer.outputs == 1
            and not layer.trained_neuron_parameters)


def check_readout_leak(model, name: str) -> None:
    """e-prop's readout filter needs one leak ``k`` shared by the readout units (an integrator readout)."""
    if not has_constant_own_jacobian(model.readout):
        raise ValueError(f"{name} needs a readout whose own Jacobian is one shared constant leak k (a "
                         f"deepeprop.Integrator readout without recurrence); this readout's neuron is "
                         f"{type(model.readout.neuron).__name__}")
