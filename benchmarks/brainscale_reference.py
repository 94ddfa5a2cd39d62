"""Reference timing of braintrace (the BrainPy team's successor of brainscale).

Measures, on the current machine, the wall-clock time per simulated time step of
one *training step* (forward pass over the whole sequence + the weight
gradient) of an N-layer recurrent LIF network (``--layers``, default 2), for:

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

  layer l (l = 1..--layers), n_in_1 = --n-in (default 100), n_in_l = H = --hidden (l > 1):
      s_{t-1}  = Heaviside(V_{t-1} - V_th)                (spike of the previous step, >= fires)
      I_t      = concat(x_t, s_{t-1}) @ W_l + b_l         (braintrace.nn.Linear, W_l: (n_in+H, H), b_l: (H,))
      V'       = V_{t-1} - (V_th - V_reset) * s_{t-1}     (soft reset, gradient kept through s)
      V_t      = alpha * V' + (1 - alpha) * V_rest + I_t  (exact exp-Euler of tau dV/dt = -(V - V_rest);
                                                           delta synapse: I_t added directly to V)
      output   s_t = Heaviside(V_t - V_th)
      alpha = exp(-dt / tau_mem), tau_mem = 10, V_th = 1, V_reset = 0, V_rest = 0, R = 1, V_0 = 0
      (--tau-mem-sigma s > 0: one tau_mem per neuron, tau_mem + s * N(0, 1), key fold_in(PRNGKey(seed), 100 + l),
       as braintrace's memory-and-speed example draws them; 0, the default: one shared tau)
      surrogate dS/dV = max(0, 0.3 * (1 - |(V - V_th) / (V_th - V_reset)|))   (braintools ReluGrad(0.3, 1))
  readout (braintrace.nn.LeakyRateReadout, no bias):
      r_t = kappa * r_{t-1} + sL_t @ W_out,   kappa = exp(-dt / tau_out), tau_out = 10, r_0 = 0
  loss (--loss): 'mse' (default), per-step MSE  L = (1/T) sum_t mean_{b,k} (r_t - y_t)^2  against random
  N(0,1) targets y (T, B, n_out); 'ce', per-step softmax cross-entropy  L = (1/T) sum_t mean_b -log softmax(r_t)[c_b]
  against one random class c_b per sequence (labels (T, B), the same at every step), the loss of the
  memory-and-speed example.
  input: Bernoulli(p = --in-rate, default 0.05) spikes, shape (T, B, n_in).

  'lif-expcu' (--model) instead routes I_t through an exponential current
  synapse (brainpy.state.AlignPostProj + Expon(tau_syn=10) + CUBA), the pattern
  of braintrace's current pp_prop examples.

Trainable parameters: W_l, b_l for each layer, W_out (the bias is zero-initialised).
Initial weights (jax.random, seed --seed, keys k = jax.random.split(PRNGKey(seed), 2 L + 1): layer l gets
k[2l-2], k[2l-1], the readout k[2L]; for L = 2 the keys of the original 2-layer script):
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

Memory: XLA's compiled ``memory_analysis()`` of the jitted training step
(``train.lower(xs, ys).compile()``, taken after the warm-up calls): ``peak_bytes``
= temp + argument + output bytes (arguments include the weights and states that
brainstate passes in, and the data); ``engine_peak_bytes`` = ``peak_bytes`` minus
the bytes of xs and ys (which grow with T whatever the algorithm) -- the same
measure deepeprop.bench reports for deepeprop's engines.

``--serve``: instead of running once, answer JSON-line requests on stdin (one
reply line each on stdout; everything else goes to stderr), so that a driver in
another Python (benchmarks/compare_braintrace_scaling.py) can interleave calls
to this library with calls to its own:
    {"cmd": "info"}                        -> {"versions": ..., "cpu": ..., "backend": ...}
    {"cmd": "build", "argv": [...]}        -> parse argv with this script's options, build and warm up
                                              every --algos entry: {"cases": {algo: {..., "peak_bytes": ...}}}
    {"cmd": "time", "algo": a, "calls": n} -> {"times": [seconds of n calls]}
    {"cmd": "free"}                        -> drop the built functions and jax's caches
    {"cmd": "quit"}
Each reply carries "ok": true, or "ok": false and "error".
"""

from __future__ import annotations

import argparse
import gc
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

    def __init__(self, n_in, n_rec, w_init, args, tau):
        super().__init__()
        self.neu = bps.LIF(
            n_rec, R=1., tau=tau, V_th=args.v_th, V_reset=0., V_rest=0.,
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


def layer_tau(args, index):
    """tau_mem of layer ``index`` (1-based): a number, or one per neuron with --tau-mem-sigma > 0."""
    if args.tau_mem_sigma <= 0:
        return args.tau_mem
    key = jax.random.fold_in(jax.random.PRNGKey(args.seed), 100 + index)
    return args.tau_mem + args.tau_mem_sigma * jax.random.normal(key, (args.hidden,), jnp.float32)


class Net(brainstate.nn.Module):
    def __init__(self, args):
        super().__init__()
        n_in, h, n_out, depth = args.n_in, args.hidden, args.n_out, args.layers
        k = jax.random.split(jax.random.PRNGKey(args.seed), 2 * depth + 1)
        f32 = jnp.float32

        def w(key_ff, key_rec, fan_in):
            ff = jax.random.normal(key_ff, (fan_in, h), f32) * math.sqrt(args.ff_scale / fan_in)
            rec = jax.random.normal(key_rec, (h, h), f32) * math.sqrt(args.rec_scale / h)
            return jnp.concatenate([ff, rec], axis=0)

        self.names = [f'l{i}' for i in range(1, depth + 1)]  # attributes l1, l2, ...: the gradient names
        for i, name in enumerate(self.names):
            fan_in = n_in if i == 0 else h
            weights = w(k[2 * i], k[2 * i + 1], fan_in)
            setattr(self, name, LIFLayer(fan_in, h, weights, args, tau=layer_tau(args, i + 1)))
        w_out = jax.random.normal(k[2 * depth], (h, n_out), f32) * math.sqrt(2.0 / h)
        self.out = braintrace.nn.LeakyRateReadout(h, n_out, tau=args.tau_out, w_init=w_out)

    def layers(self):
        return [getattr(self, name) for name in self.names]

    def update(self, x):
        for layer in self.layers():
            x = layer(x)
        return self.out(x)


def make_data(args):
    kx, ky = jax.random.split(jax.random.PRNGKey(args.seed + 1))
    shape = (args.T, args.batch, args.n_in)  # (jitted: no float32 uniform of that size in between)
    xs = jax.jit(lambda k: (jax.random.uniform(k, shape) < args.in_rate).astype(jnp.float32))(kx)
    if args.loss == 'ce':  # one class per sequence, the label at every step
        labels = jax.random.randint(ky, (args.batch,), 0, args.n_out, jnp.int32)
        ys = jnp.broadcast_to(labels, (args.T, args.batch))
    else:
        ys = jax.random.normal(ky, (args.T, args.batch, args.n_out), jnp.float32)
    return xs, ys


def step_loss_fn(args):
    """The per-step loss ``(readout (B, n_out), target) -> scalar`` of --loss."""
    if args.loss == 'ce':
        def ce(out, y):
            log_p = jax.nn.log_softmax(out, axis=-1)
            return -jnp.mean(jnp.take_along_axis(log_p, y[:, None].astype(jnp.int32), axis=-1))
        return ce
    return lambda out, y: jnp.mean((out - y) ** 2)


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

    loss_fn = step_loss_fn(args)

    def step_loss(x, y):
        return loss_fn(learner(x), y)

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

    loss_fn = step_loss_fn(args)

    def seq_loss(xs, ys):
        def step(x, y):
            out = net(x)
            return loss_fn(out, y), tuple(jnp.mean(layer.neu.get_spike()) for layer in net.layers())

        losses, rates = brainstate.transform.for_loop(step, xs, ys)
        return jnp.mean(losses), tuple(jnp.mean(r) for r in rates)

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


def warm_up(train, xs, ys):
    """The first call (trace + compile + run) and the second (braintrace retraces once): seconds, output."""
    t0 = time.perf_counter()
    _block(train(xs, ys))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = _block(train(xs, ys))
    second = time.perf_counter() - t0
    return first, second, out


def timed_calls(train, xs, ys, calls):
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        _block(train(xs, ys))
        times.append(time.perf_counter() - t0)
    return times


def time_train(train, xs, ys, repeats):
    first, second, out = warm_up(train, xs, ys)
    return first, second, timed_calls(train, xs, ys, repeats), out


def memory_stats(train, xs, ys):
    """XLA's compiled memory analysis of the training step (module docstring, 'Memory'); {} if unavailable."""
    try:
        mem = train.lower(xs, ys).compile().memory_analysis()
    except Exception as e:  # (an older brainstate without .lower)
        return dict(memory_error=f'{type(e).__name__}: {e}')
    if mem is None:
        return {}
    temp, arg, out = (int(mem.temp_size_in_bytes), int(mem.argument_size_in_bytes),
                      int(mem.output_size_in_bytes))
    data = int(xs.nbytes + ys.nbytes)
    return dict(temp_bytes=temp, argument_bytes=arg, output_bytes=out, peak_bytes=temp + arg + out,
                data_bytes=data, engine_peak_bytes=temp + arg + out - data)


def build(args, algo):
    return build_bptt(args) if algo == 'bptt' else build_online(args, algo)


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

def make_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--T', type=int, default=1000)
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--hidden', type=int, default=64)
    p.add_argument('--layers', type=int, default=2, help='number of recurrent LIF layers')
    p.add_argument('--n-in', type=int, default=100)
    p.add_argument('--n-out', type=int, default=10)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--algos', default=','.join(ALGOS),
                   help=f'comma-separated subset of {ALGOS}')
    p.add_argument('--model', default='lif-delta', choices=['lif-delta', 'lif-expcu'])
    p.add_argument('--mode', default='batched', choices=['batched', 'vmap'],
                   help='online learners: batch axis inside the compiled graph (braintrace.compile('
                        'batch_size=B)) or braintrace.compile(vmap=True); BPTT is always batched')
    p.add_argument('--loss', default='mse', choices=['mse', 'ce'],
                   help='per-step MSE against N(0,1) targets, or softmax cross-entropy against one class per sequence')
    p.add_argument('--decay', type=float, default=0.95, help='ES-D-RTRL decay_or_rank')
    p.add_argument('--tau-mem', type=float, default=10.0)
    p.add_argument('--tau-mem-sigma', type=float, default=0.0,
                   help='> 0: one tau_mem per neuron, tau_mem + sigma * N(0, 1)')
    p.add_argument('--tau-syn', type=float, default=10.0)
    p.add_argument('--tau-out', type=float, default=10.0)
    p.add_argument('--v-th', type=float, default=1.0)
    p.add_argument('--ff-scale', type=float, default=2.0)
    p.add_argument('--rec-scale', type=float, default=1.0)
    p.add_argument('--in-rate', type=float, default=0.05)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help='write the results as JSON to this path')
    p.add_argument('--serve', action='store_true',
                   help='answer JSON-line requests on stdin instead of running once (module docstring)')
    return p


def parse(p, argv):
    args = p.parse_args(argv)
    args.algo_list = [a.strip() for a in args.algos.split(',') if a.strip()]
    for a in args.algo_list:
        if a not in ALGOS:
            p.error(f'unknown algorithm {a!r}; choose from {ALGOS}')
    if args.layers < 1:
        p.error('--layers must be >= 1')
    return args


def serve(p):
    """The --serve loop: one JSON request per stdin line, one JSON reply per stdout line."""
    reply_to, sys.stdout = sys.stdout, sys.stderr  # prints (and library chatter) go to stderr
    built, data = {}, None

    def reply(obj):
        reply_to.write(json.dumps(obj) + '\n')
        reply_to.flush()

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cmd = req.get('cmd')
            if cmd == 'info':
                reply(dict(ok=True, versions=versions(), cpu=cpu_info(), backend=jax.default_backend(),
                           devices=[str(d) for d in jax.devices()]))
            elif cmd == 'build':
                built.clear()
                args = parse(p, req['argv'])
                data = make_data(args)
                cases = {}
                for algo in args.algo_list:
                    try:  # (one algorithm out of memory, say, leaves the others)
                        train, info = build(args, algo)
                        first, second, out = warm_up(train, *data)
                    except Exception as e:
                        cases[algo] = dict(error=f'{type(e).__name__}: {e}'[:2000])
                        continue
                    built[algo] = train
                    cases[algo] = dict(info, first_call_s=first, second_call_s=second, loss=float(out[1]),
                                       **memory_stats(train, *data))
                reply(dict(ok=True, cases=cases))
            elif cmd == 'time':
                reply(dict(ok=True, times=timed_calls(built[req['algo']], *data, int(req.get('calls', 1)))))
            elif cmd == 'free':
                built.clear()
                data = None
                jax.clear_caches()
                gc.collect()
                reply(dict(ok=True))
            elif cmd == 'quit':
                reply(dict(ok=True))
                return
            else:
                reply(dict(ok=False, error=f'unknown cmd {cmd!r}'))
        except Exception as e:  # report to the driver and keep serving
            reply(dict(ok=False, error=f'{type(e).__name__}: {e}'))


def main(argv=None):
    p = make_parser()
    args = parse(p, argv)
    brainstate.environ.set(dt=1.0)
    jax.config.update('jax_enable_x64', False)
    if args.serve:
        return serve(p)
    algos = args.algo_list
    xs, ys = make_data(args)

    vers, cpu = versions(), cpu_info()
    print(f"braintrace {vers.get('braintrace')}  brainstate {vers.get('brainstate')}  "
          f"brainpy {vers.get('brainpy')}  jax {vers['jax']}  backend {jax.default_backend()}")
    print(f"CPU: {cpu['model']}  ({cpu['usable_cpus']} usable / {cpu['logical_cpus']} logical)  "
          f"load avg at start: {cpu['loadavg_at_start']}")
    print(f"model={args.model}  mode={args.mode}  T={args.T}  batch={args.batch}  layers={args.layers}  "
          f"hidden={args.hidden}  n_in={args.n_in}  n_out={args.n_out}  loss={args.loss}  "
          f"repeats={args.repeats}  float32\n")

    results, grads_by_algo = [], {}
    for algo in algos:
        try:
            train, info = build(args, algo)
            first, second, times, out = time_train(train, xs, ys, args.repeats)
        except Exception as e:  # report and keep going
            print(f'{algo:10s} FAILED: {type(e).__name__}: {e}')
            results.append(dict(algo=algo, error=f'{type(e).__name__}: {e}'))
            continue
        med = statistics.median(times)
        rec = dict(
            algo=algo, **info,
            T=args.T, batch=args.batch, hidden=args.hidden, layers=args.layers, n_in=args.n_in,
            n_out=args.n_out, model=args.model, loss_fn=args.loss, dtype='float32',
            per_step_ms=med / args.T * 1e3,
            per_step_ms_min=min(times) / args.T * 1e3,
            seq_median_s=med, seq_times_s=times,
            first_call_s=first, second_call_s=second,
            compile_s=max(first - med, 0.0),
            loss=float(out[1]),
            **memory_stats(train, xs, ys),
        )
        if algo == 'bptt':
            for i, r in enumerate(out[2]):
                rec[f'spike_rate_l{i + 1}'] = float(r)
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
    hdr = (f"{'algorithm':10s} {'API':28s} {'ms/step':>9s} {'min':>9s} {'compile s':>10s} {'loss':>9s} "
           f"{'peak MB':>9s}")
    print(hdr)
    print('-' * len(hdr))
    for r in results:
        if 'error' in r:
            print(f"{r['algo']:10s} FAILED ({r['error'][:60]})")
            continue
        peak = r['peak_bytes'] / 2 ** 20 if r.get('peak_bytes') is not None else float('nan')
        print(f"{r['algo']:10s} {r['api_class'][:28]:28s} {r['per_step_ms']:9.4f} "
              f"{r['per_step_ms_min']:9.4f} {r['compile_s']:10.2f} {r['loss']:9.4f} {peak:9.2f}")
    for r in results:
        if 'cosine_vs_bptt' in r:
            cs = ', '.join(f'{k}: {v:.3f}' for k, v in r['cosine_vs_bptt'].items())
            print(f"cosine(grad, BPTT) {r['algo']}: {cs}")
    for r in results:
        if 'spike_rate_l1' in r:
            rates = ', '.join(f"layer{i} {r[f'spike_rate_l{i}']:.4f}" for i in range(1, args.layers + 1))
            print(f"mean spike prob. per step: {rates}")

    if args.json:
        config = {k: v for k, v in vars(args).items() if k != 'algo_list'}
        payload = dict(
            library='braintrace', versions=vers, jax_version=vers['jax'],
            backend=jax.default_backend(), cpu=cpu,
            config=config, results=results,
        )
        with open(args.json, 'w') as f:
            json.dump(payload, f, indent=2)
        print(f'\nwrote {args.json}')
    return results


if __name__ == '__main__':
    main()
