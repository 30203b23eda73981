"""A sweep: a file under lightning_electra/configs/sweeps/ expanded into runs, each run to the end, one table for them
all.

A sweep file names its runs; each run is a variant plus keys that override the scale's config:

    name: weight-sharing
    paper_experiment: weight_sharing        # rows of analysis/paper/paper_results.csv drawn beside ours
    claims: ["tie-embeddings > tie-none"]   # the paper's orderings, checked on our numbers by the report
    budget: flops                           # or electra-steps: every run trains the scale's ELECTRA's steps
    seeds: 3                                # pre-training seeds a run: <name>, <name>-seed1, -seed2 (a run may say its own)
    common: {model: {generator_fraction: 1.0}}
    runs:
      - {name: tie-none, variant: electra, model: {tie: none}}
      - {name: bert, variant: bert, at_scale: {small: {train: {steps: 1450000}}}}   # keys for one scale only

Runs already finished are skipped, so an interrupted sweep resumes by running the same command again; so are runs
whose rows a results table already holds with their config hash (a piece finished on another machine, the same run
in another sweep): results are keyed by what made them, not by where they were made. The table and its provenance
are the results store's (store.py).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from lightning_electra.config import ConfigError
from lightning_electra.distributed import global_rank, leave_process_group
from lightning_electra.locks import held_lock
from lightning_electra.log import logger
from lightning_electra.progress import Progress
from lightning_electra.results import read_table
from lightning_electra.runner.configs import load_config, load_sweep, pick_scale, sweep_layers
from lightning_electra.runner.pretrain import budget
from lightning_electra.runner.resolved import ResolvedRun, resolve
from lightning_electra.runner.run import pretrain_run, train_and_score
from lightning_electra.runner.store import not_finished, write_sweep_table

log = logger("sweep")


def sweep_configs(name: str, scale: str | None, overrides: list[str], announce: bool = False,
                  only: str | None = None):
    """The sweep file and one config per run (`only`: that run's alone): scale <- variant <- the sweep's common keys <-
    (with `budget: electra-steps`, the reference step count) <- the run's keys <- its keys for this scale
    (`at_scale`) <- overrides. `name` is a sweep under lightning_electra/configs/sweeps/ or the path of a sweep file."""
    sweep = load_sweep(name)
    scale = pick_scale(scale, overrides, announce)
    common, runs = sweep_layers(sweep, scale)
    if only is not None:
        names = [run["name"] for run in sweep["runs"]]
        if only not in names:
            raise ConfigError(f"no run named {only} in sweep {sweep['name']}; its runs: {', '.join(names)}.")
        runs = [runs[names.index(only)]]
    if sweep.get("budget") == "electra-steps":
        reference = budget(load_config(scale, variant="electra", layers=common, overrides=overrides))["steps"]
        common = [*common, ({"train": {"steps": reference}}, f"sweep {sweep['name']}: the steps of the scale's ELECTRA")]
    return sweep, [load_config(scale, layers=[*common, *run], overrides=overrides) for run in runs]


def sweep_runs(name: str, scale: str | None, overrides: list[str], announce: bool = False):
    """The sweep file and its runs, each resolved once (`sweep_configs`)."""
    sweep, configs = sweep_configs(name, scale, overrides, announce)
    return sweep, resolve(configs, sweep["name"])


def select(runs: list, names: str | None, sweep: str) -> list:
    """The runs named in `names` (comma-separated), in the sweep's order; all of them when None."""
    wanted = [name.strip() for name in names.split(",")] if names else [r.name for r in runs]
    unknown = sorted(set(wanted) - {r.name for r in runs})
    if unknown:
        raise ConfigError(f"no run named {', '.join(unknown)} in sweep {sweep}; its runs: "
                          f"{', '.join(r.name for r in runs)}.")
    return [r for r in runs if r.name in wanted]


def run_sweep(name: str, sweep: dict, runs: list[ResolvedRun], selected: list[ResolvedRun],
              command: str) -> Path | None:
    """Runs `selected` (of the sweep's `runs`) to the end, then writes the sweep's table and provenance; returns
    the table (None on the ranks other than 0 of a distributed launch). Stopped by an error, it says what is kept.
    One sweep at a time per results directory: a lock names the process that holds it (a distributed launch's other
    ranks: rank 0 holds it)."""
    start = time.time()
    scale, results_dir = runs[0].cfg.scale, Path(runs[0].cfg.results_dir)
    asked, selected = selected, not_finished(name, runs, selected)
    log.info(f"{name} at scale {scale}: {len(selected)} of {len(runs)} runs "
             f"({', '.join(r.name for r in selected)})")
    table_path, current = results_dir / name / "results.csv", None
    with sweep_guard(name, runs, selected, hold_lock=global_rank() == 0):
        try:
            # Pre-train every run first, then fine-tune each. Under a distributed launch every rank runs this and
            # takes part in each pre-training, then only rank 0 fine-tunes and writes: fine-tuning between
            # pre-trainings would leave the other ranks waiting in the next run's first collective (30 minutes).
            # The sweep's progress in runs, pre-trained then finished: runs finished before count as done but not
            # in the rate.
            earlier = {r.name for r in selected if r.table.exists()}
            report = {"total": len(selected), "unit": "runs", "start": len(earlier),
                      "enabled": global_rank() == 0}
            progress = Progress(f"[sweep] {name} pre-training", **report)
            for current in selected:
                pretrain_run(current)
                if current.name not in earlier:
                    progress.update(progress.done + 1)
            leave_process_group()
            if global_rank() != 0:
                return None
            progress = Progress(f"[sweep] {name} fine-tuning", **report)
            for current in selected:
                train_and_score(current)
                if current.name not in earlier:
                    progress.update(progress.done + 1)
        except BaseException:
            # Nothing is lost: every finished stage of every run is on disk; the sweep's table is only written below
            if current is not None:  # what is checked before any run (config, data, devices) never gets here
                log.error(f"stopped at run {current.name}. Finished pre-trainings, fine-tunes and run tables are "
                          f"kept ({results_dir / name / scale}) and {table_path} is as it was; running the same "
                          "command again skips what is done.")
            raise
        return write_sweep_table(name, sweep, runs, selected if asked else None, command, time.time() - start)


def run_alone(name: str, scale: str | None, run: str, overrides: list[str]) -> Path | None:
    """One run of a sweep to its end (pre-training, its fine-tunes, its run table), composed alone: the `run` command,
    which a parallel sweep starts for each of its runs (the parent holds the sweep's lock and writes its table)."""
    sweep, (cfg,) = sweep_configs(name, scale, overrides, only=run)
    resolved = ResolvedRun.of(cfg, sweep["name"])
    resolved.hardware  # the devices checked before any work
    return train_and_score(resolved)


@contextlib.contextmanager
def sweep_guard(name: str, runs: list[ResolvedRun], selected: list[ResolvedRun], hold_lock: bool = True):
    """One sweep at a time per results directory (a lock naming its process; `hold_lock=False` where another process
    holds it), and what can be refused before any run: another sweep's table in this one's place, devices that are not
    there for the `selected` runs (none: --collect) or a batch they cannot split."""
    sweep_dir = Path(runs[0].cfg.results_dir) / name
    with held_lock(sweep_dir / ".lock", str(sweep_dir)) if hold_lock else contextlib.nullcontext():
        if (sweep_dir / "results.csv").exists():
            read_table(sweep_dir / "results.csv", sweep=name)
        for run in selected:
            run.hardware  # checked (a Trainer built to resolve the devices), once per run
        yield



