"""Masking and sampling shared by every variant: drawn on the device, anew every time a sequence is used.

Shapes stay static: every sequence gets exactly `max_predictions` masked *slots* (B, P); a sequence with fewer
candidate tokens than that fills the rest with weight-0 slots. Heads that score masked positions (the generator's
MLM head) then run on (B, P) rows instead of (B, L), the main saving of ELECTRA implementations over plain ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lightning_electra.data.tokenizer import SpecialIds


@dataclass
class Masked:
    input_ids: torch.Tensor  # (B, L) with [MASK] at 85% of the chosen positions (the rest unchanged)
    positions: torch.Tensor  # (B, P) indices of the chosen positions
    labels: torch.Tensor  # (B, P) original ids there
    weights: torch.Tensor  # (B, P) 1.0 for real slots, 0.0 for filler
    is_masked: torch.Tensor  # (B, L) bool: the position was chosen


def max_predictions(seq_length: int, mask_prob: float) -> int:
    """The official cap: int((mask_prob + 0.005) * L), 19 for 15% of 128."""
    return max(1, int((mask_prob + 0.005) * seq_length))


def mask_tokens(input_ids: torch.Tensor, special: SpecialIds, mask_prob: float, mask_token_prob: float,
                generator: torch.Generator | None = None, random_token_prob: float = 0.0) -> Masked:
    """Choose round(mask_prob x candidates) positions per sequence (at most the cap), never [CLS]/[SEP]/[PAD]/[MASK].

    Of the chosen positions, `mask_token_prob` become [MASK], `random_token_prob` a token drawn uniformly from the
    vocabulary (`random_tokens`), and the rest keep their token. The official code has no random tokens (85% [MASK],
    15% kept); BERT's masking is 80 / 10 / 10.
    """
    batch, length = input_ids.shape
    slots = max_predictions(length, mask_prob)
    candidate = ~((input_ids == special.pad) | (input_ids == special.cls) | (input_ids == special.sep)
                  | (input_ids == special.mask))
    n_candidates = candidate.sum(1)
    n_chosen = torch.clamp(torch.round(n_candidates * mask_prob), min=1).clamp(max=slots).minimum(n_candidates)
    # Uniform random subset: the top-`slots` of random scores over candidates (non-candidates score -1).
    scores = torch.rand(batch, length, device=input_ids.device, generator=generator).masked_fill(~candidate, -1.0)
    positions = scores.topk(slots, dim=1).indices
    weights = (torch.arange(slots, device=input_ids.device) < n_chosen[:, None]).float()
    labels = input_ids.gather(1, positions)
    is_masked = torch.zeros_like(candidate).scatter_(1, positions, weights.bool())
    share = torch.rand(batch, length, device=input_ids.device, generator=generator)
    masked_ids = input_ids.masked_fill(is_masked & (share < mask_token_prob), special.mask)
    if random_token_prob > 0:  # a branch on a config value: the default path draws nothing more
        to_random = is_masked & (share >= mask_token_prob) & (share < mask_token_prob + random_token_prob)
        masked_ids = torch.where(to_random, random_tokens(input_ids.shape, special, input_ids.device, generator),
                                 masked_ids)
    return Masked(masked_ids, positions, labels, weights, is_masked)


def random_tokens(shape, special: SpecialIds, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """Ids drawn uniformly from the vocabulary except [PAD], [CLS], [SEP] and [MASK] (BERT draws from all of it:
    4 of 30,522 ids apart, and no [PAD] or [SEP] inside a text this way)."""
    excluded = sorted({special.pad, special.cls, special.sep, special.mask})
    ids = torch.randint(special.vocab_size - len(excluded), shape, device=device, generator=generator)
    for skipped in excluded:  # shift past each excluded id in turn: a uniform draw over the others
        ids = ids + (ids >= skipped).long()
    return ids


def gumbel_noise(shape, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise in float32, from torch.rand (torch's exponential_ is ~10x slower on a CPU)."""
    noise = torch.rand(shape, device=device, generator=generator)
    # -log(-log(u)), in place: the same values as out of place, without four (B, P, V) temporaries (for ELECTRA at
    # the cpu scale, 42 MB each a step); rand < 1, so finite
    return noise.clamp_min_(torch.finfo(torch.float32).tiny).log_().neg_().log_().neg_()


@torch.no_grad()
def sample_tokens(logits: torch.Tensor, temperature: float = 1.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One sample per row of softmax(logits / T) by the Gumbel-max trick, in float32 (bf16 logits bias samples)."""
    logits = logits.float() if temperature == 1 else logits.float() / temperature  # x / 1 is x: no copy
    return gumbel_noise(logits.shape, logits.device, generator).add_(logits).argmax(-1)


def replace_at(input_ids: torch.Tensor, positions: torch.Tensor, tokens: torch.Tensor,
               weights: torch.Tensor) -> torch.Tensor:
    """input_ids with `tokens` written at the real (weight-1) slots; filler slots leave the input as it is."""
    current = input_ids.gather(1, positions)
    return input_ids.scatter(1, positions, torch.where(weights.bool(), tokens, current))
