"""GLUE fine-tuning under the paper's protocol (notes section 5): an ELECTRA backbone + dropout/linear head on
[CLS], AdamW with layer-wise lr decay, linear warmup then linear decay, dev metrics on a 0-100 scale."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings
import weakref
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import lightning as L
import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader
from transformers import ElectraModel
from transformers.utils import logging as hf_logging

from lightning_electra.config import FinetuneConfig
from lightning_electra.optim import build_optimizer, decays, lr_schedule, warmup_linear_decay
from lightning_electra.data.glue import (GlueCollator, GlueDataset, GlueTask, both_orders, build_tokenizer, get_task,
                                         load_examples, task_file, unit_targets)

_LAYER = re.compile(r"^backbone\.encoder\.layer\.(\d+)\.")
_SUFFIX = {"dev": "", "dev_mismatched": "_mm"}  # result-key suffix per dev split


def build_metrics(task: Union[str, GlueTask]) -> torchmetrics.MetricCollection:
    """The task's dev metrics as torchmetrics objects, keyed by the names in `task.metrics` (0-1 scale)."""
    spec = get_task(task)
    n = spec.num_labels
    make = {
        "mcc": lambda: torchmetrics.MatthewsCorrCoef(task="binary"),
        "accuracy": lambda: torchmetrics.Accuracy(task="multiclass", num_classes=n),
        "f1": lambda: torchmetrics.F1Score(task="binary"),  # positive class 1: paraphrase / duplicate
        "spearman": lambda: torchmetrics.SpearmanCorrCoef(),
        "pearson": lambda: torchmetrics.PearsonCorrCoef(),
    }
    with warnings.catch_warnings():  # Spearman's "keeps all predictions in memory": dev sets are small
        warnings.filterwarnings("ignore", message=r".*will save all targets and predictions.*")
        return torchmetrics.MetricCollection({m: make[m]() for m in spec.metrics}, compute_groups=False)


def layerwise_param_groups(model: nn.Module, lr: float, decay: float, num_layers: int, weight_decay: float,
                           official: bool = False) -> list[dict[str, Any]]:
    """AdamW groups: encoder layer k of L (1-based) at lr * decay^(L - k), embeddings at lr * decay^L, the head at lr.

    `official` reproduces google-research/electra's `_get_layer_lrs` (lr * decay^(L + 2 - depth), head at depth
    L + 2): every backbone exponent grows by 2, so the top layer gets lr * decay^2 and the embeddings decay^(L+2).
    Parameters are expected under `backbone.` (the ElectraModel) and anywhere else for the head.
    """
    shift = 2 if official else 0
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
    whole: their heads are dropped). Missing or mis-shaped weights are an error, not a silent random init."""
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the per-load report lists the dropped pre-training head: expected
    hf_logging.disable_progress_bar()
    try:
        model, info = ElectraModel.from_pretrained(str(backbone_dir), output_loading_info=True)
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

    def __init__(self, backbone_dir: Union[str, Path], task: Union[str, GlueTask], cfg: FinetuneConfig,
                 dev_splits: Optional[Sequence[str]] = None):
        super().__init__()
        self.task = get_task(task)
        self.dev_splits = list(dev_splits or self.task.dev_splits)
        self.cfg = cfg
        self.backbone = load_backbone(backbone_dir)
        self.backbone.train()  # from_pretrained returns eval mode, and Lightning keeps it: no dropout in training
        conf = self.backbone.config
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(conf.hidden_size, self.task.num_labels)
        if cfg.head_init == "glorot":  # tf.layers.dense's default, which the official classifier uses
            nn.init.xavier_uniform_(self.head.weight)
        else:
            nn.init.normal_(self.head.weight, std=conf.initializer_range)
        nn.init.zeros_(self.head.bias)
        # One collection per dev split (MNLI: matched, mismatched), indexed by the dataloader.
        self.dev_metrics = nn.ModuleList([build_metrics(self.task) for _ in self.dev_splits])
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
        c = self.cfg
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


def glue_optimizer(groups: list[dict[str, Any]], cfg: FinetuneConfig, trainer: L.Trainer) -> dict[str, Any]:
    """The fine-tuning optimiser over the layer-wise groups (lightning_electra/optim.py: the official one unless
    finetune.adam_bias_correction), warm-up and linear decay over the fit's optimizer steps."""
    optimizer = build_optimizer(groups, cfg.lr, cfg.adam_eps, bias_correction=cfg.adam_bias_correction)
    total = max(1, int(trainer.estimated_stepping_batches))
    schedule = warmup_linear_decay(total, cfg.warmup_fraction, overlap=cfg.warmup_overlaps_decay)
    return {"optimizer": optimizer, "lr_scheduler": lr_schedule(optimizer, schedule)}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
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


_ENCODED: dict[tuple, GlueDataset] = {}
_VOCAB_KEYS: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()  # sorting 30k entries: once each


def vocab_key(tokenizer: Any) -> int:
    """Equal vocabularies encode alike, whichever tokenizer object holds them."""
    if tokenizer not in _VOCAB_KEYS:
        _VOCAB_KEYS[tokenizer] = hash(tuple(sorted(tokenizer.get_vocab().items())))
    return _VOCAB_KEYS[tokenizer]


def encoded(data_dir, spec: GlueTask, split: str, cap: Optional[int], source: str, tokenizer: Any,
            max_seq_length: int, both_orders_: bool = False, unit_targets_: bool = False) -> GlueDataset:
    """A tokenised split, kept for the process: a sweep fine-tunes the same split for every seed and checkpoint.
    A cap picks examples (pairs), then `both_orders_` doubles them and `unit_targets_` rescales regression scores."""
    key = (str(data_dir), spec.name, split, cap, source, vocab_key(tokenizer), max_seq_length, both_orders_,
           unit_targets_)
    if key not in _ENCODED:
        if len(_ENCODED) >= 32:  # bounded: a sweep touches a handful of (task, split) pairs
            _ENCODED.pop(next(iter(_ENCODED)))
        examples = load_examples(data_dir, spec, split, cap, source=source)
        examples = both_orders(examples) if both_orders_ else examples
        examples = unit_targets(spec, examples) if unit_targets_ else examples
        _ENCODED[key] = GlueDataset(examples, tokenizer, max_seq_length, spec.is_regression)
    return _ENCODED[key]


def glue_trainer(cfg: FinetuneConfig, task: GlueTask, accelerator: str = "auto", devices: Union[int, str] = 1,
                 progress_bar: bool = False) -> L.Trainer:
    """The protocol's Trainer: the task's epochs, clipping at 1.0, no logger or checkpoints (a fine-tune reports its
    dev metrics, nothing else)."""
    return L.Trainer(accelerator=accelerator, devices=devices, max_epochs=cfg.task_epochs.get(task.name, cfg.epochs),
                     precision=cfg.precision, gradient_clip_val=1.0, logger=False, enable_checkpointing=False,
                     enable_progress_bar=progress_bar, enable_model_summary=False, num_sanity_val_steps=0)


def task_splits(data_dir, spec: GlueTask, cfg: FinetuneConfig, tokenizer: Any, source: str) -> dict[str, GlueDataset]:
    """A task's tokenised train split and the dev splits it reports on, by name (train first). Extra dev splits
    (MNLI mismatched) are reported when their file is there; "dev" itself is required."""
    splits = [s for s in spec.dev_splits if s == "dev" or source != "files" or task_file(data_dir, spec, s).is_file()]
    return {split: encoded(data_dir, spec, split, cfg.max_train_examples if split == "train" else cfg.max_eval_examples,
                           source, tokenizer, cfg.max_seq_length,
                           both_orders_=split == "train" and cfg.double_unordered and spec.unordered,
                           unit_targets_=cfg.scale_regression_targets and spec.target_range is not None)
            for split in ["train", *splits]}


def finetune_task(backbone_dir: Union[str, Path], task: Union[str, GlueTask], data_dir: Union[str, Path],
                  cfg: FinetuneConfig, tokenizer: Any, seed: int, accelerator: str = "auto",
                  devices: Union[int, str] = 1, source: str = "files",
                  progress_bar: bool = False) -> dict[str, float]:
    """Fine-tune one task from one backbone with one seed; dev metrics (0-100), the main one also under "score".

    `tokenizer` is a transformers tokenizer, or a vocab.txt path to build one from. MNLI also reports
    mismatched accuracy as "accuracy_mm". No progress bar by default: a sweep runs hundreds of short fine-tunes
    and reports each in one line; a single fine-tune from the command line asks for one.
    """
    spec = get_task(task)
    if isinstance(tokenizer, (str, Path)):
        tokenizer = build_tokenizer(tokenizer)
    check_vocab(backbone_dir, tokenizer)  # before tokenising: a full task takes a while
    with _quiet():
        L.seed_everything(seed, workers=True, verbose=False)
        collate = GlueCollator(tokenizer.pad_token_id)
        data = task_splits(data_dir, spec, cfg, tokenizer, source)
        train, *splits = data

        def loader(split: str, shuffle: bool) -> DataLoader:
            return DataLoader(data[split], batch_size=cfg.batch_size, shuffle=shuffle, collate_fn=collate)

        train = loader(train, shuffle=True)
        dev = [loader(s, shuffle=False) for s in splits]
        model = GlueClassifier(backbone_dir, spec, cfg, dev_splits=splits)
        trainer = glue_trainer(cfg, spec, accelerator, devices, progress_bar)
        trainer.fit(model, train_dataloaders=train)
        trainer.validate(model, dataloaders=dev, verbose=False)
    results = dict(model.dev_results)
    results["score"] = results.get(spec.main_metric, math.nan)
    return results


def finetune_task_seeds(backbone_dir: Union[str, Path], task: Union[str, GlueTask], data_dir: Union[str, Path],
                        cfg: FinetuneConfig, tokenizer: Any, seeds: Sequence[int], accelerator: str = "auto",
                        source: str = "files") -> list[dict[str, float]]:
    """`finetune_task` for several seeds: one after another, or together as one batched ensemble when
    `finetune.batched_seeds` (lightning_electra/ensemble.py). One result dict per seed, in order."""
    if not cfg.batched_seeds or len(seeds) < 2:
        return [finetune_task(backbone_dir, task, data_dir, cfg, tokenizer, seed, accelerator=accelerator,
                              source=source) for seed in seeds]
    from lightning_electra.ensemble import finetune_seeds

    spec = get_task(task)
    if isinstance(tokenizer, (str, Path)):
        tokenizer = build_tokenizer(tokenizer)
    check_vocab(backbone_dir, tokenizer)
    data = task_splits(data_dir, spec, cfg, tokenizer, source)
    splits = list(data)[1:]
    with _quiet():
        return finetune_seeds(backbone_dir, spec, cfg, list(seeds), data["train"], [data[s] for s in splits], splits,
                              tokenizer.pad_token_id, accelerator=accelerator)


__all__ = ["GlueClassifier", "load_backbone", "check_vocab", "build_metrics", "layerwise_param_groups",
           "warmup_linear_decay", "task_splits", "finetune_task", "finetune_task_seeds"]
