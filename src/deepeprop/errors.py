"""The library's errors: one base, :class:`DeepEPropError`, and the kinds the command line reports.

``DeepEPropError`` is a ``ValueError`` (so an existing ``except ValueError`` keeps catching it). The command line
(:func:`deepeprop.cli.main`) catches this base only: its message is printed under the subcommand's usage line with
exit code 2, while any other exception (a bug) shows its traceback. :class:`TrainingDiverged` is a
``RuntimeError`` of its own: a run that diverged is not a bad argument (``deepeprop train`` exits with code 3).

This module imports nothing of the package, so every module may import it (no import cycle).
"""
from __future__ import annotations

import contextlib


class DeepEPropError(ValueError):
    """Base of the errors deepeprop raises on purpose about what it was given."""


class UsageError(DeepEPropError):
    """A bad command-line or configuration value: reported as ``deepeprop SUBCOMMAND: error: ...``, exit code 2."""


class CheckpointError(DeepEPropError):
    """A checkpoint that is missing, truncated, corrupted or from an incompatible run."""


class RunFolderError(DeepEPropError):
    """An output folder that cannot be used: unusable path, in use by another run, or not empty."""


class TrainingDiverged(RuntimeError):
    """The loss or the parameters became non-finite; the last good checkpoint is kept."""


@contextlib.contextmanager
def usage_errors(prefix: str = ""):
    """Inside: a plain ``ValueError`` (an argument check of the library, given a user's value) becomes a
    :class:`UsageError` whose message starts with ``prefix`` (e.g. ``"--task-option: "``); a
    :class:`DeepEPropError` passes unchanged. Wrap only the code that checks what the user gave."""
    try:
        yield
    except DeepEPropError:
        raise
    except ValueError as err:
        raise UsageError(f"{prefix}{err}") from None
