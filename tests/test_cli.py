"""The console script: gradcheck prints a per-engine, per-layer table and JSON; bad flags are refused."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deepeprop.cli import main


def test_gradcheck_json_shows_exact_and_approximate_engines(capsys):
    code = main(["gradcheck", "--hidden", "4,5", "--recurrence", "diagonal", "--steps", "6", "--batch", "2",
                 "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["engines"]) >= {"rtrl", "eprop", "deep_eprop"}
    for method in ("rtrl", "deep_eprop"):
        layers = result["engines"][method]["layers"]
        assert len(layers) == 3  # two hidden layers and the readout
        assert all(row["relative_error"] < 1e-9 and row["cosine"] > 1 - 1e-12 for row in layers)
    assert result["engines"]["eprop"]["layers"][0]["relative_error"] > 1e-3
    assert all(0.0 < rate < 1.0 for rate in result["activity"])


def test_gradcheck_table(capsys):
    assert main(["gradcheck", "--hidden", "3", "--neuron", "leaky", "--steps", "4", "--batch", "1",
                 "--methods", "eprop,deep_eprop"]) == 0
    out = capsys.readouterr().out
    assert "cosine" in out and "rel. error" in out
    assert out.count("deep_eprop") == 2 and "rtrl" not in out  # one hidden layer + readout


@pytest.mark.parametrize("argv, message", [
    (["gradcheck", "--hidden", "16,x"], "--hidden must be a comma-separated list of positive ints"),
    (["gradcheck", "--hidden", "16,0"], "--hidden must be a comma-separated list of positive ints"),
    (["gradcheck", "--steps", "0"], "--steps must be a positive int"),
    (["gradcheck", "--methods", "bptt"], "--methods must name engines"),
    (["gradcheck", "--neuron", "hh"], "invalid choice: 'hh'"),
])
def test_bad_flags_exit_2_with_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "deepeprop.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "gradcheck" in result.stdout


def test_gradcheck_per_layer_neurons_and_skip_edges(capsys):
    code = main(["gradcheck", "--hidden", "4,5,6", "--neuron", "leaky,lif,alif", "--recurrence", "none,diagonal,none",
                 "--skip", "1:3,0:2", "--steps", "6", "--batch", "2", "--methods", "rtrl,deep_eprop,eprop", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["neuron"] == ["leaky", "lif", "alif"] and result["config"]["skip"] == [[1, 3], [0, 2]]
    for method in ("rtrl", "deep_eprop"):
        layers = result["engines"][method]["layers"]
        assert len(layers) == 4
        assert all(row["relative_error"] < 1e-9 for row in layers)
    assert result["engines"]["eprop"]["layers"][0]["relative_error"] > 1e-3


@pytest.mark.parametrize("argv, message", [
    (["gradcheck", "--hidden", "4,5,6", "--skip", "3:1"], "same-time cycle 1 -> 2 -> 3 -> 1"),
    (["gradcheck", "--hidden", "4,5", "--skip", "1:7"], "names node 7, which does not exist"),
    (["gradcheck", "--hidden", "4,5", "--skip", "1-3"], "--skip must be edges I:J"),
    (["gradcheck", "--hidden", "4,5", "--neuron", "lif,hh"], "invalid choice: 'hh'"),
    (["gradcheck", "--hidden", "4,5", "--neuron", "lif,alif,lif"], "--neuron must be one value or a list of 2"),
])
def test_bad_graph_flags_exit_2_with_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_gradcheck_residual_cell_stack(capsys):
    code = main(["gradcheck", "--hidden", "4,8,8", "--neuron", "lru,gelu,identity", "--recurrence", "none",
                 "--residual", "2:3,0:3", "--steps", "6", "--batch", "2", "--methods", "rtrl,deep_eprop,eprop",
                 "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["residual"] == [[2, 3], [0, 3]]
    for method in ("rtrl", "deep_eprop"):
        assert all(row["relative_error"] < 1e-9 for row in result["engines"][method]["layers"])
    assert result["engines"]["eprop"]["layers"][0]["relative_error"] > 1e-3
    with pytest.raises(SystemExit):
        main(["gradcheck", "--hidden", "4,5", "--neuron", "lru,gelu", "--recurrence", "none", "--residual", "1:2"])
    assert "needs equal widths" in capsys.readouterr().err
