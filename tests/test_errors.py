"""The error hierarchy (issue 19, item 5): one library base; the CLI reports only it and lets a bug show."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from deepeprop import cli, demo, errors, runfolder, training

SRC = Path(__file__).parents[1] / "src" / "deepeprop"


def test_the_library_errors_share_one_base_that_is_a_value_error():
    for cls in (errors.UsageError, errors.CheckpointError, errors.RunFolderError):
        assert issubclass(cls, errors.DeepEPropError)
    assert issubclass(errors.DeepEPropError, ValueError)  # an existing `except ValueError` keeps catching them
    assert not issubclass(errors.TrainingDiverged, ValueError)
    assert cli.UsageError is errors.UsageError and training.CheckpointError is errors.CheckpointError
    assert runfolder.RunFolderError is errors.RunFolderError


def test_the_cli_reports_a_library_error_and_lets_a_bug_show_its_traceback(monkeypatch, capsys):
    def usage(args):
        raise errors.UsageError("--out must be a folder")

    monkeypatch.setattr(demo, "_main", usage)
    with pytest.raises(SystemExit) as info:
        cli.main(["demo"])
    assert info.value.code == 2 and "deepeprop demo: error: --out must be a folder" in capsys.readouterr().err

    def bug(args):
        raise ValueError("an internal bug")

    monkeypatch.setattr(demo, "_main", bug)
    with pytest.raises(ValueError, match="an internal bug"):  # not SystemExit: the traceback is shown
        cli.main(["demo"])


def test_usage_errors_turns_a_plain_value_error_into_a_usage_error_only():
    with pytest.raises(errors.UsageError, match="^--task-option: bad"):
        with errors.usage_errors("--task-option: "):
            raise ValueError("bad")
    with pytest.raises(errors.CheckpointError, match="^corrupt$"):
        with errors.usage_errors("--x: "):
            raise errors.CheckpointError("corrupt")
    with pytest.raises(TypeError):
        with errors.usage_errors():
            raise TypeError("a bug")


# (module, imported module) pairs that a function-level import used to hide as a cycle
HIDDEN_CYCLES = {"validation.py": {"network", "losses"}, "training.py": {"cli", "gradcheck"},
                 "gradcheck.py": {"cli"}, "experiments/report.py": {"training"}}


def test_no_function_level_import_hides_a_cycle():
    for name, forbidden in HIDDEN_CYCLES.items():
        tree = ast.parse((SRC / name).read_text())
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom):
                    imported = {(node.module or "").lstrip(".")} | {alias.name for alias in node.names}
                    assert not imported & forbidden, f"{name}: {function.name} imports {imported & forbidden}"
    assert "_read_metrics" not in (SRC / "experiments" / "report.py").read_text()
