"""GLUE fine-tuning of several seeds at once, as one batched ensemble (`finetune.batched_seeds=true`).

Each seed is still its own model: its own classifier initialisation, data order and dropout. But the S models' weights
are stacked along a new first dimension and run with `torch.func.vmap`, so every matmul is S times larger. An
ELECTRA-Small fine-tune at batch 32 leaves a large GPU mostly idle; S of them in one pass do not. The protocol is
`finetune_task`'s: AdamW (element-wise, so stacking changes nothing) with layer-wise decay, warm-up then linear decay,
gradient clipping at 1.0 *per seed*, and dev metrics per seed.

Attention runs in transformers' eager implementation with a 4-D additive mask: its mask helpers branch on tensor
values, which vmap cannot trace. With `finetune.step_graph` the whole step (vmap forward, backward, per-seed
clipping, the update) is replayed as one CUDA graph per batch shape (lightning_electra/step_graph.py): at
ELECTRA-Small's size the host launching thousands of small kernels, not the GPU, would set the pace.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path
from typing import Any, Sequence, Union

import lightning as L
import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from lightning_electra.config import FinetuneConfig
from lightning_electra.data.glue_tasks import GlueTask
from lightning_electra.finetune.classifier import (GRADIENT_CLIP, GlueClassifier, build_metrics, dev_scores,
                                                   glue_optimizer, glue_trainer, layerwise_param_groups, with_score)
from lightning_electra.finetune.data import eval_loader, train_loader
from lightning_electra.step_graph import GraphedSteps


def additive_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) 1/0 padding mask -> (B, 1, 1, L) float mask: 0 where attended, the dtype's minimum where padded."""
    return (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


class SeedBatches:
    """One loader per seed (each shuffled by its own generator), zipped: each step holds every seed's batch, padded
    to one width and stacked to (S, B, L). With length buckets the seeds share the buckets' order (the first seed's),
    so their batches at a step come from one bucket: one width, no padding between them."""

    def __init__(self, data, seeds: Sequence[int], ft: FinetuneConfig, pad_id: int):
        self.loaders = [train_loader(data, ft, pad_id, seed, schedule_seed=seeds[0]) for seed in seeds]
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self):
        for batches in zip(*self.loaders):
            width = max(b["input_ids"].shape[1] for b in batches)
            pad = {"input_ids": self.pad_id, "token_type_ids": 0, "attention_mask": 0}
            yield {**{k: torch.stack([nn.functional.pad(b[k], (0, width - b[k].shape[1]), value=v) for b in batches])
                      for k, v in pad.items()},
                   "labels": torch.stack([b["labels"] for b in batches])}


class SeedEnsemble(GraphedSteps, L.LightningModule):
    """S GlueClassifiers (one per seed) trained and evaluated together through vmap over their stacked weights."""

    def __init__(self, members: list[GlueClassifier]):
        super().__init__()
        first = members[0]
        self.task, self.ft, self.dev_splits, self.seeds = first.task, first.ft, first.dev_splits, len(members)
        for m in members:
            if hasattr(m.backbone, "set_attn_implementation"):
                m.backbone.set_attn_implementation("eager")
            else:  # older transformers read it from the config
                m.backbone.config._attn_implementation = "eager"
        params, buffers = stack_module_state(members)
        self.names = list(params)
        self.stacked = nn.ParameterList(nn.Parameter(params[n].detach()) for n in self.names)
        self.buffer_names = list(buffers)
        for i, n in enumerate(self.buffer_names):
            self.register_buffer(f"buffer{i}", buffers[n], persistent=False)
        # the member's structure without weights: functional_call supplies each seed's slice
        self._template = [copy.deepcopy(first).to("meta")]
        self._groups = layerwise_param_groups(first, first.ft.lr, first.ft.layer_decay,
                                              first.backbone.config.num_hidden_layers, first.ft.weight_decay,
                                              official=first.ft.official_layer_decay)
        self.dev_metrics = nn.ModuleList(nn.ModuleList(build_metrics(self.task, constant=True) for _ in members)
                                         for _ in self.dev_splits)
        self.dev_results: list[dict[str, float]] = [{} for _ in members]
        self.automatic_optimization = not self.ft.step_graph  # the graph's backward, clipping and update

    def logits(self, batch: dict[str, torch.Tensor], shared_inputs: bool = False) -> torch.Tensor:
        """(S, B, labels): each seed's logits on its own batch (S, B, L), or on one batch (B, L) for all."""
        template = self._template[0]
        template.train(self.training)

        def member(params, buffers, input_ids, mask, token_type_ids):
            return functional_call(template, (params, buffers), (input_ids, mask, token_type_ids))

        params = dict(zip(self.names, self.stacked))
        buffers = {n: getattr(self, f"buffer{i}") for i, n in enumerate(self.buffer_names)}
        mask = additive_mask(batch["attention_mask"].flatten(0, -2)).view(*batch["attention_mask"].shape[:-1], 1, 1, -1)
        data = (0, 0, 0) if not shared_inputs else (None, None, None)
        return torch.vmap(member, in_dims=(0, 0, *data), randomness="different")(
            params, buffers, batch["input_ids"], mask, batch["token_type_ids"]).float()

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.logits(batch)
        if self.task.is_regression:
            losses = ((logits.squeeze(-1) - batch["labels"]) ** 2).mean(-1)
        else:
            losses = nn.functional.cross_entropy(logits.transpose(1, 2), batch["labels"], reduction="none").mean(-1)
        return {"loss": losses.sum()}  # members are independent: each one's gradient is that of its own loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.ft.step_graph:
            return self.graphed_step(batch, self.loss, partial(self.clip_per_seed, GRADIENT_CLIP))["loss"]
        return self.loss(batch)["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        logits = self.logits(batch, shared_inputs=True)
        preds = logits.squeeze(-1) if self.task.is_regression else logits.argmax(-1)
        for metrics, member_preds in zip(self.dev_metrics[dataloader_idx], preds):
            metrics.update(member_preds, batch["labels"])

    def on_validation_epoch_end(self) -> None:
        for split, per_member in zip(self.dev_splits, self.dev_metrics):
            for results, metrics in zip(self.dev_results, per_member):
                results.update(dev_scores(split, metrics))

    def configure_optimizers(self) -> Any:
        index = {n: i for i, n in enumerate(self.names)}
        groups = [{"params": [self.stacked[index[n]] for n in g["names"]], "lr": g["lr"],
                   "weight_decay": g["weight_decay"]} for g in self._groups]
        return glue_optimizer(groups, self.ft, self.trainer, step_graph=not self.automatic_optimization)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if gradient_clip_val:
            self.clip_per_seed(gradient_clip_val)

    def clip_per_seed(self, max_norm: float) -> None:
        """Clip each seed's gradient by its own global norm, as a separate fine-tune would (on the device)."""
        grads = [p.grad for p in self.stacked if p.grad is not None]
        norms = torch.stack([g.float().pow(2).flatten(1).sum(1) for g in grads]).sum(0).sqrt()  # (S,)
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.ndim - 1)).to(g.dtype))


def finetune_seeds(backbone_dir: Union[str, Path], spec: GlueTask, ft: FinetuneConfig, seeds: Sequence[int],
                   train_data, dev_data: list, splits: list[str], pad_id: int, accelerator: str = "auto",
                   devices: Union[int, str] = 1, progress_bar: bool = False) -> list[dict[str, float]]:
    """Fine-tune `seeds` together on one task (see the module docstring); one result dict per seed, in order."""
    members = []
    for seed in seeds:
        torch.manual_seed(seed)  # each seed's classifier initialisation
        members.append(GlueClassifier(backbone_dir, spec, ft, dev_splits=splits))
    model = SeedEnsemble(members)
    del members
    L.seed_everything(seeds[0], workers=True, verbose=False)  # dropout: one stream, different per member (vmap)
    trainer = glue_trainer(ft, spec, accelerator, devices, progress_bar, graphed=ft.step_graph)
    trainer.fit(model, train_dataloaders=SeedBatches(train_data, seeds, ft, pad_id))
    trainer.validate(model, dataloaders=[eval_loader(d, ft, pad_id) for d in dev_data], verbose=False)
    return [with_score(r, spec) for r in model.dev_results]
