"""The one LightningModule every pre-training objective shares.

It owns what the paper holds fixed across ablations: dynamic masking, the training step, the optimiser and schedule
(lightning_electra/optim.py: the official ones), gradient clipping and the metric names. How the step executes (eager,
compiled, one CUDA graph) is lightning_electra/step_runner.py's, chosen once. An objective
(lightning_electra/objectives/) subclasses it and states only what differs: which models it builds (`build`), its
loss (`objective`), a host-side switch its ops depend on (`phase`), its paper-convention cost
(`paper_flops_per_step`), which encoder GLUE fine-tunes (`backbone`) and which models it exports
(`exported_models`). It receives all it needs when it is built: the config, the
vocabulary's special ids, the corpus token counts (the unigram generator) and, for a later stage, the state the
previous stage ended with. The cross-cutting parts of a fit (non-finite guard, RNG state, FLOPs, GLUE
checkpoints) are callbacks (lightning_electra/callbacks.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Hashable

import lightning as L
import numpy as np
import torch
from transformers import ElectraModel

from lightning_electra.config import Config
from lightning_electra.corruption import Masked, mask_tokens
from lightning_electra.data.tokenizer import SpecialIds
from lightning_electra.flops import TransformerShape
from lightning_electra.optim import build_optimizer, clip_by_global_norm, decay_groups, lr_schedule, warmup_linear_decay
from lightning_electra.step_graph import GraphedSteps, lightning_clip
from lightning_electra.step_runner import compile_mode, step_runner


class PretrainModule(GraphedSteps, L.LightningModule):
    stages = 1  # fits in sequence (two-stage training has 2); each stage is a fresh module
    Options: type | None = None  # the objective's own options: a dataclass, the config section named after it

    def __init__(self, cfg: Config, special: SpecialIds, stage: int = 1, token_counts: np.ndarray | None = None,
                 previous: dict | None = None, compile_mode: str | None = None):
        """`compile_mode`: torch.compile's mode when train.compile (None: step_runner.compile_mode's choice)."""
        super().__init__()
        self.cfg, self.special, self.stage, self.token_counts = cfg, special, stage, token_counts
        self.compile_mode = compile_mode
        self.build()
        if previous is not None:
            self.start_from(previous)
        self.steps = steps_per_stage(cfg, self.budget_flops_per_step(), self.stages)
        self._run_step = None  # step_runner's choice, made on the first step (on the device the fit runs on)
        # the whole step as one graph: its backward, clipping and update are its own, so Lightning's manual mode
        self.automatic_optimization = not cfg.train.step_graph

    # --- what an objective states ----------------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Refuse configs this objective cannot run, when the config is loaded (before any work in a sweep)."""

    @classmethod
    def for_stage(cls, stage: int) -> type[PretrainModule]:
        """The objective that trains stage `stage` (a multi-stage objective has one per stage)."""
        return cls

    @classmethod
    def generator_width(cls, cfg: Config) -> int | None:
        """G's hidden size for reports (0: a unigram or uniform sampler; None: no generator)."""
        return None

    def build(self) -> None:
        raise NotImplementedError

    def objective(self, batch: dict[str, torch.Tensor], masked: Masked) -> dict[str, torch.Tensor]:
        """Returns metrics; 'loss' is what is optimised. An objective with a `phase` takes it as a third argument."""
        raise NotImplementedError

    def phase(self, step: int) -> Hashable:
        """The host-side switch of step `step` (counted from 1) that the objective's ops depend on, such as the
        adversarial MLE warm-up, handed to `objective` as its third argument; None (most objectives): no switch, and
        `objective` takes two. A plain value rather than a flag on the module: torch.compile specialises on it (one
        recompile when it changes), a step graph captures one graph per value."""
        return None

    def paper_flops_per_step(self) -> float:
        raise NotImplementedError

    def backbone(self) -> ElectraModel:
        """The encoder that GLUE fine-tunes."""
        raise NotImplementedError

    def exported_models(self) -> dict[str, torch.nn.Module]:
        """The transformers models this objective trains, by role: discriminator (ElectraForPreTraining), generator
        (the small ElectraForMaskedLM), mlm (an ElectraForMaskedLM at D's size). They share the module's tensors."""
        raise NotImplementedError

    def start_from(self, previous_stage: dict) -> None:
        """Multi-stage objectives: initialise from the state dict the previous stage ended with."""

    def record(self, metrics: dict[str, torch.Tensor], step: int) -> None:
        """What the objective keeps of step `step`'s metrics for `summary`, outside the (maybe captured) step."""

    def summary(self) -> dict:
        """What the objective adds to pretrain.json for reports (e.g. AMOS's mixture weights along training)."""
        return {}

    def budget_flops_per_step(self) -> float:
        """Paper FLOPs of one step of every stage together: how a FLOPs budget becomes a step count."""
        return self.paper_flops_per_step()

    # --- shared ----------------------------------------------------------------------------------------------
    def shape(self, shape: TransformerShape) -> TransformerShape:
        """A model shape at this run's sequence length and vocabulary, for FLOPs."""
        return replace(shape, seq=self.cfg.data.max_seq_length, vocab=self.special.vocab_size)

    def mask(self, batch: dict[str, torch.Tensor]) -> Masked:
        d = self.cfg.data
        return mask_tokens(batch["input_ids"], self.special, d.mask_prob, d.mask_token_prob,
                           random_token_prob=d.random_token_prob)

    def masked_objective(self, batch: dict[str, torch.Tensor], phase: Hashable = None) -> dict[str, torch.Tensor]:
        """One step's forward: mask the batch on the device, then the objective (in `phase`, where it has one)."""
        masked = self.mask(batch)
        return self.objective(batch, masked) if phase is None else self.objective(batch, masked, phase)

    def resolved_compile_mode(self) -> str:
        """The torch.compile mode train.compile uses (step_runner.compile_mode)."""
        return compile_mode(self.compile_mode, self.device, self.cfg.train.step_graph)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        step = self.global_step + 1  # the step being trained (Lightning counts it once its update is done)
        lr = self.lr_schedulers().get_last_lr()[0]  # this step's (a graphed step moves the schedule on)
        if self._run_step is None:
            self._run_step = step_runner(self)
        metrics = self._run_step(batch, self.phase(step))
        self.record(metrics, step)
        # averaged over the devices, so the logs describe the global batch on any count; only at the steps the
        # logger writes (an all-reduce per metric per step would cost more than the metrics are worth)
        self.log_dict({f"train/{k}": v.detach().float() for k, v in metrics.items()}, prog_bar=False,
                      sync_dist=self.is_log_step(step))
        self.log("train/lr", lr)
        self.log("loss", metrics["loss"].detach(), prog_bar=True, logger=False)
        return metrics["loss"]

    def is_log_step(self, step: int) -> bool:
        """Whether step `step` (counted from 1) is one the logger writes (host syncs are cheap there)."""
        return step % self.cfg.train.log_every_n_steps == 0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["step_graph"] = self.cfg.train.step_graph  # which of Lightning's step counts holds the steps

    def configure_optimizers(self):
        t = self.cfg.train
        # named_parameters skips shared tensors' second names. fused (torch's AdamW only): one kernel per step (a
        # speed switch); not under fp16, whose gradient scaler must unscale before clipping (bf16 has no scaler:
        # configure_gradient_clipping clips for the fused optimizer)
        fused = self.device.type == "cuda" and not str(self.cfg.train.precision).startswith("16")
        optimizer = build_optimizer(decay_groups(self.named_parameters(), t.weight_decay), t.lr, t.adam_eps,
                                    t.adam_betas, bias_correction=t.adam_bias_correction, fused=fused,
                                    step_graph=t.step_graph)
        schedule = warmup_linear_decay(self.steps, t.warmup_fraction, overlap=True, warmup_steps=t.warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": lr_schedule(optimizer, schedule)}

    def clip_gradients_to_norm(self) -> None:
        """The step graph's clipping: the global norm over the optimiser's parameters, as Lightning clips them."""
        if self.cfg.train.grad_clip:
            clip_by_global_norm(self.optimizers().optimizer, self.cfg.train.grad_clip)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning's clipping by global norm, done here for a fused AdamW: Lightning's AMP plugin refuses to clip
        for optimizers that unscale gradients internally, though bf16-mixed has no gradient scaler to undo."""
        if gradient_clip_val and getattr(optimizer, "_step_supports_amp_scaling", False) \
                and gradient_clip_algorithm in (None, "norm"):
            clip_by_global_norm(optimizer, gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)


def lightning_gradient_clip(cfg: Config) -> float | None:
    """The pre-training Trainer's gradient_clip_val (step_graph.lightning_clip)."""
    return lightning_clip(cfg.train.grad_clip, cfg.train.step_graph)


def steps_per_stage(cfg: Config, flops_per_step_of_each_stage: float, stages: int) -> int:
    """Steps from the budget: a step count when one is set (split over the stages), else the FLOPs budget; none for
    an objective without stages (the no-pre-training control)."""
    if stages == 0:
        return 0
    if cfg.train.steps is not None:
        return max(1, int(cfg.train.steps) // stages)
    return max(1, round(cfg.train.flops_budget / flops_per_step_of_each_stage))
