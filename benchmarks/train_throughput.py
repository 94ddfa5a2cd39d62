"""Training-loop throughput: iterations per second of ``deepeprop demo`` and of a digits run
(hidden 64,64), per source tree.

Each source tree given with ``--src`` (e.g. main's and a branch's ``src/``) runs the same commands in fresh
processes, alternating tree by tree ``--repeats`` times, so that the trees are measured side by side under the
same machine load. The rate is read from the run's own ``metrics.jsonl``: iterations between the first and the
last evaluation row over the wall time between them, so compilation (before the first row) is left out and
evaluation, checkpoints and the host-side batch making are in::

    python benchmarks/train_throughput.py --src /work/main/src --src src --repeats 3 --json results.json

Prints one row per tree and command: the median and the spread of the repeats.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

COMMANDS = {
    "demo": ["demo", "--no-progress"],
    "digits": ["train", "--task", "digits", "--hidden", "64,64", "--iterations", "400", "--eval-every", "100",
                     "--no-progress", "--no-plots"],
}


def rate(folder: str) -> float:
    """Iterations per second between the first and last evaluation rows of ``folder/metrics.jsonl``."""
    with open(os.path.join(folder, "metrics.jsonl")) as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    first, last = rows[0], rows[-1]
    return (last["iteration"] - first["iteration"]) / (last["wall_time"] - first["wall_time"])


def run(src: str, argv: list[str], folder: str) -> float:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
    done = subprocess.run([sys.executable, "-m", "deepeprop", *argv, "--out", folder]
                          + (["--overwrite"] if argv[0] == "train" else []),
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{src}: deepeprop {' '.join(argv)} failed:\n{done.stderr}")
    return rate(folder)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", required=True, help="a source tree (its src/ folder); repeatable")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command per tree (default 3)")
    parser.add_argument("--commands", default=",".join(COMMANDS), help=f"among {list(COMMANDS)}, comma-separated")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    commands = [name.strip() for name in args.commands.split(",")]
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name in commands:
                for index, src in enumerate(args.src):
                    folder = os.path.join(tmp, f"run{index}")
                    rates.setdefault((src, name), []).append(run(src, COMMANDS[name], folder))
    print(f"{'source':<34}{'command':<16}{'it/s (median)':>14}{'min':>9}{'max':>9}")
    results = []
    for (src, name), values in rates.items():
        print(f"{src:<34}{name:<16}{statistics.median(values):>14.1f}{min(values):>9.1f}{max(values):>9.1f}")
        results.append({"src": src, "command": name, "rates": values, "median": statistics.median(values)})
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
