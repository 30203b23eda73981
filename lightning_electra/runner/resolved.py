"""A run resolved once and handed down: its checked config, the hashes that key what it makes and where that lies,
its processes and gradient accumulation, its vocabulary and the GLUE tasks it fine-tunes. A sweep resolves each of
its runs when it composes them; pre-training, fine-tuning, the results store and the plan take the resolved run and
recompute none of it.

The runner's type only: the library below takes the parts it needs (a config, a path, a task), never this
(tests/test_layout.py holds that).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from lightning_electra.config import Config
from lightning_electra.data.files import vocab_path
from lightning_electra.data.glue_tasks import GlueTask, get_task, glue_tasks
from lightning_electra.runner.identity import RunLayout, run_hashes
from lightning_electra.runner.trainer import Hardware, check_hardware


@dataclass(frozen=True)
class ResolvedRun:
    cfg: Config
    sweep: str  # the sweep whose results it belongs to
    pretrain_hash: str  # what pre-training depends on: keys the run directory
    finetune_hash: str  # the fine-tuning protocol: keys the fine-tunes
    config_hash: str  # everything: keys the results rows
    glue_digests: dict[str, str]  # each of finetune.tasks: what its files hold

    @classmethod
    def of(cls, cfg: Config, sweep: str) -> ResolvedRun:
        pretrain, finetune, config, glue = run_hashes(cfg)
        return cls(cfg, sweep, pretrain, finetune, config, glue)

    @property
    def name(self) -> str:
        return self.cfg.name

    @functools.cached_property
    def layout(self) -> RunLayout:
        return RunLayout.of(self.cfg, self.sweep, self.pretrain_hash)

    @functools.cached_property
    def hardware(self) -> Hardware:
        """Its processes and gradient accumulation, checked (refused when the devices are not there)."""
        return check_hardware(self.cfg)

    @functools.cached_property
    def vocab(self) -> Path:
        """The vocabulary file (refused with what to do when it is not there)."""
        return vocab_path(self.cfg.data)

    @functools.cached_property
    def tasks(self) -> tuple[GlueTask, ...]:
        """The GLUE tasks it fine-tunes: those of finetune.tasks that have files (all of them from the hub)."""
        return tuple(get_task(task) for task in glue_tasks(self.cfg))

    @property
    def table(self) -> Path:
        """results-<config hash>.csv: the run's rows; its presence marks the whole run finished."""
        return self.layout.root / f"results-{self.config_hash}.csv"

    def finetune_result(self, step_dir: Path, task: GlueTask, seed: int) -> Path:
        return (self.layout.root / "finetune" / self.finetune_hash / step_dir.name
                / f"{task.name}-{self.glue_digests[task.name]}-seed{seed}.json")


def resolve(configs: list[Config], sweep: str) -> list[ResolvedRun]:
    return [ResolvedRun.of(cfg, sweep) for cfg in configs]
