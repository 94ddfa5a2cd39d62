"""The parser of ``deepeprop experiment`` (:mod:`deepeprop.experiments`)."""
from __future__ import annotations

from ..experiments.common import DEFAULT_OUT
from . import command, description


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment", help="run the alignment and learning experiments and build the results report",
        description=description("deepeprop.experiments") + " See docs/results.md.")
    inner = parser.add_subparsers(dest="experiment", required=True)
    for name, help_text in (("alignment", "per-layer cosine and norm ratio of every engine's gradient to BPTT's"),
                            ("learning", "budget-matched online training of every method on every task"),
                            ("bellec2020", "Bellec et al. 2020, Fig. 3 (evidence accumulation, 100 ALIF neurons, "
                             "T = 2250) with BPTT and e-prop (random and symmetric feedback)"),
                            ("deep_cue", "Bellec et al.'s evidence accumulation with the memory above the layer that "
                             "learns (LIF below ALIF; two and three layers), every method at its own learning rate"),
                            ("zucchet2023", "Zucchet et al. 2023's copy task at their size (4 LRU blocks, d_model "
                             "128, d_hidden 64, pattern 20) with BPTT, deep e-prop and e-prop"),
                            ("report", "build the results report (Markdown + PNG) from the experiments' JSON")):
        sub = inner.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--quick", action="store_true", help="the tiny [quick] variant (CI), under OUT/quick")
        sub.add_argument("--out", default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")
        if name != "report":
            sub.add_argument("--config", default=None, help=f"TOML file replacing the built-in {name}.toml")
            sub.add_argument("--no-progress", action="store_true", help="no progress bar")
            sub.add_argument("--shard", default=None, metavar="I/N", help="run only worker I's share (I from 0 to "
                             "N-1) of the independent runs, writing its own results into --out; default: from "
                             "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT in a SLURM job array, else all of them")
        if name in ("learning", "deep_cue"):
            sub.add_argument("--tasks", default=None, help="comma-separated task names of the config (default all)")
        if name in ("learning", "bellec2020", "deep_cue", "zucchet2023"):
            sub.add_argument("--methods", default=None, help="comma-separated methods (default the config's)")
        if name == "bellec2020":
            sub.add_argument("--seeds", default=None, help="comma-separated seeds (default the config's)")
        if name == "report":
            sub.add_argument("--report", default=None, help="Markdown file to write (default docs/results.md; "
                             "with --quick OUT/quick/results.md)")
            sub.add_argument("--figures", default=None, help="folder of the PNG figures (default beside the report, "
                             "in figures/)")
        sub.set_defaults(func=command("deepeprop.experiments"))
