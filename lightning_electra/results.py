"""The tidy results table: one row per measurement, one file per run, one table per sweep.

Files are written to a temporary name and renamed, so an interrupted run never leaves a half-written file that a
later run would read as complete.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

COLUMNS = ["sweep", "run", "variant", "scale", "seed", "step", "tokens", "flops_paper", "flops_measured", "task",
           "metric", "value", "finetune_seed", "commit", "config_hash"]


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=str))


def write_table(rows: Iterable[dict[str, Any]] | pd.DataFrame, path: Path) -> pd.DataFrame:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=COLUMNS)
    atomic_write_text(path, frame.to_csv(index=False))
    return frame


class ResultsError(ValueError):
    """A results table that is not what its place says (another sweep's, or no results table at all)."""


# Every table can be remade from what each run keeps (its fine-tune JSON files), so moving one away loses nothing.
REBUILD = ("running the sweep again rebuilds a run's table from its saved fine-tunes and the sweep's table from the "
           "runs' tables, without training")


def read_table(path: Path, sweep: str | None = None) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"No results table at {path}: run the sweep first (e.g. make <sweep-target>).")
    frame = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path} is not a lightning_electra results table (missing columns {missing}). Move it "
                           f"away: {REBUILD}.")
    if sweep is not None and len(frame) and set(frame["sweep"]) != {sweep}:
        raise ResultsError(f"{path} holds results of sweep(s) {sorted(set(frame['sweep']))}, not '{sweep}' (a file "
                           f"copied from elsewhere?). Move it away: {REBUILD}.")
    return frame


def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        # reports are outputs the suite itself rewrites: a changed report does not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!analysis/reports"], cwd=root, capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("GIT_COMMIT", "unknown")


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads " \
           f"{torch.get_num_threads()})"
