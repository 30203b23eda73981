"""The fine-tuning benchmark's Markdown, from its table alone: `finetune.md` from `finetune.csv` and
`finetune-provenance.json` (`python -m lightning_electra benchmark-finetune --render DIR` redraws it without
measuring)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lightning_electra.io import atomic_write_text
from lightning_electra.results import ResultsError

FILES = ("finetune.csv", "finetune-provenance.json")


def render(out: Path) -> Path:
    """finetune.md from finetune.csv and finetune-provenance.json in `out` (no measuring)."""
    missing = [name for name in FILES if not (out / name).is_file()]
    if missing:
        raise ResultsError(f"no {' or '.join(missing)} in {out}: --render takes the folder a fine-tuning benchmark "
                           "wrote (its --out, e.g. analysis/reports/benchmark).")
    table = pd.read_csv(out / "finetune.csv")
    info = json.loads((out / "finetune-provenance.json").read_text())
    ft = info["finetune"]
    lines = ["# GLUE fine-tuning time: seeds one by one vs one batched ensemble", "",
             f"Scale `{info['scale']}`'s protocol ({ft['epochs']} epochs, per task {ft['task_epochs']}, caps "
             f"{ft['max_train_examples']}/{ft['max_eval_examples']}, batch {ft['batch_size']}), {info['model']}. "
             "median_score: mean over tasks of the median seed's score (a sanity check, not a result).", "",
             "| " + " | ".join(table.columns) + " |", "|---" * len(table.columns) + "|",
             *("| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)), "",
             f"Command: `{info['command']}`; commit {info['commit']}; {info['hardware']}; {info['date']}."]
    path = out / "finetune.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
