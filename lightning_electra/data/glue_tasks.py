"""The GLUE tasks as data: file layout, columns, labels, metrics. No torch here, so configs are checked against it
before the heavy imports (lightning_electra/data/glue.py reads and tokenises the files).

Files live at `<data_dir>/glue/<TASK>/{train,dev}.tsv` in the layout written by the old `download_glue_data.py`
(MNLI: `dev_matched.tsv`, plus `dev_mismatched.tsv`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union


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
