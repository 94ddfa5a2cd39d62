"""The parser of ``deepeprop train`` (:mod:`deepeprop.training`): one flag per option of
:class:`~deepeprop.config.TrainConfig` (:data:`FLAGS`), its help made from the registries when the parser is built.
"""
from __future__ import annotations

import argparse

from .. import distributed, early_stopping
from ..config import DEFAULTS, OPTIMIZERS, RESUMABLE
from ..config_sources import parse_value
from ..engines import ENGINES, EVALUATIONS, Chunked
from ..engines.eprop import FEEDBACKS
from ..builders import READOUTS
from ..network import DTYPES, RECURRENCES
from ..neurons import NEURONS
from ..registry import names
from ..regularization import REGULARIZATIONS
from ..tasks import TASKS
from . import command


# option -> (flag, argparse kwargs); every default is SUPPRESS so that only given flags count. A help given as a
# function is called when the parser is built (so it lists what the registries hold then); "(default: ...)" is
# added from DEFAULTS unless the help states the default itself.
FLAGS = {
    "task": ("--task", dict(help=lambda: f"task: {names(TASKS)}")),
    "method": ("--method", dict(help=lambda: f"gradient engine: {names(ENGINES)}")),
    "evaluation": ("--evaluation", dict(help=lambda: "how the engine evaluates its rule: "
                                        f"{', '.join(_evaluation_names())}; the same "
                                        "gradient up to rounding, so it may change on resume; reverse needs one "
                                        "update per sequence (no --update-every) (default: the engine's own, its "
                                        "fastest online one)")),
    "neuron": ("--neuron", dict(help=lambda: f"neuron model: {names(NEURONS)}, or one per "
                                "layer comma-separated, e.g. lif,alif")),
    "hidden": ("--hidden", dict(help="hidden layer sizes, comma-separated")),
    "recurrence": ("--recurrence", dict(help=lambda: f"{names(RECURRENCES)}, or one per layer "
                                        "comma-separated")),
    "skip": ("--skip", dict(help="extra same-time edges I:J, comma-separated (0 = input, 1..L hidden, L+1 = "
                            "readout), e.g. 1:3,0:2 (TOML: skip = [[1, 3]]; default: none)")),
    "residual": ("--residual", dict(help="fixed identity edges I:J, comma-separated (equal widths; one on a chain "
                                    "edge replaces it), e.g. 2:3,0:3 (default: none)")),
    "readout": ("--readout", dict(help=lambda: names(READOUTS))),
    "method_options": None,  # --method-option NAME=VALUE (below)
    "neuron_options": None,  # --neuron-option NAME=VALUE (below)
    "tau_m": ("--tau-m", dict(help="membrane time constant in steps, or one per hidden layer comma-separated, e.g. "
                              "2,50 (fast below, slow above)")),
    "tau_a": ("--tau-a", dict(help="ALIF adaptation time constant in steps, or one per layer")),
    "tau_out": ("--tau-out", dict(type=float, help="leaky readout time constant in steps")),
    "input_gain": ("--input-gain", dict(type=float, help="scale of the initial input weights")),
    "recurrent_gain": ("--recurrent-gain", dict(type=float, help="scale of the initial recurrent weights")),
    "self_connections": ("--self-connections", dict(type=lambda text: parse_bool(text, "--self-connections"),
                                                    help="dense recurrence: false (W's diagonal masked to zero) or "
                                                    "true; true with --neuron-option detach_reset=false is the "
                                                    "exact-reset model")),
    "iterations": ("--iterations", dict(type=int, help="training batches")),
    "batch_size": ("--batch-size", dict(type=int, help="sequences per batch")),
    "optimizer": ("--optimizer", dict(help=lambda: names(OPTIMIZERS))),
    "lr": ("--lr", dict(type=float, help="learning rate")),
    "update_every": ("--update-every", dict(type=int, help="update the weights every K time steps during the "
                                            "sequence (default: once per sequence)")),
    "feedback": ("--feedback", dict(help=lambda: "eprop and immediate only: "
                                    f"{names(FEEDBACKS)} (default: the engine's own, "
                                    "symmetric)")),
    "feedback_decay": ("--feedback-decay", dict(type=float, help="adaptive feedback: weight decay of W_out and "
                                                "B_out per update")),
    "regularization": ("--regularization", dict(help=lambda: "firing-rate regularisation of the spiking hidden "
                                                "layers toward --target-rate: "
                                                f"{names(REGULARIZATIONS)} (Bellec et "
                                                "al.'s two forms; default: none)")),
    "regularization_strength": ("--regularization-strength", dict(type=float, help="weight of the firing-rate "
                                                                  "penalty (Bellec's reg_f times the number of "
                                                                  "loss steps)")),
    "target_rate": ("--target-rate", dict(type=float, help="target firing rate in spikes per time step (0.01 = "
                                          "10 Hz with 1 ms steps)")),
    "seed": ("--seed", dict(type=int, help="model and data seed")),
    "eval_every": ("--eval-every", dict(type=int, help="evaluate and checkpoint every N iterations")),
    "eval_batch_size": ("--eval-batch-size", dict(type=int, help="test batch of generated tasks")),
    "dtype": ("--dtype", dict(help=lambda: names(DTYPES))),
    "out": ("--out", dict(help="output folder")),
    "devices": ("--devices", dict(type=int, help="split each batch over N devices (data parallel, jax.sharding; "
                                  "on a CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N)")),
    "early_stopping": ("--early-stopping", dict(nargs="?", const=True, type=lambda text: _stop_value(text),
                                                metavar="ERROR", help="Bellec et al.'s criterion: stop when the test "
                                                "error (1 - accuracy, or NMSE) is below ERROR (0.07 without a "
                                                "value) at an evaluation and on --early-stopping-batches more "
                                                "batches; the iteration is written to summary.json (default: off)")),
    "early_stopping_batches": ("--early-stopping-batches", dict(type=int, help="confirmation batches of "
                                                                "--early-stopping")),
}


def _stop_value(text: str):
    """``--early-stopping`` value: true, false or a threshold."""
    try:
        return early_stopping.check_threshold("--early-stopping", parse_value(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _evaluation_names() -> list[str]:
    """``step``, ``chunked``, ``chunked:K``, ``reverse``: the names of ``EVALUATIONS`` and the sized form."""
    return [text for name, cls in EVALUATIONS.items()
            for text in ((name, f"{name}:K (chunks of K steps)") if issubclass(cls, Chunked) else (name,))]


def _show_default(value) -> str | None:
    """A default as a command line would give it (``[64, 64]`` -> ``64,64``, ``False`` -> ``false``)."""
    if value is None or value == {} or value == []:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(_show_default(v) or "" for v in value)
    return str(value)


def flag_help(name: str) -> str:
    """The ``--help`` text of option ``name``: generated from the registries and :data:`DEFAULTS` now."""
    text = FLAGS[name][1]["help"]
    text = text() if callable(text) else text
    shown = _show_default(DEFAULTS[name])
    if "default" not in text.lower() and shown is not None:
        text += f" (default: {shown})"
    return text.replace("%", "%%")


def parse_bool(text: str, name: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"{name} must be true or false, got {text!r}")
    return lowered == "true"


def add_run_flags(parser) -> None:
    for name, spec in FLAGS.items():
        if spec is None:
            continue
        flag, kwargs = spec
        parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, **dict(kwargs, help=flag_help(name)))
    parser.add_argument("--method-option", dest="method_option", action="append", default=None,
                        metavar="NAME=VALUE", help="an engine option, repeatable (e.g. --method-option "
                        "readout_filter=false, --method-option feedback=random)")
    parser.add_argument("--neuron-option", dest="neuron_option", action="append", default=None,
                        metavar="NAME=VALUE", help="a neuron-model option for every hidden layer, repeatable (e.g. "
                        "--neuron-option detach_reset=false: keep the reset path, default true); per layer in a "
                        "TOML config")
    parser.add_argument("--task-option", dest="task_option", action="append", default=None, metavar="NAME=VALUE",
                        help="a task option, repeatable (e.g. --task-option delay_steps=20)")


def _resumable_flags() -> str:
    return names("--" + key.replace("_", "-") for key in RESUMABLE)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a network on a task, online",
        description="Train a network on a task with one gradient engine; writes config.json, metrics.jsonl, "
                    "summary.json, checkpoint.eqx and plots to --out. Options come from the defaults, then "
                    "--config FILE (TOML), then the flags given explicitly.")
    parser.add_argument("--config", default=None, help="TOML file of options (flags given explicitly override it)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.eqx (only "
                        f"{_resumable_flags()} may change)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run files in a non-empty --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (the line of each evaluation "
                        "is still printed)")
    parser.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    parser.add_argument("--tensorboard", action="store_true", help="also log the metrics for TensorBoard to "
                        "OUT/tensorboard (needs tensorboardX: pip install 'deepeprop[tensorboard]')")
    add_run_flags(parser)
    distributed.add_flags(parser)
    parser.set_defaults(func=command("deepeprop.training"))
