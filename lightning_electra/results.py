"""The tidy results table: one row per measurement, one file per run, one table per sweep; and the GLUE aggregate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from lightning_electra.errors import SuiteError
from lightning_electra.io import atomic_write_text

COLUMNS = ["sweep", "run", "variant", "scale", "seed", "step", "tokens", "flops_paper", "flops_measured", "task",
           "metric", "value", "finetune_seed", "commit", "config_hash"]
TEXT_COLUMNS = ["sweep", "run", "variant", "scale", "task", "metric", "commit", "config_hash"]


def write_table(rows: Iterable[dict[str, Any]] | pd.DataFrame, path: Path) -> pd.DataFrame:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=COLUMNS)
    atomic_write_text(path, frame.to_csv(index=False))
    return frame


class ResultsError(SuiteError, ValueError):
    """A results table that is not what its place says (another sweep's, or no results table at all)."""


# Every table can be remade from what each run keeps (its fine-tune JSON files), so moving one away loses nothing.
REBUILD = ("running the sweep again rebuilds a run's table from its saved fine-tunes and the sweep's table from the "
           "runs' tables, without training")


def read_table(path: Path, sweep: str | None = None) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"No results table at {path}: run the sweep first (e.g. make <sweep-target>).")
    # names and hashes as text: pandas would read a hash like 4417e98150 as a float (inf) and a commit of digits as
    # a number, and the next write would keep the mangled value
    frame = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path} is not a lightning_electra results table (missing columns {missing}). Move it "
                           f"away: {REBUILD}.")
    if sweep is not None and len(frame) and set(frame["sweep"]) != {sweep}:
        raise ResultsError(f"{path} holds results of sweep(s) {sorted(set(frame['sweep']))}, not '{sweep}' (a file "
                           f"copied from elsewhere?). Move it away: {REBUILD}.")
    return frame


def glue_scores(scores: pd.DataFrame, keys: list[str], tasks: list[str]) -> pd.DataFrame:
    """The paper's aggregate: per `keys` group, each task's median over fine-tuning seeds (columns named by task)
    and GLUE, their mean over `tasks` (NaN when a task is missing: no GLUE-k posing as a GLUE-(k-1)).
    `scores` holds the keys, `task` and `value` (each fine-tune's main score), one row per seed."""
    per_task = scores.groupby(keys + ["task"], as_index=False, dropna=False)["value"].median()
    wide = per_task.pivot_table(index=keys, columns="task", values="value", dropna=False).reset_index()
    wide.columns.name = None
    wide["GLUE"] = wide[tasks].mean(axis=1, skipna=False)
    return wide


def over_pretraining_seeds(runs: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """An arm's figures from its runs, one per pre-training seed: per `keys` group, the median of each of `columns`
    (GLUE and the per-task scores, each already a median over fine-tuning seeds), and the runs' GLUE min and max."""
    grouped = runs.groupby(keys, sort=False)
    folded = grouped[columns].median()
    folded["pt_min"], folded["pt_max"], folded["seeds"] = grouped["GLUE"].min(), grouped["GLUE"].max(), grouped.size()
    return folded.reset_index()


def task_seed_scores(runs: dict[str, list[dict]]) -> pd.Series:
    """glue_scores of one model's fine-tunes, {task: one result dict per seed}: each task's median and GLUE."""
    rows = pd.DataFrame([{"model": "", "task": task, "value": r["score"]} for task, seeds in runs.items() for r in seeds])
    return glue_scores(rows, ["model"], list(runs)).iloc[0]
