"""The parser of ``deepeprop demo`` (:mod:`deepeprop.demo`)."""
from __future__ import annotations

from . import command, description


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="train a small spiking network with deep e-prop "
                                   "(under a minute on 2 CPU cores)",
                                   description=description("deepeprop.demo"))
    parser.add_argument("--out", default="deepeprop-demo", help="folder for the results and plots "
                        "(default ./deepeprop-demo)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (the line of each evaluation "
                        "is still printed)")
    parser.set_defaults(func=command("deepeprop.demo"))
