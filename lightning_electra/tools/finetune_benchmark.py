"""GLUE fine-tuning time: a task's seeds one after another against the same seeds as one batched ensemble.

    python -m lightning_electra benchmark-finetune                 # GPU: scale tiny's protocol, every task, 10 seeds
    python -m lightning_electra benchmark-finetune --tasks RTE,MRPC --seeds 3 --scale smoke   # CPU: capped, a minute
    python -m lightning_electra benchmark-finetune --seeds 3 --modes batched,batched-unbucketed  # buckets' gain
    python -m lightning_electra benchmark-finetune --seeds 3 --modes batched,batched-graphed     # the step graph's
    make benchmark-finetune ARGS="--seeds 10"

The backbone is `--model` (a transformers ELECTRA directory) or, by default, a freshly initialised encoder of the
scale's discriminator shape: time does not depend on the weights. Each mode fine-tunes every task present under
DATA_DIR with the scale's fine-tuning protocol (epochs per task, caps, precision) and records wall time, so the
issue's targets read directly: one seed of all tasks, and the median's seeds of all tasks. A mode ending in
`-unbucketed` draws the official random batches (finetune.length_buckets=[]) whatever the scale says;
`batched-graphed` replays the ensemble's step as CUDA graphs (finetune.step_graph, over the scale's buckets). Writes
`finetune.csv` and `finetune-provenance.json` (command, commit, hardware, date, the protocol) to
analysis/reports/benchmark/; analysis/finetune_benchmark.py draws `finetune.md` from them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from lightning_electra.config import check, to_dict
from lightning_electra.data.files import vocab_path
from lightning_electra.io import ROOT, atomic_write_text
from lightning_electra.log import logger
from lightning_electra.provenance import command_line, git_commit, hardware
from lightning_electra.results import task_seed_scores
from lightning_electra.runner.configs import load_config

log = logger("finetune-benchmark")

DEFAULT_OUT = ROOT / "analysis" / "reports" / "benchmark"


def mode_config(mode: str, cfg):
    """The fine-tuning config a mode runs, checked as any config is (e.g. a step graph without buckets is refused)."""
    ft = replace(cfg.finetune, batched_seeds=mode.startswith("batched"), step_graph=mode == "batched-graphed")
    if mode.endswith("-unbucketed"):
        ft = replace(ft, length_buckets=[])
    check(replace(cfg, finetune=ft))
    return ft


def time_mode(mode: str, ft, model: Path, tasks: list[str], seeds: int, cfg, tokenizer) -> dict:
    from lightning_electra.data.glue_tasks import get_task
    from lightning_electra.finetune import finetune_task_seeds

    start = time.perf_counter()
    scores = {task: finetune_task_seeds(model, get_task(task), Path(cfg.data.data_dir), ft, tokenizer,
                                        list(range(seeds)), accelerator=cfg.train.accelerator, source=ft.source)
              for task in tasks}
    seconds = time.perf_counter() - start
    log.info(f"{mode}: {len(tasks)} task(s) x {seeds} seed(s) in {seconds:.1f} s")
    return {"mode": mode, "tasks": ",".join(tasks), "seeds": seeds, "seconds": round(seconds, 1),
            "seconds_per_seed": round(seconds / seeds, 1), "device": hardware(), "precision": ft.precision,
            "length_buckets": "-".join(map(str, ft.length_buckets)) or "none",
            "median_score": round(float(task_seed_scores(scores)["GLUE"]), 2)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lightning_electra benchmark-finetune",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default=None, help="whose fine-tuning protocol and model shape (default: auto)")
    p.add_argument("--tasks", default=None, help="comma-separated GLUE tasks (default: every task with data)")
    p.add_argument("--seeds", type=int, default=10, help="seeds per task (the paper's median takes 10)")
    p.add_argument("--model", type=Path, default=None, help="a transformers ELECTRA directory (default: random)")
    p.add_argument("--modes", default="sequential,batched",
                   help="sequential and/or batched, each also as -unbucketed (the official random batches), and "
                        "batched-graphed (its step as CUDA graphs)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for finetune.csv and finetune.md")
    p.add_argument("--render", type=Path, default=None,
                   help="only re-render DIR/finetune.md from DIR/finetune.csv and DIR/finetune-provenance.json")
    p.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. finetune.precision=bf16-mixed)")
    args = p.parse_intermixed_args(argv)
    known = {m + suffix for m in ("sequential", "batched") for suffix in ("", "-unbucketed")} | {"batched-graphed"}
    if set(args.modes.split(",")) - known:
        p.error(f"--modes takes {', '.join(sorted(known))} (comma-separated), not {args.modes}")
    return args


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    """Measure and write the table and its provenance (the command line then renders the Markdown)."""
    args = parse_args(argv)
    if args.render:  # nothing to measure: the command line renders it (analysis/finetune_benchmark.py)
        return None
    modes = args.modes.split(",")

    from lightning_electra.data.glue_tasks import get_task
    from lightning_electra.data.tokenizer import build_tokenizer
    from lightning_electra.finetune import glue_tasks, task_splits

    overrides = [*args.overrides, *([f"finetune.tasks=[{args.tasks}]"] if args.tasks else [])]
    cfg = load_config(args.scale, overrides=overrides, announce=True)
    configs = {mode: mode_config(mode, cfg) for mode in modes}  # every mode's refusal before any work
    tasks = glue_tasks(cfg)
    tokenizer = build_tokenizer(vocab_path(cfg.data))
    for task in tasks:  # read and tokenise outside the timing, so the first mode pays no more than the second
        task_splits(Path(cfg.data.data_dir), get_task(task), cfg.finetune, tokenizer, cfg.finetune.source,
                    cfg.data.cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from lightning_electra.models import save_random_encoder

            save_random_encoder(cfg.model, len(tokenizer), tmp)
            model = Path(tmp)
        rows = []
        for mode in modes:  # each mode's row written as it comes: a benchmark stopped by a window keeps the rest
            rows.append(time_mode(mode, configs[mode], model, tasks, args.seeds, cfg, tokenizer))
            atomic_write_text(args.out / "finetune.csv", pd.DataFrame(rows).to_csv(index=False))
    table = pd.DataFrame(rows)
    info = {"scale": cfg.scale, "finetune": to_dict(cfg)["finetune"],
            "model": f"model {args.model}" if args.model else "a random encoder of the scale's discriminator shape",
            "command": command_line(["benchmark-finetune", *(argv if argv is not None else sys.argv[1:])]),
            "commit": git_commit(), "hardware": hardware(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(args.out / "finetune-provenance.json", json.dumps(info, indent=1))
    print(table.to_string(index=False))
    return table
