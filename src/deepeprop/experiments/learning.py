"""Budget-matched online training: every method on every task, each at the learning rate it does best with.

For each task of the config and each method: a learning-rate sweep (one run per rate, seed ``sweep_seed``,
evaluated on a validation split: dataset tasks get ``holdout="validation"``, generated tasks the sweep seed's
own evaluation batch), then one run per final seed at the best rate, evaluated on the test split. Every run is
:func:`deepeprop.training.train` (the ``deepeprop train`` code path) in its own folder
``OUT/learning/TASK/METHOD/...`` with its ``config.json``; a run with a ``summary.json`` is finished
and is not redone. Folders: ``METHOD/sweep/lr-RATE`` (the sweep) and ``METHOD/final/lr-RATE/seed-K`` (the final
runs, under the rate they used, so that a changed choice never reuses another rate's run). A method that refuses a
task's model (e.g. the factored trace with dense recurrence) is
recorded as refused; a run that diverges is recorded as diverged (its last good checkpoint is kept).
``OUT/learning/TASK/METHOD/choice.json`` holds the sweep, the chosen rate and the cost of one training iteration
(wall-clock from the runs' own logs, compilation excluded; XLA's compiled peak memory).
"""
from __future__ import annotations

import os

from ..errors import UsageError
from .common import machine, methods as method_specs, read_json, write_json

DATASET_TASKS = ("digits", "mnist1d")
FOLDER = "learning"  # results under OUT/FOLDER unless the config names its own (``name``: deep_cue.toml)


def task_config(config: dict, task_name: str, method_name: str, spec: dict, *, lr: float, seed: int, out: str,
                validation: bool) -> dict:
    from .. import training

    options = dict(config["tasks"][task_name])
    options.pop("description", None)
    options.update(config.get("overrides", {}))
    if validation:  # the sweep's own budget (e.g. fewer iterations), where the config gives one
        options.update(config.get("sweep_overrides", {}))
    task_options = dict(options.pop("task_options", {}))
    if validation and options["task"] in DATASET_TASKS:
        task_options["holdout"] = "validation"
    explicit = dict(options, task_options=task_options, method=spec["method"], method_options=dict(spec["options"]),
                    lr=float(lr), seed=int(seed), out=out)
    if method_name in config.get("evaluation", {}):  # the config's evaluation for this method, else the task's own
        explicit["evaluation"] = config["evaluation"][method_name]  # (neither: the engine's own)
    return training.resolve_config(explicit)


def _rate_name(lr: float) -> str:
    return f"lr-{lr:g}"


def train_run(config: dict) -> dict:
    """One run (or its finished result): ``{"status": "finished"|"diverged"|"refused", ...}``."""
    from .. import training

    out = config["out"]
    summary_path = os.path.join(out, "summary.json")
    status_path = os.path.join(out, "status.json")
    if os.path.exists(summary_path):
        return dict(read_json(summary_path), status="finished", out=out)
    if os.path.exists(status_path):
        return dict(read_json(status_path), out=out)
    # an interrupted run: continue from its checkpoint, or start afresh if it has none
    resume = os.path.exists(os.path.join(out, training.CHECKPOINT))
    overwrite = not resume and os.path.isdir(out) and bool(os.listdir(out))
    try:
        summary = training.train(config, resume=resume, overwrite=overwrite, progress=False, plots=False)
    except training.TrainingDiverged as err:
        status = {"status": "diverged", "message": str(err)}
        write_json(status_path, status)
        return dict(status, out=out)
    return dict(summary, status="finished", out=out)


def seconds_per_iteration(out: str) -> float | None:
    """From a run's own log: between its first and last evaluation (compilation excluded)."""
    from .. import runfolder

    rows = runfolder.read_metrics(os.path.join(out, "metrics.jsonl"))
    if len(rows) < 2:
        return None
    first, last = rows[0], rows[-1]
    return (last["wall_time"] - first["wall_time"]) / (last["iteration"] - first["iteration"])


def peak_memory_bytes(config: dict) -> int:
    """XLA's compiled peak of one training iteration (temp + arguments + outputs)."""
    import jax

    from .. import training

    task, model, learner = training.build(config)
    state = learner.init(model)
    batch = training.train_batch(task, config, 1, model.dtype)
    compiled = jax.jit(learner.sequence_update).lower(state, batch.inputs, batch.targets, batch.mask).compile()
    stats = compiled.memory_analysis()
    return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes)


def refusal(config: dict) -> str | None:
    """The engine's refusal of the task's model, or ``None`` when it accepts it."""
    from .. import training

    _, model, learner = training.build(config)
    try:
        learner.engine.check_model(model)
    except ValueError as err:
        return str(err)
    return None


def _evaluation_name(config: dict) -> str:
    """Which evaluation computed a run's gradients, in words."""
    if config["method"] == "bptt":
        return "bptt (reverse)"
    return config["evaluation"] or "the engine's own"


def run_method(config: dict, task_name: str, method_name: str, spec: dict, folder: str, log) -> dict:
    """The sweep, the choice and the final seeds of one method on one task."""
    choice_path = os.path.join(folder, "choice.json")
    rates = [float(lr) for lr in config["learning_rates"]]
    try:
        probe = task_config(config, task_name, method_name, spec, lr=rates[0], seed=config["sweep_seed"],
                            out=os.path.join(folder, "sweep", _rate_name(rates[0])), validation=True)
    except UsageError as err:  # the method's options (e.g. its evaluation) do not fit it: a refusal
        probe, refused = None, str(err)
    else:
        refused = refusal(probe)
    if refused is not None:
        choice = {"task": task_name, "method": method_name, "refused": refused}
        write_json(choice_path, choice)
        return choice
    if probe["readout"] == "linear" and spec["method"] == "eprop" and spec["options"].get("readout_filter") is False:
        choice = {"task": task_name, "method": method_name, "same_as": "eprop",
                  "reason": "with a linear readout there is no readout filter to drop: the same rule as eprop"}
        write_json(choice_path, choice)
        return choice
    sweep = {}
    for lr in rates:
        run_config = task_config(config, task_name, method_name, spec, lr=lr, seed=config["sweep_seed"],
                                 out=os.path.join(folder, "sweep", _rate_name(lr)), validation=True)
        result = train_run(run_config)
        sweep[f"{lr:g}"] = {"status": result["status"], "metric": result.get("final_metric"),
                            "higher_is_better": result.get("higher_is_better", True)}
        log(f"{task_name} {method_name} lr {lr:g}: {result['status']} {result.get('final_metric')}")
    finished = {lr: entry for lr, entry in sweep.items() if entry["status"] == "finished"}
    if not finished:
        best = None
    else:
        sign = 1 if next(iter(finished.values()))["higher_is_better"] else -1
        best = max(finished, key=lambda lr: (sign * finished[lr]["metric"], -float(lr)))
    final_config = task_config(config, task_name, method_name, spec, lr=rates[0], seed=0, out=folder, validation=False)
    base = {"task": task_name, "method": method_name, "label": spec["label"], "engine": spec["method"],
            "engine_options": spec["options"], "sweep": sweep, "lr": None if best is None else float(best),
            "iterations": final_config["iterations"], "sweep_iterations": probe["iterations"],
            "batch_size": probe["batch_size"], "evaluation": _evaluation_name(probe)}
    seeds = {}
    if best is not None:
        for seed in config["seeds"]:
            run_config = task_config(config, task_name, method_name, spec, lr=float(best), seed=seed,
                                     out=os.path.join(folder, "final", _rate_name(float(best)), f"seed-{seed}"),
                                     validation=False)
            result = train_run(run_config)
            seeds[str(seed)] = {"status": result["status"], "metric": result.get("final_metric"),
                                "out": os.path.relpath(result["out"], folder),
                                "seconds_per_iteration": seconds_per_iteration(result["out"])
                                if result["status"] == "finished" else None}
            log(f"{task_name} {method_name} seed {seed} (lr {best}): {result['status']} {result.get('final_metric')}")
            # the seeds so far, so that a report made while the unit runs shows them (``complete`` false)
            write_json(choice_path, dict(base, seeds=seeds, peak_bytes=None, complete=False))
    previous = read_json(choice_path) if os.path.exists(choice_path) else {}
    peak = previous.get("peak_bytes") if previous.get("lr") == (None if best is None else float(best)) else None
    if peak is None and best is not None:
        peak = peak_memory_bytes(task_config(config, task_name, method_name, spec, lr=float(best), seed=0,
                                             out=os.path.join(folder, "final", _rate_name(float(best)), "seed-0"),
                                             validation=False))
    choice = dict(base, seeds=seeds, peak_bytes=peak)
    write_json(choice_path, choice)
    return choice


def units(config: dict, tasks=None, methods=None) -> list[tuple[str, str]]:
    """The independent units of the experiment, in order: every (task, method) pair of the config (or of the
    ``tasks`` and ``methods`` given). A unit is a sweep and the final seeds at its chosen rate.

    Raises:
        ValueError: an unknown task or method, naming the flag.
    """
    specs = method_specs()
    chosen_methods = methods or config["methods"]
    unknown = [m for m in chosen_methods if m not in specs]
    if unknown:
        raise UsageError(f"--methods: unknown {unknown}; known: {sorted(specs)}")
    all_tasks = list(config["tasks"]) if config.get("only_tasks") is None else list(config["only_tasks"])
    chosen_tasks = tasks or all_tasks
    unknown = [t for t in chosen_tasks if t not in config["tasks"]]
    if unknown:
        raise UsageError(f"--tasks: unknown {unknown}; the config has {sorted(config['tasks'])}")
    return [(task, method) for task in chosen_tasks for method in chosen_methods]


def run(config: dict, out: str, *, tasks=None, methods=None, progress: bool = True, shard=None,
        name: str | None = None) -> list[dict]:
    """Every (task, method) of the config, or the ``tasks`` and ``methods`` given, or this ``shard``'s share of
    them (a :class:`deepeprop.experiments.Shard`: every ``count``-th unit of :func:`units`); returns their
    choices. ``name``: the experiment's folder under ``out`` (another experiment with this runner writes its own:
    ``zucchet2023`` passes it, ``deep_cue.toml`` names it in the config), else ``learning``."""
    folder_name = name or config.get("name", FOLDER)
    specs = method_specs()
    todo = every = units(config, tasks, methods)
    if shard is not None and shard.count > 1:
        todo = shard.take(every)
        print(f"{folder_name}: shard {shard} takes {len(todo)} of the {len(every)} (task, method) units", flush=True)
    folder = os.path.join(out, folder_name)
    write_json(os.path.join(folder, "config.json"), {"config": config, "machine": machine()})
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=f"{folder_name} (task, method)", unit="method", dynamic_ncols=True,
               disable=not progress)
    log = bar.write if progress else (lambda text: None)
    choices = []
    for task_name, method_name in todo:
        choice = run_method(config, task_name, method_name, specs[method_name],
                            os.path.join(folder, task_name, method_name), log)
        choices.append(choice)
        bar.update(1)
    bar.close()
    return choices

