"""GLUE data for fine-tuning: each task's splits tokenised once (per process, and on disk under data.cache_dir), and
the batches a fine-tune draws.

Batches are the official code's (random, padded) unless `finetune.length_buckets` names widths. Then each example
goes to the smallest width that holds it, and a training epoch is every bucket's examples shuffled and cut into
batches, in an order of buckets that is itself shuffled: each example once an epoch as before, but a batch of SST-2
sentences is 16 or 32 wide where a random batch is as wide as its longest sentence, and a fine-tune sees a few shapes
only (a width, and a full batch or a bucket's last one), which is what a compiled step would need.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
import weakref
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from torch.utils.data import DataLoader, Sampler

from lightning_electra.config import FinetuneConfig
from lightning_electra.data.glue import GlueCollator, GlueDataset, padded_width
from lightning_electra.data.glue_tasks import both_orders, load_examples, unit_targets
from lightning_electra.data.glue_tasks import GlueTask, reported_dev_splits, task_file
from lightning_electra.io import UnreadableFile, WriteError, atomic, file_digest, load_torch

_ENCODED: dict[tuple, GlueDataset] = {}
_TOKENIZER_KEYS: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()  # a 30k vocabulary: once each
# Bumped when tokenising or reading the GLUE files changes (truncation, subsets, labels): every cached split is
# then made again, as PACKING_VERSION does for the packed corpus.
GLUE_CACHE_VERSION = 1


def tokenizer_key(tokenizer: Any) -> str:
    """Tokenizers that encode alike share a key, whichever object holds them: a digest of the whole fast tokenizer
    (vocabulary, lower-casing, normalisation), stable across processes."""
    if tokenizer not in _TOKENIZER_KEYS:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        described = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
        _TOKENIZER_KEYS[tokenizer] = hashlib.sha256(described.encode()).hexdigest()[:16]
    return _TOKENIZER_KEYS[tokenizer]


def encoded(data_dir, spec: GlueTask, split: str, cap: Optional[int], source: str, tokenizer: Any,
            max_seq_length: int, both_orders_: bool = False, unit_targets_: bool = False,
            cache_dir: Optional[Union[str, Path]] = None) -> GlueDataset:
    """A tokenised split, kept for the process (a sweep fine-tunes the same split for every seed and checkpoint) and,
    given `cache_dir`, on disk under it, keyed by the file's contents (every run of a sweep, each process of a
    parallel one, reads it rather than tokenising SST-2 again). A cap picks examples (pairs), then `both_orders_`
    doubles them and `unit_targets_` rescales regression scores."""
    # one key for both caches: what the split is made from (a file's contents, or the hub's name), not where it lies
    path = task_file(data_dir, spec, split) if source == "files" else None
    made_from = file_digest(path) if path is not None and path.is_file() else f"{source}:{data_dir}"
    key = (GLUE_CACHE_VERSION, made_from, spec.name, split, cap, tokenizer_key(tokenizer), max_seq_length,
           both_orders_, unit_targets_)
    if key in _ENCODED:
        return _ENCODED[key]
    on_disk = None
    if cache_dir is not None and path is not None and path.is_file():  # a missing file: load_examples says so
        digest = hashlib.sha256(repr(key).encode()).hexdigest()
        on_disk = Path(cache_dir) / "glue" / f"{spec.name}-{split}-{digest[:16]}.pt"
    data = read_encoded(on_disk) if on_disk is not None and on_disk.is_file() else None
    if data is None:
        examples = load_examples(data_dir, spec, split, cap, source=source)
        examples = both_orders(examples) if both_orders_ else examples
        examples = unit_targets(spec, examples) if unit_targets_ else examples
        data = GlueDataset(examples, tokenizer, max_seq_length, spec.is_regression)
        if on_disk is not None:
            try:
                with atomic(on_disk, keep_existing=True) as tmp:  # runs at once may write the same split
                    torch.save(data.to_tensors(), tmp)
            except WriteError as err:  # a cache is a saving, never a reason to stop
                warnings.warn(f"{err} The split is used without being cached.", stacklevel=2)
    if len(_ENCODED) >= 32:  # bounded: a sweep touches a handful of (task, split) pairs
        _ENCODED.pop(next(iter(_ENCODED)))
    _ENCODED[key] = data
    return data


def read_encoded(path: Path) -> Optional[GlueDataset]:
    """A cached split, or None when the file is damaged (then it is tokenised again and rewritten)."""
    try:
        return GlueDataset.from_tensors(load_torch(path))
    except (UnreadableFile, KeyError, TypeError, IndexError, AttributeError):
        path.unlink(missing_ok=True)
        return None


def task_splits(data_dir, spec: GlueTask, ft: FinetuneConfig, tokenizer: Any, source: str,
                cache_dir: Optional[Union[str, Path]] = None) -> dict[str, GlueDataset]:
    """A task's tokenised train split and the dev splits it reports on, by name (train first), cached on disk under
    `cache_dir` when given. Extra dev splits (MNLI mismatched) are reported when their file is there; "dev" itself is
    required."""
    splits = reported_dev_splits(data_dir, spec, source)
    return {split: encoded(data_dir, spec, split, ft.max_train_examples if split == "train" else ft.max_eval_examples,
                           source, tokenizer, ft.max_seq_length,
                           both_orders_=split == "train" and ft.double_unordered and spec.unordered,
                           unit_targets_=ft.scale_regression_targets and spec.target_range is not None,
                           cache_dir=cache_dir)
            for split in ["train", *splits]}


def bucket_widths(ft: FinetuneConfig) -> tuple[int, ...]:
    """The padded widths a fine-tune's batches take (none: each batch its longest); max_seq_length always last."""
    if not ft.length_buckets:
        return ()
    return (*(w for w in ft.length_buckets if w < ft.max_seq_length), ft.max_seq_length)


class LengthBuckets(Sampler[list[int]]):
    """Training batches of one bucket each (the module docstring). `generator` draws which examples a batch holds;
    `schedule` draws the order of the buckets' batches. Seeds of one ensemble share the schedule (their batches at
    a step then have one shape and one size) and draw their own examples."""

    def __init__(self, lengths: Sequence[int], batch_size: int, widths: Sequence[int], generator: torch.Generator,
                 schedule: torch.Generator):
        buckets: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            buckets.setdefault(padded_width(n, widths), []).append(i)
        self.buckets = [torch.tensor(buckets[b]) for b in sorted(buckets)]
        self.batch_size, self.generator, self.schedule = batch_size, generator, schedule

    def __len__(self) -> int:
        return sum(math.ceil(len(b) / self.batch_size) for b in self.buckets)

    def __iter__(self) -> Iterator[list[int]]:
        batches = [iter(b[torch.randperm(len(b), generator=self.generator)].split(self.batch_size))
                   for b in self.buckets]
        order = torch.tensor([k for k, b in enumerate(self.buckets) for _ in b[::self.batch_size]])
        for k in order[torch.randperm(len(order), generator=self.schedule)].tolist():
            yield next(batches[k]).tolist()


SCHEDULE_SALT = 0x5EED_B0C5  # the buckets' order of seed k is not drawn from the stream of seed k's examples


def generator_from(seed: Optional[int]) -> torch.Generator:
    """A generator of its own, or (None) one seeded from torch's global stream, which seed_everything set."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, ())) if seed is None else seed)


def train_loader(data: GlueDataset, ft: FinetuneConfig, pad_id: int, seed: Optional[int] = None,
                 schedule_seed: Optional[int] = None) -> DataLoader:
    """A fine-tune's training batches. `seed` seeds its data order (None: torch's global stream, as a one-by-one
    fine-tune draws it); `schedule_seed`, with length buckets, the order of the buckets (None: from `seed`)."""
    collate = GlueCollator(pad_id, bucket_widths(ft))
    if not ft.length_buckets:
        return DataLoader(data, batch_size=ft.batch_size, shuffle=True, collate_fn=collate,
                          generator=None if seed is None else torch.Generator().manual_seed(seed))
    generator = generator_from(seed)
    schedule = generator_from(schedule_seed + SCHEDULE_SALT) if schedule_seed is not None else generator_from(
        int(torch.randint(0, 2**62, (), generator=generator)))
    return DataLoader(data, batch_sampler=LengthBuckets(data.lengths, ft.batch_size, collate.widths, generator,
                                                         schedule), collate_fn=collate)


def eval_loader(data: GlueDataset, ft: FinetuneConfig, pad_id: int) -> DataLoader:
    """A dev split in batches of finetune.eval_batch_size; with length buckets, in length order (dev metrics do not
    depend on the order), so that a batch is padded to little more than its own sentences."""
    size, collate = ft.eval_batch_size or ft.batch_size, GlueCollator(pad_id, bucket_widths(ft))
    if not ft.length_buckets:
        return DataLoader(data, batch_size=size, shuffle=False, collate_fn=collate)
    lengths = data.lengths
    order = sorted(range(len(data)), key=lengths.__getitem__)
    return DataLoader(data, batch_sampler=[order[i:i + size] for i in range(0, len(order), size)], collate_fn=collate)
