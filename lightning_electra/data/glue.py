"""GLUE tasks: read glue_data-style TSV files (or the Hugging Face hub), tokenise pairs, pad batches, score.

Files live at `<data_dir>/glue/<TASK>/{train,dev}.tsv` in the layout written by the old `download_glue_data.py`
(MNLI: `dev_matched.tsv`, plus `dev_mismatched.tsv`). Scores are on a 0-100 scale throughout.
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset

Example = tuple[str, Optional[str], Union[int, float]]  # (text_a, text_b, label index or regression target)
SUBSAMPLE_SEED = 0  # capped splits are the same subset for every fine-tuning seed, so seeds differ only in training


class GlueDataError(ValueError):
    """A GLUE file that is missing or cannot be read, with where and what to do about it."""


@dataclass(frozen=True)
class GlueTask:
    name: str
    text_a: int  # column indices; -1 counts from the end (MNLI's dev has more label columns than train)
    text_b: Optional[int]
    label: int
    header: bool
    labels: Optional[tuple[str, ...]]  # None: regression
    metrics: tuple[str, ...]
    main_metric: str
    hub_config: str
    hub_columns: tuple[str, Optional[str]]
    columns: Optional[int] = None  # expected column count without a header; with one, the header's count
    dev_file: str = "dev.tsv"
    extra_dev: tuple[str, ...] = ()  # more dev splits reported beside "dev" (MNLI mismatched)
    scored: bool = True  # counts towards the GLUE score (WNLI does not)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def dev_splits(self) -> tuple[str, ...]:
        return ("dev",) + self.extra_dev


_BIN = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
TASKS: dict[str, GlueTask] = {t.name: t for t in [
    GlueTask("CoLA", 3, None, 1, False, _BIN, ("mcc",), "mcc", "cola", ("sentence", None), columns=4),
    GlueTask("SST-2", 0, None, 1, True, _BIN, ("accuracy",), "accuracy", "sst2", ("sentence", None)),
    GlueTask("MRPC", 3, 4, 0, True, _BIN, ("accuracy", "f1"), "accuracy", "mrpc", ("sentence1", "sentence2")),
    GlueTask("STS-B", 7, 8, -1, True, None, ("spearman", "pearson"), "spearman", "stsb",
             ("sentence1", "sentence2")),
    GlueTask("QQP", 3, 4, 5, True, _BIN, ("accuracy", "f1"), "accuracy", "qqp", ("question1", "question2")),
    GlueTask("MNLI", 8, 9, -1, True, ("contradiction", "entailment", "neutral"), ("accuracy",), "accuracy", "mnli",
             ("premise", "hypothesis"), dev_file="dev_matched.tsv", extra_dev=("dev_mismatched",)),
    GlueTask("QNLI", 1, 2, 3, True, _NLI2, ("accuracy",), "accuracy", "qnli", ("question", "sentence")),
    GlueTask("RTE", 1, 2, 3, True, _NLI2, ("accuracy",), "accuracy", "rte", ("sentence1", "sentence2")),
    GlueTask("WNLI", 1, 2, 3, True, _BIN, ("accuracy",), "accuracy", "wnli", ("sentence1", "sentence2"),
             scored=False),
]}
_ALIASES = {name.lower().replace("-", ""): name for name in TASKS}


def get_task(task: Union[str, GlueTask]) -> GlueTask:
    """A task spec by name; case and dashes are forgiven (sst2, sts-b, mnli)."""
    if isinstance(task, GlueTask):
        return task
    name = _ALIASES.get(task.lower().replace("-", "").replace("_", ""))
    if name is None:
        raise GlueDataError(f"Unknown GLUE task '{task}'. Known: {', '.join(TASKS)}.")
    return TASKS[name]


def glue_root(data_dir: Union[str, Path]) -> Path:
    """`<data_dir>/glue`, or data_dir itself when it already is a glue_data folder (task folders directly inside)."""
    root = Path(data_dir).expanduser()
    if not (root / "glue").is_dir() and any((root / t).is_dir() for t in TASKS):
        return root
    return root / "glue"


def task_file(data_dir: Union[str, Path], task: Union[str, GlueTask], split: str) -> Path:
    spec = get_task(task)
    if split not in ("train",) + spec.dev_splits:
        raise GlueDataError(f"Unknown split '{split}' for {spec.name}; use one of train, {', '.join(spec.dev_splits)}.")
    return glue_root(data_dir) / spec.name / (spec.dev_file if split == "dev" else f"{split}.tsv")


def available_tasks(data_dir: Union[str, Path], tasks: Sequence[str]) -> tuple[list[str], list[str]]:
    """(usable, missing): a task is usable when its train and dev files both exist. Missing ones are not errors:
    offline copies of GLUE often lack the big files (MNLI, QQP, QNLI train)."""
    usable, missing = [], []
    for name in tasks:
        spec = get_task(name)
        ok = all(task_file(data_dir, spec, s).is_file() for s in ("train", "dev"))
        (usable if ok else missing).append(spec.name)
    return usable, missing


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


# ----------------------------------------------------------------------------------------------- tokenisation


def build_tokenizer(vocab_path: Union[str, Path], tokenizer_class: Any = None, **kwargs: Any) -> Any:
    """An uncased WordPiece tokenizer from a vocab.txt: `BertTokenizerFast`, or `tokenizer_class` (export writes
    ElectraTokenizerFast, what AutoTokenizer gives back for ELECTRA); kwargs go to its constructor."""
    from transformers import BertTokenizerFast

    from lightning_electra.data.tokenizer import read_vocab

    tokenizer_class = tokenizer_class or BertTokenizerFast
    vocab = read_vocab(Path(vocab_path))
    # transformers 5 takes `vocab` and silently ignores `vocab_file` (leaving a 5-token vocabulary); 4.x wants
    # `vocab_file`.
    if "vocab" in inspect.signature(tokenizer_class.__init__).parameters:
        tok = tokenizer_class(vocab=vocab, do_lower_case=True, **kwargs)
    else:
        tok = tokenizer_class(vocab_file=str(vocab_path), do_lower_case=True, **kwargs)
    if len(tok) != len(vocab) or tok.cls_token_id != vocab["[CLS]"]:
        raise GlueDataError(f"Tokenizer built from {vocab_path} has {len(tok)} tokens ([CLS]={tok.cls_token_id}), "
                            f"the file {len(vocab)} ([CLS]={vocab['[CLS]']}); check the transformers version.")
    return tok


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
           "load_examples", "build_tokenizer", "GlueDataset", "GlueCollator"]
