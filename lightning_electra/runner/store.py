"""A sweep's results store: its table (runs finished here, and rows found in a table elsewhere with the same config
hash: a piece finished on another machine, the same run in another sweep), and the provenance a report reads
(`<results>/<sweep>/<scale>/sweep.json`: each invocation's command, commit, hardware and time, each run's budget).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from lightning_electra.io import write_json
from lightning_electra.log import logger
from lightning_electra.objectives import OBJECTIVES
from lightning_electra.provenance import git_commit, hardware
from lightning_electra.results import COLUMNS, ResultsError, read_table, write_table
from lightning_electra.runner.resolved import ResolvedRun

log = logger("sweep")


def rows_elsewhere(name: str, runs: list[ResolvedRun], hashes: dict[str, str]) -> dict[str, tuple[str, pd.DataFrame]]:
    """Rows of runs of this sweep that a results table already holds, made with the config hash each run has now
    (`hashes`: run name -> hash): this sweep's own table first (a piece finished on a lent machine whose run
    directories did not come back), then the other sweeps' in the same results directory (one run in two sweeps:
    ELECTRA and BERT are the same runs in training-algorithms and small-model). Run -> (the sweep whose table holds
    its rows, the rows as this sweep's). Another sweep's table that cannot be read is passed over, with a warning:
    it is not this sweep's to refuse."""
    scale, results_dir = runs[0].cfg.scale, Path(runs[0].cfg.results_dir)
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
            log.info(f"passing over {path}, not a results table that can be read ({err})")
            continue
        for run, digest in hashes.items():
            rows = table[(table["run"] == run) & (table["config_hash"] == digest) & (table["scale"] == scale)]
            if run not in found and len(rows):
                found[run] = (path.parent.name, rows.assign(sweep=name))
    return found


def not_finished(name: str, runs: list[ResolvedRun], selected: list[ResolvedRun],
                 announce: bool = True) -> list[ResolvedRun]:
    """`selected` less the runs finished elsewhere (`rows_elsewhere`): their rows are results already, not re-run.
    A run over several processes is left to its own run table, as before: ranks started later must not decide
    otherwise because a table changed meanwhile."""
    hashes = {run.name: run.config_hash for run in selected if not run.table.exists()}
    by_name = {run.name: run for run in selected}
    elsewhere = {run: found for run, found in (rows_elsewhere(name, runs, hashes) if hashes else {}).items()
                 if by_name[run].hardware.world_size == 1}  # asked only of the few found: it builds a Trainer
    for run, (source, _) in elsewhere.items() if announce else ():
        table = "this sweep's table" if source == name else f"{source}'s table"
        log.info(f"{run}: finished elsewhere with these settings (its rows are in {table}), not re-run")
    return [run for run in selected if run.name not in elsewhere]


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
        log.info(f"provenance: {len(meta['invocations']) - len(kept)} earlier invocation(s) left out, none of "
                 "their runs being in the table with these settings")
    meta["invocations"] = [*kept, {"command": command, "commit": git_commit(), "hardware": hardware(),
                                   "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   "seconds": round(seconds, 1), "runs": ran}]
    write_json(meta_path, meta)


def write_sweep_table(name: str, sweep: dict, runs: list[ResolvedRun], ran: list[ResolvedRun] | None, command: str,
                      seconds: float) -> Path:
    """The sweep's table from every run of it finished so far (this command's and earlier pieces', here or, by their
    rows in a table, elsewhere), in the sweep file's order, and the provenance of this invocation, which ran `ran`
    (None: --collect, which writes the table of the runs finished here)."""
    scale, results_dir = runs[0].cfg.scale, Path(runs[0].cfg.results_dir)
    by_name = {run.name: run for run in runs}
    tables = {run.name: run.table for run in runs if run.table.exists()}
    hashes = {run.name: run.config_hash for run in runs}
    elsewhere = rows_elsewhere(name, runs, {run: h for run, h in hashes.items() if run not in tables})
    table_path, table = collect(name, scale, results_dir, list(hashes), tables, elsewhere)
    adopted = {run: source for run, (source, _) in elsewhere.items() if source != name}
    if elsewhere:
        log.info(f"finished elsewhere with these settings, from the tables of: "
                 f"{', '.join(f'{run} ({source})' for run, (source, _) in elsewhere.items())}")
    missing = [run for run in hashes if run not in tables and run not in elsewhere]
    if missing:  # a sweep in pieces, or pieces run with other settings (which make other runs)
        log.info(f"the table holds {len(runs) - len(missing)} of {len(runs)} runs; not finished with these "
                 f"settings: {', '.join(missing)}")
    summaries = {run: json.loads(by_name[run].layout.summary.read_text()) if run in tables
                 else run_summary(results_dir / adopted[run] / scale / "sweep.json", run) if run in adopted else None
                 for run in hashes if run not in missing}
    ran_here = {run: hashes[run] for run in tables} if ran is None else {run.name: run.config_hash for run in ran}
    record_invocation(results_dir / name / scale / "sweep.json", sweep, summaries, command, seconds, ran_here,
                      table[table["scale"] == scale], adopted)
    log.info(f"results: {table_path}")
    return table_path


def run_summary(meta_path: Path, run: str) -> dict:
    """A run's budget and time as another sweep recorded them (empty where it did not)."""
    return json.loads(meta_path.read_text()).get("runs", {}).get(run, {}) if meta_path.exists() else {}
