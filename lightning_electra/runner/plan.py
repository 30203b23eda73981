"""A sweep's plan: what each run will do (steps, FLOPs, checkpoints, fine-tunes), from its config and the vocabulary
alone, in seconds: no training, no data read."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lightning_electra.config import Config, ConfigError
from lightning_electra.data.corpus import text_bytes
from lightning_electra.data.datamodule import cache_key
from lightning_electra.data.files import corpus_files, corpus_sources, vocab_path
from lightning_electra.data.glue_tasks import available_tasks, glue_root
from lightning_electra.log import logger
from lightning_electra.objectives import objective
from lightning_electra.runner.pretrain import budget
from lightning_electra.runner.resolved import ResolvedRun

log = logger("plan")

PLAN_COLUMNS = ["run", "variant", "generator", "tie", "steps", "batch_size", "paper_flops", "passes", "checkpoints",
                "tasks", "seeds", "finetunes"]
# Text bytes a packed example holds per token slot, measured: wiki-train-00's 99,374,996 bytes packed into 121,654
# examples of 128 (wiki-uncased-8k, the official packing's 61% of the text kept), 6.4 bytes a slot
TEXT_BYTES_PER_SLOT = 6.4
TOO_MANY_PASSES = 10  # the paper read its 3.3B tokens ~5 times (Small) to ~30 (Base); far beyond: memorisation


def corpus_examples(cfg: Config) -> tuple[float | None, bool]:
    """(How many examples the corpus packs into, whether that is exact): the packed cache's count when the corpus was
    packed with these settings, else an estimate from the text's size; None for a hub corpus or missing files."""
    try:
        cache = Path(cfg.data.cache_dir) / "packed" / cache_key(cfg.data, vocab_path(cfg.data)) / "meta.json"
        if cache.is_file():
            return json.loads(cache.read_text())["examples"], True
        if any(source.startswith("hub:") for source in corpus_sources(cfg.data)):
            return None, False
        size = sum(text_bytes(path) for path in corpus_files(cfg.data))
    except (ConfigError, OSError):
        return None, False
    size = min(size, cfg.data.max_corpus_bytes or size)
    return size / (TEXT_BYTES_PER_SLOT * cfg.data.max_seq_length), False


def corpus_passes(cfg: Config, steps: int) -> tuple[float | None, bool]:
    """(How many times pre-training reads its corpus, whether exact): `steps` batches of examples over the corpus."""
    examples, exact = corpus_examples(cfg)
    return (None, exact) if not examples else (steps * cfg.train.batch_size / examples, exact)


def plan_rows(configs: list[Config], budgets: list[dict]) -> list[dict]:
    """What each run will do, from its config and its budget (runner.pretrain.budget: no training, no data read)."""
    rows = []
    for cfg, b in zip(configs, budgets):
        files = cfg.finetune.source == "files" and glue_root(cfg.data.data_dir).is_dir()
        tasks = available_tasks(cfg.data.data_dir, cfg.finetune.tasks)[0] if files else list(cfg.finetune.tasks)
        width = objective(cfg.variant).generator_width(cfg)
        passes, exact = corpus_passes(cfg, b["steps"])
        rows.append({"run": cfg.name, "variant": cfg.variant,
                     "generator": "-" if width is None else cfg.model.generator if width == 0 else width,
                     "tie": "-" if width is None else cfg.model.tie, "steps": b["steps"], "batch_size": cfg.train.batch_size,
                     "paper_flops": b["paper_flops"],
                     "passes": None if passes is None else passes if exact else f"~{passes:.3g}",
                     "checkpoints": " ".join(map(str, b["checkpoints"])),
                     "tasks": ",".join(tasks), "seeds": cfg.finetune.seeds,
                     "finetunes": len(b["checkpoints"]) * len(tasks) * cfg.finetune.seeds})
    return rows


TIME_COLUMNS = ["pretrain_min", "glue_min"]


def add_times(rows: list[dict], configs: list[Config], budgets: list[dict]) -> None:
    """Each row's estimated pre-training and GLUE minutes on the device at hand (runner.rates: measured, cached)."""
    from lightning_electra.runner.rates import Rates, estimate

    rates: dict[str, Rates] = {}  # one cache file per cache directory, read once
    for row, cfg, b in zip(rows, configs, budgets):
        if cfg.data.cache_dir not in rates:
            rates[cfg.data.cache_dir] = Rates(cfg.data.cache_dir)
        e = estimate(cfg, b, rates[cfg.data.cache_dir])
        row["pretrain_min"] = e["pretrain_s"] / 60
        row["glue_min"] = None if e["glue_s"] is None else e["glue_s"] / 60


def contention(parallel: int) -> float:
    """How much slower each of `parallel` runs sharing this machine goes than one alone: on a CPU, the cores they
    ask for (torch's threads each) over the cores there are; on a GPU, a run alone leaves it idle part of a step, so
    `parallel` runs share it as if each took the whole of it (a bound: MPS overlaps their kernels better)."""
    import torch

    from lightning_electra.provenance import usable_cores

    if torch.cuda.is_available():
        return float(parallel)
    return max(1.0, parallel * min(torch.get_num_threads(), usable_cores()) / usable_cores())


def makespan(minutes: list[float], parallel: int, slowdown: float) -> float:
    """Longest-first onto the least loaded of `parallel` lanes, each run `slowdown` times its time alone."""
    lanes = [0.0] * parallel
    for m in sorted(minutes, reverse=True):
        lanes[lanes.index(min(lanes))] += m * slowdown
    return max(lanes)


def pieces(names: list[str], minutes: list[float], budget_minutes: float, parallel: int = 1,
           slowdown: float = 1.0) -> tuple[list[list[str]], list[str]]:
    """Runs grouped into commands that each take at most `budget_minutes` with `parallel` runs at once (first fit,
    longest first), and those that do not fit one command on their own."""
    groups: list[list[tuple[str, float]]] = []
    alone = []

    def fits(group: list[tuple[str, float]]) -> bool:
        return makespan([m for _, m in group], parallel, slowdown) <= budget_minutes

    for name, m in sorted(zip(names, minutes), key=lambda nm: -nm[1]):
        if not fits([(name, m)]):
            alone.append(name)
            continue
        fit = next((g for g in groups if fits([*g, (name, m)])), None)
        if fit is None:
            groups.append([(name, m)])
        else:
            fit.append((name, m))
    order = {n: i for i, n in enumerate(names)}
    return [sorted((n for n, _ in g), key=order.get) for g in groups], alone


def print_plan(sweep: str, runs: list[ResolvedRun], style: str, times: bool = True, parallel: int = 1,
               budget_minutes: float | None = None) -> None:
    configs = [run.cfg for run in runs]
    budgets = [budget(cfg) for cfg in configs]
    rows = plan_rows(configs, budgets)
    if times:
        add_times(rows, configs, budgets)
    frame = pd.DataFrame(rows, columns=PLAN_COLUMNS + (TIME_COLUMNS if times else []))
    if style == "csv":
        print(frame.to_csv(index=False), end="")
        return
    if not configs:
        log.info(f"{sweep}: nothing to run, every run asked for is finished")
        return
    cfg = configs[0]
    root = glue_root(cfg.data.data_dir)
    where = ("GLUE from the hub" if cfg.finetune.source == "hub" else f"the GLUE tasks with files under {root}"
             if root.is_dir() else f"no GLUE files under {root} (set DATA_DIR): every task of finetune.tasks listed")
    log.info(f"{sweep} at scale {cfg.scale}: {len(rows)} runs; {where}")
    shown = frame.assign(paper_flops=frame["paper_flops"].map(lambda f: f"{f:.3g}"),
                         steps=frame["steps"].map(lambda n: f"{n:,}"),
                         passes=frame["passes"].map(lambda p: "?" if p is None else p if isinstance(p, str)
                                                    else f"{p:.3g}"))
    for column in TIME_COLUMNS if times else []:
        shown[column] = frame[column].map(lambda m: "?" if m is None or m != m else f"{m:.1f}")
    print(shown.to_string(index=False))
    log.info(f"total: {frame['steps'].sum():,} steps, {frame['paper_flops'].sum():.3g} paper FLOPs, "
             f"{frame['finetunes'].sum():,} fine-tunes")
    many = [r["run"] for r in rows if r["passes"] is not None and float(str(r["passes"]).lstrip("~")) > TOO_MANY_PASSES]
    if many:
        log.warning(f"{', '.join(many)} would read the corpus more than {TOO_MANY_PASSES} times (passes; ~: "
                    "estimated from its size, exact once packed), against the paper's ~5 (Small) to ~30 (Base) over "
                    "3.3B tokens: a memorisation regime, not the paper's. Give the scale more corpus (data.corpus: "
                    "more shards, `make data`), or fewer steps.")
    if any(r["passes"] is None for r in rows):
        log.info("passes ?: a hub corpus or missing corpus files (set DATA_DIR)")
    if not times:
        return
    from lightning_electra.runner.rates import device

    minutes = [r["pretrain_min"] + (r["glue_min"] or 0) for r in rows]
    slowdown = contention(parallel)
    total = makespan(minutes, parallel, slowdown)
    line = f"[plan] estimated on {device()}: {sum(minutes):.1f} min one run after another"
    if parallel > 1:
        line += f", {total:.1f} min as {parallel} at once (PARALLEL)"
    print(line + ("" if all(r["glue_min"] is not None for r in rows) else "; GLUE not timed (no GLUE files)"))
    if budget_minutes is not None:
        at_once = f" with {parallel} at once" if parallel > 1 else ""
        if total <= budget_minutes:
            log.info(f"fits --budget-minutes {budget_minutes:g}{at_once}")
            return
        groups, alone = pieces([r["run"] for r in rows], minutes, budget_minutes, parallel, slowdown)
        log.info(f"does not fit --budget-minutes {budget_minutes:g}{at_once}; in pieces that each do, one "
                 "command each:")
        for group in groups:
            print(f"  RUNS={','.join(group)}")
        if alone:
            log.info(f"longer than {budget_minutes:g} min on their own: {', '.join(alone)}")
