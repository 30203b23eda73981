"""Pieces the objectives share: an MLM model's logits at the masked slots (in float32), MLM and replaced-token-detection
losses with the official metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import ElectraForMaskedLM

from lightning_electra.corruption import Masked


def hidden_at(mlm: ElectraForMaskedLM, input_ids: torch.Tensor, batch: dict[str, torch.Tensor],
              positions: torch.Tensor) -> torch.Tensor:
    """An MLM model's last hidden states at the masked slots: (B, P, H)."""
    hidden = mlm.electra(input_ids=input_ids, attention_mask=batch["attention_mask"],
                         token_type_ids=batch["token_type_ids"]).last_hidden_state
    return hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))


def mlm_logits(mlm: ElectraForMaskedLM, input_ids: torch.Tensor, batch: dict[str, torch.Tensor],
               positions: torch.Tensor) -> torch.Tensor:
    """An MLM model's logits at the masked slots only: (B, P, V) instead of (B, L, V)."""
    return vocab_logits(mlm, hidden_at(mlm, input_ids, batch, positions))


def vocab_logits(mlm: ElectraForMaskedLM, hidden: torch.Tensor) -> torch.Tensor:
    """The MLM head on hidden states, its projection onto the vocabulary in float32 whatever the autocast: bf16
    logits (8 bits of mantissa: a logit of 10 is off by up to 0.04) would bias the samples drawn from them."""
    head, features = mlm.generator_lm_head, mlm.generator_predictions(hidden)
    with torch.autocast(hidden.device.type, enabled=False):
        return F.linear(features.float(), head.weight.float(), None if head.bias is None else head.bias.float())


def mlm_metrics(logits: torch.Tensor, masked: Masked) -> dict[str, torch.Tensor]:
    """The MLM loss and accuracy over the chosen positions (the official metrics), and the accuracy where the input
    hides the answer ([MASK], or BERT's random token), where only the context can supply it: the chosen positions
    left unchanged (15% in the official masking, 10% in BERT's) are learnt by copying within a few hundred steps and
    lift `mlm_accuracy` by their share while the context is still unused. Each beside its unigram plateau."""
    weights = masked.weights
    loss = F.cross_entropy(logits.flatten(0, 1).float(), masked.labels.flatten(), reduction="none")
    n = weights.sum().clamp_min(1)
    right = (logits.argmax(-1) == masked.labels).float()
    hidden = weights * (masked.input_ids.gather(1, masked.positions) != masked.labels)
    return {"mlm_loss": (loss * weights.flatten()).sum() / n, "mlm_accuracy": (right * weights).sum() / n,
            "mlm_unigram_accuracy": unigram_accuracy(masked.labels, weights, logits.shape[-1]),
            "mlm_context_accuracy": (right * hidden).sum() / hidden.sum().clamp_min(1),
            "mlm_context_unigram_accuracy": unigram_accuracy(masked.labels, hidden, logits.shape[-1])}


def unigram_accuracy(labels: torch.Tensor, weights: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The unigram plateau: the accuracy of always answering the most frequent of these labels. An MLM whose accuracy
    sits there has learnt token frequencies only, nothing of the context."""
    counts = torch.zeros(vocab_size, device=labels.device).scatter_add_(0, labels.flatten(), weights.flatten().float())
    return counts.max() / weights.sum().clamp_min(1)


def sampled_accuracy(sampled: torch.Tensor, masked: Masked) -> torch.Tensor:
    """Share of the real masked slots where G sampled the original token (those count as not replaced)."""
    return ((sampled == masked.labels).float() * masked.weights).sum() / masked.weights.sum().clamp_min(1)


def discriminator_metrics(logits: torch.Tensor, replaced: torch.Tensor,
                          scored: torch.Tensor) -> dict[str, torch.Tensor]:
    """Binary cross-entropy of replaced-token detection over the `scored` positions, with the official metrics."""
    scored = scored.float()
    n = scored.sum().clamp_min(1)
    loss = (F.binary_cross_entropy_with_logits(logits.float(), replaced.float(), reduction="none") * scored).sum() / n
    predicted = (logits > 0) & scored.bool()
    actual = replaced & scored.bool()
    true_pos = (predicted & actual).sum()
    return {"disc_loss": loss,
            "disc_accuracy": ((predicted == actual).float() * scored).sum() / n,
            "disc_precision": true_pos / predicted.sum().clamp_min(1),
            "disc_recall": true_pos / actual.sum().clamp_min(1),
            "disc_auroc": auroc(logits.float().flatten(), actual.flatten(), scored.bool().flatten()),
            # D's loss if it answered its prior (the replaced rate) everywhere: a D whose loss sits here has learnt
            # nothing, though its accuracy reads 1 - replaced rate
            "disc_prior_loss": binary_entropy(actual.sum() / n),
            "replaced_fraction": actual.sum() / n}


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """In nats, as binary cross-entropy is; 0 at p = 0 or 1."""
    p = p.float().clamp(1e-7, 1 - 1e-7)
    return -(p * p.log() + (1 - p) * (1 - p).log())


def auroc(scores: torch.Tensor, positive: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve of `scores` separating `positive` from the other `counted` entries (1-D each): the
    chance that a positive outscores a negative, ties counting half; 0.5 where either class is empty. Threshold-free,
    so it moves while D still sits near its prior (when precision and recall at 0.5 are both 0). Static shapes (a
    sort and cumulative sums, no boolean indexing), so it runs inside a compiled or graphed step."""
    sorted_scores, order = scores.sort()
    pos = (positive & counted)[order].float()
    neg = (~positive & counted)[order].float()
    neg_upto = neg.cumsum(0)  # negatives at or below each sorted entry
    n = scores.numel()
    index = torch.arange(n, device=scores.device)
    differs = sorted_scores[1:] != sorted_scores[:-1]
    first = torch.cat([differs.new_ones(1), differs])  # entry starts a run of equal scores
    last = torch.cat([differs, differs.new_ones(1)])  # entry ends one
    start = torch.where(first, index, 0).cummax(0).values
    end = torch.where(last, index, n - 1).flip(0).cummin(0).values.flip(0)
    below = torch.where(start > 0, neg_upto[(start - 1).clamp_min(0)], 0.0)
    tied = neg_upto[end] - below
    n_pos, n_neg = pos.sum(), neg.sum()
    area = (pos * (below + 0.5 * tied)).sum() / (n_pos * n_neg).clamp_min(1)
    return torch.where((n_pos > 0) & (n_neg > 0), area, torch.full_like(area, 0.5))
