"""The Lightning Trainer of a pre-training fit, from the config: devices, nodes, strategy, gradient accumulation, and
checkpoints written whole."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_electra.config import Config, ConfigError
from lightning_electra.data.datamodule import batch_layout
from lightning_electra.io import atomic, load_torch


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint beside its final name, then renames it into place, so a kill never leaves a truncated
    last.ckpt. Lightning's own save writes to a file in the system temp dir and moves that: a copy, not a rename,
    when the temp dir is on another filesystem (a tmpfs /tmp, a network results dir), and a leak on a kill."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        """Weights only: the suite's checkpoints hold tensors, numbers and strings, nothing that runs code."""
        return load_torch(path)


@dataclass(frozen=True)
class Hardware:
    """What a config's devices come to (`check_hardware`), resolved once per run."""

    world_size: int  # processes: devices x nodes, as a Trainer resolves `auto` and a launcher's ranks
    accumulate: int  # micro-batches accumulated per optimizer step


def make_trainer(cfg: Config, hardware: Hardware, **kwargs) -> L.Trainer:
    """A Trainer on train.accelerator, devices, num_nodes and strategy, with gradient accumulation when a device's
    share of the global batch exceeds train.max_device_batch (`hardware`: `check_hardware`'s)."""
    return _trainer(cfg, accumulate_grad_batches=hardware.accumulate, **kwargs)


def check_hardware(cfg: Config) -> Hardware:
    """The processes and accumulation a config asks for, checked before any work: GPUs that are not there, a batch
    that does not split over them, or a step graph over several processes or micro-batches fail at once, and
    Lightning's complaints become a ConfigError that names the keys. Builds a Trainer for that alone, quietly (the
    real one prints its device lines): ask once per run (`ResolvedRun.hardware`)."""
    t = cfg.train
    world = _trainer(cfg, quiet=True, logger=False, enable_checkpointing=False, enable_progress_bar=False).world_size
    _, accumulate = batch_layout(t.batch_size, world, t.max_device_batch)
    if t.step_graph and (world > 1 or accumulate > 1 or t.strategy not in ("auto", "single_device")):
        # DDP's and FSDP's wrappers hook the forward and backward of their own: a graph would skip them
        raise ConfigError(f"train.step_graph captures one whole step of one process, but this run has {world} "
                          f"process(es) under train.strategy={t.strategy} and accumulates {accumulate} micro-batch(es) "
                          f"a step (train.batch_size={t.batch_size}, train.max_device_batch={t.max_device_batch}). "
                          "Set train.step_graph=false, or train.devices=1, train.strategy=auto and a "
                          "train.max_device_batch of at least the batch.")
    return Hardware(world, accumulate)


def _trainer(cfg: Config, quiet: bool = False, **kwargs) -> L.Trainer:
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.accelerators import CPUAccelerator

    t = cfg.train
    asked = (f"train.accelerator={t.accelerator} train.devices={t.devices} train.num_nodes={t.num_nodes} "
             f"train.strategy={t.strategy}")
    here = f"this machine has {torch.cuda.device_count()} visible GPU(s)"
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = log.level
    if quiet:
        log.setLevel(logging.WARNING)
    try:
        # our sampler gives each rank its share of every global batch (see EpochSampler): no DistributedSampler
        trainer = L.Trainer(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
                            strategy=t.strategy, use_distributed_sampler=False, **kwargs)
    except (MisconfigurationException, ValueError, TypeError) as err:
        raise ConfigError(f"Cannot run {asked}: {err} ({here}). Ask for devices that exist (DEVICES=N or "
                          "train.devices=N; auto takes every GPU) and a strategy they support (fsdp needs GPUs), or "
                          "run on a machine that has them.") from None
    finally:
        log.setLevel(level)
    if t.accelerator == "auto" and isinstance(trainer.accelerator, CPUAccelerator) and trainer.num_devices > 1:
        # Lightning would quietly start that many CPU processes: almost surely not what DEVICES=N meant
        raise ConfigError(f"train.devices={t.devices} asks for {trainer.num_devices} devices, but {here}, so "
                          "train.accelerator=auto picked the CPU. Use train.devices=1 (or auto) here, run on a "
                          f"machine with the GPUs, or set train.accelerator=cpu to run {trainer.num_devices} CPU "
                          "processes on purpose.")
    return trainer
