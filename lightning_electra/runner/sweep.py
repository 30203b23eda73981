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
in another sweep): results are keyed by what made them, not by where they were made.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from lightning_electra.config import Config, ConfigError
from lightning_electra.distributed import global_rank, leave_process_group
from lightning_electra.io import write_json
from lightning_electra.locks import held_lock
from lightning_electra.provenance import git_commit, hardware
from lightning_electra.objectives import OBJECTIVES
from lightning_electra.progress import Progress
from lightning_electra.results import COLUMNS, ResultsError, read_table, write_table
from lightning_electra.runner.configs import load_config, load_sweep, pick_scale, sweep_layers
from lightning_electra.runner.identity import RunLayout, config_hash
from lightning_electra.runner.pretrain import budget
from lightning_electra.runner.run import pretrain_run, train_and_score
from lightning_electra.runner.trainer import check_hardware, world_size


def sweep_configs(name: str, scale: str | None, overrides: list[str], announce: bool = False):
    """The sweep file and one config per run: scale <- variant <- the sweep's common keys <- (with `budget:
    electra-steps`, the reference step count) <- the run's keys <- its keys for this scale (`at_scale`) <- overrides.
    `name` is a sweep under lightning_electra/configs/sweeps/ or the path of a sweep file."""
    sweep = load_sweep(name)
    scale = pick_scale(scale, overrides, announce)
    common, runs = sweep_layers(sweep, scale)
    if sweep.get("budget") == "electra-steps":
        reference = budget(load_config(scale, variant="electra", layers=common, overrides=overrides))["steps"]
        common = [*common, ({"train": {"steps": reference}}, f"sweep {sweep['name']}: the steps of the scale's ELECTRA")]
    return sweep, [load_config(scale, layers=[*common, *run], overrides=overrides) for run in runs]


def select(configs, runs: str | None, sweep: str):
    """The runs named in `runs` (comma-separated), in the sweep's order; all of them when None."""
    wanted = [name.strip() for name in runs.split(",")] if runs else [c.name for c in configs]
    unknown = sorted(set(wanted) - {c.name for c in configs})
    if unknown:
        raise ConfigError(f"no run named {', '.join(unknown)} in sweep {sweep}; its runs: "
                          f"{', '.join(c.name for c in configs)}.")
    return [c for c in configs if c.name in wanted]


def rows_elsewhere(name: str, configs: list[Config], hashes: dict[str, str]) -> dict[str, tuple[str, pd.DataFrame]]:
    """Rows of runs of this sweep that a results table already holds, made with the config hash each run has now
    (`hashes`: run name -> hash): this sweep's own table first (a piece finished on a lent machine whose run
    directories did not come back), then the other sweeps' in the same results directory (one run in two sweeps:
    ELECTRA and BERT are the same runs in training-algorithms and small-model). Run -> (the sweep whose table holds
    its rows, the rows as this sweep's). Another sweep's table that cannot be read is passed over, with a warning:
    it is not this sweep's to refuse."""
    scale, results_dir = configs[0].scale, Path(configs[0].results_dir)
    own = results_dir / name / "results.csv"
    found: dict[str, tuple[str, pd.DataFrame]] = {}
    for path in [own, *sorted(p for p in results_dir.glob("*/results.csv") if p != own)]:
        if not path.exists() or len(found) == len(hashes):
            continue
        try:
            table = read_table(path, sweep=name if path == own else None)
        except (ResultsError, pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
            if path == own:
                raise
            print(f"[sweep] passing over {path}, not a results table that can be read ({err})", flush=True)
            continue
        for run, digest in hashes.items():
            rows = table[(table["run"] == run) & (table["config_hash"] == digest) & (table["scale"] == scale)]
            if run not in found and len(rows):
                found[run] = (path.parent.name, rows.assign(sweep=name))
    return found


def not_finished(name: str, configs: list[Config], selected: list[Config], announce: bool = True) -> list[Config]:
    """`selected` less the runs finished elsewhere (`rows_elsewhere`): their rows are results already, not re-run.
    A run over several processes is left to its own run table, as before: ranks started later must not decide
    otherwise because a table changed meanwhile."""
    hashes = {cfg.name: config_hash(cfg) for cfg in selected if not RunLayout.of(cfg, name).table(cfg).exists()}
    by_name = {cfg.name: cfg for cfg in selected}
    elsewhere = {run: found for run, found in (rows_elsewhere(name, configs, hashes) if hashes else {}).items()
                 if world_size(by_name[run]) == 1}  # asked only of the few found: it builds a Trainer
    for run, (source, _) in elsewhere.items() if announce else ():
        table = "this sweep's table" if source == name else f"{source}'s table"
        print(f"[sweep] {run}: finished elsewhere with these settings (its rows are in {table}), not re-run",
              flush=True)
    return [cfg for cfg in selected if cfg.name not in elsewhere]


def collect(name: str, scale: str, results_dir: Path, order: list[str], tables: dict[str, Path],
            elsewhere: dict[str, tuple[str, pd.DataFrame]]) -> tuple[Path, pd.DataFrame]:
    """The sweep's table, its runs in the sweep's `order`: each run finished here from its own table (`tables`), each
    finished elsewhere from the rows found there (`rows_elsewhere`); then this table's rows of other scales. Returns
    its path and its rows."""
    path = results_dir / name / "results.csv"
    earlier = read_table(path, sweep=name) if path.exists() else pd.DataFrame(columns=COLUMNS)
    frames = [read_table(tables[run], sweep=name) if run in tables else elsewhere[run][1]
              for run in order if run in tables or run in elsewhere]
    frames = [f for f in [*frames, earlier[earlier["scale"] != scale]] if len(f)]
    table = write_table(pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS),
                        path)
    return path, table


def record_invocation(meta_path: Path, sweep: dict, runs: dict, command: str, seconds: float, ran: dict[str, str],
                      current: pd.DataFrame, adopted: dict[str, str]) -> None:
    """Provenance for the report: each invocation's command, commit, hardware, time and runs (`ran`: name -> config
    hash), and each run's budget (`runs`: each run in the table, with its summary; None for a run of this sweep
    finished elsewhere: its summary as recorded then); `adopted`: runs whose rows came from another sweep's table
    (run -> that sweep; kept for the runs whose rows this table now holds). Earlier invocations none of whose runs is
    in the table any more (`current`: its rows at this scale, by name and hash; an invocation recorded before runs
    were, by its commit) are dropped, so a report's wall time is that of the results it shows."""
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"invocations": []}
    earlier = meta.get("runs", {})
    adopted = {**{run: source for run, source in meta.get("adopted", {}).items() if runs.get(run, {}) is None},
               **adopted}
    runs = {run: earlier.get(run, {}) if summary is None else summary for run, summary in runs.items()}
    meta.update({"paper_experiment": sweep.get("paper_experiment"), "claims": sweep.get("claims", []),
                 "figure": sweep.get("figure"), "runs": runs, "variants": list(OBJECTIVES),
                 "adopted": {run: adopted[run] for run in runs if run in adopted}})
    pairs, commits = set(current[["run", "config_hash"]].itertuples(index=False, name=None)), set(current["commit"])
    kept = [i for i in meta["invocations"]
            if (pairs & set(i["runs"].items()) if "runs" in i else i.get("commit") in commits)]
    if len(kept) < len(meta["invocations"]):
        print(f"[sweep] provenance: {len(meta['invocations']) - len(kept)} earlier invocation(s) left out, none of "
              "their runs being in the table with these settings", flush=True)
    meta["invocations"] = [*kept, {"command": command, "commit": git_commit(), "hardware": hardware(),
                                   "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   "seconds": round(seconds, 1), "runs": ran}]
    write_json(meta_path, meta)


def run_sweep(name: str, sweep: dict, configs: list[Config], selected: list[Config], command: str,
              child: bool = False) -> Path | None:
    """Runs `selected` (of the sweep's `configs`) to the end, then writes the sweep's table and provenance; returns
    the table (None on the ranks other than 0 of a distributed launch). Stopped by an error, it says what is kept.
    One sweep at a time per results directory: a lock names the process that holds it (`child`: a run of a parallel
    sweep, whose parent holds it; a distributed launch's other ranks: rank 0 holds it)."""
    start = time.time()
    scale, results_dir = configs[0].scale, Path(configs[0].results_dir)
    asked, selected = selected, (selected if child else not_finished(name, configs, selected))
    print(f"[sweep] {name} at scale {scale}: {len(selected)} of {len(configs)} runs "
          f"({', '.join(c.name for c in selected)})", flush=True)
    table_path, current = results_dir / name / "results.csv", None
    with sweep_guard(name, configs, selected, hold_lock=global_rank() == 0 and not child):
        try:
            # Pre-train every run first, then fine-tune each. Under a distributed launch every rank runs this and
            # takes part in each pre-training, then only rank 0 fine-tunes and writes: fine-tuning between
            # pre-trainings would leave the other ranks waiting in the next run's first collective (30 minutes).
            # The sweep's progress in runs, pre-trained then finished: runs finished before count as done but not
            # in the rate; a run of a parallel sweep (`child`) has no sweep's progress to give.
            earlier = {c.name for c in selected if RunLayout.of(c, name).table(c).exists()}
            report = {"total": len(selected), "unit": "runs", "start": len(earlier),
                      "enabled": global_rank() == 0 and not child}
            progress = Progress(f"[sweep] {name} pre-training", **report)
            for current in selected:
                pretrain_run(current, name)
                if current.name not in earlier:
                    progress.update(progress.done + 1)
            leave_process_group()
            if global_rank() != 0:
                return None
            progress = Progress(f"[sweep] {name} fine-tuning", **report)
            for current in selected:
                train_and_score(current, name)
                if current.name not in earlier:
                    progress.update(progress.done + 1)
        except BaseException:
            # Nothing is lost: every finished stage of every run is on disk; the sweep's table is only written below
            if current is not None:  # what is checked before any run (config, data, devices) never gets here
                print(f"[sweep] stopped at run {current.name}. Finished pre-trainings, fine-tunes and run tables are "
                      f"kept ({results_dir / name / scale}) and {table_path} is as it was; running the same "
                      "command again skips what is done.", file=sys.stderr, flush=True)
            raise
        if child:
            return None  # a parallel sweep's parent writes the table, once every run is done
        return write_sweep_table(name, sweep, configs, selected if asked else None, command, time.time() - start)


@contextlib.contextmanager
def sweep_guard(name: str, configs: list[Config], selected: list[Config], hold_lock: bool = True):
    """One sweep at a time per results directory (a lock naming its process; `hold_lock=False` where another process
    holds it), and what can be refused before any run: another sweep's table in this one's place, devices that are not
    there for the `selected` runs (none: --collect) or a batch they cannot split."""
    sweep_dir = Path(configs[0].results_dir) / name
    with held_lock(sweep_dir / ".lock", str(sweep_dir)) if hold_lock else contextlib.nullcontext():
        if (sweep_dir / "results.csv").exists():
            read_table(sweep_dir / "results.csv", sweep=name)
        for cfg in selected:
            check_hardware(cfg)
        yield


def write_sweep_table(name: str, sweep: dict, configs: list[Config], ran: list[Config] | None, command: str,
                      seconds: float) -> Path:
    """The sweep's table from every run of it finished so far (this command's and earlier pieces', here or, by their
    rows in a table, elsewhere), in the sweep file's order, and the provenance of this invocation, which ran `ran`
    (None: --collect, which writes the table of the runs finished here)."""
    scale, results_dir = configs[0].scale, Path(configs[0].results_dir)
    layouts = {cfg.name: (cfg, RunLayout.of(cfg, name)) for cfg in configs}
    tables = {run: table for run, (cfg, layout) in layouts.items() if (table := layout.table(cfg)).exists()}
    hashes = {cfg.name: config_hash(cfg) for cfg in configs}
    elsewhere = rows_elsewhere(name, configs, {run: h for run, h in hashes.items() if run not in tables})
    table_path, table = collect(name, scale, results_dir, list(hashes), tables, elsewhere)
    adopted = {run: source for run, (source, _) in elsewhere.items() if source != name}
    if elsewhere:
        print(f"[sweep] finished elsewhere with these settings, from the tables of: "
              f"{', '.join(f'{run} ({source})' for run, (source, _) in elsewhere.items())}", flush=True)
    missing = [run for run in hashes if run not in tables and run not in elsewhere]
    if missing:  # a sweep in pieces, or pieces run with other settings (which make other runs)
        print(f"[sweep] the table holds {len(configs) - len(missing)} of {len(configs)} runs; not finished with these "
              f"settings: {', '.join(missing)}", flush=True)
    runs = {run: json.loads(layouts[run][1].summary.read_text()) if run in tables
            else run_summary(results_dir / adopted[run] / scale / "sweep.json", run) if run in adopted else None
            for run in hashes if run not in missing}
    ran_here = {run: hashes[run] for run in tables} if ran is None else {cfg.name: hashes[cfg.name] for cfg in ran}
    record_invocation(results_dir / name / scale / "sweep.json", sweep, runs, command, seconds, ran_here,
                      table[table["scale"] == scale], adopted)
    print(f"[sweep] results: {table_path}", flush=True)
    return table_path


def run_summary(meta_path: Path, run: str) -> dict:
    """A run's budget and time as another sweep recorded them (empty where it did not)."""
    return json.loads(meta_path.read_text()).get("runs", {}).get(run, {}) if meta_path.exists() else {}
