"""G, the part that corrupts an objective's input, held by every objective that has one (ELECTRA and its variants,
Replace-MLM, two-stage): it is built, samples, corrupts and has a cost, whatever the objective does with the result.

`model.generator` chooses what G is: `learned`, a small MLM transformer (D's depth, `model.generator_fraction` of its
width) sharing `model.tie`'s weights with the model it corrupts the input of; `unigram`, the corpus token frequencies;
`uniform`, the official code's `uniform_generator`. The last two are fixed distributions: no network, no MLM loss, no
FLOPs. G samples at the masked positions by fp32 Gumbel-max at `train.temperature`, without gradient.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from lightning_electra.config import Config
from lightning_electra.corruption import Masked, replace_at, sample_tokens
from lightning_electra.data.tokenizer import SpecialIds
from lightning_electra.flops import TransformerShape, mlm_train_flops
from lightning_electra.models import build_mlm, generator_shape, share_weights
from lightning_electra.objectives.losses import mlm_logits, mlm_metrics, sampled_accuracy


class Generator(torch.nn.Module):
    def __init__(self, cfg: Config, special: SpecialIds, token_counts: np.ndarray | None = None,
                 shares_with: torch.nn.Module | None = None, layers: int | None = None):
        """`shares_with`: the model whose weights G shares under `model.tie`; `layers`: a shallower G than D's depth
        (AMOS's deepest exit)."""
        super().__init__()
        m, vocab = cfg.model, special.vocab_size
        self.temperature = cfg.train.temperature
        self.mlm = None  # ElectraForMaskedLM, when learned
        if m.generator == "learned":
            self.mlm = build_mlm(self.shape(cfg, layers), m, vocab)
            if shares_with is not None:
                share_weights(self.mlm, shares_with, m.tie)
        else:
            unigram = m.generator == "unigram" and token_counts is not None
            weights = torch.from_numpy(token_counts).double() if unigram else torch.ones(vocab, dtype=torch.double)
            weights[[special.pad, special.cls, special.sep, special.mask]] = 0  # never sample a special token
            self.register_buffer("sampling_probs", (weights / weights.sum()).float())
        # checkpoints written before G was a part of its own hold its weights one level up
        self._register_load_state_dict_pre_hook(_from_before_the_component)

    @staticmethod
    def shape(cfg: Config, layers: int | None = None) -> TransformerShape:
        shape = generator_shape(cfg.model)
        return shape if layers is None else replace(shape, layers=layers)

    @staticmethod
    def width(cfg: Config) -> int:
        """G's hidden size for reports; 0 for a fixed distribution."""
        return generator_shape(cfg.model).hidden if cfg.model.generator == "learned" else 0

    @staticmethod
    def train_flops(cfg: Config, vocab_size: int, layers: int | None = None) -> float:
        """G's training cost per step in the paper's convention: MLM at the masked positions (a fixed distribution
        costs nothing)."""
        if cfg.model.generator != "learned":
            return 0.0
        shape = replace(Generator.shape(cfg, layers), seq=cfg.data.max_seq_length, vocab=vocab_size)
        return mlm_train_flops(shape, cfg.train.batch_size, 1)

    def sample(self, batch: dict[str, torch.Tensor], masked: Masked) -> tuple[dict, torch.Tensor]:
        """(G's MLM metrics, the tokens sampled at the masked slots (B, P))."""
        if self.mlm is None:
            flat = torch.multinomial(self.sampling_probs, masked.positions.numel(), replacement=True)
            return {}, flat.view_as(masked.positions)
        logits = mlm_logits(self.mlm, masked.input_ids, batch, masked.positions)
        return mlm_metrics(logits, masked), sample_tokens(logits, self.temperature)

    def corrupt(self, batch: dict[str, torch.Tensor], masked: Masked) -> tuple[dict, torch.Tensor]:
        """G's metrics and the corrupted input: the masked positions hold G's samples."""
        metrics, sampled = self.sample(batch, masked)
        metrics["sampled_accuracy"] = sampled_accuracy(sampled, masked)
        return metrics, replace_at(batch["input_ids"], masked.positions, sampled, masked.weights)

    def exported(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.mlm} if self.mlm is not None else {}


def _from_before_the_component(state_dict: dict, prefix: str, *args) -> None:
    """`generator.electra...` (G was the objective's ElectraForMaskedLM) -> `generator.mlm.electra...`."""
    for key in [k for k in state_dict if k.startswith(prefix)
                and not k[len(prefix):].startswith(("mlm.", "sampling_probs"))]:
        state_dict[prefix + "mlm." + key[len(prefix):]] = state_dict.pop(key)
