"""GLUE for any transformers ELECTRA directory (or hub name): which tokenizer it reads with, its seeds of each task,
the median per task and the GLUE aggregate, as one record (`python -m lightning_electra finetune` writes it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from lightning_electra.config import Config, ConfigError, to_dict
from lightning_electra.data.glue_tasks import available_tasks, get_task
from lightning_electra.finetune import finetune_task_seeds, glue_tasks
from lightning_electra.results import task_seed_scores


def check_local(path: str | None, what: str) -> None:
    """A path that is not there is said so here: transformers would take it for a hub name and object to its form."""
    if path and not Path(path).exists() and (path.startswith(("/", ".", "~")) or path.count("/") > 1):
        raise ConfigError(f"{what} {path}: no such file or directory (a hub name has the form <namespace>/<name>).")


def model_tokenizer(model: str, choice: str | None, cfg: Config) -> tuple[Any, str]:
    """(tokenizer, where it came from): `choice` if given (a vocab.txt or a transformers directory), else the model's
    own tokenizer files, else data.vocab: the suite's step checkpoints are saved without a tokenizer."""
    from transformers import AutoTokenizer

    from lightning_electra.data.files import vocab_path
    from lightning_electra.data.tokenizer import build_tokenizer

    if choice:
        return (build_tokenizer(choice) if Path(choice).is_file() else AutoTokenizer.from_pretrained(choice)), choice
    own = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
    if not Path(model).is_dir() or any((Path(model) / f).is_file() for f in own):  # a hub name, or files beside it
        return AutoTokenizer.from_pretrained(model), model
    vocab = vocab_path(cfg.data)
    return build_tokenizer(vocab), str(vocab)


def finetune_model(model: str, cfg: Config, tokenizer: str | None = None, progress_bar: bool = False,
                   on_seed: Callable[[str, int, dict], None] | None = None) -> dict:
    """GLUE for `model` under `cfg.finetune` (finetune.seeds seeds a task; the median per task, their mean the GLUE
    score): {"model", "tokenizer", "glue", "tasks": {task: {"score", "seeds"}}, "missing_tasks", "finetune"}.
    `on_seed(task, seed, scores)` hears of each fine-tune as it ends."""
    check_local(model, "the model")
    check_local(tokenizer, "--tokenizer")
    ft = cfg.finetune
    tasks = glue_tasks(cfg, announce=True)
    missing = [] if ft.source == "hub" else available_tasks(cfg.data.data_dir, ft.tasks)[1]
    reader, reader_source = model_tokenizer(model, tokenizer, cfg)
    runs = {}
    for task in tasks:
        runs[task] = finetune_task_seeds(model, get_task(task), Path(cfg.data.data_dir), ft, reader, range(ft.seeds),
                                         accelerator=cfg.train.accelerator, source=ft.source,
                                         progress_bar=progress_bar, cache_dir=cfg.data.cache_dir)
        for seed, scores in enumerate(runs[task]):
            if on_seed is not None:
                on_seed(task, seed, scores)
    table = task_seed_scores(runs)
    return {"model": model, "tokenizer": reader_source, "glue": float(table["GLUE"]),
            "tasks": {task: {"score": float(table[task]), "seeds": seeds} for task, seeds in runs.items()},
            "missing_tasks": missing, "finetune": to_dict(cfg)["finetune"]}
