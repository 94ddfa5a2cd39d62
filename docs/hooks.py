"""MkDocs hooks of the documentation site (mkdocs.yml ``hooks:``).

The command-line reference (``docs/cli.md``) is generated here from the parsers themselves: the ``--help`` text of
``deepeprop`` and of every subcommand that a module in ``deepeprop.cli.SUBCOMMAND_MODULES`` registers, so a new
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
    """Markdown: ``deepeprop --help``, then one section per subcommand with its ``--help`` text."""
    sys.path.insert(0, str(ROOT / "src"))  # the tree being documented, even when another copy is installed
    try:
        from deepeprop.cli import build_parser
    finally:
        sys.path.pop(0)
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: a fixed width for the page
    try:
        parser = build_parser()
        sections = ["## `deepeprop`", "", "```text", parser.format_help().rstrip(), "```", ""]
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for name, sub in actions[0].choices.items():
            sections += [f"## `deepeprop {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    return "\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Fill the marker of the command-line page with the generated reference."""
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
