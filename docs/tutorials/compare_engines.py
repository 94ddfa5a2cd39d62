"""Tutorial: compare the engines with gradcheck (docs/tutorials/compare-engines.md).

``deepeprop gradcheck`` runs every engine on one random batch and compares its gradient with BPTT's, node by
node. Here it is called from Python for the three recurrences of a 3-layer LIF network, and once on the command
line. ``--quick`` (for the tests) checks one recurrence and two engines on a shorter sequence.
"""
import os
import sys

from deepeprop.cli import main
from deepeprop.gradcheck import format_table, run_gradcheck

QUICK = "--quick" in sys.argv or os.environ.get("DEEPEPROP_QUICK") == "1"
steps, width = (8, 6) if QUICK else (100, 16)
recurrences = ("diagonal",) if QUICK else ("none", "diagonal", "dense")
methods = ["deep_eprop", "eprop"] if QUICK else ["rtrl", "deep_eprop", "deep_eprop_factored", "eprop"]

for recurrence in recurrences:
    result = run_gradcheck(neuron="lif", recurrence=recurrence, hidden=(width,) * 3, steps=steps, batch=4,
                           methods=methods)
    print(format_table(result), end="\n\n")
    layer1 = result["engines"]["deep_eprop"]["layers"][0]
    if recurrence != "dense":  # no dense recurrence: deep e-prop is exact at every depth
        assert layer1["relative_error"] < 1e-9

# the same from the command line (JSON with --json)
main(["gradcheck", "--neuron", "lif,alif", "--recurrence", "diagonal", "--hidden", "8,8", "--steps", str(steps),
      "--methods", "deep_eprop" if QUICK else "deep_eprop,eprop"])
