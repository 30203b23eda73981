"""Several devices mean the same as one: the global batch, its split over ranks and micro-batches, data preparation
once per machine.

The DDP test runs real processes (2 CPU ranks over gloo, launched by Lightning as `DEVICES=2` would) through
run.pretrain; see ddp_worker.py for why masks and G's samples are fixed by each example's content there.
"""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from lightning_electra.config import ConfigError
from lightning_electra.data.datamodule import EpochSampler, PretrainDataModule, batch_layout

ROOT = Path(__file__).resolve().parents[1]


def test_the_batch_is_global_and_accumulates_past_the_device_limit():
    assert batch_layout(128, 1) == (128, 1) and batch_layout(128, 8) == (16, 1)
    assert batch_layout(128, 1, max_device_batch=32) == (32, 4)  # one GPU, a limit of 32: 4 micro-batches
    assert batch_layout(12, 1, max_device_batch=5) == (4, 3)  # equal micro-batches, each within the limit
    with pytest.raises(ConfigError, match=r"train\.batch_size=128 .* 3 processes .*divisible by 3"):
        batch_layout(128, 3)


def test_ranks_take_slices_of_the_same_global_batches():
    """Two ranks of 4 see, step by step, the examples one process of 8 (or 2 micro-batches of 4) sees."""
    one = list(EpochSampler(50, 8, seed=3))
    micro = list(EpochSampler(50, 4, seed=3, global_batch=8))
    ranks = [list(EpochSampler(50, 4, seed=3, rank=r, world=2)) for r in (0, 1)]
    for step in range(50 // 8):
        batch = one[8 * step: 8 * step + 8]
        assert ranks[0][4 * step: 4 * step + 4] + ranks[1][4 * step: 4 * step + 4] == batch
        assert micro[8 * step: 8 * step + 8] == batch
    resumed = list(EpochSampler(50, 4, seed=3, rank=1, world=2, done=lambda: 2))
    assert resumed[:4] == ranks[1][8:12], "a resumed rank skips the batches it had done"


def test_other_ranks_wait_for_the_cache_instead_of_packing_it(smoke_cfg, monkeypatch):
    cfg = smoke_cfg()
    dm = PretrainDataModule(cfg)
    monkeypatch.setenv("LOCAL_RANK", "1")  # as torchrun or srun would set it for a second process
    monkeypatch.setattr(dm, "prepare_data", lambda: pytest.fail("rank 1 packed the corpus"))

    def rank0():  # local rank 0 packing meanwhile: the cache appears whole
        time.sleep(0.3)
        dm.cache.mkdir(parents=True)
        np.save(dm.cache / "examples.npy", np.zeros((1, 4), np.uint16))

    threading.Thread(target=rank0).start()
    start = time.time()
    dm.prepare_once(poll_seconds=0.05)
    assert (dm.cache / "examples.npy").exists() and time.time() - start >= 0.3


def test_other_ranks_stop_when_rank_0_cannot_pack(smoke_cfg, monkeypatch):
    from lightning_electra.data.corpus import CorpusError

    dm = PretrainDataModule(smoke_cfg())
    monkeypatch.setattr(dm, "prepare_data", lambda: (_ for _ in ()).throw(CorpusError("the corpus is empty")))
    with pytest.raises(CorpusError, match="empty"):
        dm.prepare_once()  # local rank 0: fails, and says so for the others
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(CorpusError, match="Local rank 0 could not pack the corpus.*empty"):
        dm.prepare_once(poll_seconds=0.05)


@pytest.mark.integration  # a whole sweep, processes or ranks: the integration tier
def test_two_ddp_ranks_train_like_one_process(data_dir, tmp_path):
    """DDP over 2 CPU ranks of 8 = one process accumulating 2 micro-batches of 8 (the same sums, in another
    order), and within the per-micro-batch loss normalisation of one process taking all 16 at once."""
    worker = [sys.executable, str(ROOT / "tests" / "ddp_worker.py"), str(data_dir), str(tmp_path / "cache")]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    runs = {"ddp": "train.devices=2,train.strategy=ddp", "one": "train.devices=1",
            "micro": "train.devices=1,train.max_device_batch=8"}
    # both at once (the cache is built by whichever gets there first): ~40 s instead of ~60 s on 2 cores
    procs = [subprocess.Popen(worker + [f"{tmp_path / name}:{runs[name]}" for name in names], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for names in (["ddp"], ["one", "micro"])]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]

    def weights(name):
        step = tmp_path / name / "checkpoints" / "step-0000005"  # 5 optimizer steps, also when accumulating
        return load_file(step / "model.safetensors")

    def losses(name):
        logs = pd.read_csv(tmp_path / name / "pretrain" / "logs" / "metrics.csv")
        return logs["train/loss"].dropna().to_numpy()

    final = {name: weights(name) for name in runs}

    def distance(a, b):
        return torch.sqrt(sum(((final[a][k] - final[b][k]) ** 2).sum() for k in final[a])).item()

    # DDP's gradient average is exactly the accumulation's: equal weights but for float summation order
    assert distance("ddp", "micro") < 1e-5
    # one batch of 16 normalises each loss over all 16, not per 8: a small difference, far below what 5 steps of
    # AdamW move the weights (~1.5 in this norm; a different batch of data moves them ~0.2 apart)
    assert distance("ddp", "one") < 1e-2
    # the loss logged under DDP is averaged over the ranks: the global batch's, step by step
    assert len(losses("ddp")) == 5 and np.allclose(losses("ddp"), losses("one"), rtol=1e-4)
    assert all((tmp_path / name / "pretrain.json").exists() for name in runs)
