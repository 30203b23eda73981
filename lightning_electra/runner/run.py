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

from lightning_electra.data.files import check_data
from lightning_electra.data.tokenizer import build_tokenizer
from lightning_electra.distributed import global_rank, leave_process_group
from lightning_electra.finetune import finetune_task_seeds
from lightning_electra.io import write_json
from lightning_electra.log import logger
from lightning_electra.provenance import git_commit
from lightning_electra.progress import Progress
from lightning_electra.results import COLUMNS, read_table, write_table
from lightning_electra.runner.configs import save_config
from lightning_electra.runner.pretrain import pretrain
from lightning_electra.runner.resolved import ResolvedRun

finetune_log = logger("finetune")
run_log = logger("run")


def train_and_score(run: ResolvedRun) -> Path | None:
    """Pre-train and fine-tune one run unless its results table already exists; returns that file.

    Under a distributed launch (torchrun, srun, or Lightning's own for devices > 1) every rank runs this and takes
    part in pre-training; only rank 0 writes files, fine-tunes (on one device) and returns the table. The other
    ranks return None once pre-training is done.
    """
    if finished(run):
        if global_rank() != 0:
            return None
        run_log.info(f"{run.name}: finished earlier ({run.table}), skipped")
        return run.table
    pretrain_in(run)
    if global_rank() != 0:
        return None
    leave_process_group()
    rows = finetune_checkpoints(run)
    write_table([{c: r[c] for c in COLUMNS} for r in rows], run.table)
    return run.table


def pretrain_run(run: ResolvedRun) -> None:
    """Pre-train one run and fine-tune nothing, unless it finished earlier: the `pretrain` command, and a sweep's first
    phase (every run pre-trained before any is fine-tuned)."""
    if not finished(run):
        pretrain_in(run)


def finished(run: ResolvedRun) -> bool:
    """Whether the run's results table exists (one copied in from another sweep is refused, not mixed in)."""
    if run.table.exists():
        read_table(run.table, sweep=run.sweep)
        return True
    return False


def pretrain_in(run: ResolvedRun) -> None:
    check_data(run.cfg)  # every data file the run reads: say what is wrong now, not after pre-training
    if global_rank() == 0:
        run.layout.root.mkdir(parents=True, exist_ok=True)
        save_config(run.cfg, run.layout.config)
    pretrain(run.cfg, run.layout.root, run.hardware)


def finetune_checkpoints(run: ResolvedRun) -> list[dict]:
    """Fine-tune every saved checkpoint on every usable GLUE task, `finetune.seeds` times; one row per metric."""
    cfg, layout = run.cfg, run.layout
    tokenizer = build_tokenizer(run.vocab)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    base = {"sweep": run.sweep, "run": cfg.name, "variant": cfg.variant, "scale": cfg.scale, "seed": cfg.train.seed,
            "commit": git_commit(), "config_hash": run.config_hash}
    rows = []
    checkpoints = layout.step_dirs()
    progress = Progress(f"[finetune] {cfg.name}", finetunes_to_do(run, checkpoints), "fine-tunes")
    for n, checkpoint in enumerate(checkpoints, 1):
        meta = json.loads((checkpoint / "meta.json").read_text())
        for task in run.tasks:
            results = {seed: run.finetune_result(checkpoint, task, seed) for seed in range(cfg.finetune.seeds)}
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
                    finetune_log.info(f"{cfg.name} {checkpoint.name} ({n}/{len(checkpoints)}) {task.name} seed {seed}: "
                                      f"{scores['score']:.1f}")
                progress.update(progress.done + len(group))
            for seed, result in results.items():
                scores = json.loads(result.read_text())["scores"]
                rows += [{**base, **{k: meta[k] for k in ("step", "tokens", "flops_paper", "flops_measured")},
                          "task": task.name, "metric": metric, "value": value, "finetune_seed": seed}
                         for metric, value in scores.items()]
    progress.close()
    return rows


def finetunes_to_do(run: ResolvedRun, checkpoints: list[Path]) -> int:
    """How many fine-tunes (checkpoint x task x seed) finetune_checkpoints will run: those without a result, and with
    finetune.batched_seeds every seed of a task that misses one (the group is redone whole)."""
    seeds, total = run.cfg.finetune.seeds, 0
    for checkpoint in checkpoints:
        for task in run.tasks:
            missing = sum(not run.finetune_result(checkpoint, task, seed).exists() for seed in range(seeds))
            total += seeds if run.cfg.finetune.batched_seeds and missing else missing
    return total
