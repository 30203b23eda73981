"""This process's place in a distributed launch (torchrun, srun, or Lightning's own for devices > 1)."""

from __future__ import annotations

import os


def global_rank() -> int:
    """This process's rank (0 when alone): Lightning's, once a Trainer has set up; before, the launcher's environment
    (torchrun: RANK, Lightning's own children: LOCAL_RANK, srun: SLURM_PROCID)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return rank_zero_only.rank


def local_rank() -> int:
    """This process's rank on its machine (torchrun and Lightning: LOCAL_RANK; srun: SLURM_LOCALID); 0 when alone."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))


def leave_process_group() -> None:
    """Ends this process's part in a distributed launch once pre-training is over: fine-tuning is rank 0's alone,
    and torchmetrics, seeing a process group, would wait on ranks that have left to sync its metrics."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
