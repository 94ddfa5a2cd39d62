"""The typed, frozen run configuration (issue 19, item 1): sections, per-layer tuples, ways in and out, upgrade."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from deepeprop import cli, config as cfg
from deepeprop.config import EngineConfig, ModelConfig, RunConfig, TrainConfig
from deepeprop.errors import UsageError

SRC = Path(__file__).parents[1] / "src" / "deepeprop"
TINY = dict(task="delayed_copy", task_options=dict(n_symbols=3, seq_len=2, delay=2), method="eprop",
            neuron="leaky", hidden=[3], iterations=2, batch_size=2, eval_every=1, eval_batch_size=4)


def test_sections_are_frozen_and_per_layer_fields_are_tuples():
    model = ModelConfig(hidden="4,5", neuron="lif", tau_m="2,50", self_connections=True)
    assert model.hidden == (4, 5) and model.neuron == ("lif", "lif") and model.tau_m == (2.0, 50.0)
    assert model.tau_a == (200.0, 200.0) and model.self_connections == (True, True)
    assert model.recurrence == ("dense", "dense") and model.neuron_options == ({}, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.hidden = (8,)
    config = TrainConfig.from_dict(dict(TINY, hidden=[3, 3], skip=[[0, 2]]))
    assert config.model.skip == ((0, 2),) and isinstance(config.run, RunConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.run = RunConfig()
    with pytest.raises(TypeError):  # the tables are read-only too
        config.model.neuron_options[0]["detach_reset"] = False


def test_checks_run_once_at_construction_and_name_the_flag():
    with pytest.raises(UsageError, match="--tau-m must be one number or a list of 2"):
        ModelConfig(hidden=[4, 5], tau_m=[1.0, 2.0, 3.0])
    with pytest.raises(UsageError, match="--iterations must be an int >= 1, got 0"):
        RunConfig(iterations=0)
    with pytest.raises(UsageError, match="--feedback applies to --method eprop or immediate only"):
        EngineConfig(method="bptt", feedback="random")
    with pytest.raises(UsageError, match="--task-option: "):
        TrainConfig.from_dict(dict(TINY, task_options={"n_symbols": -1}))
    with pytest.raises(UsageError, match=r"unknown option\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_json_round_trip_and_the_compact_per_layer_form():
    config = TrainConfig.from_dict(dict(TINY, neuron="lif,alif", hidden=[3, 3], tau_m=[5, 20], evaluation="chunked"))
    saved = config.to_json()
    assert saved["neuron"] == ["lif", "alif"] and saved["tau_m"] == [5.0, 20.0] and saved["recurrence"] == "dense"
    assert saved["neuron_options"] == {"detach_reset": True}  # the method's reset choice, written out
    assert saved["evaluation"] == "chunked:64"  # the explicit size, so that a later default cannot change it
    assert TrainConfig.from_dict(saved) == config
    assert config["lr"] == saved["lr"] and dict(config) == saved  # the flat form reads as a mapping
    assert config.replace(lr=0.5).optimizer.lr == 0.5 and config.optimizer.lr == 1e-3


def test_resumable_fields_come_from_the_metadata_and_drive_fingerprint_and_differences():
    assert cfg.RESUMABLE == ("iterations", "eval_every", "out", "devices", "early_stopping", "early_stopping_batches",
                             "evaluation")
    config = TrainConfig.from_dict(TINY)
    longer = config.replace(iterations=10, out="elsewhere", devices=2)
    assert config.fingerprint() == longer.fingerprint() and config.differences(longer) == []
    assert config.differences(longer, resumable=True) == ["devices", "iterations", "out"]
    other = config.replace(lr=0.5, batch_size=4)
    assert config.fingerprint()[0] != other.fingerprint()[0]
    assert config.differences(other) == ["batch_size", "lr"]


def test_upgrade_reads_an_older_config_json():
    old = {"task": "delayed_copy", "task_options": TINY["task_options"], "method": "deep_eprop", "neuron": "lif",
           "hidden": [3], "neuron_options": {}, "iterations": 2, "package_version": "0.0.1"}  # no skip, no reset
    upgraded = cfg.upgrade(old)
    assert upgraded.model.neuron_options == ({"detach_reset": False},)  # the reset path was kept then
    assert upgraded.model.skip == () and upgraded.run.iterations == 2
    assert cfg.upgrade(old, iterations=5).run.iterations == 5


def test_from_toml_and_from_args(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('method = "eprop"\nneuron = "leaky"\nhidden = [3]\nlr = 0.5\n'
                    '[task]\nname = "delayed_copy"\nn_symbols = 3\nseq_len = 2\ndelay = 1\n')
    config = TrainConfig.from_toml(str(toml), lr=0.01)
    assert config.optimizer.lr == 0.01 and config.run.task_options == {"n_symbols": 3, "seq_len": 2, "delay": 1}
    args = cli.build_parser().parse_args(["train", "--config", str(toml), "--task-option", "delay=2",
                                          "--tau-m", "4"])
    from_args = TrainConfig.from_args(args)
    assert from_args.run.task_options["delay"] == 2 and from_args.model.tau_m == (4.0,)
    assert from_args.optimizer.lr == 0.5


def test_no_dictionary_reads_of_the_config_in_the_training_path():
    for name in ("trainer.py", "callbacks.py", "training.py"):
        text = (SRC / name).read_text()
        assert not re.search(r'config\[["\']', text), name
