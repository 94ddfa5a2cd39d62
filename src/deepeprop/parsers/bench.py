"""The parser of ``deepeprop bench`` (:mod:`deepeprop.bench`)."""
from __future__ import annotations

import argparse

from ..bench import DEFAULT_ENGINES, MODELS
from ..engines import ENGINES
from ..registry import names
from . import RawDescriptionHelpFormatter, command, description


def _positive_ints(text):
    """``"100,1000"`` -> ``[100, 1000]``; anything but positive ints is refused (argparse names the flag)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of positive ints, got {text!r}")
    return values


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}")
    return value


def register(subparsers):
    parser = subparsers.add_parser("bench", help="time and memory of every engine (table + JSON)",
                                   description=description("deepeprop.bench", whole=True),
                                   formatter_class=RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=("quick", "targets", "scaling"), default="quick",
                        help="quick (default, < 2 min), targets (the issue's ratios), scaling (T, n, depth, batch)")
    parser.add_argument("--engines", type=lambda s: [v for v in s.split(",") if v], default=None,
                        help=f"comma-separated engines among {names(ENGINES)} (default: "
                             f"{','.join(DEFAULT_ENGINES)}); options in brackets, "
                             "separated by ';', e.g. 'eprop[readout_filter=False]'; an evaluation after '@', "
                             "e.g. 'deep_eprop@reverse', 'eprop[chunk_size=1]'")
    parser.add_argument("--cases", type=lambda s: [v for v in s.split(",") if v], default=None,
                        help="comma-separated case names: run only these cases of the suite")
    parser.add_argument("--T", type=_positive_ints, default=None, help="sequence lengths (quick suite), e.g. 100,1000")
    parser.add_argument("--width", type=_positive_ints, default=None, help="hidden widths (quick suite)")
    parser.add_argument("--depth", type=_positive_ints, default=None, help="numbers of hidden layers (quick suite)")
    parser.add_argument("--batch", type=_positive_int, default=None, help="batch size (quick suite; default 4)")
    parser.add_argument("--model", choices=tuple(MODELS), default="factorisable",
                        help="exact: LIF with the reset path kept, dense W with its diagonal; factorisable "
                             "(default): the standard e-prop model (LIF with detach_reset, no self-connections, "
                             "the library defaults), recurrent gain 0.1")
    parser.add_argument("--readout", choices=("linear", "leaky"), default="leaky", help="readout of the network")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="floating-point type")
    parser.add_argument("--repeats", type=_positive_int, default=5, help="timed calls per engine (median)")
    parser.add_argument("--alignment", action="store_true", help="cosine per layer of each gradient vs BPTT's")
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    parser.add_argument("--markdown", default=None, help="write the rows as Markdown tables to this file")
    parser.add_argument("--max-trace-gb", type=float, default=2.0,
                        help="skip an engine whose traces (its cost formula) would exceed this many GB (default 2)")
    parser.add_argument("--max-call-s", type=float, default=60.0,
                        help="skip an engine whose formula's FLOPs for one call would take longer than this at the "
                             "measured jnp.dot peak (a lower bound; default 60 s)")
    parser.set_defaults(func=command("deepeprop.bench"))
