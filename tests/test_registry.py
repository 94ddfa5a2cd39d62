"""One registry type behind engines, tasks, neurons and losses (issue 19, item 3); help made from it."""
from __future__ import annotations

from typing import ClassVar

import pytest

import deepeprop as dp
from deepeprop import cli
from deepeprop.registry import Registry, document


def help_of(capsys, *argv) -> str:
    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse's line breaks undone


def test_a_registered_dummy_engine_appears_in_the_help(monkeypatch, capsys):
    class Dummy(dp.BPTT):
        name: ClassVar[str] = "dummy_engine"

    monkeypatch.setitem(dp.ENGINES, "dummy_engine", Dummy)  # (as ENGINES.register(Dummy) does; undone after)
    assert "dummy_engine" in help_of(capsys, "train").split("--method METHOD")[-1].split("--evaluation")[0]
    assert "dummy_engine" in help_of(capsys, "gradcheck").split("--methods METHODS")[-1]
    assert "dummy_engine" in help_of(capsys, "bench").split("--engines ENGINES")[-1]
    assert isinstance(dp.make_engine("dummy_engine"), Dummy)  # and it is made by name
    monkeypatch.delitem(dp.ENGINES, "dummy_engine")
    assert "dummy_engine" not in help_of(capsys, "train")


def test_the_registries_are_one_type_and_list_their_names_in_the_docstrings(capsys):
    for registry, kind in ((dp.ENGINES, "engine"), (dp.TASKS, "task"), (dp.NEURONS, "neuron model"),
                           (dp.LOSSES, "loss")):
        assert isinstance(registry, Registry) and registry.kind == kind
    for function, registry in ((dp.make_engine, dp.ENGINES), (dp.gradients, dp.ENGINES), (dp.get_task, dp.TASKS),
                               (dp.make_loss, dp.LOSSES)):
        assert registry.listing() in function.__doc__, function.__name__
    assert "lif" in help_of(capsys, "train").split("--neuron NEURON")[-1].split("--hidden")[0]
    assert "cue_accumulation" in help_of(capsys, "train").split("--task TASK")[-1].split("--method")[0]


def test_register_takes_the_name_attribute_and_refuses_a_clash():
    registry = Registry("thing", {})

    @registry.register
    class First:
        name = "first"

    assert registry["first"] is First and registry.register(First) is First  # the same entry again is fine
    registry.register(int, name="second")
    assert registry.names() == "first or second" and registry.listing() == '``"first"``, ``"second"``'
    with pytest.raises(ValueError, match="thing 'first' is registered already"):
        registry.register(str, name="first")
    with pytest.raises(ValueError, match="needs a name"):
        registry.register(float)

    def f():
        """Names: ``"first"``, ... (:data:`THINGS`); others: ``"first"`` or ``"third"`` (:data:`THINGS`)."""

    assert document(f, THINGS=registry).__doc__ == ('Names: ``"first"``, ``"second"`` (:data:`THINGS`); others: '
                                                    '``"first"`` or ``"third"`` (:data:`THINGS`).')
