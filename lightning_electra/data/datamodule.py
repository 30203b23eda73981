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
import time
from itertools import islice
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lightning_electra.config import Config, ConfigError, DataConfig
from lightning_electra.data.corpus import CorpusError, iter_lines
from lightning_electra.data.files import corpus_files, corpus_sources, vocab_path
from lightning_electra.data.packing import ExampleBuilder, batch_from_ids, pack, to_array
from lightning_electra.data.tokenizer import SpecialIds, VocabError, special_ids, wordpiece
from lightning_electra.distributed import local_rank
from lightning_electra.io import atomic, atomic_write_text
from lightning_electra.log import logger

log = logger("data")

PACKING_VERSION = 1  # bump when packing changes, so stale caches are not reused
LINES_PER_BATCH = 4096


def cache_key(data: DataConfig, vocab: Path) -> str:
    parts = {k: getattr(data, k) for k in ("corpus", "max_corpus_bytes", "max_seq_length", "single_segment_prob",
                                           "short_seq_prob", "seed")}
    parts["vocab_sha"] = hashlib.sha256(vocab.read_bytes()).hexdigest()
    # the files themselves (size, modification time), so another DATA_DIR with other text never hits this cache
    parts["files"] = [(f.stat().st_size, f.stat().st_mtime_ns) for f in
                      (Path(data.data_dir) / c for c in corpus_sources(data) if not c.startswith("hub:"))
                      if f.is_file()]
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
    data_dir, vocab = Path(data.data_dir), vocab_path(data)
    ids = special_ids(vocab)
    if ids.vocab_size > 2**16:  # the cache stores uint16 ids: larger ones would wrap around silently
        raise VocabError(f"Vocabulary {vocab} has {ids.vocab_size:,} tokens; the packed corpus stores token ids "
                         "in 16 bits, so at most 65,536. Use a WordPiece vocabulary of that size (BERT's has 30,522).")
    tokenizer = wordpiece(vocab)
    builder = ExampleBuilder(ids, data.max_seq_length, data.single_segment_prob, data.short_seq_prob, data.seed)
    start = time.time()
    counts = np.zeros(ids.vocab_size, dtype=np.int64)
    examples = []
    read = [0]  # tokens the corpus holds, against those the examples keep (packing truncates segments)

    def counted(lines):
        for tokens in lines:
            read[0] += len(tokens) if tokens else 0
            yield tokens

    lines = iter_lines(data_dir, corpus_sources(data), data.max_corpus_bytes)
    for example in pack(counted(_token_lines(lines, tokenizer)), builder):
        examples.append(example)
        if len(examples) % 50_000 == 0:
            log(f"[data] packed {len(examples):,} examples ({time.time() - start:.0f}s)")
    if not examples:
        raise CorpusError(f"The corpus {data.corpus} under {data_dir} holds no text: every file is empty. "
                          "Point data.corpus at text files with one paragraph a line.")
    array = to_array(examples, data.max_seq_length, ids.pad)
    np.add.at(counts, array[array != ids.pad].astype(np.int64), 1)
    text = int(counts.sum() - counts[ids.cls] - counts[ids.sep])
    meta = {"examples": len(array), "tokens": int((array != ids.pad).sum()), "seconds": round(time.time() - start, 1),
            "corpus": data.corpus, "max_corpus_bytes": data.max_corpus_bytes, "max_seq_length": data.max_seq_length,
            "corpus_tokens": read[0], "kept_share": text / max(1, read[0]), "unk_share": int(counts[ids.unk]) / max(1, text)}
    with atomic(out_dir, keep_existing=True) as tmp:  # another process (a rank, a run) may finish the same first
        tmp.mkdir()
        np.save(tmp / "examples.npy", array)
        np.save(tmp / "token_counts.npy", counts)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    log(f"[data] packed {meta['examples']:,} examples, {meta['tokens']:,} tokens in {meta['seconds']}s -> {out_dir}")
    return out_dir


def corpus_warnings(meta: dict, data: DataConfig) -> list[str]:
    """What a packed corpus says about its settings: too many [UNK] (a vocabulary that does not fit the text), or
    most of the text cut away (sequences too short for the corpus's segments)."""
    warnings = []
    if meta.get("unk_share", 0) > 0.05:
        warnings.append(f"{meta['unk_share']:.0%} of the corpus tokens are [UNK] under {data.vocab}: is it the "
                        "vocabulary this text needs (BERT's uncased one: data.vocab=bert-base-uncased)?")
    if meta.get("kept_share", 1) < 0.3:  # a paragraph a line at 128 tokens keeps about 60% (the official OWT way)
        warnings.append(f"the examples keep {meta['kept_share']:.0%} of the corpus's tokens: at "
                        f"data.max_seq_length={data.max_seq_length} packing cuts most segments short; the paper "
                        "uses 128 (Small) or 512 (Base).")
    return warnings


def batch_layout(batch_size: int, world: int, max_device_batch: int | None = None) -> tuple[int, int]:
    """(examples per forward on one device, micro-batches accumulated per optimizer step) for a global batch.

    train.batch_size is global: each of the `world` processes (devices x nodes) takes an equal share, in as few
    equal micro-batches as keep each within max_device_batch. An optimizer step thus always sees batch_size
    examples, so steps, schedule and FLOPs budget mean the same on 1 or 8 GPUs.
    """
    if batch_size % world:
        raise ConfigError(f"train.batch_size={batch_size} is global and must split evenly over the {world} processes "
                          f"(train.devices x train.num_nodes): use a batch size divisible by {world}, or other "
                          "devices or nodes.")
    share = batch_size // world
    accumulate = next(k for k in range(1, share + 1) if share % k == 0 and share // k <= (max_device_batch or share))
    return share // accumulate, accumulate


class PackedExamples(Dataset):
    def __init__(self, path: Path):
        self.array = np.load(path, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.array[i].astype(np.int64))


class EpochSampler(Sampler[int]):
    """A fresh permutation each epoch, drawn from `seed + epoch`, starting after the `done()` batches already trained.

    A run resumed mid-epoch thus sees exactly the batches an uninterrupted one would: Lightning restores its step
    counters but restarts a shuffled DataLoader, whose carried-over generator it cannot rewind.
    """

    def __init__(self, size: int, batch: int, seed: int, done=lambda: 0, rank: int = 0, world: int = 1,
                 global_batch: int | None = None):
        self.size, self.batch, self.seed, self.done, self.rank, self.world = size, batch, seed, done, rank, world
        # an epoch is whole optimizer steps (global batches, of several micro-batches when gradients accumulate)
        self.batches = size // (global_batch or batch * world) * (global_batch or batch * world) // (batch * world)
        self.rest = size - self.batches * batch * world  # kept when less than a batch (the DataLoader drops it)
        self.rest = self.rest if self.rest < batch else 0

    def __len__(self) -> int:
        # a whole epoch, also when resuming: Lightning counts the skipped batches as done
        return self.batches * self.batch + self.rest

    def __iter__(self):
        epoch, skip = divmod(self.done(), self.batches)
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
        # Several processes: a batch's examples are a consecutive run of the permutation and each rank takes its
        # slice, so an optimizer step sees the same examples on any number of devices (each rank's share is the
        # micro-batch one device would accumulate)
        batches = order[: self.batches * self.batch * self.world].view(self.batches, self.world, self.batch)
        rest = order[len(order) - self.rest:] if self.rest else order[:0]
        return iter(batches[skip:, self.rank].flatten().tolist() + rest.tolist())


class PretrainDataModule(L.LightningDataModule):
    """Packed corpus batches of `input_ids`, `token_type_ids` and `attention_mask` (no masking: that is on device).

    It counts the batches handed to training and keeps the count in Lightning's checkpoints, so a resumed run's
    sampler continues where the interrupted one stopped.
    """

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.batches_done = 0
        corpus_files(cfg.data)  # a missing data directory or corpus file: said now, not when packing
        self.vocab = vocab_path(cfg.data)
        self.special = special_ids(self.vocab)
        self.cache = Path(cfg.data.cache_dir) / "packed" / cache_key(cfg.data, self.vocab)

    @property
    def special_ids(self) -> SpecialIds:
        return self.special

    def prepare_once(self, poll_seconds: float = 2.0) -> None:
        """`prepare_data` on each machine's local rank 0; its other ranks wait for that cache.

        Lightning calls prepare_data on local rank 0 only, but the runner builds the module from the data before any Trainer
        exists; under torchrun or srun every rank gets there at once and each would pack the whole corpus.
        """
        failed = self.cache.with_name(self.cache.name + ".failed")  # what local rank 0 leaves when packing fails
        # this launch's id, so a marker an earlier launch left behind is not taken for news
        launch = next((os.environ[k] for k in ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", "MASTER_PORT")
                       if os.environ.get(k)), "")
        if local_rank() == 0:
            try:
                failed.unlink(missing_ok=True)
                return self.prepare_data()
            except Exception as err:
                atomic_write_text(failed, f"{launch}\n{type(err).__name__}: {err}")
                raise
        if not (self.cache / "examples.npy").exists():
            log.info(f"rank {local_rank()}: waiting for local rank 0 to pack the corpus into {self.cache}")
        while not (self.cache / "examples.npy").exists():  # the cache appears whole (built aside, then renamed)
            marker = failed.read_text().split("\n", 1) if failed.exists() else None
            if marker and marker[0] == launch:  # rather than wait for ever on a launcher that leaves ranks running
                raise CorpusError(f"Local rank 0 could not pack the corpus ({marker[1]}); see its error.")
            time.sleep(poll_seconds)

    def prepare_data(self) -> None:
        if not (self.cache / "examples.npy").exists():
            build_packed_corpus(self.cfg.data, self.cache)
        for warning in corpus_warnings(json.loads((self.cache / "meta.json").read_text()), self.cfg.data):
            log.warning(warning)

    def setup(self, stage: str | None = None) -> None:
        self.train_set = PackedExamples(self.cache / "examples.npy")
        self.batches_done = 0  # each fit (stage) starts its own count; a resumed one loads it from the checkpoint

    def on_before_batch_transfer(self, batch, dataloader_idx: int) -> dict[str, torch.Tensor]:
        self.batches_done += 1  # called when the loop takes a batch to train on, not when a worker prefetches it
        return batch

    def state_dict(self) -> dict:
        # also in examples: a run may resume on another number of devices
        return {"batches_done": self.batches_done, "examples_done": self.batches_done * self._batch_spread(),
                "accumulate": self._accumulate()}

    def load_state_dict(self, state: dict) -> None:
        saved, now = state.get("accumulate", self._accumulate()), self._accumulate()
        if saved != now:  # Lightning's own step counters are in micro-batches: they would straddle global batches
            raise ConfigError(f"This run was checkpointed accumulating {saved} micro-batch(es) a step and would resume "
                              f"accumulating {now}: resume with the devices and train.max_device_batch it had, "
                              "which may differ in device count only where the accumulation stays the same.")
        examples = state.get("examples_done")
        self.batches_done = state["batches_done"] if examples is None else examples // self._batch_spread()

    def _accumulate(self) -> int:
        return int(self.trainer.accumulate_grad_batches) if self.trainer is not None else 1

    def _batch_spread(self) -> int:
        """Examples one counted batch stands for: a micro-batch on every device."""
        return self.per_device_batch() * self._world()

    def _world(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def token_counts(self) -> np.ndarray:
        """Corpus frequency of every vocabulary id (for the unigram generator)."""
        return np.load(self.cache / "token_counts.npy")

    def per_device_batch(self) -> int:
        """Examples in one forward on one device (a micro-batch when gradients accumulate)."""
        return batch_layout(self.cfg.train.batch_size, self._world(), self.cfg.train.max_device_batch)[0]

    def collate(self, rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return batch_from_ids(torch.stack(rows), self.special)

    def train_dataloader(self) -> DataLoader:
        batch, seed = self.per_device_batch(), self.cfg.train.seed
        rank, world = (self.trainer.global_rank if self.trainer is not None else 0), self._world()
        if len(self.train_set) < self.cfg.train.batch_size:
            raise ValueError(f"The packed corpus has {len(self.train_set)} examples, fewer than one batch of "
                             f"{self.cfg.train.batch_size}: read more text (data.max_corpus_bytes) or lower the "
                             "batch.")
        # Each rank draws its own share of every global batch (make_trainer turns Lightning's distributed sampler
        # off), so a resumed run skips the batches done on any number of devices
        sampler = EpochSampler(len(self.train_set), batch, seed, done=lambda: self.batches_done, rank=rank,
                               world=world, global_batch=self.cfg.train.batch_size)
        generator = torch.Generator().manual_seed(seed)  # only for worker seeds: the global RNG stays untouched
        workers = self.cfg.data.num_workers
        return DataLoader(self.train_set, batch_size=batch, sampler=sampler, drop_last=True,
                          generator=generator, collate_fn=self.collate, num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
