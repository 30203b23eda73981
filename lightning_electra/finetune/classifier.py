"""The GLUE classifier under the paper's protocol (notes section 5): an ELECTRA backbone + dropout/linear head on
[CLS], the official optimiser with layer-wise lr decay, warm-up and linear decay, dev metrics on a 0-100 scale."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import lightning as L
import torch
import torchmetrics
from torch import nn
from transformers import ElectraModel, PreTrainedModel
from transformers.utils import logging as hf_logging

from lightning_electra.config import FinetuneConfig
from lightning_electra.data.glue_tasks import GlueTask
from lightning_electra.optim import build_optimizer, decays, lr_schedule, warmup_linear_decay
from lightning_electra.step_graph import lightning_clip

_LAYER = re.compile(r"^backbone\.encoder\.layer\.(\d+)\.")
_SUFFIX = {"dev": "", "dev_mismatched": "_mm"}  # result-key suffix per dev split


class ConstantPredictions(torchmetrics.Metric):
    """1 when every dev prediction is the same (a fine-tune that learnt nothing: the majority class's score), else 0."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("low", default=torch.tensor(float("inf")), dist_reduce_fx="min")
        self.add_state("high", default=torch.tensor(float("-inf")), dist_reduce_fx="max")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.low = torch.minimum(self.low, preds.min().float())
        self.high = torch.maximum(self.high, preds.max().float())

    def compute(self) -> torch.Tensor:
        return (self.low == self.high).float()


class MatthewsCorrelation(torchmetrics.Metric):
    """Binary Matthews correlation as the official scorer (sklearn) computes it: 0 when a marginal is constant (every
    prediction, or every label, one class), where the formula's denominator is 0. torchmetrics' MatthewsCorrCoef puts
    an epsilon there instead and scores a constant classifier on CoLA's dev set about +-0.026, not 0."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        for name in ("tp", "fp", "tn", "fn"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        predicted, actual = preds.bool(), target.bool()
        self.tp += (predicted & actual).sum()
        self.fp += (predicted & ~actual).sum()
        self.tn += (~predicted & ~actual).sum()
        self.fn += (~predicted & actual).sum()

    def compute(self) -> torch.Tensor:
        tp, fp, tn, fn = self.tp, self.fp, self.tn, self.fn
        denominator = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)).sqrt()
        mcc = (tp * tn - fp * fn) / denominator.clamp_min(1e-300)
        return torch.where(denominator > 0, mcc, torch.zeros_like(mcc)).float()


def build_metrics(spec: GlueTask, constant: bool = False) -> torchmetrics.MetricCollection:
    """The task's dev metrics as torchmetrics objects, keyed by the names in `spec.metrics` (0-1 scale); with
    `constant`, also whether every prediction was the same (1: the fine-tune scores what the majority class would)."""
    n = spec.num_labels
    make = {
        "mcc": MatthewsCorrelation,
        "accuracy": lambda: torchmetrics.Accuracy(task="multiclass", num_classes=n),
        "f1": lambda: torchmetrics.F1Score(task="binary"),  # positive class 1: paraphrase / duplicate
        "spearman": lambda: torchmetrics.SpearmanCorrCoef(),
        "pearson": lambda: torchmetrics.PearsonCorrCoef(),
    }
    with warnings.catch_warnings():  # Spearman's "keeps all predictions in memory": dev sets are small
        warnings.filterwarnings("ignore", message=r".*will save all targets and predictions.*")
        extra = {"constant": ConstantPredictions()} if constant else {}
        return torchmetrics.MetricCollection({**{m: make[m]() for m in spec.metrics}, **extra}, compute_groups=False)


def layerwise_param_groups(model: nn.Module, lr: float, decay: float, num_layers: int, weight_decay: float,
                           official: bool = False) -> list[dict[str, Any]]:
    """AdamW groups: the head at lr, encoder layer k of L (1-based) at lr * decay^(L + 1 - k), the embeddings at
    lr * decay^(L + 1): each depth one step below the one above it (google-research/electra issue 51's intended scheme).

    `official` reproduces google-research/electra's `_get_layer_lrs` (lr * decay^(L + 2 - depth), head at depth
    L + 2), which ran the paper: every backbone exponent one larger, so the top layer gets lr * decay^2 and the
    embeddings decay^(L+2). Parameters are expected under `backbone.` (the ElectraModel) and anywhere else for the head.
    """
    shift = 2 if official else 1
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = _LAYER.match(name)
        if layer:
            power = num_layers - (int(layer.group(1)) + 1) + shift
        elif name.startswith(("backbone.embeddings.", "backbone.embeddings_project.")):
            power = num_layers + shift
        elif name.startswith("backbone."):
            raise ValueError(f"No layer-wise learning rate rule for backbone parameter '{name}'.")
        else:
            power = 0
        no_decay = not decays(name)
        group = groups.setdefault((power, no_decay), {
            "params": [], "names": [], "lr": lr * decay ** power, "weight_decay": 0.0 if no_decay else weight_decay})
        group["params"].append(p)
        group["names"].append(name)
    return [groups[k] for k in sorted(groups, reverse=True)]


def load_backbone(backbone_dir: Union[str, Path]) -> ElectraModel:
    """The ElectraModel in a transformers directory (a saved ElectraModel, or the discriminator / generator saved
    whole: their heads are dropped). Missing or mis-shaped weights are an error, not a silent random init.

    The model runs its own torch code. transformers 5.25 (not yet 5.17) loads models with `use_kernels` on by
    default, swapping layers such as GELU for kernels from the Hugging Face hub for the device at hand at each
    train()/eval() switch: results would depend on what the hub serves that day, an offline GPU machine would ask it
    anyway, and the seed ensemble's weightless copy on the meta device, which no kernel serves, fails outright.
    Releases without `set_use_kernels` never used hub kernels unasked (the oldest this suite takes lack the
    argument)."""
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the per-load report lists the dropped pre-training head: expected
    hf_logging.disable_progress_bar()
    try:
        no_hub_kernels = {"use_kernels": False} if hasattr(PreTrainedModel, "set_use_kernels") else {}
        model, info = ElectraModel.from_pretrained(str(backbone_dir), output_loading_info=True, **no_hub_kernels)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    bad = sorted(info.get("missing_keys", [])) + sorted(str(k) for k in info.get("mismatched_keys", []))
    if bad:
        raise ValueError(f"{backbone_dir} does not hold a complete ELECTRA backbone: {len(bad)} weight(s) missing "
                         f"or mis-shaped, e.g. {', '.join(bad[:3])}. Point it at a directory written by "
                         "save_pretrained from ElectraModel, ElectraForPreTraining or ElectraForMaskedLM.")
    return model


def check_vocab(backbone_dir: Union[str, Path], tokenizer: Any) -> None:
    """Refuse a tokenizer whose vocabulary is not the model's: ids past the embedding table crash mid-training,
    and a different vocabulary of a size that fits would fine-tune on meaningless embeddings. Sizes are what both
    sides record; equal sizes of different vocabularies (same size, other tokens) remain undetected."""
    from transformers import ElectraConfig

    model_size, tokens = ElectraConfig.from_pretrained(str(backbone_dir)).vocab_size, len(tokenizer)
    if model_size != tokens:
        raise ValueError(f"{backbone_dir} has a {model_size:,}-token vocabulary but the tokenizer has {tokens:,}: "
                         "they were not trained together. Fine-tune with the model's own tokenizer (the files "
                         "saved beside it) or the vocab.txt it was pre-trained with (data.vocab).")


class GlueClassifier(L.LightningModule):
    """ElectraModel + dropout + Linear on the [CLS] state; cross-entropy, or MSE for STS-B (one output)."""

    def __init__(self, backbone_dir: Union[str, Path], task: GlueTask, ft: FinetuneConfig,
                 dev_splits: Optional[Sequence[str]] = None):
        super().__init__()
        self.task = task
        self.dev_splits = list(dev_splits or self.task.dev_splits)
        self.ft = ft
        self.backbone = load_backbone(backbone_dir)
        self.backbone.train()  # from_pretrained returns eval mode, and Lightning keeps it: no dropout in training
        conf = self.backbone.config
        self.dropout = nn.Dropout(ft.dropout)
        self.head = nn.Linear(conf.hidden_size, self.task.num_labels)
        if ft.head_init == "glorot":  # tf.layers.dense's default, which the official classifier uses
            nn.init.xavier_uniform_(self.head.weight)
        else:
            nn.init.normal_(self.head.weight, std=conf.initializer_range)
        nn.init.zeros_(self.head.bias)
        # One collection per dev split (MNLI: matched, mismatched), indexed by the dataloader.
        self.dev_metrics = nn.ModuleList([build_metrics(self.task, constant=True) for _ in self.dev_splits])
        self.dev_results: dict[str, float] = {}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
        return self.head(self.dropout(hidden[:, 0]))

    def _loss_and_preds(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).float()
        if self.task.is_regression:
            preds = logits.squeeze(-1)
            return nn.functional.mse_loss(preds, batch["labels"]), preds
        return nn.functional.cross_entropy(logits, batch["labels"]), logits.argmax(-1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss_and_preds(batch)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        _, preds = self._loss_and_preds(batch)
        self.dev_metrics[dataloader_idx].update(preds, batch["labels"])

    def on_validation_epoch_end(self) -> None:
        for split, metrics in zip(self.dev_splits, self.dev_metrics):
            self.dev_results.update(dev_scores(split, metrics))

    def configure_optimizers(self) -> Any:
        c = self.ft
        groups = layerwise_param_groups(self, c.lr, c.layer_decay, self.backbone.config.num_hidden_layers,
                                        c.weight_decay, official=c.official_layer_decay)
        return glue_optimizer(groups, c, self.trainer)


def dev_scores(split: str, metrics: torchmetrics.MetricCollection) -> dict[str, float]:
    """One dev split's metrics on the 0-100 scale, keyed with the split's suffix (MNLI mismatched: _mm); then
    reset for the next evaluation. Empty when the split was not evaluated."""
    scores = {}
    if any(m.update_called for m in metrics.values()):
        suffix = _SUFFIX.get(split, "_" + split)
        scores = {k + suffix: 100.0 * float(v) for k, v in metrics.compute().items()}
    metrics.reset()
    return scores


def glue_optimizer(groups: list[dict[str, Any]], ft: FinetuneConfig, trainer: L.Trainer,
                   step_graph: bool = False) -> dict[str, Any]:
    """The fine-tuning optimiser over the layer-wise groups (lightning_electra/optim.py: the official one unless
    finetune.adam_bias_correction), warm-up and linear decay over the fit's optimizer steps. `step_graph`: for a
    module whose step graph runs the update."""
    optimizer = build_optimizer(groups, ft.lr, ft.adam_eps, bias_correction=ft.adam_bias_correction,
                                step_graph=step_graph)
    total = max(1, int(trainer.estimated_stepping_batches))
    schedule = warmup_linear_decay(total, ft.warmup_fraction, overlap=ft.warmup_overlaps_decay)
    return {"optimizer": optimizer, "lr_scheduler": lr_schedule(optimizer, schedule)}


GRADIENT_CLIP = 1.0  # the global norm GLUE fine-tunes clip to (official: clip_by_global_norm(1.0))


def glue_trainer(ft: FinetuneConfig, task: GlueTask, accelerator: str = "auto", devices: Union[int, str] = 1,
                 progress_bar: bool = False, graphed: bool = False) -> L.Trainer:
    """The protocol's Trainer: the task's epochs, clipping at 1.0, no logger or checkpoints (a fine-tune reports its
    dev metrics, nothing else). `graphed`: the module clips inside its step graph (manual optimisation, where
    Lightning refuses a clip value)."""
    return L.Trainer(accelerator=accelerator, devices=devices, max_epochs=ft.task_epochs.get(task.name, ft.epochs),
                     precision=ft.precision, gradient_clip_val=lightning_clip(GRADIENT_CLIP, graphed), logger=False,
                     enable_checkpointing=False, enable_progress_bar=progress_bar, enable_model_summary=False,
                     num_sanity_val_steps=0)


def with_score(results: dict[str, float], spec: GlueTask) -> dict[str, float]:
    """A fine-tune's dev metrics with its task's main metric also under "score" (NaN when it was not measured)."""
    return {**results, "score": results.get(spec.main_metric, math.nan)}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Lightning's per-Trainer info lines and data-loader hints, repeated for every run of a sweep, add nothing."""
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for message in (r".*does not have many workers.*", r".*smaller than the logging interval.*",
                        r".*no `val_dataloader`.*", r".*LeafSpec.*"):
            warnings.filterwarnings("ignore", message=message)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


