"""``deepeprop train --tensorboard``: the metrics.jsonl rows also go to TensorBoard event files (tensorboardX, an
optional extra), and tensorboardX is imported only when the flag is given."""
from __future__ import annotations

import importlib.util
import json
import pathlib
import struct
import sys

import pytest

from deepeprop.cli import main

ARGS = ["train", "--task", "delayed_copy", "--task-option", "n_symbols=3", "--task-option", "seq_len=2",
        "--task-option", "delay=2", "--neuron", "lif", "--hidden", "4", "--iterations", "2", "--eval-every", "1",
        "--batch-size", "4", "--eval-batch-size", "8", "--no-plots", "--no-progress"]


def _scalars(folder: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under ``folder``: {tag: [(step, value)]} (TFRecord framing, read here)."""
    from tensorboardX.proto import event_pb2

    found: dict[str, list] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4  # length, its CRC, the record, its CRC
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_tensorboard_logs_the_metrics_beside_the_jsonl(tmp_path):
    if importlib.util.find_spec("tensorboardX") is None:
        pytest.skip("tensorboardX is missing: python -m pip install -e '.[test]'")
    import deepeprop.training  # noqa: F401

    assert "tensorboardX" not in sys.modules  # importing deepeprop does not import it; only the flag does
    assert main(ARGS + ["--out", str(tmp_path / "tb"), "--tensorboard"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "tb" / "metrics.jsonl").read_text().splitlines()]
    scalars = _scalars(tmp_path / "tb" / "tensorboard")
    assert [r["iteration"] for r in rows] == [1, 2]
    for name in ("train_loss", "train_metric", "test_loss", "test_metric", "wall_time"):
        assert [step for step, _ in scalars[name]] == [1, 2]
        assert [value for _, value in scalars[name]] == pytest.approx([r[name] for r in rows], rel=1e-6)
