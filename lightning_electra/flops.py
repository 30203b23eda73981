"""Training compute in the ELECTRA paper's convention, plus a measured count for cross-checking.

The analytic part is a port of google-research/electra `flops_computation.py`, which produced the paper's
"train FLOPs" column (Tables 1, 8). Its conventions, kept as-is so our numbers are comparable with the paper's:

* An operation is a mathematical op, not a machine instruction: an exp costs the same as an add.
* A matmul of an (m x n) matrix by an n-vector costs 2mn (multiply and add counted separately, no FMA).
* Embedding lookups are dense one-hot matmuls (2 * embedding * vocab per token), as on TPUs.
* Backward = forward (exact for matmuls, which dominate), so training = 2 x forward per example.
* The MLM output layer (dense + GELU + LayerNorm + vocab projection + softmax) only runs on the masked
  positions: `output_frac` = 20/128 of the sequence (the 15% mask rate rounded up to max_predictions=20 at 128).
* Per-element costs of the O(hidden) element-wise ops (they barely move totals, which are O(hidden^2)):
    DROPOUT 4     random number, >=, multiply by mask, multiply by 1 / (1 - rate)
    LAYER_NORM 5  mean (sum), variance (square and sum), bias add, scale multiply
    ACTIVATION 8  GELU's tanh approximation: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
    SOFTMAX 5     max, subtract, exp, sum, divide
* ELECTRA = discriminator with a binary (replaced/original) head + generator with an MLM head. With tied
  embeddings the generator uses D's embedding size (and projects up to its own hidden size).

`measure_flops` instead counts what torch actually executes (matmul-type ops only, forward and backward), for
checking a real model against the analytic figure; expect it to be lower (sparse lookups, no element-wise ops).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

DROPOUT = 4
LAYER_NORM = 5
ACTIVATION = 8
SOFTMAX = 5


@dataclass(frozen=True)
class TransformerShape:
    """A BERT-style encoder's shape; FLOP methods are forward-pass, per sequence (summed over `seq` positions)."""

    hidden: int
    layers: int
    embedding: int | None = None  # None -> hidden
    intermediate: int | None = None  # None -> 4 * hidden
    heads: int | None = None  # None -> max(1, hidden // 64)
    seq: int = 128
    vocab: int = 30522
    output_frac: float = 20 / 128  # fraction of positions that go through the MLM output softmax

    @property
    def e(self) -> int:
        return self.hidden if self.embedding is None else self.embedding

    @property
    def i(self) -> int:
        return 4 * self.hidden if self.intermediate is None else self.intermediate

    @property
    def n_heads(self) -> int:
        return max(1, self.hidden // 64) if self.heads is None else self.heads

    def block_flops(self) -> float:
        """One transformer layer over the whole sequence."""
        h, i, s, heads = self.hidden, self.i, self.seq, self.n_heads
        per_token = (
            3 * 2 * h * h  # query, key, value projections
            + 3 * h  # their biases
            + 2 * h * s  # attention scores: each token's query against s keys
            + SOFTMAX * s * heads  # per head, over s scores
            + DROPOUT * s * heads  # attention-probability dropout
            + s * heads  # 1 / sqrt(head_size) scaling
            + 2 * h * s  # probability-weighted sum of values
            + 2 * h * h + h  # attention output projection + bias
            + DROPOUT * h + h  # its dropout + residual add
            # The official script counts this LayerNorm as 5 FLOPs per token, not 5 * h (an upstream slip, kept
            # so totals match the paper; it is < 0.01% of a block).
            + LAYER_NORM
            + 2 * h * i + ACTIVATION * i + i  # FFN up-projection, GELU, bias
            + 2 * h * i + h  # FFN down-projection + bias
            + DROPOUT * h + h + LAYER_NORM * h  # dropout, residual, LayerNorm
        )
        return float(per_token * s)

    def embedding_flops(self, output: bool = False) -> float:
        """Input embeddings (output=False) or the MLM output head (output=True, only on output_frac of tokens)."""
        h, e, s, v = self.hidden, self.e, self.seq, self.vocab
        per_token = 2 * e * v  # dense one-hot lookup, or the output projection onto the vocabulary
        if not output:
            per_token += (
                2 * e * (s + 2)  # one-hot position (s) and token-type (2) lookups
                + 2 * e  # adding them to the token embedding
                + LAYER_NORM * e + DROPOUT * e
            )
            if e != h:
                per_token += 2 * h * e + h  # projection embedding -> hidden, + bias
            return float(per_token * s)
        per_token += (
            2 * h * e + e  # dense hidden -> embedding, + bias
            + ACTIVATION * e + LAYER_NORM * e
            + SOFTMAX * v  # softmax over the vocabulary
            + 2 * v  # picking out the target word's log-probability
        )
        return float(self.output_frac * per_token * s)

    def binary_head_flops(self) -> float:
        """ELECTRA's replaced-token head: dense + GELU, then one logit per token."""
        h = self.hidden
        return float((2 * h * h + h + ACTIVATION * h + 2 * h) * self.seq)

    def forward_flops(self, head: str) -> float:
        """Whole-model forward FLOPs for one sequence; head is "mlm", "binary" or "none"."""
        heads = {
            "mlm": self.embedding_flops(output=True),
            "binary": self.binary_head_flops(),
            "none": 0.0,
        }
        if head not in heads:
            raise ValueError(f"head must be one of {sorted(heads)}, got {head!r}")
        return self.layers * self.block_flops() + self.embedding_flops(output=False) + heads[head]


def mlm_train_flops(shape: TransformerShape, batch_size: int, steps: float) -> float:
    """BERT-style MLM pre-training: 2 x forward (backward costs the same as forward)."""
    return 2 * batch_size * steps * shape.forward_flops("mlm")


def discriminator_train_flops(shape: TransformerShape, batch_size: int, steps: float) -> float:
    """The discriminator alone, with its binary head."""
    return 2 * batch_size * steps * shape.forward_flops("binary")


def electra_train_flops(
    disc: TransformerShape, gen: TransformerShape | None, batch_size: int, steps: float
) -> float:
    """D + G. gen=None is a unigram/uniform sampler, which the convention counts as free.

    Tied embeddings are the caller's job: pass gen with `embedding=` D's embedding size (untied: None).
    """
    total = discriminator_train_flops(disc, batch_size, steps)
    if gen is not None:
        total += mlm_train_flops(gen, batch_size, steps)
    return total


def measure_flops(fn: Callable[[], torch.Tensor]) -> int:
    """FLOPs torch counts for fn() (a scalar loss) and its backward: matmul-type ops only, as 2 per MAC."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn().backward()
    return int(counter.get_total_flops())
