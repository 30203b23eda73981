"""GLUE tasks: read glue_data-style TSV files (or the Hugging Face hub), tokenise pairs, pad batches, score.

Files live at `<data_dir>/glue/<TASK>/{train,dev}.tsv` in the layout written by the old `download_glue_data.py`
(MNLI: `dev_matched.tsv`, plus `dev_mismatched.tsv`). Scores are on a 0-100 scale throughout.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset

from lightning_electra.data.tokenizer import build_tokenizer
from lightning_electra.data.glue_tasks import (TASKS, GlueDataError, GlueTask, available_tasks, get_task, glue_root,
                                               task_file)

Example = tuple[str, Optional[str], Union[int, float]]  # (text_a, text_b, label index or regression target)
SUBSAMPLE_SEED = 0  # capped splits are the same subset for every fine-tuning seed, so seeds differ only in training


def _subsample(examples: list[Example], max_examples: Optional[int]) -> list[Example]:
    # A fixed random subset (kept in file order), not the file's head: CoLA's dev puts the out-of-domain half last,
    # and several train files are sorted by source, so a head would be a biased sample.
    if max_examples is None or len(examples) <= max_examples:
        return examples
    keep = sorted(random.Random(SUBSAMPLE_SEED).sample(range(len(examples)), max_examples))
    return [examples[i] for i in keep]


def _parse_label(spec: GlueTask, raw: str, where: str) -> Union[int, float]:
    raw = raw.strip()
    if spec.labels is None:
        try:
            return float(raw)
        except ValueError:
            raise GlueDataError(f"{where}: the {spec.name} score {raw!r} is not a number.") from None
    if raw not in spec.labels:
        raise GlueDataError(f"{where}: unknown {spec.name} label {raw!r}; expected one of {', '.join(spec.labels)}. "
                            "Is this the glue_data file for this task, and whole (a file cut mid-row ends in a "
                            "partial label)? Restore it from a fresh GLUE download or drop the task from "
                            "finetune.tasks.")
    return spec.labels.index(raw)


@lru_cache(maxsize=8)
def _read_tsv(path: Path, mtime_ns: int, task_name: str) -> tuple[Example, ...]:
    """Every example of one file. Cached per (path, mtime): sweeps read the same files for each seed."""
    spec = TASKS[task_name]
    examples: list[Example] = []
    expected = spec.columns
    # Binary lines split on b"\n" only, and a plain tab split is reading with quoting disabled: fields hold `"`
    # (an unmatched one would make a csv reader swallow the following lines) and could hold a stray "\r".
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError as err:
                raise GlueDataError(f"{path}, line {lineno}: not UTF-8 text ({err}); restore the file from a fresh "
                                    "GLUE download, or drop the task from finetune.tasks.") from None
            if lineno == 1:
                line = line.lstrip("\ufeff")  # MRPC's header starts with a BOM
            if not line:
                continue
            fields = line.split("\t")
            if lineno == 1 and spec.header:
                expected = len(fields)
                continue
            where = f"{path}, line {lineno}"
            if len(fields) != expected:
                raise GlueDataError(
                    f"{where}: expected {expected} tab-separated columns for {spec.name}, found {len(fields)}. The "
                    "row is malformed or the file is truncated; restore the file from a fresh GLUE download "
                    "(download_glue_data.py layout), or drop the task from finetune.tasks.")
            text_b = fields[spec.text_b] if spec.text_b is not None else None
            examples.append((fields[spec.text_a], text_b, _parse_label(spec, fields[spec.label], where)))
    return tuple(examples)


def _load_hub(spec: GlueTask, split: str) -> list[Example]:
    try:
        import datasets
    except ImportError:
        raise GlueDataError("source='hub' needs the `datasets` package (pip install datasets); or read local files "
                            "with source='files' and DATA_DIR pointing at a folder holding glue/<TASK>/.") from None
    task_file(".", spec, split)  # rejects a split the task does not have
    hub_split = {"train": "train", "dev": "validation_matched" if spec.extra_dev else "validation",
                 "dev_mismatched": "validation_mismatched"}[split]
    try:
        ds = datasets.load_dataset("nyu-mll/glue", spec.hub_config, split=hub_split)
    except Exception as err:  # network, cache and hub errors all mean the same thing to the caller
        raise GlueDataError(f"Could not load nyu-mll/glue ({spec.hub_config}, {hub_split}) from the Hugging Face hub: "
                            f"{type(err).__name__}: {err}. It needs network access or a filled HF cache; offline, use "
                            "source='files' with DATA_DIR pointing at a folder holding glue/<TASK>/.") from None
    col_a, col_b = spec.hub_columns
    names = getattr(ds.features["label"], "names", None)
    out: list[Example] = []
    for row in ds:
        if spec.labels is None:
            label: Union[int, float] = float(row["label"])
        else:  # the hub's ClassLabel order differs from glue_data's for MNLI; map through the names
            name = names[row["label"]] if names else str(row["label"])
            label = spec.labels.index(name) if name in spec.labels else int(row["label"])
        out.append((row[col_a], row[col_b] if col_b else None, label))
    return out


def load_examples(data_dir: Union[str, Path], task: Union[str, GlueTask], split: str,
                  max_examples: Optional[int] = None, source: str = "files") -> list[Example]:
    """(text_a, text_b or None, label) for one split ("train", "dev"; MNLI also "dev_mismatched").

    Labels are indices into the task's `labels` (regression: the float score). With `max_examples`, a fixed random
    subset of that size, the same for every call.
    """
    spec = get_task(task)
    if source == "hub":
        return _subsample(_load_hub(spec, split), max_examples)
    if source != "files":
        raise GlueDataError(f"Unknown GLUE source '{source}'; use 'files' or 'hub'.")
    path = task_file(data_dir, spec, split).resolve()
    if not path.is_file():
        raise GlueDataError(f"GLUE file {path} not found ({spec.name} {split}). DATA_DIR (now '{data_dir}') should "
                            "point at a folder holding glue/<TASK>/train.tsv and dev.tsv (e.g. "
                            f"DATA_DIR=../shared/data), or drop {spec.name} from finetune.tasks.")
    return _subsample(list(_read_tsv(path, path.stat().st_mtime_ns, spec.name)), max_examples)


def both_orders(examples: list[Example]) -> list[Example]:
    """The examples, then each again with its sentences swapped (official `double_unordered`, for MRPC and STS-B)."""
    return examples + [(b, a, label) for a, b, label in examples]


def unit_targets(spec: GlueTask, examples: list[Example]) -> list[Example]:
    """Regression scores mapped onto [0, 1] as the official reader does ((score - min) / max; STS-B: score / 5)."""
    low, high = spec.target_range or (0.0, 1.0)
    return [(a, b, (label - low) / high) for a, b, label in examples]


# ----------------------------------------------------------------------------------------------- tokenisation


class GlueDataset(Dataset):
    """Pre-tokenised examples: [CLS] a [SEP] (b [SEP]), truncated longest-first to max_seq_length."""

    def __init__(self, examples: Sequence[Example], tokenizer: Any, max_seq_length: int, regression: bool):
        a = [e[0] for e in examples]
        b = [e[1] for e in examples]
        enc = tokenizer(a, b if all(x is not None for x in b) else None, truncation=True,
                        max_length=max_seq_length, return_attention_mask=False)
        self.input_ids: list[list[int]] = enc["input_ids"]
        self.token_type_ids: list[list[int]] = enc["token_type_ids"]
        self.labels = torch.tensor([e[2] for e in examples], dtype=torch.float32 if regression else torch.long)

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> tuple[list[int], list[int], torch.Tensor]:
        return self.input_ids[i], self.token_type_ids[i], self.labels[i]


@dataclass
class GlueCollator:
    """Pads a batch to its longest sequence (not max_seq_length): most GLUE pairs are far shorter than 128."""

    pad_id: int = 0

    def __call__(self, batch: list[tuple[list[int], list[int], torch.Tensor]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids, _, _ in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        types = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (i, t, _) in enumerate(batch):
            ids[row, : len(i)] = torch.tensor(i)
            types[row, : len(t)] = torch.tensor(t)
            mask[row, : len(i)] = 1
        labels = torch.stack([lab for _, _, lab in batch])
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}


__all__ = ["GlueTask", "TASKS", "GlueDataError", "Example", "get_task", "glue_root", "task_file", "available_tasks",
           "load_examples", "both_orders", "unit_targets", "build_tokenizer", "GlueDataset", "GlueCollator"]
