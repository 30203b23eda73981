"""GLUE data for fine-tuning: each task's splits tokenised once per process."""

from __future__ import annotations

import weakref
from typing import Any, Optional

from lightning_electra.config import FinetuneConfig
from lightning_electra.data.glue import GlueDataset, both_orders, load_examples, unit_targets
from lightning_electra.data.glue_tasks import GlueTask, task_file

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


def task_splits(data_dir, spec: GlueTask, cfg: FinetuneConfig, tokenizer: Any, source: str) -> dict[str, GlueDataset]:
    """A task's tokenised train split and the dev splits it reports on, by name (train first). Extra dev splits
    (MNLI mismatched) are reported when their file is there; "dev" itself is required."""
    splits = [s for s in spec.dev_splits if s == "dev" or source != "files" or task_file(data_dir, spec, s).is_file()]
    return {split: encoded(data_dir, spec, split, cfg.max_train_examples if split == "train" else cfg.max_eval_examples,
                           source, tokenizer, cfg.max_seq_length,
                           both_orders_=split == "train" and cfg.double_unordered and spec.unordered,
                           unit_targets_=cfg.scale_regression_targets and spec.target_range is not None)
            for split in ["train", *splits]}
