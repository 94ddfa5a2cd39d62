"""The ``deepeprop`` console script: ``deepeprop {gradcheck,train,demo,bench,experiment} ...``.

The parsers are :mod:`deepeprop.parsers` (argparse only); each subcommand's work is its own module's ``_main(args)``
(returning an exit code). An error the library raises on
purpose (:class:`deepeprop.errors.DeepEPropError`: usage, checkpoint and run-folder errors) is printed under the
subcommand's usage line with exit code 2; any other exception propagates with its traceback.
"""
from __future__ import annotations

import sys

from .errors import DeepEPropError, UsageError  # noqa: F401  (UsageError: cli.UsageError as before)
from .parsers import (PARSER_MODULES, HelpFormatter, Parser, RawDescriptionHelpFormatter,  # noqa: F401
                      build_parser, plain)
from .registry import names  # noqa: F401  (cli.names as before)

SUBCOMMAND_MODULES = PARSER_MODULES  # the name of earlier versions


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DeepEPropError as err:  # only the library's own errors: any other exception is a bug, with its traceback
        getattr(args, "_parser", parser).error(str(err))  # the subcommand's usage line, code 2, no traceback
    return 1


if __name__ == "__main__":
    sys.exit(main())
