"""A sweep's plan: what each run will do (steps, FLOPs, checkpoints, fine-tunes), from its config and the vocabulary
alone, in seconds: no training, no data read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lightning_electra.config import Config, ConfigError
from lightning_electra.data.corpus import text_bytes
from lightning_electra.data.datamodule import cache_key
from lightning_electra.data.files import corpus_files, corpus_sources, vocab_path
from lightning_electra.data.glue_tasks import available_tasks, glue_root
from lightning_electra.objectives import objective
from lightning_electra.runner.pretrain import budget
from lightning_electra.runner.resolved import ResolvedRun

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


@dataclass
class Plan:
    """What a sweep's runs would do (`plan_sweep`): the table, and what it says about it."""

    sweep: str
    frame: pd.DataFrame  # one row per run: PLAN_COLUMNS, and TIME_COLUMNS when timed
    scale: str | None = None  # None: nothing to run
    glue: str = ""  # where the GLUE tasks come from
    memorising: list[str] = field(default_factory=list)  # runs reading their corpus more than TOO_MANY_PASSES times
    device: str = ""  # what the times were measured on ("": not timed)
    serial_min: float = 0.0  # one run after another
    parallel: int = 1
    makespan_min: float = 0.0  # `parallel` at once
    budget_minutes: float | None = None
    pieces: list[list[str]] = field(default_factory=list)  # RUNS= groups that each fit the budget (when it does not)
    alone: list[str] = field(default_factory=list)  # runs longer than the budget on their own

    @property
    def fits(self) -> bool | None:
        """Whether the sweep fits --budget-minutes (None: no budget asked, or not timed)."""
        return None if self.budget_minutes is None or not self.device else self.makespan_min <= self.budget_minutes

    def csv(self) -> str:
        return self.frame.to_csv(index=False)

    def text(self) -> str:
        """The plan as the command line shows it: the table between `[plan]` lines."""
        if self.scale is None:
            return f"[plan] {self.sweep}: nothing to run, every run asked for is finished"
        frame, timed = self.frame, bool(self.device)
        shown = frame.assign(paper_flops=frame["paper_flops"].map(lambda f: f"{f:.3g}"),
                             steps=frame["steps"].map(lambda n: f"{n:,}"),
                             passes=frame["passes"].map(lambda p: "?" if p is None else p if isinstance(p, str)
                                                        else f"{p:.3g}"))
        for column in TIME_COLUMNS if timed else []:
            shown[column] = frame[column].map(lambda m: "?" if m is None or m != m else f"{m:.1f}")
        lines = [f"[plan] {self.sweep} at scale {self.scale}: {len(frame)} runs; {self.glue}",
                 shown.to_string(index=False),
                 f"[plan] total: {frame['steps'].sum():,} steps, {frame['paper_flops'].sum():.3g} paper FLOPs, "
                 f"{frame['finetunes'].sum():,} fine-tunes"]
        if self.memorising:
            lines.append(f"[plan] warning: {', '.join(self.memorising)} would read the corpus more than "
                         f"{TOO_MANY_PASSES} times (passes; ~: estimated from its size, exact once packed), against "
                         "the paper's ~5 (Small) to ~30 (Base) over 3.3B tokens: a memorisation regime, not the "
                         "paper's. Give the scale more corpus (data.corpus: more shards, `make data`), or fewer steps.")
        if frame["passes"].isna().any():
            lines.append("[plan] passes ?: a hub corpus or missing corpus files (set DATA_DIR)")
        if not timed:
            return "\n".join(lines)
        line = f"[plan] estimated on {self.device}: {self.serial_min:.1f} min one run after another"
        if self.parallel > 1:
            line += f", {self.makespan_min:.1f} min as {self.parallel} at once (PARALLEL)"
        lines.append(line + ("" if frame["glue_min"].notna().all() else "; GLUE not timed (no GLUE files)"))
        at_once = f" with {self.parallel} at once" if self.parallel > 1 else ""
        if self.fits:
            lines.append(f"[plan] fits --budget-minutes {self.budget_minutes:g}{at_once}")
        elif self.fits is False:
            lines.append(f"[plan] does not fit --budget-minutes {self.budget_minutes:g}{at_once}; in pieces that "
                         "each do, one command each:")
            lines += [f"  RUNS={','.join(group)}" for group in self.pieces]
            if self.alone:
                lines.append(f"[plan] longer than {self.budget_minutes:g} min on their own: {', '.join(self.alone)}")
        return "\n".join(lines)


def plan_sweep(sweep: str, runs: list[ResolvedRun], times: bool = True, parallel: int = 1,
               budget_minutes: float | None = None) -> Plan:
    """What `runs` would do, from their configs and the vocabulary (and, with `times`, the rates measured on this
    device: lightning_electra/runner/rates.py); with `budget_minutes`, whether they fit and in which pieces."""
    configs = [run.cfg for run in runs]
    budgets = [budget(cfg) for cfg in configs]
    rows = plan_rows(configs, budgets)
    if times:
        add_times(rows, configs, budgets)
    frame = pd.DataFrame(rows, columns=PLAN_COLUMNS + (TIME_COLUMNS if times else []))
    if not configs:
        return Plan(sweep, frame)
    cfg = configs[0]
    root = glue_root(cfg.data.data_dir)
    glue = ("GLUE from the hub" if cfg.finetune.source == "hub" else f"the GLUE tasks with files under {root}"
            if root.is_dir() else f"no GLUE files under {root} (set DATA_DIR): every task of finetune.tasks listed")
    memorising = [r["run"] for r in rows
                  if r["passes"] is not None and float(str(r["passes"]).lstrip("~")) > TOO_MANY_PASSES]
    plan = Plan(sweep, frame, cfg.scale, glue, memorising, parallel=parallel, budget_minutes=budget_minutes)
    if not times:
        return plan
    from lightning_electra.runner.rates import device

    minutes = [r["pretrain_min"] + (r["glue_min"] or 0) for r in rows]
    slowdown = contention(parallel)
    plan.device, plan.serial_min = device(), sum(minutes)
    plan.makespan_min = makespan(minutes, parallel, slowdown)
    if plan.fits is False:
        plan.pieces, plan.alone = pieces([r["run"] for r in rows], minutes, budget_minutes, parallel, slowdown)
    return plan
