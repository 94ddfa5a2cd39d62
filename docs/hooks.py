"""MkDocs hooks of the documentation site (mkdocs.yml ``hooks:``).

The command-line reference (``docs/cli.md``) is generated here from the parsers themselves: the ``--help`` text of
``deepeprop`` and of every subcommand that a module in ``deepeprop.parsers.PARSER_MODULES`` registers, so a new
subcommand appears without editing the page.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARKER = "<!-- deepeprop-cli-reference -->"


def cli_reference() -> str:
    """Markdown: ``deepeprop --help``, then one section per subcommand (and sub-subcommand) with its ``--help``."""
    sys.path.insert(0, str(ROOT / "src"))  # the tree being documented, even when another copy is installed
    try:
        from deepeprop.cli import build_parser
    finally:
        sys.path.pop(0)
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: a fixed width for the page
    try:
        sections = _sections(build_parser(), "deepeprop", 2)
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    return "\n".join(sections)


def _sections(parser: argparse.ArgumentParser, command: str, level: int) -> list[str]:
    """A heading and the ``--help`` text of ``command``, then the same for each of its subcommands, recursively
    (``deepeprop experiment alignment`` is a section of its own under ``deepeprop experiment``)."""
    lines = [f"{'#' * level} `{command}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                lines += _sections(sub, f"{command} {name}", min(level + 1, 4))
    return lines


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Fill the marker of the command-line page with the generated reference."""
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
