"""Pre-trains the smoke ELECTRA for a few steps through run.pretrain, once per `out_dir:key=value,...` argument.

Used by test_distributed.py, as one process or as two DDP ranks (Lightning re-runs this script for rank 1). Masks
and G's samples are drawn on each device from the torch RNG, so two ranks would corrupt their halves of a batch
differently from one process; here both are fixed by each example's own tokens, so every example is corrupted the
same way on any rank and in any batch, and runs differ only in how the work is split.

    python tests/ddp_worker.py DATA_DIR CACHE_DIR OUT_DIR:train.devices=2,train.strategy=ddp ...
"""

import sys
from dataclasses import fields
from pathlib import Path

import torch

import lightning_electra.objectives.generator as generator_part
from lightning_electra.corruption import Masked, mask_tokens
from lightning_electra.module import PretrainModule
from lightning_electra.runner.configs import load_config
from lightning_electra.runner.pretrain import pretrain


def content_mask(self, batch):
    """mask_tokens, one example at a time, from a seed made of the example's tokens."""
    rows = [mask_tokens(ids[None], self.special, self.cfg.data.mask_prob, self.cfg.data.mask_token_prob,
                        generator=torch.Generator().manual_seed(int((ids * torch.arange(1, len(ids) + 1)).sum())))
            for ids in batch["input_ids"].cpu()]
    return Masked(*(torch.cat([getattr(r, f.name) for r in rows]).to(batch["input_ids"].device)
                    for f in fields(Masked)))


PretrainModule.mask = content_mask
generator_part.sample_tokens = lambda logits, temperature=1.0: logits.argmax(-1)  # G's "samples" draw nothing either

if __name__ == "__main__":
    data_dir, cache, *runs = sys.argv[1:]
    for spec in runs:
        out, _, overrides = spec.partition(":")
        cfg = load_config("smoke", variant="electra", overrides=[
            f"data.data_dir={data_dir}", f"data.cache_dir={cache}", "data.max_corpus_bytes=200000",
            "train.steps=5", "model.dropout=0", "model.attention_dropout=0", "train.log_every_n_steps=1",
            "train.checkpoint_fractions=[1.0]", "train.accelerator=cpu", *overrides.split(",")])
        pretrain(cfg, Path(out))
