"""The base LightningModule every pre-training variant shares.

It owns what the paper holds fixed across ablations: dynamic masking, the optimiser (AdamW, eps 1e-6, weight decay
0.01 off LayerNorm and biases), the official schedule `peak * min(1, step / warmup) * (1 - step / total)`, FLOPs
accounting (paper convention and measured) and the metric names. A variant subclasses it and states only what
differs: which models it builds (`build`), its loss (`objective`), its paper-convention cost
(`paper_flops_per_step`) and which encoder GLUE fine-tunes (`backbone`).
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.strategies import FSDPStrategy
import torch
import torch.nn.functional as F
from transformers import ElectraForMaskedLM, ElectraModel

from lightning_electra.config import Config
from lightning_electra.corruption import Masked, mask_tokens
from lightning_electra.data.tokenizer import SpecialIds
from lightning_electra.flops import TransformerShape, measure_flops
from lightning_electra.optim import build_optimizer, decay_groups, lr_schedule, warmup_linear_decay


class NonFiniteLossError(RuntimeError):
    """The loss (or a weight) stopped being finite; the checkpoints written before are kept, none after."""


class PretrainModule(L.LightningModule):
    stages = 1  # fits in sequence (two-stage training has 2); each stage is a fresh module
    compile_mode: str | None = None  # torch.compile mode when train.compile; None: "reduce-overhead" on CUDA

    def __init__(self, cfg: Config, special: SpecialIds, stage: int = 1):
        super().__init__()
        self.cfg, self.special, self.stage = cfg, special, stage
        self.build()
        self.steps = steps_per_stage(cfg, self.budget_flops_per_step(), self.stages)
        # what earlier stages did, so steps, tokens and FLOPs count on from them
        self.offset = {"step": 0, "tokens": 0, "flops_paper": 0.0, "flops_measured": 0.0}
        self.measured_flops_per_step: float | None = None  # set from a real batch when training starts
        self._compiled_step = None  # torch.compile of `masked_objective`, made on first use when train.compile
        self._cuda_graphs = False  # whether that compiled step replays CUDA graphs
        self._first_bad: torch.Tensor | None = None  # on the device: the first step with a non-finite loss (0: none)
        self._good_step: int | None = None  # the step of the last checkpoint written (or resumed from)
        self._rng_to_restore: dict | None = None  # RNG states from the checkpoint, set when training starts

    # --- what a variant states -------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Refuse configs this variant cannot run, when the config is loaded (before any work in a sweep)."""

    def build(self) -> None:
        raise NotImplementedError

    def objective(self, batch: dict[str, torch.Tensor], masked: Masked) -> dict[str, torch.Tensor]:
        """Returns metrics; 'loss' is what is optimised."""
        raise NotImplementedError

    def paper_flops_per_step(self) -> float:
        raise NotImplementedError

    def backbone(self) -> ElectraModel:
        """The encoder that GLUE fine-tunes."""
        raise NotImplementedError

    def on_data(self, data) -> None:
        """Called with the prepared DataModule before training (e.g. for corpus token frequencies)."""

    def start_from(self, previous_stage: dict) -> None:
        """Multi-stage variants: initialise from the state dict the previous stage ended with."""

    def summary(self) -> dict:
        """What the variant adds to pretrain.json for reports (e.g. AMOS's mixture weights along training)."""
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

    def masked_objective(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One step's forward: mask the batch on the device, then the variant's objective."""
        return self.objective(batch, self.mask(batch))

    def loss_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`masked_objective`, through torch.compile when train.compile (a speed switch: same ops, same losses).

        Static shapes (every batch is full: drop_last, fixed length, fixed mask slots), so no dynamic-shape graphs.
        On CUDA the default mode is "reduce-overhead": the step replays CUDA graphs. At ELECTRA-Small's width a step
        is ~2,000 small kernels and launching them one by one from Python left the GPU idle half the time.
        """
        if not self.cfg.train.compile:
            return self.masked_objective(batch)
        if self._compiled_step is None:
            mode = self.compile_mode or ("reduce-overhead" if self.device.type == "cuda" else "default")
            self._compiled_step = torch.compile(self.masked_objective, dynamic=False, mode=mode)
            self._cuda_graphs = self.device.type == "cuda" and mode in ("reduce-overhead", "max-autotune")
        metrics = self._compiled_step(batch)
        if self._cuda_graphs:  # the next replay overwrites graph outputs: hand out copies (logging keeps them)
            metrics = {k: v.clone() if k == "loss" else v.detach().clone() for k, v in metrics.items()}
        return metrics

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        metrics = self.loss_step(batch)
        self.watch_loss(metrics["loss"])
        # averaged over the devices, so the logs describe the global batch on any count; only at the steps the
        # logger writes (an all-reduce per metric per step would cost more than the metrics are worth)
        self.log_dict({f"train/{k}": v.detach().float() for k, v in metrics.items()}, prog_bar=False,
                      sync_dist=self.is_log_step())
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0])
        self.log("loss", metrics["loss"].detach(), prog_bar=True, logger=False)
        return metrics["loss"]

    def watch_loss(self, loss: torch.Tensor) -> None:
        """Notes the first step whose loss is not finite and stops the run (NonFiniteLossError).

        On the CPU every step is checked. On a GPU reading the flag would make the host wait for each step, so it
        stays on the device and is read at log steps (which synchronise anyway) and before any checkpoint is
        written: a few NaN steps may run, but NaN weights are never saved.
        """
        if self._first_bad is None:
            self._first_bad = torch.zeros((), dtype=torch.long, device=loss.device)
        step = self.global_step + 1
        self._first_bad = torch.where(~torch.isfinite(loss.detach()) & (self._first_bad == 0), step, self._first_bad)
        if loss.device.type == "cpu" or self.is_log_step():
            self.check_finite()

    def is_log_step(self) -> bool:
        """Whether the step now being trained is one the logger writes (host syncs are cheap there)."""
        return (self.global_step + 1) % self.cfg.train.log_every_n_steps == 0

    def check_finite(self, weights: bool = False) -> None:
        """Raises NonFiniteLossError if a loss so far (or, with `weights`, a weight now) is not finite."""
        bad = torch.zeros(2, dtype=torch.long, device=self.device)  # [first non-finite loss step, weights broken]
        if self._first_bad is not None:
            bad[0] = self._first_bad
        if weights:
            bad[1] = ~torch.stack([torch.isfinite(p).all() for p in self.parameters()]).all()
        if self._trainer is not None and self.trainer.world_size > 1:  # every rank stops at the same step
            bad = self.trainer.strategy.reduce(bad, reduce_op="max")
        step, broken = bad.tolist()
        what = (f"non-finite loss at step {self.offset['step'] + step}" if step else
                f"non-finite weights after step {self.offset['step'] + self.global_step}" if broken else None)
        if what:
            callback = self.trainer.checkpoint_callback if self._trainer is not None else None
            last = callback.last_model_path if callback else ""
            kept = (f"the last good checkpoint, {last} (step {self.offset['step'] + self._good_step}), is kept; "
                    "running the same command again resumes from it and meets the same step, so change e.g. "
                    "train.lr (a new run)" if self._good_step is not None and last and Path(last).exists()
                    else "no checkpoint had been written yet")
            raise NonFiniteLossError(f"{self.cfg.name} ({self.cfg.variant}): {what}. Stopped: {kept}.")

    def on_fit_start(self) -> None:
        if self.measured_flops_per_step is None:
            self.measured_flops_per_step = self.measure_step_flops()

    def measure_step_flops(self) -> float:
        """FlopCounterMode on one forward + backward of a real batch, per global batch (torch's count: matmuls)."""
        dm = self.trainer.datamodule
        rows = [dm.train_set[i] for i in range(min(len(dm.train_set), dm.per_device_batch()))]
        batch = {k: v.to(self.device) for k, v in dm.collate(rows).items()}
        model = self
        if isinstance(self.trainer.strategy, FSDPStrategy):
            # sharded weights cannot run outside FSDP's forward; FLOPs depend on shapes, not values: count a copy
            model = type(self)(self.cfg, self.special, stage=self.stage).to(self.device)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            flops = measure_flops(lambda: model.objective(batch, model.mask(batch))["loss"])
        self.zero_grad(set_to_none=True)
        return flops * self.cfg.train.batch_size / len(rows)  # per global batch

    def flops_done(self, step: int | None = None) -> dict[str, float]:
        """Steps, tokens and FLOPs since the start of pre-training (earlier stages included) after `step` here."""
        step = self.global_step if step is None else step
        done = {"step": step, "tokens": step * self.cfg.train.batch_size * self.cfg.data.max_seq_length,
                "flops_paper": step * self.paper_flops_per_step(),
                "flops_measured": step * (self.measured_flops_per_step or math.nan)}
        return {k: v + self.offset[k] for k, v in done.items()}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.check_finite(weights=True)  # raising here leaves the previous checkpoint file as it was
        checkpoint["flops"] = self.flops_done()
        checkpoint["measured_flops_per_step"] = self.measured_flops_per_step
        # what the next step draws from (masking, G's sampling, dropout), so a resumed run continues identically
        checkpoint["rng"] = {"ranks": self.gather_rng_states()}
        self._good_step = self.global_step

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.measured_flops_per_step = checkpoint.get("measured_flops_per_step")
        self._rng_to_restore, self._good_step = checkpoint.get("rng"), checkpoint.get("global_step")

    def on_train_start(self) -> None:
        # set as late as possible, so nothing between loading the checkpoint and the first step draws from them
        rank, world = self.trainer.global_rank, self.trainer.world_size
        saved = self._rng_to_restore or {}
        saved = saved.get("ranks", [saved] if saved else [])  # checkpoints before per-rank states held one dict
        if len(saved) == world:
            set_rng_states(saved[rank])
        elif world > 1:  # each rank its own masking, sampling and dropout draws, as one process has per example
            offset = 7919 * rank + (self.global_step if saved else 0)  # resumed on another device count: a new stream
            stage = self.stage if self.stage > 1 else 0  # as run.pretrain seeds a later stage
            torch.manual_seed(self.cfg.train.seed + stage + offset)
        elif saved:
            set_rng_states(saved[0])
        self._rng_to_restore = None

    def gather_rng_states(self) -> list[dict]:
        """Every rank's RNG states (Lightning builds a checkpoint on every rank; rank 0 writes it)."""
        states = rng_states()
        if self._trainer is None or self.trainer.world_size == 1 or not torch.distributed.is_initialized():
            return [states]
        gathered: list = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(gathered, states)
        return gathered

    def on_train_end(self) -> None:
        self.check_finite(weights=True)  # on a GPU the last steps may not have been checked yet

    def configure_optimizers(self):
        t = self.cfg.train
        # named_parameters skips shared tensors' second names. fused (torch's AdamW only): one kernel per step (a
        # speed switch); not under fp16, whose gradient scaler must unscale before clipping (bf16 has no scaler:
        # configure_gradient_clipping clips for the fused optimizer)
        fused = self.device.type == "cuda" and not str(self.cfg.train.precision).startswith("16")
        optimizer = build_optimizer(decay_groups(self.named_parameters(), t.weight_decay), t.lr, t.adam_eps,
                                    t.adam_betas, bias_correction=t.adam_bias_correction, fused=fused)
        schedule = warmup_linear_decay(self.steps, t.warmup_fraction, overlap=True, warmup_steps=t.warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": lr_schedule(optimizer, schedule)}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning's clipping by global norm, done here for a fused AdamW: Lightning's AMP plugin refuses to clip
        for optimizers that unscale gradients internally, though bf16-mixed has no gradient scaler to undo."""
        if gradient_clip_val and getattr(optimizer, "_step_supports_amp_scaling", False) \
                and gradient_clip_algorithm in (None, "norm"):
            torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]],
                                           gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)


def steps_per_stage(cfg: Config, flops_per_step_of_each_stage: float, stages: int) -> int:
    """Steps from the budget: a step count when one is set (split over the stages), else the FLOPs budget."""
    if cfg.train.steps is not None:
        return max(1, int(cfg.train.steps) // stages)
    return max(1, round(cfg.train.flops_budget / flops_per_step_of_each_stage))


def rng_states() -> dict:
    """Every global RNG's state, in types a weights-only torch.load accepts (numpy's array as a list)."""
    name, keys, *rest = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "numpy": [name, keys.tolist(), *rest], "python": random.getstate()}
    if torch.cuda.is_available():  # this process's device: ranks seeded alike draw alike, so rank 0's serves all
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


# --- pieces the objectives share --------------------------------------------------------------------------------
def hidden_at(mlm: ElectraForMaskedLM, input_ids: torch.Tensor, batch: dict[str, torch.Tensor],
              positions: torch.Tensor) -> torch.Tensor:
    """An MLM model's last hidden states at the masked slots: (B, P, H)."""
    hidden = mlm.electra(input_ids=input_ids, attention_mask=batch["attention_mask"],
                         token_type_ids=batch["token_type_ids"]).last_hidden_state
    return hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))


def mlm_logits(mlm: ElectraForMaskedLM, input_ids: torch.Tensor, batch: dict[str, torch.Tensor],
               positions: torch.Tensor) -> torch.Tensor:
    """An MLM model's logits at the masked slots only: (B, P, V) instead of (B, L, V)."""
    return vocab_logits(mlm, hidden_at(mlm, input_ids, batch, positions))


def vocab_logits(mlm: ElectraForMaskedLM, hidden: torch.Tensor) -> torch.Tensor:
    """The MLM head on hidden states, its projection onto the vocabulary in float32 whatever the autocast: bf16
    logits (8 bits of mantissa: a logit of 10 is off by up to 0.04) would bias the samples drawn from them."""
    head, features = mlm.generator_lm_head, mlm.generator_predictions(hidden)
    with torch.autocast(hidden.device.type, enabled=False):
        return F.linear(features.float(), head.weight.float(), None if head.bias is None else head.bias.float())


def mlm_metrics(logits: torch.Tensor, masked: Masked) -> dict[str, torch.Tensor]:
    weights = masked.weights
    loss = F.cross_entropy(logits.flatten(0, 1).float(), masked.labels.flatten(), reduction="none")
    n = weights.sum().clamp_min(1)
    accuracy = ((logits.argmax(-1) == masked.labels).float() * weights).sum() / n
    return {"mlm_loss": (loss * weights.flatten()).sum() / n, "mlm_accuracy": accuracy}


def sampled_accuracy(sampled: torch.Tensor, masked: Masked) -> torch.Tensor:
    """Share of the real masked slots where G sampled the original token (those count as not replaced)."""
    return ((sampled == masked.labels).float() * masked.weights).sum() / masked.weights.sum().clamp_min(1)


def discriminator_metrics(logits: torch.Tensor, replaced: torch.Tensor,
                          scored: torch.Tensor) -> dict[str, torch.Tensor]:
    """Binary cross-entropy of replaced-token detection over the `scored` positions, with the official metrics."""
    scored = scored.float()
    n = scored.sum().clamp_min(1)
    loss = (F.binary_cross_entropy_with_logits(logits.float(), replaced.float(), reduction="none") * scored).sum() / n
    predicted = (logits > 0) & scored.bool()
    actual = replaced & scored.bool()
    true_pos = (predicted & actual).sum()
    return {"disc_loss": loss,
            "disc_accuracy": ((predicted == actual).float() * scored).sum() / n,
            "disc_precision": true_pos / predicted.sum().clamp_min(1),
            "disc_recall": true_pos / actual.sum().clamp_min(1),
            "replaced_fraction": actual.sum() / n}
