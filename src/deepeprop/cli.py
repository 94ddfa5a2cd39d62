"""The ``deepeprop`` console script: ``deepeprop {gradcheck,train,demo,bench} ...``.

Each subcommand lives in its own module, which provides ``register(subparsers)``: it adds its parser
and sets ``func`` (called with the parsed arguments, returning an exit code). An error the library raises on
purpose (:class:`deepeprop.errors.DeepEPropError`: usage, checkpoint and run-folder errors) is printed under the
subcommand's usage line with exit code 2; any other exception propagates with its traceback.

Every parser is a :class:`Parser`: its ``--help`` shows each option's default and plain text (the reST markup of
the module docstrings that serve as descriptions is removed), and an error in a subcommand (a bad value found
by argparse or by the subcommand itself) is reported under that subcommand's own usage line.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys

from .errors import DeepEPropError, UsageError  # noqa: F401  (UsageError: cli.UsageError as before)
from .registry import names  # noqa: F401  (cli.names as before)

# module providing register(subparsers), in the order shown by --help
SUBCOMMAND_MODULES = ("deepeprop.gradcheck", "deepeprop.training", "deepeprop.demo", "deepeprop.bench",
                      "deepeprop.experiments")

_ROLE = re.compile(r":(?:class|func|meth|data|mod|attr|obj|exc):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(text: str | None) -> str | None:
    """``text`` without reST markup: ``:func:`deepeprop.gradients``` -> ``deepeprop.gradients``, double backticks
    dropped, a trailing ``::`` (a literal block follows) made ``:``."""
    if not text:
        return text
    text = _ROLE.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    return re.sub(r"::(\s*\n)", r":\1", text)


class _Plain:
    """Mixin of the help formatters: plain text, and each option's default where it says none itself."""

    def _format_text(self, text):
        return super()._format_text(plain(text))

    def _expand_help(self, action):
        return plain(super()._expand_help(action))

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default is argparse.SUPPRESS or default is None
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
                                       argparse._AppendAction))):
            return text
        shown = "none" if default == "" else "%(default)s"
        return f"{text} (default: {shown})"


class HelpFormatter(_Plain, argparse.HelpFormatter):
    """Plain text, defaults shown; the description wrapped."""


class RawDescriptionHelpFormatter(_Plain, argparse.RawDescriptionHelpFormatter):
    """Plain text, defaults shown; the description's own line breaks kept."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose subparsers are Parsers and whose help is :class:`HelpFormatter`'s."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def add_subparsers(self, **kwargs):
        action = super().add_subparsers(**kwargs)
        action._parser_class = Parser
        return action

    def parse_known_args(self, args=None, namespace=None):
        # the innermost subcommand parses last, so its parser is the one recorded
        namespace, rest = super().parse_known_args(args, namespace)
        if not hasattr(namespace, "_parser") or namespace._parser is None:
            namespace._parser = self
        return namespace, rest


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="deepeprop", description="Online training of deep recurrent and spiking networks with "
                    "deep e-prop.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


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
