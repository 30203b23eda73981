"""The GLUE tasks as data: file layout, columns, labels, metrics, and reading the files (or the hub). No torch here,
so a sweep checks every file it will read before the heavy imports (lightning_electra/data/glue.py tokenises).

Files live at `<data_dir>/glue/<TASK>/{train,dev}.tsv` in the layout written by the old `download_glue_data.py`
(MNLI: `dev_matched.tsv`, plus `dev_mismatched.tsv`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Union

from lightning_electra.config import ConfigError
from lightning_electra.errors import SuiteError
from lightning_electra.log import logger

log = logger("finetune")


class GlueDataError(SuiteError, ValueError):
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
    unordered: bool = False  # the sentence order carries no meaning (the official double_unordered doubles these)
    target_range: Optional[tuple[float, float]] = None  # regression: the scores' range (the official reader's)

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
    GlueTask("MRPC", 3, 4, 0, True, _BIN, ("accuracy", "f1"), "accuracy", "mrpc", ("sentence1", "sentence2"),
             unordered=True),
    GlueTask("STS-B", 7, 8, -1, True, None, ("spearman", "pearson"), "spearman", "stsb",
             ("sentence1", "sentence2"), unordered=True, target_range=(0.0, 5.0)),
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


def task_file(data_dir: Union[str, Path], spec: GlueTask, split: str) -> Path:
    if split not in ("train",) + spec.dev_splits:
        raise GlueDataError(f"Unknown split '{split}' for {spec.name}; use one of train, {', '.join(spec.dev_splits)}.")
    return glue_root(data_dir) / spec.name / (spec.dev_file if split == "dev" else f"{split}.tsv")


def reported_dev_splits(data_dir: Union[str, Path], spec: GlueTask, source: str = "files") -> list[str]:
    """The dev splits a fine-tune reports on: "dev" always (a missing file is an error where it is read), the extra
    ones (MNLI mismatched) when their file is there (from the hub: always)."""
    return [s for s in spec.dev_splits if s == "dev" or source != "files" or task_file(data_dir, spec, s).is_file()]


def available_tasks(data_dir: Union[str, Path], tasks: Sequence[str]) -> tuple[list[str], list[str]]:
    """(usable, missing): a task is usable when its train and dev files both exist. Missing ones are not errors:
    offline copies of GLUE often lack the big files (MNLI, QQP, QNLI train)."""
    usable, missing = [], []
    for name in tasks:
        spec = get_task(name)
        ok = all(task_file(data_dir, spec, s).is_file() for s in ("train", "dev"))
        (usable if ok else missing).append(spec.name)
    return usable, missing


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
            if expected is None or (lineno == 1 and spec.header):
                expected = len(fields)
                needed = max(i + 1 if i >= 0 else -i for i in (spec.text_a, spec.text_b, spec.label) if i is not None)
                if expected < needed:  # e.g. the label column missing from header and rows alike
                    raise GlueDataError(f"{path}: {expected} tab-separated column(s), but {spec.name} reads {needed} "
                                        "(text, its pair and the label): is this the task's glue_data file, whole? "
                                        "Restore it from a fresh GLUE download (download_glue_data.py layout), or "
                                        "drop the task from finetune.tasks.")
                if spec.header:
                    continue
            where = f"{path}, line {lineno}"
            if len(fields) != expected:
                raise GlueDataError(
                    f"{where}: expected {expected} tab-separated columns for {spec.name}, found {len(fields)}. The "
                    "row is malformed or the file is truncated; restore the file from a fresh GLUE download "
                    "(download_glue_data.py layout), or drop the task from finetune.tasks.")
            text_b = fields[spec.text_b] if spec.text_b is not None else None
            examples.append((fields[spec.text_a], text_b, _parse_label(spec, fields[spec.label], where)))
    if not examples:
        raise GlueDataError(f"{path} holds no {spec.name} examples (an empty file, or a header alone). Restore it "
                            "from a fresh GLUE download, or drop the task from finetune.tasks.")
    return tuple(examples)


GLUE_HUB = "nyu-mll/glue"


def hub_split_of(spec: GlueTask, split: str) -> str:
    """The hub's name of a split: validation for dev; MNLI's dev is validation_matched."""
    task_file(".", spec, split)  # rejects a split the task does not have
    return {"train": "train", "dev": "validation_matched" if spec.extra_dev else "validation",
            "dev_mismatched": "validation_mismatched"}[split]


def _load_hub(spec: GlueTask, split: str) -> list[Example]:
    try:
        import datasets
    except ImportError:
        raise GlueDataError("source='hub' needs the `datasets` package (pip install datasets); or read local files "
                            "with source='files' and DATA_DIR pointing at a folder holding glue/<TASK>/.") from None
    hub_split = hub_split_of(spec, split)
    try:
        ds = datasets.load_dataset(GLUE_HUB, spec.hub_config, split=hub_split)
    except Exception as err:  # network, cache and hub errors all mean the same thing to the caller
        raise GlueDataError(f"Could not load {GLUE_HUB} ({spec.hub_config}, {hub_split}) from the Hugging Face hub: "
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


def load_examples(data_dir: Union[str, Path], spec: GlueTask, split: str,
                  max_examples: Optional[int] = None, source: str = "files") -> list[Example]:
    """(text_a, text_b or None, label) for one split ("train", "dev"; MNLI also "dev_mismatched").

    Labels are indices into the task's `labels` (regression: the float score). With `max_examples`, a fixed random
    subset of that size, the same for every call.
    """
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


def glue_tasks(cfg, announce: bool = False) -> list[str]:
    """The tasks of finetune.tasks to fine-tune: all from the hub; from files, those with train and dev files. None at
    all is an error (else a run would pre-train, then write an empty table); `announce` names those left out."""
    if cfg.finetune.source == "hub":
        return list(cfg.finetune.tasks)
    root = glue_root(cfg.data.data_dir)
    tasks, missing = available_tasks(cfg.data.data_dir, cfg.finetune.tasks)
    if cfg.finetune.tasks and not tasks:
        raise ConfigError(f"None of the GLUE tasks in finetune.tasks ({', '.join(cfg.finetune.tasks)}) has train "
                          f"and dev files under {root}. Set DATA_DIR to a folder holding glue/<TASK>/train.tsv and "
                          "dev.tsv (e.g. DATA_DIR=../shared/data), or use finetune.source=hub (online).")
    if missing and announce:
        log.info(f"skipping GLUE tasks without train and dev files under {root}: {', '.join(missing)}")
    return tasks
