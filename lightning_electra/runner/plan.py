"""A sweep's plan: what each run will do (steps, FLOPs, checkpoints, fine-tunes), from its config and the vocabulary
alone, in seconds: no training, no data read."""

from __future__ import annotations

import pandas as pd

from lightning_electra.config import Config
from lightning_electra.data.glue_tasks import available_tasks, glue_root
from lightning_electra.objectives import OBJECTIVES
from lightning_electra.runner.pretrain import budget

PLAN_COLUMNS = ["run", "variant", "generator", "tie", "steps", "batch_size", "paper_flops", "checkpoints", "tasks",
                "seeds", "finetunes"]


def plan_rows(configs: list[Config]) -> list[dict]:
    """What each run will do, from its config and the vocabulary alone (no training, no data read)."""
    rows = []
    for cfg in configs:
        b = budget(cfg)
        files = cfg.finetune.source == "files" and glue_root(cfg.data.data_dir).is_dir()
        tasks = available_tasks(cfg.data.data_dir, cfg.finetune.tasks)[0] if files else list(cfg.finetune.tasks)
        width = OBJECTIVES[cfg.variant].generator_width(cfg)
        rows.append({"run": cfg.name, "variant": cfg.variant,
                     "generator": "-" if width is None else cfg.model.generator if width == 0 else width,
                     "tie": "-" if width is None else cfg.model.tie, "steps": b["steps"], "batch_size": cfg.train.batch_size,
                     "paper_flops": b["paper_flops"], "checkpoints": " ".join(map(str, b["checkpoints"])),
                     "tasks": ",".join(tasks), "seeds": cfg.finetune.seeds,
                     "finetunes": len(b["checkpoints"]) * len(tasks) * cfg.finetune.seeds})
    return rows


def print_plan(sweep: str, configs: list[Config], style: str) -> None:
    rows = plan_rows(configs)
    frame = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    if style == "csv":
        print(frame.to_csv(index=False), end="")
        return
    from lightning_electra.data.glue_tasks import glue_root

    cfg = configs[0]
    root = glue_root(cfg.data.data_dir)
    where = ("GLUE from the hub" if cfg.finetune.source == "hub" else f"the GLUE tasks with files under {root}"
             if root.is_dir() else f"no GLUE files under {root} (set DATA_DIR): every task of finetune.tasks listed")
    print(f"[plan] {sweep} at scale {cfg.scale}: {len(rows)} runs; {where}")
    shown = frame.assign(paper_flops=frame["paper_flops"].map(lambda f: f"{f:.3g}"),
                         steps=frame["steps"].map(lambda n: f"{n:,}"))
    print(shown.to_string(index=False))
    print(f"[plan] total: {frame['steps'].sum():,} steps, {frame['paper_flops'].sum():.3g} paper FLOPs, "
          f"{frame['finetunes'].sum():,} fine-tunes")
