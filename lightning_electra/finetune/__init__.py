"""GLUE fine-tuning: one entry point for a task's seeds, one by one or as one batched ensemble, and the aggregate.

    classifier.py  the classifier, its optimiser and metrics, the protocol's Trainer
    ensemble.py    a task's seeds trained together through vmap (finetune.batched_seeds)
    data.py        which tasks, their tokenised splits, and the batches a fine-tune draws
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import lightning as L
from lightning_electra.config import FinetuneConfig
from lightning_electra.data.glue_tasks import GlueTask, glue_tasks
from lightning_electra.data.tokenizer import build_tokenizer
from lightning_electra.finetune.classifier import (GlueClassifier, build_metrics, check_vocab, glue_trainer,
                                                   layerwise_param_groups, load_backbone, quiet, with_score)
from lightning_electra.finetune.data import encoded, eval_loader, task_splits, train_loader
from lightning_electra.finetune.ensemble import finetune_seeds
from lightning_electra.optim import warmup_linear_decay


def finetune_task(backbone_dir: Union[str, Path], task: GlueTask, data_dir: Union[str, Path],
                  ft: FinetuneConfig, tokenizer: Any, seed: int, accelerator: str = "auto",
                  devices: Union[int, str] = 1, source: str = "files",
                  progress_bar: bool = False) -> dict[str, float]:
    """Fine-tune one task from one backbone with one seed; dev metrics (0-100), the main one also under "score".

    `tokenizer` is a transformers tokenizer, or a vocab.txt path to build one from. MNLI also reports
    mismatched accuracy as "accuracy_mm". No progress bar by default: a sweep runs hundreds of short fine-tunes
    and reports each in one line; a single fine-tune from the command line asks for one.
    """
    return finetune_task_seeds(backbone_dir, task, data_dir, ft, tokenizer, [seed], accelerator, source, devices,
                               progress_bar)[0]


def finetune_task_seeds(backbone_dir: Union[str, Path], task: GlueTask, data_dir: Union[str, Path],
                        ft: FinetuneConfig, tokenizer: Any, seeds: Sequence[int], accelerator: str = "auto",
                        source: str = "files", devices: Union[int, str] = 1, progress_bar: bool = False,
                        cache_dir: Optional[Union[str, Path]] = None) -> list[dict[str, float]]:
    """A task's fine-tunes for several seeds: one after another, or together as one batched ensemble when
    `finetune.batched_seeds` (ensemble.py). One result dict per seed, in order. `cache_dir` keeps the tokenised
    splits on disk (data.cache_dir)."""
    spec = task
    if isinstance(tokenizer, (str, Path)):
        tokenizer = build_tokenizer(tokenizer)
    check_vocab(backbone_dir, tokenizer)  # before tokenising: a full task takes a while
    data = task_splits(data_dir, spec, ft, tokenizer, source, cache_dir)
    train, *splits = data
    with quiet():
        if ft.batched_seeds and len(seeds) > 1:
            return finetune_seeds(backbone_dir, spec, ft, list(seeds), data[train], [data[s] for s in splits],
                                  splits, tokenizer.pad_token_id, accelerator, devices, progress_bar)
        return [train_one(backbone_dir, spec, ft, seed, data, tokenizer.pad_token_id, accelerator, devices,
                          progress_bar) for seed in seeds]


def train_one(backbone_dir, spec: GlueTask, ft: FinetuneConfig, seed: int, data: dict, pad_id: int,
              accelerator: str, devices: Union[int, str], progress_bar: bool) -> dict[str, float]:
    """One seed's fine-tune on the task's splits (`data`: train first, then the dev splits)."""
    L.seed_everything(seed, workers=True, verbose=False)
    train, *splits = data
    model = GlueClassifier(backbone_dir, spec, ft, dev_splits=splits)
    trainer = glue_trainer(ft, spec, accelerator, devices, progress_bar)
    trainer.fit(model, train_dataloaders=train_loader(data[train], ft, pad_id))
    trainer.validate(model, dataloaders=[eval_loader(data[s], ft, pad_id) for s in splits], verbose=False)
    return with_score(model.dev_results, spec)


__all__ = ["GlueClassifier", "load_backbone", "check_vocab", "build_metrics", "layerwise_param_groups",
           "warmup_linear_decay", "encoded", "glue_tasks", "task_splits", "finetune_task", "finetune_task_seeds"]
