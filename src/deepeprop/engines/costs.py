"""Each engine's cost formula (its docstring's), evaluated for a model: what :meth:`Engine.cost` returns and
``deepeprop bench`` prints beside the measured time and memory."""
from __future__ import annotations

from .traces import has_constant_own_jacobian


def cost(rule, model, batch: int, T: int, *, reverse: bool = False) -> tuple[int, int]:
    """``(trace_elements, flops_per_step)``: the cost formula of ``rule``'s docstring (and of its evaluation)
    for ``model`` (any graph), ``batch`` examples and ``T`` steps.

    ``trace_elements`` counts what an online engine carries between steps (``reverse``: the rule evaluated in
    reverse, like BPTT: the stored trajectory); a chunked engine's per-step records show in the measured peak.
    """
    method = rule.name
    readout_filter = getattr(rule, "readout_filter", True)

    B = batch
    nodes, graph = model.nodes, model.graph
    n = [node.size for node in nodes]
    P = [node.row_size for node in nodes]
    d = [node.neuron.state_size for node in nodes]
    forward = sum(2 * B * node.size * (node.row_size - 1) for node in nodes)  # the W/U matmuls
    leaky = not model.readout_is_linear and readout_filter
    hidden = range(len(model.layers))

    def signal_flops(l):  # the learning signal sent down each edge into l's children
        return sum(2 * B * n[k] * n[l] for k, _ in graph.children[l])

    if method == "bptt" or reverse:  # stored trajectory; backward ~2x forward
        return T * B * sum(a * b for a, b in zip(n, d)), 3 * forward
    if method in ("eprop", "immediate"):  # immediate: e-prop's arrays, without the Jb * eps product
        layouts = rule.layouts(model)
        own = 0 if method == "immediate" else 1
        elements = B * P[-1]
        flops = forward + 2 * B * n[-1] * P[-1]
        for l in hidden:
            o = nodes[l].outputs
            if layouts[l] == "factorised":
                elements += B * P[l] + (B * n[l] * P[l] if leaky else 0)
                flops += (4 if leaky else 2) * B * n[l] * P[l]
            elif layouts[l] == "components":  # d state slabs and ebar; (1 + d + o) matrix products per step
                elements += B * n[l] * (d[l] + (o if leaky else 0)) * P[l]
                flops += 2 * (1 + d[l] + (o if leaky else 0)) * B * n[l] * P[l]
            elif layouts[l] == "scalar":  # the scalar chunked form: eps and ebar; 2-3 matrix products per step
                elements += B * n[l] * P[l] * (2 if leaky else 1)
                flops += (6 if leaky else 4) * B * n[l] * P[l]
            else:
                elements += B * n[l] * d[l] * P[l] + (B * n[l] * P[l] if leaky else 0)
                flops += (own * 2 * d[l] * d[l] + 2 * d[l] + (4 if leaky else 2)) * B * n[l] * P[l]
            flops += signal_flops(l)
        return elements, flops
    if method == "deep_eprop" and rule.chunk_size > 1:  # the chunk hybrid
        K = min(rule.chunk_size, T)
        elements, flops = 0, 3 * forward
        for l in range(len(nodes)):
            elements += B * n[l] * d[l] * P[l]
            flops += 2 * d[l] * B * n[l] * d[l] * P[l]  # Psi_ll from d cotangents
            for k in graph.descendants[l]:
                elements += B * n[k] * d[k] * n[l] * P[l]
                flops += 2 * B * n[k] * d[k] * n[l] * P[l]  # Psi_kl: (r n_l, K) @ (K, P_l) per example
                flops += 2 * B * n[k] * d[k] * sum(a * b for a, b in zip(n, d))  # the adjoints
                for j in graph.descendants[l]:
                    if k in graph.descendants[j]:  # the hop Phi_kj S[j,l], once per chunk
                        flops += 2 * B * n[k] * d[k] * n[j] * d[j] * n[l] * P[l] // K
        return elements, flops
    if method == "deep_eprop":
        elements, flops = 0, forward
        factorised = rule.factorised_hops(model)
        for l in range(len(nodes)):
            elements += B * n[l] * d[l] * P[l]
            flops += (2 * d[l] * d[l] + 2) * B * n[l] * P[l]
            for k in graph.descendants[l]:
                if k in factorised[l]:  # S[k,l] stored as F (B, n_l, P_l)
                    elements += B * n[l] * P[l]
                    flops += 3 * B * n[l] * P[l]
                    continue
                elements += B * n[k] * d[k] * n[l] * P[l]
                flops += 2 * B * n[k] * d[k] * n[l] * P[l]  # Jb * S
                for j in graph.parents[k]:
                    if j == l:  # element-wise hop from the eligibility
                        flops += 3 * B * n[k] * d[k] * n[l] * P[l]
                    elif j in factorised[l]:  # M[b] (x) F: a B n^3 product for M, element-wise B n^3
                        flops += 2 * B * n[k] * n[j] * n[l] + 2 * B * n[k] * d[k] * n[l] * P[l]
                    elif j in graph.descendants[l]:  # a matrix product with U_{k<-j}
                        flops += 2 * B * n[k] * n[j] * n[l] * P[l]
        return elements, flops
    if method == "deep_eprop_factored":
        elements, flops = B * P[-1], forward + 2 * B * n[-1] * P[-1]
        batch_major = rule.batch_major(model)
        for l in hidden:
            levels = len(type(rule)._prefixes(model, l))  # one F per filtered path prefix
            own = B * P[l] if has_constant_own_jacobian(nodes[l]) else B * n[l] * d[l] * P[l]
            paths = len(graph.paths(l))
            elements += own + levels * B * n[l] * P[l]
            if batch_major[l]:  # chunked: one matmul for the gradient, one per F for its new value
                flops += (2 * levels + 2) * B * n[l] * P[l] + signal_flops(l)
            else:  # step by step: e, each F updated element-wise, one contraction per path
                flops += (2 * levels + 2 + 2 * paths) * B * n[l] * P[l] + signal_flops(l)
        return elements, flops
    if method == "rtrl":
        elements, flops = 0, forward
        for l in range(len(nodes)):
            for k in (l,) + graph.descendants[l]:
                size = B * n[k] * d[k] * n[l] * P[l]
                elements += size
                flops += 2 * size * (nodes[k].row_size - 1)  # W and U products on the influence matrix
        return elements, flops
    return 0, 0
