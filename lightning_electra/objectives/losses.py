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
    weights = masked.weights
    loss = F.cross_entropy(logits.flatten(0, 1).float(), masked.labels.flatten(), reduction="none")
    n = weights.sum().clamp_min(1)
    accuracy = ((logits.argmax(-1) == masked.labels).float() * weights).sum() / n
    return {"mlm_loss": (loss * weights.flatten()).sum() / n, "mlm_accuracy": accuracy}


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
            "replaced_fraction": actual.sum() / n}
