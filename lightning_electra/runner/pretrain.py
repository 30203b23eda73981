"""Pre-training one config, stage by stage, resumable: the objective's module built from the data, one Lightning fit
per stage with the suite's callbacks, and what the run did written to pretrain.json."""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from transformers.utils import logging as transformers_logging

from lightning_electra.callbacks import (FlopsCounter, FractionCheckpoints, NonFiniteGuard, ProgressReport, RngState,
                                        stage_seed)
from lightning_electra.config import Config, ConfigError
from lightning_electra.data.datamodule import PretrainDataModule
from lightning_electra.data.files import vocab_path
from lightning_electra.data.tokenizer import special_ids
from lightning_electra.distributed import global_rank
from lightning_electra.io import UnreadableFile, atomic, load_torch, write_json
from lightning_electra.log import logger
from lightning_electra.module import lightning_gradient_clip
from lightning_electra.objectives import objective
from lightning_electra.runner.identity import RunLayout
from lightning_electra.runner.loggers import make_loggers
from lightning_electra.runner.trainer import AtomicCheckpointIO, Hardware, check_hardware, make_trainer

log = logger("pretrain")

transformers_logging.disable_progress_bar()  # one bar per saved checkpoint is noise in a sweep's log
warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # a deprecation inside Lightning, not ours to fix
# Lightning advertises a cloud logger at every Trainer it builds: a sweep builds dozens
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
# Lightning's warning on resuming mid-epoch with a plain DataLoader: ours skips the batches done (EpochSampler)
warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")


def build_module(cfg: Config, stage: int = 1, data: PretrainDataModule | None = None, previous: dict | None = None,
                 device: str | torch.device = "cpu"):
    """The objective's module: with `data`, after the corpus is packed (the unigram generator reads its token
    counts); without, from the vocabulary alone (for its budget, or to load a checkpoint into), on `device`."""
    if data is not None:
        data.prepare_once()  # on each machine's local rank 0; its other ranks wait for the cache
        data.setup()
        special, counts = data.special_ids, data.token_counts()
    else:
        special, counts = special_ids(vocab_path(cfg.data)), None
    with torch.device(device or "cpu"):
        cls = objective(cfg.variant).for_stage(stage)
        return cls(cfg, special, stage=stage, token_counts=counts, previous=previous)


def checkpoint_steps(fractions: list[float], steps: int) -> list[int]:
    """The steps a run saves an encoder to fine-tune at (step 0 only, when it trains none: the control)."""
    return sorted({min(steps, max(1, round(f * steps))) for f in fractions})


def budget(cfg: Config) -> dict:
    """What pre-training will do, from the config and the vocabulary alone (the module is built on the meta device:
    no memory, no data): steps (all stages), stages, paper-convention FLOPs and GLUE checkpoint steps."""
    module = build_module(cfg, device="meta")
    steps = module.steps * module.stages
    return {"steps": steps, "stages": module.stages, "paper_flops": module.steps * module.budget_flops_per_step(),
            "checkpoints": checkpoint_steps(cfg.train.checkpoint_fractions, steps)}


def pretrain(cfg: Config, out: Path, hardware: Hardware | None = None) -> dict:
    """Pre-train (or resume) into run directory `out`, stage by stage; returns the summary written to pretrain.json.
    `hardware`: what the config's devices come to, when the caller has resolved it (else checked here).

    GLUE checkpoints sit at fractions of the whole budget, so a two-stage run gets points in both stages.
    """
    layout = RunLayout(Path(out))
    if layout.summary.exists():
        return json.loads(layout.summary.read_text())
    hardware = hardware or check_hardware(cfg)  # before the corpus is packed: absent GPUs fail at once
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 for any float32 matmul left outside bf16 autocast
    data = PretrainDataModule(cfg)
    start, previous, done, stages = time.time(), None, None, objective(cfg.variant).stages
    if stages == 0:  # the control: the encoder as initialised, its one checkpoint at step 0
        L.seed_everything(stage_seed(cfg.train.seed, 1), workers=True, verbose=False)
        module = build_module(cfg)
        saves, done = [0], save_initial_encoder(module, layout.checkpoints / RunLayout.step_name(0))
    for stage in range(1, stages + 1):
        L.seed_everything(stage_seed(cfg.train.seed, stage), workers=True, verbose=False)  # the weights' init too
        if cfg.train.compile:  # each stage compiles afresh: runs of a sweep in one process would otherwise pass torch's
            torch._dynamo.reset()  # recompile limit (8 shapes a function) and fall back to eager silently
        module = build_module(cfg, stage, data, previous)
        saves = checkpoint_steps(cfg.train.checkpoint_fractions, module.steps * stages)
        stage_dir = layout.stage_dir(stage, stages)
        previous, done = fit_stage(cfg, hardware, module, data, stage_dir, layout.checkpoints, saves, offset=done,
                                   label=layout.fit_label(stage_dir))
    summary = {**done, "seconds": round(time.time() - start, 1), "checkpoints": saves,
               "generator_hidden": objective(cfg.variant).generator_width(cfg), **module.summary()}
    if global_rank() == 0:
        write_json(layout.summary, summary)
    return summary


def save_initial_encoder(module, where: Path) -> dict:
    """The untrained encoder in transformers' format, as FractionCheckpoints saves a trained one; its counts (0)."""
    done = {"step": 0, "tokens": 0, "flops_paper": 0.0, "flops_measured": 0.0}
    if global_rank() == 0:
        with atomic(where) as tmp:
            module.backbone().save_pretrained(tmp)
            write_json(tmp / "meta.json", {**done, "variant": module.cfg.variant, "stage": 0})
    return done


def fit_stage(cfg: Config, hardware: Hardware, module, data: PretrainDataModule, stage_dir: Path, checkpoints: Path,
              saves: list[int],
              offset: dict | None = None, label: str = "") -> tuple[dict, dict]:
    """One fit, resumed from stage_dir/last.ckpt if there is one; returns the module's final state dict and the
    steps, tokens and FLOPs done since pre-training began (`offset`: what earlier stages did)."""
    final = stage_dir / "final.pt"
    if final.exists():  # finished earlier: what the next stage starts from
        saved = load_torch(final)
        return saved["state"], FlopsCounter(offset, saved["measured_flops_per_step"]).done(module, module.steps)
    counter = FlopsCounter(offset)
    guard = NonFiniteGuard(counter)
    first = counter.offset["step"]
    local = [s - first for s in saves if first < s <= first + module.steps]
    every = max(1, min(module.steps // 10, 2000))
    last = ModelCheckpoint(dirpath=stage_dir, save_last=True, save_top_k=0, every_n_train_steps=every)
    resume = stage_dir / "last.ckpt"
    resume_step = check_resumable(resume, module) if resume.exists() else None
    fractions = FractionCheckpoints(lambda step: checkpoints / RunLayout.step_name(step), local, counter, guard)
    trainer = make_trainer(
        cfg, hardware, max_steps=module.steps, precision=cfg.train.precision,
        gradient_clip_val=lightning_gradient_clip(cfg),
        logger=make_loggers(cfg, stage_dir, label, resume_step), log_every_n_steps=cfg.train.log_every_n_steps,
        callbacks=[counter, guard, RngState(), last, fractions,
                   ProgressReport(f"[pretrain] {cfg.name}", counter, module.steps * module.stages)],
        plugins=[AtomicCheckpointIO()], enable_model_summary=False,
        enable_progress_bar=False, limit_val_batches=0,  # ProgressReport: one bar over all stages, or log lines
        num_sanity_val_steps=0)
    log.info(f"{cfg.name} ({cfg.variant}, {cfg.scale})"
             + (f" stage {module.stage}/{module.stages}" if module.stages > 1 else "")
             + f": {module.steps} steps, {module.paper_flops_per_step() * module.steps:.3g} paper FLOPs"
             + (f", resuming from {resume}" if resume.exists() else ""))
    trainer.fit(module, datamodule=data, ckpt_path=resume if resume.exists() else None)
    if guard.good_step != module.global_step:  # last.ckpt at the final step: what is exported is what was scored
        # Lightning's weights_only here means "the model alone": last.ckpt must also hold the optimiser, loops and
        # callbacks' states to resume from, so False, said explicitly (unset, Lightning logs that it defaulted to
        # False). Reading it back is weights-only in torch.load's sense all the same (AtomicCheckpointIO).
        trainer.save_checkpoint(resume, weights_only=False)
    # on every rank: under FSDP this gathers the sharded weights onto rank 0 (the other ranks get nothing)
    state = {k: v.detach().cpu() for k, v in trainer.strategy.lightning_module_state_dict().items()}
    if module.stage < module.stages:  # what the next stage starts from: rank 0 saves it, every rank reads it back
        if trainer.is_global_zero:
            with atomic(final) as tmp:
                torch.save({"state": state, "measured_flops_per_step": counter.measured}, tmp)
        trainer.strategy.barrier()
        state = load_torch(final)["state"]
    return state, counter.done(module, module.steps)


def check_resumable(checkpoint: Path, module) -> int:
    """Refuse a last.ckpt whose weights are not this module's (another variant or shape) before Lightning fails
    on it with a long list of keys; returns its step. Run directories are keyed by a hash that includes both, so
    only a copied or moved file gets here."""
    try:
        whole = load_torch(checkpoint, mmap=True)
    except UnreadableFile as err:
        raise ConfigError(f"{err}; delete it to start this run's pre-training over.") from None
    saved = whole.get("state_dict", {})
    ours = module.state_dict()
    wrong = sorted(set(saved) ^ set(ours)) or [k for k in ours if saved[k].shape != ours[k].shape]
    if wrong:
        raise ConfigError(f"{checkpoint} does not hold this run's model ({module.cfg.variant}; first mismatched "
                          f"weights: {', '.join(wrong[:3])}): it was written by another variant or shape. Resume "
                          "it with the config beside it (config.yaml), or delete it to start this run over.")
    graphed, asked = bool(whole.get("step_graph", False)), module.cfg.train.step_graph
    if graphed != asked:  # a runtime key, so the same run directory: but Lightning keeps two step counts
        raise ConfigError(f"{checkpoint} was written with train.step_graph={str(graphed).lower()}, and Lightning "
                          "counts the steps of its manual optimisation (the step graph) apart from its automatic "
                          f"ones: resumed with train.step_graph={str(asked).lower()} the run would start its count "
                          f"over. Resume with train.step_graph={str(graphed).lower()}, or delete it to start over.")
    return int(whole.get("global_step", 0))
