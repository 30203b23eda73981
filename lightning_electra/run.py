"""One run, start to finish: pre-train with checkpoints along the budget, fine-tune GLUE on each, write the rows.

Every stage leaves a file that marks it done, so running the same run again continues where it stopped:
pre-training resumes from `pretrain/last.ckpt`, each (checkpoint, task, seed) fine-tune is a small JSON file, and
`results-<config hash>.csv` in the run directory marks the whole run finished. The directory is keyed by what
pre-training depends on, and fine-tunes by what they depend on, so changing a fine-tuning setting never re-trains
and asking for more seeds or tasks re-uses the fine-tunes already done.

    <results_dir>/<sweep>/<scale>/<run>-<pre-training hash>/
        config.yaml  pretrain/{last.ckpt,logs/}  pretrain.json
        checkpoints/step-0000123/{config.json,model.safetensors,meta.json}
        finetune/<fine-tuning hash>/step-0000123/<task>-<data digest>-seed<k>.json   results-<config hash>.csv
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from transformers.utils import logging as transformers_logging

from lightning_electra.config import (Config, ConfigError, config_hash, finetune_hash, glue_digest, pretrain_hash,
                                     save_config, vocab_path)
from lightning_electra.data.datamodule import PretrainDataModule, corpus_files
from lightning_electra.models import effective_state
from lightning_electra.results import COLUMNS, git_commit, read_table, write_json, write_table
from lightning_electra.trainer import (AtomicCheckpointIO, check_hardware, global_rank, leave_process_group,
                                       make_loggers, make_trainer)


transformers_logging.disable_progress_bar()  # one bar per saved checkpoint is noise in a sweep's log
warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # a deprecation inside Lightning, not ours to fix
# Lightning advertises a cloud logger at every Trainer it builds: a sweep builds dozens
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
# Lightning's warning on resuming mid-epoch with a plain DataLoader: ours skips the batches done (EpochSampler)
warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")


def run_dir(cfg: Config, sweep: str) -> Path:
    return Path(cfg.results_dir) / sweep / cfg.scale / f"{cfg.name}-{pretrain_hash(cfg)}"


def checkpoint_steps(fractions: list[float], steps: int) -> list[int]:
    return sorted({max(1, round(f * steps)) for f in fractions})


class FractionCheckpoints(L.Callback):
    """Saves the fine-tunable encoder in transformers' format at fractions of the budget, with its FLOPs so far."""

    def __init__(self, out_dir: Path, steps: list[int]):
        self.out_dir, self.steps = out_dir, set(steps)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step not in self.steps:
            return
        self.steps.discard(step)  # with gradient accumulation, the next micro-batches end at this step too
        module.check_finite(weights=True)  # never a NaN encoder to fine-tune (on every rank: it is collective)
        # on every rank: under FSDP this gathers the sharded weights onto rank 0; otherwise it is state_dict()
        state = effective_state(trainer.strategy.lightning_module_state_dict())  # tie=gdes: D's own weights
        if trainer.is_global_zero:
            done = module.flops_done(step)  # counted from the start of pre-training, earlier stages included
            target = self.out_dir / f"step-{done['step']:07d}"
            tmp = target.with_name(target.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)  # what a killed save left
            prefix = next(name for name, m in module.named_modules() if m is module.backbone()) + "."
            module.backbone().save_pretrained(tmp, state_dict={k[len(prefix):]: v for k, v in state.items()
                                                               if k.startswith(prefix)})
            write_json(tmp / "meta.json", {**done, "variant": module.cfg.variant, "stage": module.stage})
            if target.exists():  # a resumed run may pass the same step again
                shutil.rmtree(target)
            tmp.rename(target)


def budget(cfg: Config) -> dict:
    """What pre-training will do, from the config and the vocabulary alone (the variant's module is built on the
    meta device: no memory, no data): steps (all stages), stages, paper-convention FLOPs and GLUE checkpoint steps."""
    from lightning_electra.data.tokenizer import special_ids
    from lightning_electra.variants import VARIANTS

    with torch.device("meta"):
        module = VARIANTS[cfg.variant](cfg, special_ids(vocab_path(cfg.data)))
    steps = module.steps * module.stages
    return {"steps": steps, "stages": module.stages, "paper_flops": module.steps * module.budget_flops_per_step(),
            "checkpoints": checkpoint_steps(cfg.train.checkpoint_fractions, steps)}


def make_module(cfg: Config, data: PretrainDataModule, stage: int = 1):
    """The variant's module, after the data is prepared (some variants read corpus statistics)."""
    from lightning_electra.variants import VARIANTS

    data.prepare_once()  # on each machine's local rank 0; its other ranks wait for the cache
    data.setup()
    module = VARIANTS[cfg.variant](cfg, data.special_ids, stage=stage)
    module.on_data(data)
    return module


def pretrain(cfg: Config, out: Path) -> dict:
    """Pre-train (or resume) into `out`, stage by stage; returns the summary written to pretrain.json.

    GLUE checkpoints sit at fractions of the whole budget, so a two-stage run gets points in both stages.
    """
    done = out / "pretrain.json"
    if done.exists():
        return json.loads(done.read_text())
    check_hardware(cfg)  # before the corpus is packed: asking for GPUs that are not there fails at once
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 for any float32 matmul left outside bf16 autocast
    data = PretrainDataModule(cfg)
    module = make_module(cfg, data)
    saves = checkpoint_steps(cfg.train.checkpoint_fractions, module.steps * module.stages)
    start, previous = time.time(), None
    for stage in range(1, module.stages + 1):
        if stage > 1:
            L.seed_everything(cfg.train.seed + stage, workers=True, verbose=False)
            offset = module.flops_done(module.steps)
            module = make_module(cfg, data, stage)
            module.offset = offset
            module.start_from(previous)
        stage_dir = out / ("pretrain" if module.stages == 1 else f"pretrain-stage{stage}")
        previous = fit_stage(cfg, module, data, stage_dir, out / "checkpoints", saves)
    summary = {**module.flops_done(module.steps), "seconds": round(time.time() - start, 1), "checkpoints": saves,
               "generator_hidden": generator_width(cfg), **module.summary()}
    if global_rank() == 0:
        write_json(done, summary)
    return summary


def fit_stage(cfg: Config, module, data: PretrainDataModule, stage_dir: Path, checkpoints: Path,
              saves: list[int]) -> dict:
    """One fit, resumed from stage_dir/last.ckpt if there is one; returns the module's final state dict."""
    final = stage_dir / "final.pt"
    if final.exists():  # finished earlier: what the next stage starts from
        saved = torch.load(final, map_location="cpu", weights_only=True)
        module.measured_flops_per_step = saved["measured_flops_per_step"]
        return saved["state"]
    first = module.offset["step"]
    local = [s - first for s in saves if first < s <= first + module.steps]
    every = max(1, min(module.steps // 10, 2000))
    last = ModelCheckpoint(dirpath=stage_dir, save_last=True, save_top_k=0, every_n_train_steps=every)
    resume = stage_dir / "last.ckpt"
    resume_step = check_resumable(resume, module) if resume.exists() else None
    trainer = make_trainer(
        cfg, max_steps=module.steps, precision=cfg.train.precision, gradient_clip_val=cfg.train.grad_clip,
        logger=make_loggers(cfg, stage_dir, resume_step), log_every_n_steps=cfg.train.log_every_n_steps,
        callbacks=[last, FractionCheckpoints(checkpoints, local)], plugins=[AtomicCheckpointIO()],
        enable_model_summary=False,
        enable_progress_bar=sys.stderr.isatty(), limit_val_batches=0, num_sanity_val_steps=0)
    print(f"[pretrain] {cfg.name} ({cfg.variant}, {cfg.scale})"
          + (f" stage {module.stage}/{module.stages}" if module.stages > 1 else "")
          + f": {module.steps} steps, {module.paper_flops_per_step() * module.steps:.3g} paper FLOPs"
          + (f", resuming from {resume}" if resume.exists() else ""), flush=True)
    trainer.fit(module, datamodule=data, ckpt_path=resume if resume.exists() else None)
    # on every rank: under FSDP this gathers the sharded weights onto rank 0 (the other ranks get nothing)
    state = {k: v.detach().cpu() for k, v in trainer.strategy.lightning_module_state_dict().items()}
    if module.stage < module.stages:  # what the next stage starts from: rank 0 saves it, every rank reads it back
        if trainer.is_global_zero:
            tmp = final.with_name(final.name + ".tmp")
            torch.save({"state": state, "measured_flops_per_step": module.measured_flops_per_step}, tmp)
            tmp.rename(final)
        trainer.strategy.barrier()
        state = torch.load(final, map_location="cpu", weights_only=True)["state"]
    return state


def check_resumable(checkpoint: Path, module) -> int:
    """Refuse a last.ckpt whose weights are not this module's (another variant or shape) before Lightning fails
    on it with a long list of keys; returns its step. Run directories are keyed by a hash that includes both, so
    only a copied or moved file gets here."""
    try:
        whole = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
        saved = whole.get("state_dict", {})
    except Exception as err:  # torch raises several types for a damaged file
        raise ConfigError(f"{checkpoint} cannot be read ({type(err).__name__}: {err}); delete it to start this "
                          "run's pre-training over.") from None
    ours = module.state_dict()
    wrong = sorted(set(saved) ^ set(ours)) or [k for k in ours if saved[k].shape != ours[k].shape]
    if wrong:
        raise ConfigError(f"{checkpoint} does not hold this run's model ({module.cfg.variant}; first mismatched "
                          f"weights: {', '.join(wrong[:3])}): it was written by another variant or shape. Resume "
                          "it with the config beside it (config.yaml), or delete it to start this run over.")
    return int(whole.get("global_step", 0))


def generator_width(cfg: Config) -> int | None:
    """G's hidden size for reports (0: a unigram or uniform sampler; None: no generator)."""
    from lightning_electra.models import generator_shape

    if cfg.variant == "bert":
        return None
    return generator_shape(cfg.model).hidden if cfg.model.generator == "learned" else 0


def glue_tasks(cfg: Config, announce: bool = False) -> list[str]:
    """The tasks of finetune.tasks to fine-tune: all from the hub; from files, those with train and dev files."""
    from lightning_electra.data.glue import available_tasks, glue_root

    if cfg.finetune.source == "hub":
        return list(cfg.finetune.tasks)
    root = glue_root(cfg.data.data_dir)
    tasks, missing = available_tasks(cfg.data.data_dir, cfg.finetune.tasks)
    if cfg.finetune.tasks and not tasks:  # else the run would pre-train, then write an empty table
        raise ConfigError(f"None of the GLUE tasks in finetune.tasks ({', '.join(cfg.finetune.tasks)}) has train "
                          f"and dev files under {root}. Set DATA_DIR to a folder holding glue/<TASK>/train.tsv and "
                          "dev.tsv (e.g. DATA_DIR=../shared/data), or use finetune.source=hub (online).")
    if missing and announce:
        print(f"[finetune] skipping GLUE tasks without train and dev files under {root}: {', '.join(missing)}",
              flush=True)
    return tasks


def finetune_checkpoints(cfg: Config, out: Path, sweep: str) -> list[dict]:
    """Fine-tune every saved checkpoint on every usable GLUE task, `finetune.seeds` times; one row per metric."""
    from lightning_electra.data.glue import build_tokenizer
    from lightning_electra.finetune import finetune_task_seeds

    data_dir = Path(cfg.data.data_dir)
    tasks = glue_tasks(cfg, announce=True)
    tokenizer = build_tokenizer(vocab_path(cfg.data))
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    base = {"sweep": sweep, "run": cfg.name, "variant": cfg.variant, "scale": cfg.scale, "seed": cfg.train.seed,
            "commit": git_commit(), "config_hash": config_hash(cfg)}
    rows = []
    checkpoints = sorted(p for p in (out / "checkpoints").glob("step-*") if p.name[5:].isdigit())
    for n, checkpoint in enumerate(checkpoints, 1):
        meta = json.loads((checkpoint / "meta.json").read_text())
        for task in tasks:
            data = glue_digest(cfg, task)  # the task's files: an edited file is a new result
            results = {seed: out / "finetune" / finetune_hash(cfg) / checkpoint.name / f"{task}-{data}-seed{seed}.json"
                       for seed in range(cfg.finetune.seeds)}
            missing = [seed for seed, result in results.items() if not result.exists()]
            # seeds one by one (each result saved as it comes), or all together (finetune.batched_seeds: the
            # ensemble's draws depend on its members, so a lost seed is redone with the whole group)
            batched = cfg.finetune.batched_seeds and missing
            for group in [list(results)] if batched else [[seed] for seed in missing]:
                start = time.time()
                all_scores = finetune_task_seeds(checkpoint, task, data_dir, cfg.finetune, tokenizer, group,
                                                 accelerator=cfg.train.accelerator, source=cfg.finetune.source)
                seconds = round((time.time() - start) / len(group), 2)
                for seed, scores in zip(group, all_scores):
                    write_json(results[seed], {"scores": scores, "seconds": seconds})
                    print(f"[finetune] {cfg.name} {checkpoint.name} ({n}/{len(checkpoints)}) {task} seed {seed}: "
                          f"{scores['score']:.1f}", flush=True)
            for seed, result in results.items():
                scores = json.loads(result.read_text())["scores"]
                rows += [{**base, **{k: meta[k] for k in ("step", "tokens", "flops_paper", "flops_measured")},
                          "task": task, "metric": metric, "value": value, "finetune_seed": seed}
                         for metric, value in scores.items()]
    return rows


def run(cfg: Config, sweep: str, finetune: bool = True) -> Path | None:
    """Pre-train and fine-tune one run unless its results table already exists; returns that file.

    Under a distributed launch (torchrun, srun, or Lightning's own for devices > 1) every rank runs this and takes
    part in pre-training; only rank 0 writes files, fine-tunes (on one device) and returns the table. The other
    ranks return None once pre-training is done. `finetune=False`: pre-train only (returns None).
    """
    out = run_dir(cfg, sweep)
    table = out / f"results-{config_hash(cfg)}.csv"
    if table.exists():
        read_table(table, sweep=sweep)  # a run directory copied from another sweep: refuse to mix its rows in
        if not finetune or global_rank() != 0:
            return None
        print(f"[run] {cfg.name}: finished earlier ({table}), skipped", flush=True)
        return table
    corpus_files(cfg)  # no data directory: say so first (it would also lack GLUE)
    vocab_path(cfg.data)
    glue_tasks(cfg)  # no GLUE task to fine-tune on: say so now, not after pre-training
    if global_rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    pretrain(cfg, out)
    if not finetune or global_rank() != 0:
        return None
    leave_process_group()
    rows = finetune_checkpoints(cfg, out, sweep)
    write_table([{c: r[c] for c in COLUMNS} for r in rows], table)
    return table
