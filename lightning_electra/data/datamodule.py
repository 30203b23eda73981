"""The one pre-training DataModule every variant uses.

`prepare_data` (once per machine, rank 0) reads the corpus, tokenises it in batches with `tokenizers`, packs it and
stores the result as a uint16 .npy file under `cache_dir/<key>/`, where the key hashes everything that shapes the
packed data (sources, byte cap, vocabulary contents, lengths, probabilities, seed). A second run with the same data
config memory-maps the file and starts at once. Masking is *not* cached: it is drawn anew on the device every time a
sequence is used (see `corruption.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from itertools import islice
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_electra.config import Config, DataConfig, resolve_data_path
from lightning_electra.data.corpus import CorpusError, iter_lines
from lightning_electra.data.packing import ExampleBuilder, pack, to_array, token_type_ids
from lightning_electra.data.tokenizer import SpecialIds, special_ids, wordpiece

PACKING_VERSION = 1  # bump when packing changes, so stale caches are not reused
LINES_PER_BATCH = 4096


def cache_key(data: DataConfig, vocab_path: Path) -> str:
    parts = {k: getattr(data, k) for k in ("corpus", "max_corpus_bytes", "max_seq_length", "single_segment_prob",
                                           "short_seq_prob", "seed")}
    parts["vocab_sha"] = hashlib.sha256(vocab_path.read_bytes()).hexdigest()
    # the files themselves (size, modification time), so another DATA_DIR with other text never hits this cache
    parts["files"] = [(f.stat().st_size, f.stat().st_mtime_ns) for f in
                      (Path(data.data_dir) / c for c in data.corpus if not c.startswith("hub:")) if f.is_file()]
    parts["version"] = PACKING_VERSION
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _token_lines(lines, tokenizer):
    """Token ids per line in batches (the Rust tokenizer is fast only when given many lines); None marks doc ends."""
    lines = iter(lines)
    while batch := list(islice(lines, LINES_PER_BATCH)):
        texts = [line for line in batch if line]
        encoded = iter(tokenizer.encode_batch(texts, add_special_tokens=False))
        for line in batch:
            yield next(encoded).ids if line else None


def build_packed_corpus(data: DataConfig, out_dir: Path, log=print) -> Path:
    """Read, tokenise and pack the corpus into out_dir/{examples.npy,token_counts.npy,meta.json}; returns out_dir."""
    data_dir = Path(data.data_dir)
    vocab_path = data_dir / data.vocab
    ids = special_ids(vocab_path)
    tokenizer = wordpiece(vocab_path)
    builder = ExampleBuilder(ids, data.max_seq_length, data.single_segment_prob, data.short_seq_prob, data.seed)
    start = time.time()
    counts = np.zeros(ids.vocab_size, dtype=np.int64)
    examples = []
    for example in pack(_token_lines(iter_lines(data_dir, data.corpus, data.max_corpus_bytes), tokenizer), builder):
        examples.append(example)
        if len(examples) % 50_000 == 0:
            log(f"[data] packed {len(examples):,} examples ({time.time() - start:.0f}s)")
    if not examples:
        raise CorpusError(f"The corpus {data.corpus} under {data_dir} holds no text: every file is empty. "
                          "Point data.corpus at text files with one paragraph a line.")
    array = to_array(examples, data.max_seq_length, ids.pad)
    np.add.at(counts, array[array != ids.pad].astype(np.int64), 1)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "examples.npy", array)
    np.save(tmp / "token_counts.npy", counts)
    meta = {"examples": len(array), "tokens": int((array != ids.pad).sum()), "seconds": round(time.time() - start, 1),
            "corpus": data.corpus, "max_corpus_bytes": data.max_corpus_bytes, "max_seq_length": data.max_seq_length}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if out_dir.exists():  # another process (a second rank or run) finished the same cache first
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, out_dir)
    log(f"[data] packed {meta['examples']:,} examples, {meta['tokens']:,} tokens in {meta['seconds']}s -> {out_dir}")
    return out_dir


class PackedExamples(Dataset):
    def __init__(self, path: Path):
        self.array = np.load(path, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.array[i].astype(np.int64))


class PretrainDataModule(L.LightningDataModule):
    """Packed corpus batches of `input_ids`, `token_type_ids` and `attention_mask` (no masking: that is on device)."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.vocab_path = resolve_data_path(cfg, cfg.data.vocab)
        self.special = special_ids(self.vocab_path)
        self.cache = Path(cfg.data.cache_dir) / "packed" / cache_key(cfg.data, self.vocab_path)

    @property
    def special_ids(self) -> SpecialIds:
        return self.special

    def prepare_data(self) -> None:
        if not (self.cache / "examples.npy").exists():
            for source in self.cfg.data.corpus:
                if not source.startswith("hub:"):
                    resolve_data_path(self.cfg, source)
            build_packed_corpus(self.cfg.data, self.cache)

    def setup(self, stage: str | None = None) -> None:
        self.train_set = PackedExamples(self.cache / "examples.npy")

    def token_counts(self) -> np.ndarray:
        """Corpus frequency of every vocabulary id (for the unigram generator)."""
        return np.load(self.cache / "token_counts.npy")

    def per_device_batch(self) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.cfg.train.batch_size % world:
            raise ValueError(f"train.batch_size={self.cfg.train.batch_size} is not divisible by the {world} devices.")
        return self.cfg.train.batch_size // world

    def collate(self, rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        input_ids = torch.stack(rows)
        return {"input_ids": input_ids,
                "token_type_ids": token_type_ids(input_ids, self.special.sep, self.special.pad),
                "attention_mask": (input_ids != self.special.pad).long()}

    def train_dataloader(self) -> DataLoader:
        if len(self.train_set) < self.per_device_batch():
            raise ValueError(f"The packed corpus has {len(self.train_set)} examples, fewer than one batch of "
                             f"{self.per_device_batch()}: read more text (data.max_corpus_bytes) or lower the batch.")
        generator = torch.Generator().manual_seed(self.cfg.train.seed)
        workers = self.cfg.data.num_workers
        return DataLoader(self.train_set, batch_size=self.per_device_batch(), shuffle=True, drop_last=True,
                          generator=generator, collate_fn=self.collate, num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
