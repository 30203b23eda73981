"""GLUE examples tokenised and padded into batches. The tasks and their files are
lightning_electra/data/glue_tasks.py's; scores are on a 0-100 scale throughout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from lightning_electra.data.glue_tasks import Example

# ----------------------------------------------------------------------------------------------- tokenisation


class GlueDataset(Dataset):
    """Pre-tokenised examples: [CLS] a [SEP] (b [SEP]), truncated longest-first to max_seq_length."""

    def __init__(self, examples: Sequence[Example], tokenizer: Any, max_seq_length: int, regression: bool):
        a = [e[0] for e in examples]
        b = [e[1] for e in examples]
        enc = tokenizer(a, b if all(x is not None for x in b) else None, truncation=True,
                        max_length=max_seq_length, return_attention_mask=False)
        self.input_ids: list[list[int]] = enc["input_ids"]
        self.token_type_ids: list[list[int]] = enc["token_type_ids"]
        self.labels = torch.tensor([e[2] for e in examples], dtype=torch.float32 if regression else torch.long)
        self.lengths = [len(ids) for ids in self.input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The split as flat tensors (a file of them loads in a fraction of tokenising's time)."""
        return {"input_ids": torch.tensor([i for ids in self.input_ids for i in ids], dtype=torch.int32),
                "token_type_ids": torch.tensor([t for types in self.token_type_ids for t in types], dtype=torch.int8),
                "lengths": torch.tensor(self.lengths, dtype=torch.int32), "labels": self.labels}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "GlueDataset":
        data = cls.__new__(cls)
        ids, types = tensors["input_ids"].tolist(), tensors["token_type_ids"].tolist()
        ends = tensors["lengths"].cumsum(0).tolist()
        starts = [0, *ends[:-1]]
        data.input_ids = [ids[a:b] for a, b in zip(starts, ends)]
        data.token_type_ids = [types[a:b] for a, b in zip(starts, ends)]
        data.labels, data.lengths = tensors["labels"], tensors["lengths"].tolist()
        return data

    def __getitem__(self, i: int) -> tuple[list[int], list[int], torch.Tensor]:
        return self.input_ids[i], self.token_type_ids[i], self.labels[i]


def padded_width(length: int, widths: Sequence[int]) -> int:
    """The smallest of `widths` that holds `length` (`length` itself when none does, or there are none)."""
    return next((w for w in widths if w >= length), length)


@dataclass
class GlueCollator:
    """Pads a batch to its longest sequence (not max_seq_length: most GLUE pairs are far shorter than 128), or, given
    `widths`, to the smallest of them that holds it: a few shapes only, which a compiled step keeps."""

    pad_id: int = 0
    widths: tuple[int, ...] = ()

    def __call__(self, batch: list[tuple[list[int], list[int], torch.Tensor]]) -> dict[str, torch.Tensor]:
        width = padded_width(max(len(ids) for ids, _, _ in batch), self.widths)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        types = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (i, t, _) in enumerate(batch):
            ids[row, : len(i)] = torch.tensor(i)
            types[row, : len(t)] = torch.tensor(t)
            mask[row, : len(i)] = 1
        labels = torch.stack([lab for _, _, lab in batch])
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}
