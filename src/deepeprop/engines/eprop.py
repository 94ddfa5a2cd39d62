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

Evaluations (:mod:`.evaluation`; ``EProp.evaluations``: step, chunked, reverse). The same gradient three ways:

* **step** (``chunk_size=1``): the recursions above, one step at a time; the reference.
* **chunked** (``chunk_size=K``, default 64; docs/math.md, "Traces contracted per chunk"): ``sequence`` runs the
  steps in chunks of ``K`` and regroups the chunk's sum exactly, reading and writing the traces once per chunk.
  Filtering the learning signal backwards within the chunk, ``Lbar[s] = sum_{t>=s} k^(t-s) L[t]``,

      sum_t L[t] ebar[t] = sum_t Lbar[t] e[t] + (sum_t k^t L[t]) ebar_0

  and, for any node (``d`` states, own ``d x d`` block ``Jb``, ``c`` currents, ``o`` outputs, ``q`` trained neuron
  parameters), with weights ``u[t]`` (a ``d``-vector per example and neuron),

      sum_t u[t]^T eps[t] = (Jb[1]^T w[1])^T eps_0 + sum_s w[s]^T imm[s],    w[s] = u[s] + Jb[s+1]^T w[s+1]

  a backward recursion over the chunk on ``d``-vectors. ``u = sum_o Lbar[o] dz[o, :]`` gives the gradient,
  ``u[t] = [t = K] e_a`` row ``a`` of ``eps_K`` (``w[s] = Phi(K, s)^T e_a``, the chunk's propagators), and
  ``u[t] = k^(K-t) dz[t, o, :]`` output ``o`` of ``ebar_K - k^K ebar_0``. The immediate term ``imm[s] =
  ds_dI[s, :, i] (x) x_hat[s]`` (per current ``i``) then meets the shared presynaptic vector in matrix products
  over the chunk's ``(K B)`` rows (the gradient) or per example over ``K`` (the new traces); a diagonal
  recurrence's own column ``z[t-1, j]`` and the trained neuron parameters' ``ds_dparams`` are summed apart.
  What runs where: a factorised node (``e = psi (x) xbar``) needs no recursion, one matmul for the gradient and
  one per example for ``ebar_K``; a scalar neuron (``d = c = o = 1``, shared presynaptic vector) runs the
  recursion on scalars; every other node (ALIF, diagonal recurrence, LRU, minGRU, ...) on ``d``-vectors, with
  ``m = 1 + d + o`` rows of weights (``1 + d`` without a readout filter), component by component. Work per step
  ``~2 m B n_l P_l`` in matrix products (``~4`` factorised, ``~6`` scalar) plus ``~m d^2 B n_l`` element-wise;
  extra memory the chunk's records, ``K B (n_l (d^2 + d c + d o + d q + o) + P_l)`` numbers per node,
  constant in ``T``. The traces of such a node are stored one slab per state, ``eps`` (B, d_l, n_l, R_l). The
  result equals the step-by-step form up to rounding; chunks never straddle a weight update.
* **reverse** (:meth:`EProp.reverse`, ``dp.gradients(..., evaluation="reverse")``): one chunk as long as the
  window, the traces starting at zero: the records of all ``T`` steps, then one backward recursion and the
  gradient's matrix products (the end-of-window traces are not formed; they are returned at zero). Work about
  the chunked form's gradient part, memory ``T B (n_l (d^2 + ...) + P_l)``, growing with ``T`` as BPTT's. Not
  online: it equals the online rule when the weights change once per sequence (``update_every=None``).

Drops (relative to RTRL): the off-diagonal part of each within-layer Jacobian, and every path by which
a change in layer ``l`` at time ``t`` acts on the layers above at later times through their dynamics
(only the readout's own leak is kept). With one hidden layer and symmetric feedback it equals deep e-prop.

Why this file is long: it is one rule (:class:`LocalRule`, whose members are ``eprop`` and ``immediate``) with two
evaluations (step by step, and chunked, whose contraction runs once per chunk) over five trace layouts (factorised,
scalar, neuron-major, components, general). Each layout's step update and its chunk contraction must agree to
rounding, and the check a reader makes is the one between them: they are kept side by side, in one class, on
purpose.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ..validation import check_bool, check_choice, check_int
from . import paths
from .base import EngineState, forward_linearized, source_outputs, zero_theta_grads
from .chunks import ChunkedEngine, contract_batch_major, filter_backwards, run_in_chunks
from .evaluation import Chunked, Reverse, Step
from .plan import EPropPlan
from .traces import (apply_block, collapse, contract_rows, edge_matrix, has_constant_own_jacobian, immediate,
                     shared_leak, signal_to_current)

FEEDBACKS = ("symmetric", "random", "adaptive")
_FEEDBACK_STREAM = 0xFEEDBAC  # folded into feedback_seed's key


class EPropTraces(eqx.Module):
    eligibility: tuple  # per hidden node, in the layout EProp.layouts names (its docstring gives the shapes)
    filtered: tuple  # per hidden node ebar: (n_l, B, R_l) or (B, n_l o_l, R_l); (0,) with a linear readout
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


class NodeRecord(NamedTuple):
    """One step of any other node (``d`` states, ``c`` currents, ``o`` outputs, ``q`` trained neuron
    parameters), kept for the chunk's contraction; the small per-neuron axes lead (component-major), so that each
    component is a contiguous (B, n_l) array."""

    block: jax.Array  # (d, d, B, n_l) Jb[a, c] = ds_a / ds_c at t-1, the neuron's own Jacobian
    ds_dI: jax.Array  # (d, c, B, n_l)
    dz: jax.Array  # (o, d, B, n_l)
    presynaptic: jax.Array  # (B, P') the part of x_hat shared by every row (diagonal: without the W_jj column)
    own_input: jax.Array | None  # (B, n_l) z[t-1, j], the W_jj column of row j (diagonal recurrence); else None
    ds_dparams: jax.Array  # (d, q, B, n_l) the trained neuron parameters' immediate term (q may be 0)
    signal: jax.Array  # (B, n_l o) the learning signal L


class LocalRule(ChunkedEngine):
    """The family of per-node rules: the learning signal sent down the same-time edges, each hidden node's own
    eligibility, and the readout's exact own gradient (module docstring). Not an engine of its own: a member
    declares ``name``, ``regularization_paths`` and ``carries_eligibility`` (whether a hidden node's eligibility
    carries on through its own Jacobian, :class:`EProp`, or is this step's derivative only,
    :class:`~deepeprop.engines.immediate.Immediate`). The options below are every member's.

    Args:
        feedback: how the learning signal is sent down: ``"symmetric"`` (the forward weights), ``"random"``
            (fixed random matrices) or ``"adaptive"`` (random at first, moved with ``W_out`` by the learner).
        feedback_seed: the seed of the random feedback matrices.
        factorize: ``None`` factorises every layer that qualifies, ``True`` requires all to, ``False`` never.
        readout_filter: ``False`` drops the leaky readout's filter from the hidden eligibilities (an
            approximation, as braintrace's ES-D-RTRL); default ``True`` (exact e-prop).
        chunk_size: steps per chunk of :meth:`sequence`'s trace contractions (module docstring); ``1`` runs
            step by step. The gradient does not depend on it (up to rounding). ``dp.gradients(...,
            evaluation="chunked:K" | "step" | "reverse")`` sets it, or evaluates the rule in reverse.
        detach_reset: the reset choice for neurons that leave it to the rule (``detach_reset=None``, the default
            of LIF and ALIF): ``None`` (default) is the rule's, drop the reset path (Bellec et al.); ``True`` /
            ``False`` overrides it (docs/concepts/networks.md, "The reset: a choice of the rule").
    """

    evaluations = (Step, Chunked, Reverse)
    feedbacks = FEEDBACKS
    # whether a hidden layer's eligibility carries on in time through its own Jacobian: each member declares it
    carries_eligibility: ClassVar[bool]
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

    def _make_plan(self, model) -> EPropPlan:
        """Per hidden node, how its traces are stored and contracted (static structure only; ``plan.layouts``):

        * ``"factorised"``: one presynaptic trace ``xbar`` (B, P_l); ``ebar`` (B, n_l, P_l) when
          ``chunk_size > 1``, else (n_l, B, P_l).
        * ``"scalar"`` (``chunk_size > 1``): one state, current and output, no trained neuron parameters and
          a presynaptic vector shared by the rows (recurrence none or dense): ``eps``, ``ebar`` (B, n_l, R_l).
        * ``"neuron_major"`` (``chunk_size == 1``): a scalar neuron, ``eps``, ``ebar`` (n_l, B, R_l), where the
          step's contraction over B is faster on CPU.
        * ``"components"`` (``chunk_size > 1``): any other node, ``eps`` (B, d_l, n_l, R_l) (one slab per state,
          as the chunk's contraction writes them), ``ebar`` (B, n_l o_l, R_l).
        * ``"general"`` (``chunk_size == 1``): ``eps`` (B, n_l, d_l, R_l), ``ebar`` (B, n_l o_l, R_l).

        A node factorises when its own Jacobian is one shared, state-independent leak (``factorize`` not
        ``False``). With ``chunk_size > 1`` every node's traces are contracted once per chunk
        (:meth:`_contract_chunk`)."""
        chunked = self.chunk_size > 1
        layouts = []
        for layer in model.hidden:
            if self.factorize is not False and has_constant_own_jacobian(layer):
                layouts.append("factorised")
            elif _scalar_neuron(layer) and not chunked:
                layouts.append("neuron_major")
            elif _scalar_neuron(layer) and layer.recurrence != "diagonal":
                layouts.append("scalar")
            else:
                layouts.append("components" if chunked else "general")
        return EPropPlan(layouts=tuple(layouts), leaky=not model.readout_is_linear and self.readout_filter,
                         chunked=chunked, carries=self.carries_eligibility)

    def factorised_layers(self, model) -> tuple[bool, ...]:
        """Per hidden node, whether its eligibility is stored factorised (``plan(model).factorised``)."""
        return self.plan(model).factorised

    def check_model(self, model):
        check_readout_leak(model, self.name)
        if self.factorize is True and not all(self.plan(model).factorised):
            raise ValueError("eprop with factorize=True needs every hidden layer to have a shared, "
                             "state-independent own Jacobian: neuron 'leaky', or 'lif' with "
                             "neuron_options={'detach_reset': True} (n_ref=0); recurrence 'none', or 'dense' with "
                             "self_connections=False; one time constant per layer (scalar tau_m)")

    def init(self, model, batch):
        self.check_model(model)
        dtype = model.dtype
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
        return EngineState(net=model.init_state(batch), traces=self._zero_traces(model, batch, tuple(feedback)),
                           grads=zero_theta_grads(model))

    def _zero_traces(self, model, batch, feedback) -> EPropTraces:
        """The traces at zero, in the layout :meth:`layouts` gives, with the given feedback matrices."""
        dtype = model.dtype
        plan = self.plan(model)

        def shapes(layer, layout):
            n, R = layer.size, layer.row_size
            if layout == "factorised":
                filtered = (batch, n, R) if self.chunk_size > 1 else (n, batch, R)
                return (batch, R), filtered
            if layout == "scalar":
                return (batch, n, R), (batch, n, R)
            if layout == "neuron_major":
                return (n, batch, R), (n, batch, R)
            if layout == "components":
                return (batch, layer.neuron.state_size, n, R), (batch, n * layer.outputs, R)
            return (batch, n, layer.neuron.state_size, R), (batch, n * layer.outputs, R)

        pairs = [shapes(layer, layout) for layer, layout in zip(model.hidden, plan.layouts)]
        return EPropTraces(
            eligibility=tuple(jnp.zeros(eps, dtype) for eps, _ in pairs),
            filtered=tuple(jnp.zeros(ebar if plan.leaky else (0,), dtype) for _, ebar in pairs),
            readout_eligibility=jnp.zeros((batch, model.readout.row_size), dtype),
            feedback=feedback,
        )

    def layouts(self, model) -> tuple[str, ...]:
        """Per hidden node, how its traces are stored and contracted (``plan(model).layouts``; :meth:`_make_plan`)."""
        return self.plan(model).layouts

    def chunked_layers(self, model) -> tuple[bool, ...]:
        """Per hidden node, whether :meth:`sequence` contracts its traces once per chunk: every node when
        ``chunk_size > 1``, none when ``chunk_size == 1`` (``plan(model).chunked``)."""
        return tuple(self.plan(model).chunked for _ in model.hidden)

    def reverse(self, model, state, inputs, targets, mask, loss):
        """The rule over the window ``inputs`` (T, B, n_in) in reverse: one chunk as long as the window (the
        records of all ``T`` steps, then one backward pass), the traces starting at zero (module docstring).

        Returns ``(state, ys, losses)`` as :meth:`sequence`; the state's traces are returned at zero (its
        feedback matrices unchanged), its gradients accumulated, its network state at the window's end."""
        steps, batch = inputs.shape[:2]
        window = dataclasses.replace(self, chunk_size=max(steps, 2))  # the chunked layout, one chunk of T
        start = EngineState(net=state.net, traces=window._zero_traces(model, batch, state.traces.feedback),
                            grads=state.grads)
        end, ys, losses = run_in_chunks(
            steps, lambda s, x, t, m: window._advance(model, s, x, t, m, loss, defer=True),
            lambda s, records: window._contract_chunk(model, s, records, final_traces=False),
            start, inputs, targets, mask)
        traces = eqx.tree_at(lambda tr: (tr.eligibility, tr.filtered, tr.readout_eligibility), state.traces,
                             jax.tree_util.tree_map(jnp.zeros_like, (state.traces.eligibility,
                                                                     state.traces.filtered,
                                                                     state.traces.readout_eligibility)))
        return EngineState(net=end.net, traces=traces, grads=end.grads), ys, losses

    def _feedback_matrix(self, model, traces, node, slot):
        """The matrix the learning signal goes down through along edge ``slot`` of node ``node`` (an id)."""
        if self.feedback == "symmetric" or not model.node(node).inputs[slot].trainable:
            return edge_matrix(model, node, slot)
        return traces.feedback[node - 1][slot]

    def _carried(self, decayed):
        """The part of the eligibility carried over from the previous step (none for the immediate engine)."""
        return decayed if self.carries_eligibility else jnp.zeros_like(decayed)

    def _contract_chunk(self, model, state, records, *, final_traces: bool = True):
        """Add a chunk's deferred terms to the gradients and bring the deferred traces to the chunk's end.

        ``records``: per hidden node a :class:`FactorisedRecord`, :class:`ScalarRecord` or :class:`NodeRecord`,
        each field (K, B, ...); last, the readout's ``(dE_t/dI, trace)`` ((K, B, n_out), (K, B, P_out)). Indices
        below run over the chunk's steps ``t = 1..K``; ``_0`` is the chunk's start. ``final_traces=False``
        leaves the traces as they are (the reverse evaluation, which returns them at zero) and computes only the
        gradient.
        """
        *hidden, (top_signal, readout_trace) = records
        size = top_signal.shape[0]
        grads = list(state.grads)
        grads[-1] = grads[-1] + jnp.einsum("tbo,tbp->op", top_signal, readout_trace)  # one matmul over (K B)
        eligibility, filtered = list(state.traces.eligibility), list(state.traces.filtered)
        leaky = self.plan(model).leaky
        k = shared_leak(model.readout) if leaky else jnp.zeros((), top_signal.dtype)
        powers = k ** jnp.arange(size + 1, dtype=top_signal.dtype)  # k^0 .. k^K (k^0 = 1 also for k = 0)
        for l, record in enumerate(hidden):
            # Lbar[s] = sum_{t>=s} k^(t-s) L[t]: the learning signal filtered backwards within the chunk (= L if
            # there is no readout filter); sum_t L[t] ebar[t] = sum_t Lbar[t] e[t] + sum_t k^t L[t] ebar_0
            filtered_signal = _filter_backwards(k, powers, record.signal) if leaky else record.signal
            if leaky:  # ebar_0 (B, n_l o_l, R_l), read once
                grads[l] = grads[l] + _contract_outputs(filtered[l], jnp.einsum("t,tbj->bj", powers[1:], record.signal),
                                                        model.hidden[l].outputs)
            if isinstance(record, FactorisedRecord):  # e[t] = psi[t] (x) xbar[t]: one matmul over (K B)
                grads[l] = grads[l] + jnp.einsum("tbj,tbp->jp", filtered_signal * record.psi, record.xbar)
                if leaky and final_traces:  # ebar_K = k^K ebar_0 + sum_s k^(K-s) psi[s] (x) xbar[s]: per example
                    filtered[l] = powers[-1] * filtered[l] + jnp.einsum(
                        "tbj,tbp->bjp", powers[-2::-1, None, None] * record.psi, record.xbar)
                continue
            if isinstance(record, NodeRecord):
                grad, eps_end, ebar_end = self._contract_node(model.hidden[l], record, filtered_signal, powers,
                                                              eligibility[l], leaky=leaky, final_traces=final_traces)
                grads[l] = grads[l] + grad
                if final_traces:
                    eligibility[l] = eps_end
                    if leaky:
                        filtered[l] = powers[-1] * filtered[l] + ebar_end
                continue
            # ScalarRecord: eps[t] = a[t] eps[t-1] + g[t] x[t], e[t] = d[t] eps[t], per (b, j) scalars a, g, d
            # and the shared presynaptic vector x. With Phi(t, s) = a[s+1] ... a[t], and any weights u[t]:
            #   sum_t u[t] eps[t] = a[1] w[1] eps_0 + sum_s w[s] g[s] x[s],   w[s] = u[s] + a[s+1] w[s+1]
            # applied to u = d Lbar (the gradient), u = k^(K-t) d (ebar_K) and u = [t = K] (eps_K).
            a = self._carried(record.block)  # (K, B, n_l); zero for the immediate engine
            d = record.dz
            weights = [d * filtered_signal]
            if final_traces:
                weights.append(jnp.zeros_like(d).at[-1].set(1))  # eps_K
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
            if not final_traces:
                continue
            ends = jnp.einsum("tmbj,tbp->mbjp", presynaptic_weights[:, 1:], record.presynaptic)  # (m-1, B, n_l, P_l)
            eligibility[l] = start[1][:, :, None] * eps_start + ends[0]
            if leaky:
                filtered[l] = powers[-1] * filtered[l] + start[2][:, :, None] * eps_start + ends[1]
        traces = EPropTraces(tuple(eligibility), tuple(filtered), state.traces.readout_eligibility,
                             state.traces.feedback)
        return EngineState(net=state.net, traces=traces, grads=tuple(grads))

    def _contract_node(self, layer, record, filtered_signal, powers, eps_start, *, leaky, final_traces):
        """A :class:`NodeRecord` node's chunk: ``(gradient (n_l, R_l), eps_K (B, d, n_l, R_l), ebar_K - k^K ebar_0
        (B, n_l o, R_l))`` (the last two ``None`` unless ``final_traces``).

        ``eps[t] = Jb[t] eps[t-1] + imm[t]`` per (b, j), ``Jb`` a (d, d) block and ``imm[t]`` the immediate term
        (``ds_dI[t,:,i] (x) x_hat[t]`` for current ``i``, then ``ds_dparams[t]``). With ``Phi(t, s) = Jb[t] ...
        Jb[s+1]`` and any d-vector weights ``u[t]``:

            sum_t u[t]^T eps[t] = (Jb[1]^T w[1])^T eps_0 + sum_s w[s]^T imm[s],   w[s] = u[s] + Jb[s+1]^T w[s+1]

        applied to ``u = sum_o Lbar[o] dz[o, :]`` (the gradient), ``u[t] = [t = K] e_a`` per state ``a`` (row ``a``
        of ``eps_K``: ``w[s] = Phi(K, s)^T e_a``, started by the recursion's initial value) and
        ``u[t] = k^(K-t) dz[t, o, :]`` per output ``o`` (``ebar_K``'s own part): ``m`` rows of weights.

        One backward scan carries ``v[s] = Jb[s]^T w[s]`` and emits only what the matrix products need, the
        coefficients ``sum_a w[s, a] ds_dI[s, a, i]`` per current (and ``sum_a w[s, a] ds_dparams[s, a, q]``);
        its last carry is ``eps_0``'s coefficients. The (d, d) blocks are taken component by component (Python loops
        over states and rows, one (B, n_l) array each): a trailing axis of 2 or 3, or a stacked (d, m, B, n_l)
        carry, runs many times slower in XLA's CPU loops."""
        steps, outputs, d, batch, n = record.dz.shape
        currents, params = record.ds_dI.shape[2], record.ds_dparams.shape[2]
        dtype = record.dz.dtype
        block = self._carried(record.block)  # (K, d, d, B, n); zero for the immediate engine
        signal = jnp.moveaxis(filtered_signal.reshape(steps, batch, n, outputs), 3, 1)  # (K, o, B, n)
        ebar_rows = leaky and final_traces
        decay = powers[-2::-1] if ebar_rows else jnp.zeros((steps,), dtype)  # k^(K-t)
        rows = 1 + (d + (outputs if leaky else 0) if final_traces else 0)  # m
        # w[K] = u[K] + v[K+1]: v[K+1] holds e_a in eps_K's row a, so that w[s] = Phi(K, s)^T e_a there
        initial = [[jnp.full((batch, n), float(final_traces and r == 1 + a), dtype) for r in range(rows)]
                   for a in range(d)]

        def backwards(carried, xs):
            jb, ds_dI, dz, lbar, k_t, ds_dparams = xs
            w = []  # per state a, per row: (B, n)
            for a in range(d):
                row = list(carried[a])
                row[0] = row[0] + sum(lbar[o] * dz[o, a] for o in range(outputs))
                if ebar_rows:
                    for o in range(outputs):
                        row[1 + d + o] = row[1 + d + o] + k_t * dz[o, a]
                w.append(row)
            # per row, per current i: sum_a w[a] ds_dI[a, i]; per row, per parameter q: sum_a w[a] ds_dparams[a, q]
            coefficients = [[sum(w[a][r] * ds_dI[a, i] for a in range(d)) for i in range(currents)]
                            for r in range(rows)]
            neuron = [[sum(w[a][r] * ds_dparams[a, q] for a in range(d)) for q in range(params)] for r in range(rows)]
            return [[sum(jb[a, c] * w[a][r] for a in range(d)) for r in range(rows)] for c in range(d)], (
                coefficients, neuron)

        # coefficient[r][i], neuron[r][q]: (K, B, n); start[a][r] (B, n): eps_0's coefficients
        start, (coefficient, neuron) = jax.lax.scan(
            backwards, initial, (block, record.ds_dI, record.dz, signal, decay, record.ds_dparams), reverse=True)
        column = layer.n_in if record.own_input is not None else None  # where W_jj's entry sits in x_hat

        def immediate_part(r, subscripts, own_subscripts, param_sum):
            """sum_s w[s]^T imm[s] for row ``r`` of the weights, each parameter block as matrix products."""
            synaptic = jnp.stack([jnp.einsum(subscripts, x, record.presynaptic) for x in coefficient[r]], axis=-2)
            if column is not None:  # diagonal recurrence (c = 1): row j's own column z[t-1, j]
                own = jnp.einsum(own_subscripts, coefficient[r][0], record.own_input)[..., None, None]
                synaptic = jnp.concatenate([synaptic[..., :column], own, synaptic[..., column:]], axis=-1)
            parts = [synaptic.reshape(synaptic.shape[:-2] + (-1,))]  # (..., n, c P')
            if params:  # the trained neuron parameters
                parts.append(jnp.stack([param_sum(x) for x in neuron[r]], axis=-1))
            return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

        grad = immediate_part(0, "tbj,tbp->jp", "tbj,tbj->j", lambda x: jnp.sum(x, axis=(0, 1)))
        grad = grad + sum(jnp.sum(start[a][0][..., None] * eps_start[:, a], axis=0) for a in range(d))
        if not final_traces:
            return grad, None, None
        # the new traces, rows r = 1..m-1 (eps_K's d rows, then ebar_K's o): every row and current at once, one
        # per-example ((m-1) c n, K) @ (K, P') product, then the carried eps_0 part
        lhs = jnp.stack([x for r in range(1, rows) for x in coefficient[r]])  # ((m-1) c, K, B, n)
        synaptic = jnp.matmul(jnp.transpose(lhs, (2, 0, 3, 1)).reshape(batch, -1, steps),
                              jnp.swapaxes(record.presynaptic, 0, 1))  # (B, (m-1) c n, P')
        synaptic = jnp.swapaxes(synaptic.reshape(batch, rows - 1, currents, n, -1), 2, 3)  # (B, m-1, n, c, P')
        if column is not None:  # diagonal recurrence (c = 1): row j's own column z[t-1, j]
            own = jnp.stack([jnp.einsum("tbj,tbj->bj", coefficient[r][0], record.own_input) for r in range(1, rows)],
                            axis=1)[..., None, None]
            synaptic = jnp.concatenate([synaptic[..., :column], own, synaptic[..., column:]], axis=-1)
        parts = [synaptic.reshape(synaptic.shape[:3] + (-1,))]  # (B, m-1, n, c P')
        if params:
            parts.append(jnp.stack([jnp.stack([jnp.sum(x, axis=0) for x in neuron[r]], axis=-1)
                                    for r in range(1, rows)], axis=1))  # (B, m-1, n, q)
        ends = (jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]) + jnp.stack(
            [sum(start[a][r][..., None] * eps_start[:, a] for a in range(d)) for r in range(1, rows)], axis=1)
        ebar_end = None
        if leaky:  # (B, o, n, R) -> (B, n o, R), neuron-major
            ebar_end = ends[:, d:].reshape(batch, n, -1) if outputs == 1 else jnp.swapaxes(ends[:, d:], 1, 2).reshape(
                batch, n * outputs, -1)
        return grad, ends[:, :d], ebar_end

    def _advance(self, model, state, x, target, mask, loss, *, defer: bool):
        """One time step. ``defer=True`` leaves every hidden node's traces and gradient, and the readout's
        gradient, to :meth:`_contract_chunk` and returns what it needs; ``False`` is the step-by-step form.

        Returns ``(state, (y, loss_t), records)`` (``records`` as :meth:`_contract_chunk` takes them, or None).
        """
        traces = state.traces
        graph = model.graph
        plan = self.plan(model)
        leaky = plan.leaky
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
        records = [None] * len(model.hidden) + [(current_signal[graph.readout], readout_trace)]
        if not defer:
            grads[-1] = state.grads[-1] + current_signal[graph.readout].T @ readout_trace

        eligibility, filtered = list(traces.eligibility), list(traces.filtered)
        layouts = plan.layouts
        for l in reversed(graph.hidden):  # node ids, reverse topological order: children first
            i = l - 1  # its position in the per-node tuples (steps, traces, gradients)
            step, layer = steps[i], model.hidden[i]
            # learning signal on z[l,t]: sum over the children of D[k<-l]^T (feedback matrices for random)
            signal = sum(current_signal[c] @ self._feedback_matrix(model, traces, c, slot)
                         for c, slot in graph.children[l])  # (B, n_l)
            if layouts[i] == "factorised":  # one presynaptic trace per layer: e = psi (x) xbar
                xbar = self._carried(shared_leak(layer) * traces.eligibility[i]) + layer.shared_presynaptic(
                    step.z_prev, source_outputs(steps, x, layer))
                psi = step.dz[:, :, 0, 0] * step.ds_dI[:, :, 0, 0]  # (B, n_l)
                eligibility[i] = xbar
                if defer:
                    records[i] = FactorisedRecord(psi, xbar, signal)
                elif leaky and plan.chunked:  # (B, n_l, P_l)
                    filtered[i] = k * traces.filtered[i] + psi[:, :, None] * xbar[:, None, :]
                    grads[i] = state.grads[i] + contract_batch_major(filtered[i], signal)
                elif leaky:  # (n_l, B, P_l)
                    filtered[i] = k * traces.filtered[i] + psi.T[:, :, None] * xbar[None, :, :]
                    grads[i] = state.grads[i] + jnp.einsum("jbp,jb->jp", filtered[i], signal.T)
                else:
                    grads[i] = state.grads[i] + (signal * psi).T @ xbar
            elif layouts[i] == "scalar" and defer:  # eps, ebar left to the chunk's contraction
                records[i] = ScalarRecord(step.block[..., 0, 0], step.ds_dI[:, :, 0, 0], step.dz[:, :, 0, 0],
                                          layer.shared_presynaptic(step.z_prev, source_outputs(steps, x, layer)),
                                          signal)
            elif defer:  # any other node: eps, ebar left to the chunk's contraction
                sources = source_outputs(steps, x, layer)
                if layer.recurrence == "diagonal":  # x_hat without row j's own entry z[t-1, j], kept apart
                    ones = jnp.ones(step.z_prev.shape[:1] + (1,), step.z_prev.dtype)
                    presynaptic = jnp.concatenate(layer.trained_sources(sources) + [ones], axis=-1)
                    own_input = step.z_prev
                else:
                    presynaptic, own_input = layer.shared_presynaptic(step.z_prev, sources), None
                def leading(x):  # (B, n, i, j) -> (i, j, B, n)
                    return jnp.moveaxis(x, (2, 3), (0, 1))

                records[i] = NodeRecord(leading(step.block), leading(step.ds_dI), leading(step.dz), presynaptic,
                                        own_input, leading(step.ds_dparams), signal)
            elif layouts[i] == "scalar":  # d = c = o = 1, batch-major (B, n_l, P_l) traces
                eps = (self._carried(step.block[..., 0] * traces.eligibility[i])
                       + step.ds_dI[..., 0] * step.presynaptic)
                e = step.dz[:, :, 0] * eps
                eligibility[i] = eps
                if leaky:
                    filtered[i] = k * traces.filtered[i] + e
                grads[i] = state.grads[i] + contract_batch_major(filtered[i] if leaky else e, signal)
            elif layouts[i] == "neuron_major":  # d = c = o = 1: (n_l, B, P_l) traces, fast contraction over B
                jb = step.block[..., 0, 0].T[:, :, None]  # (n_l, B, 1)
                pre = jnp.swapaxes(step.presynaptic, 0, 1)  # (n_l, B, P_l)
                eps = self._carried(jb * traces.eligibility[i]) + step.ds_dI[:, :, 0, 0].T[:, :, None] * pre
                e = step.dz[:, :, 0, 0].T[:, :, None] * eps
                eligibility[i] = eps
                if leaky:
                    filtered[i] = k * traces.filtered[i] + e
                grads[i] = state.grads[i] + jnp.einsum("jbp,jb->jp", filtered[i] if leaky else e, signal.T)
            else:
                # (B, n_l, d_l, R_l); the "components" layout (B, d_l, n_l, R_l) is moved to it and back
                components = layouts[i] == "components"
                eps = jnp.swapaxes(traces.eligibility[i], 1, 2) if components else traces.eligibility[i]
                eps = self._carried(apply_block(step.block, eps)) + immediate(step)
                e = collapse(step.dz, eps)  # (B, n_l o_l, R_l)
                eligibility[i] = jnp.swapaxes(eps, 1, 2) if components else eps
                if leaky:
                    filtered[i] = k * traces.filtered[i] + e
                grads[i] = state.grads[i] + contract_rows(signal, filtered[i] if leaky else e, layer.outputs)
            if any(j > 0 for j in graph.parents[l]):  # a hidden node below: pass dE_t/dI[l] on
                current_signal[l] = signal_to_current(step, signal)  # (B, n_l c_l)
        new_traces = EPropTraces(tuple(eligibility), tuple(filtered), readout_trace, traces.feedback)
        new_state = EngineState(net=tuple(s.state for s in steps), traces=new_traces, grads=tuple(grads))
        return new_state, (y, loss_t), (tuple(records) if defer else None)


class EProp(LocalRule):
    """E-prop (Bellec et al. 2020) run node by node (module docstring: equation, cost, factorised traces): the
    :class:`LocalRule` whose eligibility carries on in time. Options: :class:`LocalRule`'s."""

    name = "eprop"
    regularization_paths = paths.LOCAL  # a loss on hidden outputs: deepeprop.engines.paths
    carries_eligibility = True


def _filter_backwards(k, powers, signal):
    """``Lbar[s] = sum_{t>=s} k^(t-s) L[t]`` over a chunk, ``signal`` (K, B, n): a (K, K) triangular matrix
    product for chunks up to 256 steps, else (the reverse evaluation's one long chunk) a backward scan."""
    if signal.shape[0] <= 256:
        return filter_backwards(powers, signal)

    def backwards(later, now):
        here = now + k * later
        return here, here

    return jax.lax.scan(backwards, jnp.zeros_like(signal[0]), signal, reverse=True)[1]


def _contract_outputs(trace, signal, outputs: int):
    """``sum_b sum_o signal[b, (j,o)] trace[b, (j,o), r]``: (B, n o, R), (B, n o) -> (n, R), one pass."""
    grad = contract_batch_major(trace, signal)
    return grad if outputs == 1 else grad.reshape(-1, outputs, grad.shape[-1]).sum(axis=1)


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
