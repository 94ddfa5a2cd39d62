"""Run a ``deepeprop bench`` suite from a checkout: ``python benchmarks/run_bench.py --suite targets --json out.json``.

Same arguments as the ``deepeprop bench`` console command (see :mod:`deepeprop.bench`).
"""
import sys

from deepeprop.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench"] + sys.argv[1:]))
