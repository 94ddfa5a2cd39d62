"""The parser of ``deepeprop gradcheck`` (:mod:`deepeprop.gradcheck`)."""
from __future__ import annotations

import argparse

from ..engines import ENGINES
from ..losses import LOSSES
from ..builders import READOUTS
from ..network import DTYPES, RECURRENCES
from ..neurons import NEURONS
from ..registry import names
from . import command, description


def _choice_list(choices):
    """An argparse type: one choice or a comma-separated list of them (argparse's wording for a bad one)."""
    def parse(text: str) -> str:
        for part in text.split(","):
            if part.strip() not in choices:
                raise argparse.ArgumentTypeError(f"invalid choice: {part.strip()!r} (choose from "
                                                 f"{', '.join(choices)}, or a comma-separated list of them)")
        return text

    return parse


def register(subparsers) -> None:
    parser = subparsers.add_parser("gradcheck", help="compare every gradient engine with BPTT, per layer",
                                   description=description("deepeprop.gradcheck"))
    parser.add_argument("--neuron", type=_choice_list(NEURONS), default="lif",
                        help=f"neuron model: {names(NEURONS)}, or one per layer comma-separated (e.g. lif,alif,leaky)")
    parser.add_argument("--recurrence", type=_choice_list(RECURRENCES), default="dense",
                        help=f"{names(RECURRENCES)}, or one per layer comma-separated")
    parser.add_argument("--skip", default="", help="extra same-time edges I:J, comma-separated (0 = input, "
                        "L+1 = readout), e.g. 1:3,0:2")
    parser.add_argument("--residual", default="", help="fixed identity edges I:J (equal widths), e.g. 2:3,0:3")
    parser.add_argument("--hidden", default="16,16,16", help="hidden layer sizes, comma-separated")
    parser.add_argument("--readout", choices=READOUTS, default="leaky", help="readout of the network")
    parser.add_argument("--loss", choices=tuple(LOSSES), default="mse", help="per-step loss")
    parser.add_argument("--steps", type=int, default=50, help="sequence length T")
    parser.add_argument("--batch", type=int, default=4, help="sequences in the batch")
    parser.add_argument("--seed", type=int, default=0, help="model, input and target seed")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float64", help="floating-point type")
    parser.add_argument("--methods", default=None, help="engines to check against bptt, comma-separated, among "
                        f"{names([m for m in ENGINES if m != 'bptt'])} (default: all)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    parser.set_defaults(func=command("deepeprop.gradcheck"))
