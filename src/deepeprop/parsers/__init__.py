"""The command-line parsers of ``deepeprop``: argparse only, no logic.

One module a subcommand (:data:`PARSER_MODULES`, in the order ``--help`` shows them), each with
``register(subparsers)``: it adds the subcommand's parser and sets ``func`` to :func:`command` of the module that
does the work (``deepeprop.training``, ``deepeprop.gradcheck``, ...), imported when the subcommand runs. Help texts
that list names (engines, tasks, neuron models) are made from the registries when the parser is built
(:mod:`deepeprop.registry`), so a newly registered engine appears in ``--method``'s help by itself.

Every parser is a :class:`Parser`: its ``--help`` shows each option's default and plain text (the reST markup of
the module docstrings that serve as descriptions is removed), and an error in a subcommand (a bad value found
by argparse or by the subcommand itself) is reported under that subcommand's own usage line.
"""
from __future__ import annotations

import argparse
import importlib
import re

# the modules providing register(subparsers), in the order shown by --help
PARSER_MODULES = ("deepeprop.parsers.gradcheck", "deepeprop.parsers.train", "deepeprop.parsers.demo",
                  "deepeprop.parsers.bench", "deepeprop.parsers.experiments")


def command(module: str):
    """The ``func`` of a subcommand: ``module._main(args)``, the module imported when the subcommand runs."""
    def run(args) -> int:
        return importlib.import_module(module)._main(args)

    return run


def description(module: str, whole: bool = False) -> str:
    """The first paragraph (``whole``: all) of ``module``'s docstring: a subcommand's description."""
    text = importlib.import_module(module).__doc__ or ""
    return text if whole else text.split("\n\n")[0]


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
    for name in PARSER_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser
