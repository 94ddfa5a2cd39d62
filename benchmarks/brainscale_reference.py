"""Reference timing of braintrace (the BrainPy team's successor of brainscale).

Measures, on the current machine, the wall-clock time per simulated time step of
one *training step* (forward pass over the whole sequence + the weight
gradient) of a 2-layer recurrent LIF network, for:

    es_d_rtrl  braintrace.ES_D_RTRL (= braintrace.pp_prop, an IODimVjpAlgorithm):
               the I/O-factorised eligibility-trace online algorithm.
    d_rtrl     braintrace.D_RTRL (a ParamDimVjpAlgorithm): the full
               per-parameter diagonal-RTRL trace.
    eprop      braintrace.EProp (symmetric feedback, kappa-filtered trace):
               e-prop as shipped by braintrace (extra reference point).
    bptt       brainstate.transform.grad over a brainstate.transform.for_loop of
               the very same network (plain reverse-mode autodiff).

This script is NOT part of the deepeprop package and must NOT run in the
project's Python: braintrace pins its own brainstate / brainpy stack.  Run it
from an isolated virtualenv:

    python3 -m venv /tmp/bsenv
    /tmp/bsenv/bin/pip install braintrace        # pulls brainstate, brainpy, braintools, jax (CPU)
    /tmp/bsenv/bin/python benchmarks/brainscale_reference.py \
        --T 1000 --batch 32 --hidden 64 --repeats 5 --json /tmp/brainscale_ref.json

(Tested with braintrace 0.2.6, brainstate 0.5.4, brainpy 2.8.2 / brainpy_state
0.1.0, braintools 0.3.0, jax/jaxlib 0.10.2 on CPU.)

Network (identical for every algorithm; all float32, unitless, dt = 1):

  layer l (l = 1, 2), n_in_1 = --n-in (default 100), n_in_2 = H = --hidden:
      s_{t-1}  = Heaviside(V_{t-1} - V_th)                (spike of the previous step, >= fires)
      I_t      = concat(x_t, s_{t-1}) @ W_l + b_l         (braintrace.nn.Linear, W_l: (n_in+H, H), b_l: (H,))
      V'       = V_{t-1} - (V_th - V_reset) * s_{t-1}     (soft reset, gradient kept through s)
      V_t      = alpha * V' + (1 - alpha) * V_rest + I_t  (exact exp-Euler of tau dV/dt = -(V - V_rest);
                                                           delta synapse: I_t added directly to V)
      output   s_t = Heaviside(V_t - V_th)
      alpha = exp(-dt / tau_mem), tau_mem = 10, V_th = 1, V_reset = 0, V_rest = 0, R = 1, V_0 = 0
      surrogate dS/dV = max(0, 0.3 * (1 - |(V - V_th) / (V_th - V_reset)|))   (braintools ReluGrad(0.3, 1))
  readout (braintrace.nn.LeakyRateReadout, no bias):
      r_t = kappa * r_{t-1} + s2_t @ W_out,   kappa = exp(-dt / tau_out), tau_out = 10, r_0 = 0
  loss: per-step MSE  L = (1/T) sum_t mean_{b,k} (r_t - y_t)^2  against random N(0,1) targets y.
  input: Bernoulli(p = --in-rate, default 0.05) spikes, shape (T, B, n_in).

  'lif-expcu' (--model) instead routes I_t through an exponential current
  synapse (brainpy.state.AlignPostProj + Expon(tau_syn=10) + CUBA), the pattern
  of braintrace's current pp_prop examples.

Trainable parameters: W_1, b_1, W_2, b_2, W_out (the bias is zero-initialised).
Initial weights (jax.random, seed --seed, keys k = jax.random.split(PRNGKey(seed), 5)):
  W_l[:n_in]  ~ N(0, ff_scale / n_in)   (ff_scale = 2)
  W_l[n_in:]  ~ N(0, rec_scale / H)     (rec_scale = 1)
  W_out       ~ N(0, 2 / H)

Timing: each algorithm's whole training step (state reset, forward over T steps,
gradient) is one jitted function.  The first call (trace + XLA compile + run)
is reported separately as ``first_call_s`` and ``compile_s`` (= first call
minus the steady-state median); one more warm-up call follows (braintrace
retraces once on the second call), then the median of ``--repeats`` timed
calls gives ``per_step_ms = median / T`` (``per_step_ms_min`` from the fastest
call; on a shared 2-core machine prefer numbers taken at low load -- the load
average at start is recorded).  No optimiser update is included.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings

warnings.filterwarnings('ignore')

import jax
import jax.numpy as jnp
import numpy as np

import brainstate
import braintools
import braintrace
import brainpy.state as bps

ALGOS = ('es_d_rtrl', 'd_rtrl', 'eprop', 'bptt')


# --------------------------------------------------------------------------- network

class LIFLayer(brainstate.nn.Module):
    """Recurrent LIF layer: concat(input, own last spikes) -> Linear -> LIF."""

    def __init__(self, n_in, n_rec, w_init, args):
        super().__init__()
        self.neu = bps.LIF(
            n_rec, R=1., tau=args.tau_mem, V_th=args.v_th, V_reset=0., V_rest=0.,
            V_initializer=braintools.init.ZeroInit(),
            spk_fun=braintools.surrogate.ReluGrad(alpha=0.3, width=1.0),
            spk_reset='soft',
        )
        comm = braintrace.nn.Linear(n_in + n_rec, n_rec, w_init=w_init,
                                    b_init=braintools.init.ZeroInit())
        if args.model == 'lif-delta':
            self.syn = bps.DeltaProj(comm=comm, post=self.neu)
        elif args.model == 'lif-expcu':
            self.syn = bps.AlignPostProj(
                comm=comm,
                syn=bps.Expon(n_rec, tau=args.tau_syn, g_initializer=braintools.init.ZeroInit()),
                out=bps.CUBA(scale=1.),
                post=self.neu,
            )
        else:
            raise ValueError(args.model)

    def update(self, x):
        self.syn(jnp.concatenate([x, self.neu.get_spike()], axis=-1))
        self.neu(0.)
        return self.neu.get_spike()


class Net(brainstate.nn.Module):
    def __init__(self, args):
        super().__init__()
        n_in, h, n_out = args.n_in, args.hidden, args.n_out
        k = jax.random.split(jax.random.PRNGKey(args.seed), 5)
        f32 = jnp.float32

        def w(key_ff, key_rec, fan_in):
            ff = jax.random.normal(key_ff, (fan_in, h), f32) * math.sqrt(args.ff_scale / fan_in)
            rec = jax.random.normal(key_rec, (h, h), f32) * math.sqrt(args.rec_scale / h)
            return jnp.concatenate([ff, rec], axis=0)

        self.l1 = LIFLayer(n_in, h, w(k[0], k[1], n_in), args)
        self.l2 = LIFLayer(h, h, w(k[2], k[3], h), args)
        w_out = jax.random.normal(k[4], (h, n_out), f32) * math.sqrt(2.0 / h)
        self.out = braintrace.nn.LeakyRateReadout(h, n_out, tau=args.tau_out, w_init=w_out)

    def update(self, x):
        return self.out(self.l2(self.l1(x)))


def make_data(args):
    kx, ky = jax.random.split(jax.random.PRNGKey(args.seed + 1))
    xs = (jax.random.uniform(kx, (args.T, args.batch, args.n_in)) < args.in_rate).astype(jnp.float32)
    ys = jax.random.normal(ky, (args.T, args.batch, args.n_out), jnp.float32)
    return xs, ys


# --------------------------------------------------------------------------- training steps

def build_online(args, algo):
    """Return a jitted ``train(xs, ys) -> (grads, loss)`` using a braintrace learner."""
    net = Net(args)
    x0 = jnp.zeros((args.batch, args.n_in), jnp.float32)
    if algo == 'es_d_rtrl':
        cls, opts = braintrace.ES_D_RTRL, dict(decay_or_rank=args.decay)
    elif algo == 'd_rtrl':
        cls, opts = braintrace.D_RTRL, {}
    elif algo == 'eprop':
        cls, opts = braintrace.EProp, dict(feedback='symmetric',
                                           kappa_filter_decay=math.exp(-1.0 / args.tau_out))
    else:
        raise ValueError(algo)
    vmap = args.mode == 'vmap'
    learner = braintrace.compile(net, cls, x0, batch_size=args.batch, vmap=vmap, **opts)

    def step_loss(x, y):
        return jnp.mean((learner(x) - y) ** 2)

    @brainstate.transform.jit
    def train(xs, ys):
        if not vmap:  # (vmap mode: states carry over between calls; costs the same)
            brainstate.nn.reset_all_states(learner, batch_size=args.batch)
        return learner.etrace_grad(xs, ys, step_fn=step_loss, reduction='mean',
                                   loss_output='scalar', return_value=True)

    api = {'es_d_rtrl': 'braintrace.ES_D_RTRL (alias of braintrace.pp_prop)'}.get(algo, f'braintrace.{cls.__name__}')
    info = dict(api_class=api, engine=type(learner).__name__,
                mode=args.mode,
                options={k: (float(v) if isinstance(v, float) else v) for k, v in opts.items()})
    return train, info


def build_bptt(args):
    net = Net(args)
    brainstate.nn.init_all_states(net, batch_size=args.batch)
    weights = net.states(brainstate.ParamState)

    def seq_loss(xs, ys):
        def step(x, y):
            out = net(x)
            return (jnp.mean((out - y) ** 2),
                    jnp.mean(net.l1.neu.get_spike()), jnp.mean(net.l2.neu.get_spike()))

        losses, r1, r2 = brainstate.transform.for_loop(step, xs, ys)
        return jnp.mean(losses), (jnp.mean(r1), jnp.mean(r2))

    @brainstate.transform.jit
    def train(xs, ys):
        brainstate.nn.reset_all_states(net, batch_size=args.batch)
        grads, loss, rates = brainstate.transform.grad(
            seq_loss, weights, has_aux=True, return_value=True)(xs, ys)
        return grads, loss, rates

    info = dict(api_class='brainstate.transform.grad(brainstate.transform.for_loop(...))',
                engine='BPTT', mode='batched', options={})
    return train, info


# --------------------------------------------------------------------------- timing

def _block(x):
    return jax.block_until_ready(x)


def time_train(train, xs, ys, repeats):
    t0 = time.perf_counter()
    out = _block(train(xs, ys))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = _block(train(xs, ys))
    second = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = _block(train(xs, ys))
        times.append(time.perf_counter() - t0)
    return first, second, times, out


def _param_name(path):
    parts = []
    for k in path:
        k = getattr(k, 'key', getattr(k, 'idx', k))
        parts.extend(k if isinstance(k, tuple) else (k,))
    name = '.'.join(str(x) for x in parts)
    return (name.replace('.syn.comm.weight.weight', '.W').replace('.syn.comm.weight.bias', '.b')
            .replace('out.W', 'out.W'))


def _flat(grads):
    leaves = jax.tree_util.tree_leaves_with_path(grads)
    return {_param_name(p): np.asarray(v, np.float64).ravel() for p, v in leaves}


def _cosine(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float('nan')
    return float(a @ b / (na * nb))


def cpu_info():
    model = platform.processor() or ''
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return dict(model=model, logical_cpus=os.cpu_count(), usable_cpus=affinity,
                machine=platform.machine(), system=platform.system(), loadavg_at_start=load)


def versions():
    out = {'python': sys.version.split()[0], 'jax': jax.__version__}
    import importlib.metadata as md
    for pkg in ('jaxlib', 'braintrace', 'brainstate', 'brainpy', 'brainpy_state',
                'braintools', 'brainunit', 'brainevent', 'numpy'):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


# --------------------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--T', type=int, default=1000)
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--hidden', type=int, default=64)
    p.add_argument('--n-in', type=int, default=100)
    p.add_argument('--n-out', type=int, default=10)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--algos', default=','.join(ALGOS),
                   help=f'comma-separated subset of {ALGOS}')
    p.add_argument('--model', default='lif-delta', choices=['lif-delta', 'lif-expcu'])
    p.add_argument('--mode', default='batched', choices=['batched', 'vmap'],
                   help='online learners: batch axis inside the compiled graph (braintrace.compile('
                        'batch_size=B)) or braintrace.compile(vmap=True); BPTT is always batched')
    p.add_argument('--decay', type=float, default=0.95, help='ES-D-RTRL decay_or_rank')
    p.add_argument('--tau-mem', type=float, default=10.0)
    p.add_argument('--tau-syn', type=float, default=10.0)
    p.add_argument('--tau-out', type=float, default=10.0)
    p.add_argument('--v-th', type=float, default=1.0)
    p.add_argument('--ff-scale', type=float, default=2.0)
    p.add_argument('--rec-scale', type=float, default=1.0)
    p.add_argument('--in-rate', type=float, default=0.05)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help='write the results as JSON to this path')
    args = p.parse_args(argv)

    algos = [a.strip() for a in args.algos.split(',') if a.strip()]
    for a in algos:
        if a not in ALGOS:
            p.error(f'unknown algorithm {a!r}; choose from {ALGOS}')

    brainstate.environ.set(dt=1.0)
    jax.config.update('jax_enable_x64', False)
    xs, ys = make_data(args)

    vers, cpu = versions(), cpu_info()
    print(f"braintrace {vers.get('braintrace')}  brainstate {vers.get('brainstate')}  "
          f"brainpy {vers.get('brainpy')}  jax {vers['jax']}  backend {jax.default_backend()}")
    print(f"CPU: {cpu['model']}  ({cpu['usable_cpus']} usable / {cpu['logical_cpus']} logical)  "
          f"load avg at start: {cpu['loadavg_at_start']}")
    print(f"model={args.model}  mode={args.mode}  T={args.T}  batch={args.batch}  hidden={args.hidden}  "
          f"n_in={args.n_in}  n_out={args.n_out}  repeats={args.repeats}  float32\n")

    results, grads_by_algo = [], {}
    for algo in algos:
        try:
            if algo == 'bptt':
                train, info = build_bptt(args)
            else:
                train, info = build_online(args, algo)
            first, second, times, out = time_train(train, xs, ys, args.repeats)
        except Exception as e:  # report and keep going
            print(f'{algo:10s} FAILED: {type(e).__name__}: {e}')
            results.append(dict(algo=algo, error=f'{type(e).__name__}: {e}'))
            continue
        med = statistics.median(times)
        rec = dict(
            algo=algo, **info,
            T=args.T, batch=args.batch, hidden=args.hidden, n_in=args.n_in, n_out=args.n_out,
            model=args.model, dtype='float32',
            per_step_ms=med / args.T * 1e3,
            per_step_ms_min=min(times) / args.T * 1e3,
            seq_median_s=med, seq_times_s=times,
            first_call_s=first, second_call_s=second,
            compile_s=max(first - med, 0.0),
            loss=float(out[1]),
        )
        if algo == 'bptt':
            rec['spike_rate_l1'], rec['spike_rate_l2'] = (float(r) for r in out[2])
        grads_by_algo[algo] = _flat(out[0])
        results.append(rec)
        print(f"{algo:10s} {med / args.T * 1e3:8.4f} ms/step   (seq {med * 1e3:8.1f} ms, "
              f"first call {first:6.2f} s, 2nd {second:6.2f} s)")

    # gradient agreement with BPTT (same weights, inputs, targets)
    if 'bptt' in grads_by_algo:
        ref = grads_by_algo['bptt']
        for rec in results:
            g = grads_by_algo.get(rec['algo'])
            if g is None or rec['algo'] == 'bptt':
                continue
            rec['cosine_vs_bptt'] = {k: _cosine(g[k], ref[k]) for k in ref if k in g}

    print()
    hdr = f"{'algorithm':10s} {'API':28s} {'ms/step':>9s} {'min':>9s} {'compile s':>10s} {'loss':>9s}"
    print(hdr)
    print('-' * len(hdr))
    for r in results:
        if 'error' in r:
            print(f"{r['algo']:10s} FAILED ({r['error'][:60]})")
            continue
        print(f"{r['algo']:10s} {r['api_class'][:28]:28s} {r['per_step_ms']:9.4f} "
              f"{r['per_step_ms_min']:9.4f} {r['compile_s']:10.2f} {r['loss']:9.4f}")
    for r in results:
        if 'cosine_vs_bptt' in r:
            cs = ', '.join(f'{k}: {v:.3f}' for k, v in r['cosine_vs_bptt'].items())
            print(f"cosine(grad, BPTT) {r['algo']}: {cs}")
    for r in results:
        if 'spike_rate_l1' in r:
            print(f"mean spike prob. per step: layer1 {r['spike_rate_l1']:.4f}, "
                  f"layer2 {r['spike_rate_l2']:.4f}")

    if args.json:
        payload = dict(
            library='braintrace', versions=vers, jax_version=vers['jax'],
            backend=jax.default_backend(), cpu=cpu,
            config=dict(vars(args)), results=results,
        )
        with open(args.json, 'w') as f:
            json.dump(payload, f, indent=2)
        print(f'\nwrote {args.json}')
    return results


if __name__ == '__main__':
    main()
