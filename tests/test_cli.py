"""The console script: gradcheck prints a per-engine, per-layer table and JSON; bad flags are refused."""
from __future__ import annotations

import argparse
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


# ----------------------------------------------------------------------------- what a new user meets (issue 21)
def _help(argv, monkeypatch) -> str:
    from deepeprop.cli import build_parser

    monkeypatch.setenv("COLUMNS", "10000")  # one line per option: names are not split by wrapping
    parser = build_parser()
    for name in argv:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser.format_help()


def _options(text: str) -> dict:
    """``--flag`` -> its whole entry in a --help text (continuation lines joined)."""
    entries = {}
    for line in text.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = line
        elif entries:
            entries[flag] += " " + line.strip()
    return entries


def test_help_lists_the_registries_and_the_defaults(monkeypatch):
    """Found: train --help listed 4 of the 6 engines and no task names; gradcheck --help said --neuron is "leaky, lif
    or alif" and showed no defaults. The lists come from the registries now: a new entry appears by itself."""
    from deepeprop.engines import ENGINES, EVALUATIONS
    from deepeprop.losses import LOSSES
    from deepeprop.neurons import NEURONS
    from deepeprop.tasks import TASKS

    monkeypatch.setitem(ENGINES, "dummy_engine", object)
    monkeypatch.setitem(TASKS, "dummy_task", object)
    monkeypatch.setitem(NEURONS, "dummy_neuron", object)
    train, gradcheck = _help(["train"], monkeypatch), _help(["gradcheck"], monkeypatch)
    lines = _options(train)
    for flag, registry in (("--method", ENGINES), ("--task", TASKS), ("--neuron", NEURONS),
                           ("--evaluation", EVALUATIONS)):
        assert all(name in lines[flag] for name in registry), (flag, lines[flag])
    assert "dummy_engine" in lines["--method"] and "chunked:K" in lines["--evaluation"]
    for flag, default in (("--method", "deep_eprop"), ("--task", "digits"), ("--hidden", "64,64"), ("--lr", "0.001"),
                          ("--iterations", "200")):
        assert f"(default: {default})" in lines[flag], lines[flag]
    assert "--devices" in lines["--resume"] and "--evaluation" in lines["--resume"]  # from training.RESUMABLE
    lines = _options(gradcheck)
    assert all(name in lines["--neuron"] for name in NEURONS) and "(default: lif)" in lines["--neuron"]
    assert all(name in lines["--loss"] for name in LOSSES) and "(default: mse)" in lines["--loss"]
    assert "dummy_engine" in lines["--methods"] and "(default: 4)" in lines["--batch"]


@pytest.mark.parametrize("argv", [[], ["gradcheck"], ["train"], ["demo"], ["bench"], ["experiment"],
                                  ["experiment", "alignment"]])
def test_help_is_plain_text(argv, monkeypatch):
    """Found: --help printed the reST of the module docstrings (double backticks, :func: roles)."""
    text = _help(argv, monkeypatch)
    assert "``" not in text and ":func:" not in text and ":class:" not in text, text


@pytest.mark.parametrize("argv, usage, message", [
    (["train", "--method", "sideways"], "usage: deepeprop train", "deepeprop train: error: --method must be one of"),
    (["gradcheck", "--steps", "0"], "usage: deepeprop gradcheck", "deepeprop gradcheck: error: --steps must be"),
    (["experiment", "alignment", "--config", "/no/such.toml"], "usage: deepeprop experiment alignment",
     "deepeprop experiment alignment: error: --config: no such file"),
])
def test_errors_print_the_subcommands_usage(argv, usage, message, capsys):
    """Found: every train error (a value the subcommand checks) printed the top-level usage line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage) and message in err, err


def test_evaluation_reverse_with_update_every_is_a_usage_error(monkeypatch, capsys):
    """--evaluation reverse with --update-every: refused before anything runs, as OnlineLearner refuses it."""
    from deepeprop.engines import DeepEProp, Reverse

    with pytest.raises(SystemExit) as exit_info:  # deep_eprop has no reverse evaluation (yet): said so
        main(["train", "--evaluation", "reverse", "--update-every", "5"])
    assert exit_info.value.code == 2
    assert "deepeprop train: error: --evaluation reverse: " in capsys.readouterr().err
    monkeypatch.setattr(DeepEProp, "evaluations", DeepEProp.evaluations + (Reverse,))  # a rule that has one
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--evaluation", "reverse", "--update-every", "5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "deepeprop train: error: --evaluation reverse: " in err and "update_every=None" in err, err
    with pytest.raises(SystemExit):
        main(["train", "--evaluation", "chunked:x"])
    assert "'chunked:K' (K a positive int)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--method", "eprop", "--evaluation", "step", "--method-option", "chunk_size=8"])
    assert "give the chunk size once" in capsys.readouterr().err


def test_evaluation_is_a_toml_key_written_out_in_full(tmp_path):
    from deepeprop import training

    toml = tmp_path / "run.toml"
    toml.write_text('method = "eprop"\nevaluation = "chunked"\n')
    assert training.resolve_config({}, str(toml))["evaluation"] == "chunked:64"  # the size recorded, not implied
    assert training.resolve_config({}, None)["evaluation"] is None  # the engine's own


def test_train_with_evaluation_records_it_and_no_progress_keeps_the_evaluation_lines(tmp_path, capsys):
    """--evaluation chunked:4 runs and is recorded in config.json; a resume may change it (same gradient). Found:
    --no-progress also hid the lines of the evaluations."""
    out = tmp_path / "run"
    flags = ["--task", "delayed_copy", "--task-option", "n_symbols=3", "--task-option", "seq_len=2",
             "--task-option", "delay=2", "--method", "eprop", "--neuron", "leaky", "--hidden", "3", "--batch-size", "2",
             "--eval-batch-size", "4", "--eval-every", "1", "--out", str(out), "--no-progress", "--no-plots"]
    assert main(["train", *flags, "--iterations", "1", "--evaluation", "chunked:4"]) == 0
    assert json.loads((out / "config.json").read_text())["evaluation"] == "chunked:4"
    assert "iteration 1: test loss" in capsys.readouterr().out
    assert main(["train", "--resume", "--out", str(out), "--iterations", "2", "--evaluation", "step",
                 "--no-progress", "--no-plots"]) == 0
    assert json.loads((out / "config.json").read_text())["evaluation"] == "step"
    assert "iteration 2: test loss" in capsys.readouterr().out
