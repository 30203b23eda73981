"""One run, start to finish: pre-train with checkpoints along the budget, fine-tune GLUE on each, write the rows.

Every stage leaves a file that marks it done (lightning_electra/runner/identity.py has the layout), so running the
same run again continues where it stopped: pre-training resumes from its last.ckpt, each (checkpoint, task, seed)
fine-tune is a small JSON file, and the run's results table marks the whole run finished.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from lightning_electra.config import Config
from lightning_electra.data.files import check_data, vocab_path
from lightning_electra.data.tokenizer import build_tokenizer
from lightning_electra.distributed import global_rank, leave_process_group
from lightning_electra.finetune import finetune_task_seeds, glue_tasks
from lightning_electra.io import write_json
from lightning_electra.provenance import git_commit
from lightning_electra.progress import Progress
from lightning_electra.results import COLUMNS, read_table, write_table
from lightning_electra.runner.configs import save_config
from lightning_electra.runner.identity import RunLayout, config_hash
from lightning_electra.runner.pretrain import pretrain


def run_dir(cfg: Config, sweep: str) -> Path:
    return RunLayout.of(cfg, sweep).root


def train_and_score(cfg: Config, sweep: str) -> Path | None:
    """Pre-train and fine-tune one run unless its results table already exists; returns that file.

    Under a distributed launch (torchrun, srun, or Lightning's own for devices > 1) every rank runs this and takes
    part in pre-training; only rank 0 writes files, fine-tunes (on one device) and returns the table. The other
    ranks return None once pre-training is done.
    """
    layout = RunLayout.of(cfg, sweep)
    table = layout.table(cfg)
    if finished(cfg, layout, sweep):
        if global_rank() != 0:
            return None
        print(f"[run] {cfg.name}: finished earlier ({table}), skipped", flush=True)
        return table
    pretrain_in(cfg, layout)
    if global_rank() != 0:
        return None
    leave_process_group()
    rows = finetune_checkpoints(cfg, layout, sweep)
    write_table([{c: r[c] for c in COLUMNS} for r in rows], table)
    return table


def pretrain_run(cfg: Config, sweep: str) -> None:
    """Pre-train one run and fine-tune nothing, unless it finished earlier: the `pretrain` command, and a sweep's first
    phase (every run pre-trained before any is fine-tuned)."""
    layout = RunLayout.of(cfg, sweep)
    if not finished(cfg, layout, sweep):
        pretrain_in(cfg, layout)


def finished(cfg: Config, layout: RunLayout, sweep: str) -> bool:
    """Whether the run's results table exists (one copied in from another sweep is refused, not mixed in)."""
    table = layout.table(cfg)
    if table.exists():
        read_table(table, sweep=sweep)
        return True
    return False


def pretrain_in(cfg: Config, layout: RunLayout) -> None:
    check_data(cfg)  # every data file the run reads: say what is wrong now, not after pre-training
    if global_rank() == 0:
        layout.root.mkdir(parents=True, exist_ok=True)
        save_config(cfg, layout.config)
    pretrain(cfg, layout.root)


def finetune_checkpoints(cfg: Config, layout: RunLayout, sweep: str) -> list[dict]:
    """Fine-tune every saved checkpoint on every usable GLUE task, `finetune.seeds` times; one row per metric."""
    tasks = glue_tasks(cfg, announce=True)
    tokenizer = build_tokenizer(vocab_path(cfg.data))
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    base = {"sweep": sweep, "run": cfg.name, "variant": cfg.variant, "scale": cfg.scale, "seed": cfg.train.seed,
            "commit": git_commit(), "config_hash": config_hash(cfg)}
    rows = []
    checkpoints = layout.step_dirs()
    progress = Progress(f"[finetune] {cfg.name}", finetunes_to_do(cfg, layout, checkpoints, tasks), "fine-tunes")
    for n, checkpoint in enumerate(checkpoints, 1):
        meta = json.loads((checkpoint / "meta.json").read_text())
        for task in tasks:
            results = {seed: layout.finetune_result(cfg, checkpoint, task, seed) for seed in range(cfg.finetune.seeds)}
            missing = [seed for seed, result in results.items() if not result.exists()]
            # seeds one by one (each result saved as it comes), or all together (finetune.batched_seeds: the
            # ensemble's draws depend on its members, so a lost seed is redone with the whole group)
            batched = cfg.finetune.batched_seeds and missing
            for group in [list(results)] if batched else [[seed] for seed in missing]:
                start = time.time()
                all_scores = finetune_task_seeds(checkpoint, task, Path(cfg.data.data_dir), cfg.finetune, tokenizer,
                                                 group, accelerator=cfg.train.accelerator, source=cfg.finetune.source,
                                                 cache_dir=cfg.data.cache_dir)
                seconds = round((time.time() - start) / len(group), 2)
                for seed, scores in zip(group, all_scores):
                    write_json(results[seed], {"scores": scores, "seconds": seconds})
                    print(f"[finetune] {cfg.name} {checkpoint.name} ({n}/{len(checkpoints)}) {task} seed {seed}: "
                          f"{scores['score']:.1f}", flush=True)
                progress.update(progress.done + len(group))
            for seed, result in results.items():
                scores = json.loads(result.read_text())["scores"]
                rows += [{**base, **{k: meta[k] for k in ("step", "tokens", "flops_paper", "flops_measured")},
                          "task": task, "metric": metric, "value": value, "finetune_seed": seed}
                         for metric, value in scores.items()]
    progress.close()
    return rows


def finetunes_to_do(cfg: Config, layout: RunLayout, checkpoints: list[Path], tasks: list[str]) -> int:
    """How many fine-tunes (checkpoint x task x seed) finetune_checkpoints will run: those without a result, and with
    finetune.batched_seeds every seed of a task that misses one (the group is redone whole)."""
    seeds, total = cfg.finetune.seeds, 0
    for checkpoint in checkpoints:
        for task in tasks:
            missing = sum(not layout.finetune_result(cfg, checkpoint, task, seed).exists() for seed in range(seeds))
            total += seeds if cfg.finetune.batched_seeds and missing else missing
    return total
