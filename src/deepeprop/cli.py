"""The ``deepeprop`` console script: ``deepeprop {gradcheck,train,demo,bench} ...``.

Each subcommand lives in its own module, which provides ``register(subparsers)``: it adds its parser
and sets ``func`` (called with the parsed arguments, returning an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# module providing register(subparsers), in the order shown by --help
SUBCOMMAND_MODULES = ("deepeprop.gradcheck", "deepeprop.training", "deepeprop.demo", "deepeprop.bench",
                      "deepeprop.experiments")


class UsageError(ValueError):
    """A bad command-line value: reported as ``deepeprop: error: ...`` with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepeprop", description="Online training of deep recurrent and "
                                     "spiking networks with deep e-prop.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError) as err:
        parser.error(str(err))  # exits with code 2 and the message, no traceback
    return 1


if __name__ == "__main__":
    sys.exit(main())
