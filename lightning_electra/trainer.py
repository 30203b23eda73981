"""The Lightning plumbing of a pre-training fit: a Trainer from the config (devices, nodes, strategy, accumulation),
its loggers, checkpoints written whole, a CSV log that survives a resume, and the process's rank.

Kept apart from run.py, which says what a run does; this says how Lightning is asked to do it.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import uuid
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_electra.config import Config, ConfigError
from lightning_electra.data.datamodule import batch_layout
from lightning_electra.results import atomic_write_text


def global_rank() -> int:
    """This process's rank in a distributed launch (0 when alone): Lightning's, once a Trainer has set up; before,
    the launcher's environment (torchrun: RANK, Lightning's own children: LOCAL_RANK, srun: SLURM_PROCID)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return rank_zero_only.rank


def leave_process_group() -> None:
    """Ends this process's part in a distributed launch once pre-training is over: fine-tuning is rank 0's alone,
    and torchmetrics, seeing a process group, would wait on ranks that have left to sync its metrics."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint beside its final name, then renames it into place, so a kill never leaves a truncated
    last.ckpt. Lightning's own save writes to a file in the system temp dir and moves that: a copy, not a rename,
    when the temp dir is on another filesystem (a tmpfs /tmp, a network results dir), and a leak on a kill."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        for stale in path.parent.glob(f".{path.name}.tmp*"):  # a killed save's (one process writes a run's)
            stale.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


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


def make_loggers(cfg: Config, stage_dir: Path, resume_step: int | None = None) -> list:
    """CSV always (pretrain/logs/metrics.csv: plain text, readable anywhere), then train.loggers' others.

    TensorBoard gets its own folder, pretrain/tensorboard/, so `tensorboard --logdir results/` shows every run.
    Weights & Biases is imported only when asked for: it is an optional dependency. A resumed fit continues the
    same TensorBoard curves (events from the steps it re-runs are purged) and the same W&B run.
    """
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_electra.config import ConfigError, to_dict

    loggers = [ResumedCSVLogger(stage_dir, name="logs", version="")]
    if "tensorboard" in cfg.train.loggers:
        loggers.append(TensorBoardLogger(stage_dir, name="tensorboard", version="", default_hp_metric=False,
                                         purge_step=resume_step))
    if "wandb" in cfg.train.loggers:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ConfigError("train.loggers includes wandb, which is not installed: `pip install wandb`, or leave "
                              "it out (train.loggers=[csv,tensorboard]).") from None
        from lightning.pytorch.loggers import WandbLogger

        # one W&B run per stage, named like its directory: <sweep>/<run>-<hash>[/pretrain-stage<k>]
        sweep, run_name = stage_dir.parts[-4], stage_dir.parts[-2]
        name = f"{sweep}/{run_name}" + ("" if stage_dir.name == "pretrain" else f"/{stage_dir.name}")
        loggers.append(WandbLogger(name=name, save_dir=str(stage_dir), group=cfg.scale, config=to_dict(cfg),
                                   project=os.environ.get("WANDB_PROJECT", "lightning_electra"),
                                   id=wandb_run_id(stage_dir), resume="allow"))
    return loggers


def wandb_run_id(stage_dir: Path) -> str:
    """A new W&B run id for a new fit, the same one when it resumes (kept in the stage's directory)."""
    path = stage_dir / "wandb_id"
    if not path.exists():
        atomic_write_text(path, uuid.uuid4().hex[:16])
    return path.read_text().strip()


def make_trainer(cfg: Config, **kwargs) -> L.Trainer:
    """A Trainer on train.accelerator, devices, num_nodes and strategy, with gradient accumulation when a device's
    share of the global batch exceeds train.max_device_batch. Lightning's complaints about the hardware become a
    ConfigError that names the keys."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.accelerators import CPUAccelerator

    t = cfg.train
    asked = (f"train.accelerator={t.accelerator} train.devices={t.devices} train.num_nodes={t.num_nodes} "
             f"train.strategy={t.strategy}")
    here = f"this machine has {torch.cuda.device_count()} visible GPU(s)"
    try:
        # our sampler gives each rank its share of every global batch (see EpochSampler): no DistributedSampler
        trainer = L.Trainer(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
                            strategy=t.strategy, use_distributed_sampler=False, **kwargs)
    except (MisconfigurationException, ValueError, TypeError) as err:
        raise ConfigError(f"Cannot run {asked}: {err} ({here}). Ask for devices that exist (DEVICES=N or "
                          "train.devices=N; auto takes every GPU) and a strategy they support (fsdp needs GPUs), or "
                          "run on a machine that has them.") from None
    if t.accelerator == "auto" and isinstance(trainer.accelerator, CPUAccelerator) and trainer.num_devices > 1:
        # Lightning would quietly start that many CPU processes: almost surely not what DEVICES=N meant
        raise ConfigError(f"train.devices={t.devices} asks for {trainer.num_devices} devices, but {here}, so "
                          "train.accelerator=auto picked the CPU. Use train.devices=1 (or auto) here, run on a "
                          f"machine with the GPUs, or set train.accelerator=cpu to run {trainer.num_devices} CPU "
                          "processes on purpose.")
    # The Trainer knows the world size only once built; its fit loop reads this attribute when it runs
    _, trainer.accumulate_grad_batches = batch_layout(t.batch_size, trainer.world_size, t.max_device_batch)
    return trainer


def check_hardware(cfg: Config) -> None:
    """make_trainer's checks on their own, without Lightning's device lines (the real Trainer prints them)."""
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        make_trainer(cfg, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    finally:
        log.setLevel(level)
