"""ELECTRA-style packing of a document stream into `[CLS] A [SEP] B [SEP]` examples.

Follows the official `build_pretraining_dataset.py` (ExampleBuilder): lines of a document accumulate until they reach
the target length or the document ends; they are then split into segments A and B at a line boundary (A aims at half
the length; 10% of examples keep everything in A), truncated to fit, and the next target is occasionally a random
shorter length so the model also sees short inputs. There is no next-sentence task.
"""

from __future__ import annotations

import random
from typing import Iterable, Iterator

import numpy as np
import torch

from lightning_electra.data.tokenizer import SpecialIds


class ExampleBuilder:
    def __init__(self, ids: SpecialIds, max_length: int, single_segment_prob: float = 0.1,
                 short_seq_prob: float = 0.05, seed: int = 0):
        if max_length < 5:
            raise ValueError(f"max_seq_length={max_length} is too short for [CLS] A [SEP] B [SEP]; use >= 5.")
        self.ids, self.max_length = ids, max_length
        self.single_segment_prob, self.short_seq_prob = single_segment_prob, short_seq_prob
        self.rng = random.Random(seed)
        self.lines: list[list[int]] = []
        self.length = 0
        self.target = max_length

    def add(self, tokens: list[int] | None) -> list[int] | None:
        """Add one line's token ids (None: the document ended). Returns a finished example or None."""
        if tokens is None:
            return self._make() if self.length else None
        if tokens:
            self.lines.append(tokens)
            self.length += len(tokens)
        return self._make() if self.length >= self.target else None

    def _make(self) -> list[int]:
        single = self.rng.random() < self.single_segment_prob
        first_target = 10**9 if single else (self.target - 3) // 2
        first: list[int] = []
        second: list[int] = []
        for line in self.lines:
            # A takes a line if it is empty, if the line fits, or half the time when it would overflow A
            if (not first or len(first) + len(line) < first_target
                    or (not second and len(first) < first_target and self.rng.random() < 0.5)):
                first += line
            else:
                second += line
        first = first[: self.max_length - 2]
        second = second[: max(0, self.max_length - len(first) - 3)]
        self.lines, self.length = [], 0
        self.target = (self.rng.randint(5, self.max_length) if self.rng.random() < self.short_seq_prob
                       else self.max_length)
        example = [self.ids.cls, *first, self.ids.sep]
        if second:
            example += [*second, self.ids.sep]
        return example


def pack(token_lines: Iterable[list[int] | None], builder: ExampleBuilder) -> Iterator[list[int]]:
    for tokens in token_lines:
        example = builder.add(tokens)
        if example is not None:
            yield example
    last = builder.add(None)
    if last is not None:
        yield last


def to_array(examples: list[list[int]], max_length: int, pad_id: int) -> np.ndarray:
    """Examples padded into one (N, max_length) uint16 array (the BERT vocabulary fits in 16 bits)."""
    out = np.full((len(examples), max_length), pad_id, dtype=np.uint16)
    for row, example in zip(out, examples):
        row[: len(example)] = example
    return out


def token_type_ids(input_ids: torch.Tensor, sep_id: int, pad_id: int) -> torch.Tensor:
    """Segment ids from packed ids: 0 up to and including the first [SEP], 1 for segment B, 0 on padding."""
    is_sep = (input_ids == sep_id).long()
    after_first_sep = (is_sep.cumsum(-1) - is_sep).clamp(max=1)
    return after_first_sep * (input_ids != pad_id)


def batch_from_ids(input_ids: torch.Tensor, special: SpecialIds) -> dict[str, torch.Tensor]:
    """The DataModule's collate: ids, segment ids, attention mask."""
    return {"input_ids": input_ids, "token_type_ids": token_type_ids(input_ids, special.sep, special.pad),
            "attention_mask": (input_ids != special.pad).long()}


def synthetic_ids(rows: int, seq: int, special: SpecialIds, seed: int = 0) -> torch.Tensor:
    """Random word ids shaped like packed examples: [CLS] A [SEP] B [SEP], 5% of rows shorter and padded."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(999, special.vocab_size // 2), special.vocab_size, (rows, seq), generator=g)  # past [unused]
    lengths = torch.full((rows,), seq)
    short = torch.rand(rows, generator=g) < 0.05
    lengths[short] = torch.randint(8, seq, (int(short.sum()),), generator=g)
    split = (lengths * (0.25 + 0.5 * torch.rand(rows, generator=g))).long()
    pos = torch.arange(seq)[None]
    ids[:, 0] = special.cls
    ids = torch.where(pos == split[:, None], special.sep, ids)
    ids = torch.where(pos == lengths[:, None] - 1, special.sep, ids)
    return torch.where(pos >= lengths[:, None], special.pad, ids)
