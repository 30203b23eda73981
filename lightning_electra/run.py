"""One run, start to finish: pre-train with checkpoints along the budget, fine-tune GLUE on each, write the rows.

Every stage leaves a file that marks it done, so running the same run again continues where it stopped:
pre-training resumes from `pretrain/last.ckpt`, each (checkpoint, task, seed) fine-tune is a small JSON file, and
`results-<config hash>.csv` in the run directory marks the whole run finished. The directory is keyed by what
pre-training depends on, and fine-tunes by what they depend on, so changing a fine-tuning setting never re-trains
and asking for more seeds or tasks re-uses the fine-tunes already done.

    <results_dir>/<sweep>/<scale>/<run>-<pre-training hash>/
        config.yaml  pretrain/{last.ckpt,logs/}  pretrain.json
        checkpoints/step-0000123/{config.json,model.safetensors,meta.json}
        finetune/<fine-tuning hash>/step-0000123/<task>-seed<k>.json   results-<config hash>.csv
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
from lightning.pytorch.loggers import CSVLogger
from transformers.utils import logging as transformers_logging

from lightning_electra.config import (Config, config_hash, finetune_hash, pretrain_hash, resolve_data_path,
                                     save_config)
from lightning_electra.data.datamodule import PretrainDataModule
from lightning_electra.results import COLUMNS, git_commit, write_json, write_table


transformers_logging.disable_progress_bar()  # one bar per saved checkpoint is noise in a sweep's log
warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # a deprecation inside Lightning, not ours to fix


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
        if step in self.steps and trainer.is_global_zero:
            done = module.flops_done(step)  # counted from the start of pre-training, earlier stages included
            target = self.out_dir / f"step-{done['step']:07d}"
            tmp = target.with_name(target.name + ".tmp")
            module.backbone().save_pretrained(tmp)
            write_json(tmp / "meta.json", {**done, "variant": module.cfg.variant, "stage": module.stage})
            if target.exists():  # a resumed run may pass the same step again
                shutil.rmtree(target)
            tmp.rename(target)


def make_module(cfg: Config, data: PretrainDataModule, stage: int = 1):
    """The variant's module, after the data is prepared (some variants read corpus statistics)."""
    from lightning_electra.variants import VARIANTS

    data.prepare_data()
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
               "generator_hidden": generator_width(cfg)}
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
    trainer = L.Trainer(
        max_steps=module.steps, accelerator=cfg.train.accelerator, devices=cfg.train.devices,
        precision=cfg.train.precision, gradient_clip_val=cfg.train.grad_clip,
        logger=CSVLogger(stage_dir, name="logs", version=""), log_every_n_steps=cfg.train.log_every_n_steps,
        callbacks=[last, FractionCheckpoints(checkpoints, local)], enable_model_summary=False,
        enable_progress_bar=sys.stderr.isatty(), limit_val_batches=0, num_sanity_val_steps=0)
    resume = stage_dir / "last.ckpt"
    print(f"[pretrain] {cfg.name} ({cfg.variant}, {cfg.scale})"
          + (f" stage {module.stage}/{module.stages}" if module.stages > 1 else "")
          + f": {module.steps} steps, {module.paper_flops_per_step() * module.steps:.3g} paper FLOPs"
          + (f", resuming from {resume}" if resume.exists() else ""), flush=True)
    trainer.fit(module, datamodule=data, ckpt_path=resume if resume.exists() else None)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    if trainer.is_global_zero and module.stage < module.stages:  # what the next stage starts from
        tmp = final.with_name(final.name + ".tmp")
        torch.save({"state": state, "measured_flops_per_step": module.measured_flops_per_step}, tmp)
        tmp.rename(final)
    return state


def generator_width(cfg: Config) -> int | None:
    """G's hidden size for reports (0: a unigram or uniform sampler; None: no generator)."""
    from lightning_electra.models import generator_shape

    if cfg.variant == "bert":
        return None
    return generator_shape(cfg.model).hidden if cfg.model.generator == "learned" else 0


def finetune_checkpoints(cfg: Config, out: Path, sweep: str) -> list[dict]:
    """Fine-tune every saved checkpoint on every usable GLUE task, `finetune.seeds` times; one row per metric."""
    from lightning_electra.data.glue import available_tasks, build_tokenizer
    from lightning_electra.finetune import finetune_task

    data_dir = Path(cfg.data.data_dir)
    hub = cfg.finetune.source == "hub"
    tasks, missing = (cfg.finetune.tasks, []) if hub else available_tasks(data_dir, cfg.finetune.tasks)
    if missing:
        print(f"[finetune] skipping GLUE tasks without train and dev files under {data_dir / 'glue'}: "
              f"{', '.join(missing)}", flush=True)
    tokenizer = build_tokenizer(resolve_data_path(cfg, cfg.data.vocab))
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    base = {"sweep": sweep, "run": cfg.name, "variant": cfg.variant, "scale": cfg.scale, "seed": cfg.train.seed,
            "commit": git_commit(), "config_hash": config_hash(cfg)}
    rows = []
    checkpoints = sorted(p for p in (out / "checkpoints").glob("step-*") if p.name[5:].isdigit())
    for n, checkpoint in enumerate(checkpoints, 1):
        meta = json.loads((checkpoint / "meta.json").read_text())
        for task in tasks:
            for seed in range(cfg.finetune.seeds):
                result = out / "finetune" / finetune_hash(cfg) / checkpoint.name / f"{task}-seed{seed}.json"
                if not result.exists():
                    start = time.time()
                    scores = finetune_task(checkpoint, task, data_dir, cfg.finetune, tokenizer, seed,
                                           accelerator=cfg.train.accelerator, source=cfg.finetune.source)
                    write_json(result, {"scores": scores, "seconds": round(time.time() - start, 2)})
                    print(f"[finetune] {cfg.name} {checkpoint.name} ({n}/{len(checkpoints)}) {task} seed {seed}: "
                          f"{scores['score']:.1f}", flush=True)
                scores = json.loads(result.read_text())["scores"]
                rows += [{**base, **{k: meta[k] for k in ("step", "tokens", "flops_paper", "flops_measured")},
                          "task": task, "metric": metric, "value": value, "finetune_seed": seed}
                         for metric, value in scores.items()]
    return rows


def run(cfg: Config, sweep: str) -> Path:
    """Pre-train and fine-tune one run unless its results table already exists; returns that file."""
    out = run_dir(cfg, sweep)
    table = out / f"results-{config_hash(cfg)}.csv"
    if table.exists():
        print(f"[run] {cfg.name}: finished earlier ({table}), skipped", flush=True)
        return table
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    pretrain(cfg, out)
    rows = finetune_checkpoints(cfg, out, sweep)
    write_table([{c: r[c] for c in COLUMNS} for r in rows], table)
    return table
