"""A fit's loggers: a CSV log that survives a resume (always), TensorBoard (by default), Weights & Biases (on request)."""

from __future__ import annotations

import csv
import io
import os
import uuid
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from lightning_electra.config import Config, to_dict
from lightning_electra.io import atomic_write_text


class ResumedCSVLogger(CSVLogger):
    """Lightning's CSVLogger, but a resumed run keeps what the interrupted one logged: Lightning's deletes an
    existing metrics.csv (see _ResumedWriter), and holds rows back for 100 steps, which a kill loses; this one
    appends each row as it is logged."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"flush_logs_every_n_steps": 1, **kwargs})

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumedWriter(log_dir=self.log_dir)
        return self._experiment


class _ResumedWriter(ExperimentWriter):
    """Keeps an existing metrics.csv until its first save, then drops only the rows at or after the first step
    logged again (those since the checkpoint resumed from), so the file reads as an uninterrupted run's."""

    def _check_log_dir_exists(self) -> None:  # called by __init__, where Lightning's deletes the file
        path = Path(self.metrics_file_path)
        with (path.open(newline="") if path.is_file() else io.StringIO()) as f:
            reader = csv.DictReader(f)
            self.previous, self.previous_keys = list(reader), reader.fieldnames

    def save(self) -> None:
        if self.previous_keys and self.metrics:
            first = min(m["step"] for m in self.metrics)
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=self.previous_keys)
            writer.writeheader()
            writer.writerows(r for r in self.previous if int(r["step"]) < first)
            atomic_write_text(Path(self.metrics_file_path), out.getvalue())
            self.metrics_keys, self.previous, self.previous_keys = list(self.previous_keys), [], None
        super().save()


def make_loggers(cfg: Config, stage_dir: Path, label: str, resume_step: int | None = None) -> list:
    """CSV always (pretrain/logs/metrics.csv: plain text, readable anywhere), then train.loggers' others.

    `label` names the fit in W&B (one run per stage: <sweep>/<run>-<hash>[/pretrain-stage<k>]).
    TensorBoard gets its own folder, pretrain/tensorboard/, so `tensorboard --logdir results/` shows every run.
    Weights & Biases is imported only when asked for: it is an optional dependency. A resumed fit continues the
    same TensorBoard curves (events from the steps it re-runs are purged) and the same W&B run.
    """
    from lightning.pytorch.loggers import TensorBoardLogger

    loggers = [ResumedCSVLogger(stage_dir, name="logs", version="")]
    if "tensorboard" in cfg.train.loggers:
        loggers.append(TensorBoardLogger(stage_dir, name="tensorboard", version="", default_hp_metric=False,
                                         purge_step=resume_step))
    if "wandb" in cfg.train.loggers:  # installed: the config's check says so before any work
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(name=label, save_dir=str(stage_dir), group=cfg.scale, config=to_dict(cfg),
                                   project=os.environ.get("WANDB_PROJECT", "lightning_electra"),
                                   id=wandb_run_id(stage_dir), resume="allow"))
    return loggers


def wandb_run_id(stage_dir: Path) -> str:
    """A new W&B run id for a new fit, the same one when it resumes (kept in the stage's directory)."""
    path = stage_dir / "wandb_id"
    if not path.exists():
        atomic_write_text(path, uuid.uuid4().hex[:16])
    return path.read_text().strip()
