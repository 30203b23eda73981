"""The plain transformers baseline the suite is measured and checked against, and benchmark inputs.

The plain path is what one writes with transformers alone: `ElectraForMaskedLM` (G) and `ElectraForPreTraining` (D)
at the same sizes with tied embeddings, G's logits over the whole vocabulary at every position and `labels=-100` off
the masked ones, D's loss from its own `labels`. Same masking, same sampling, same losses as the suite's ELECTRA
(tests/test_equivalence.py checks that); only where the work is done differs. `PlainElectra` trains it through the
suite's own LightningModule (optimiser, schedule, clipping), so the benchmark times both with one training step.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from lightning_electra.config import Config
from lightning_electra.corruption import Masked, replace_at, sample_tokens
from lightning_electra.flops import electra_train_flops
from lightning_electra.models import build_discriminator, build_mlm, discriminator_shape, generator_shape, share_weights
from lightning_electra.module import PretrainModule

SMALL_MODEL = ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=1", "model.intermediate_size=256",
               "model.embedding_size=64", "amos.exits=[1,2]"]  # AMOS's 4, 6, 8 of 12 collide at 2 layers


def plain_mlm_labels(input_ids: torch.Tensor, masked: Masked) -> torch.Tensor:
    """transformers' MLM labels: the original id at each real masked slot, -100 everywhere else."""
    labels = torch.full_like(input_ids, -100)
    return labels.scatter(1, masked.positions, torch.where(masked.weights.bool(), masked.labels, -100))


def plain_electra_objective(generator, discriminator, batch: dict[str, torch.Tensor], masked: Masked,
                            temperature: float = 1.0, disc_weight: float = 50.0) -> dict[str, torch.Tensor]:
    """ELECTRA as a plain transformers user writes it: full-vocabulary G logits, the models' own losses."""
    inputs = {"attention_mask": batch["attention_mask"], "token_type_ids": batch["token_type_ids"]}
    g = generator(input_ids=masked.input_ids, labels=plain_mlm_labels(batch["input_ids"], masked), **inputs)
    vocab = g.logits.shape[-1]
    with torch.no_grad():
        at_masked = g.logits.gather(1, masked.positions[..., None].expand(-1, -1, vocab))
        sampled = sample_tokens(at_masked, temperature)
        corrupted = replace_at(batch["input_ids"], masked.positions, sampled, masked.weights)
    d = discriminator(input_ids=corrupted, labels=(corrupted != batch["input_ids"]).long(), **inputs)
    return {"loss": g.loss + disc_weight * d.loss, "mlm_loss": g.loss, "disc_loss": d.loss,
            "corrupted": corrupted}


def plain_mlm_objective(mlm, batch: dict[str, torch.Tensor], masked: Masked) -> dict[str, torch.Tensor]:
    """BERT's MLM with transformers' own loss over full-vocabulary logits."""
    out = mlm(input_ids=masked.input_ids, attention_mask=batch["attention_mask"],
              token_type_ids=batch["token_type_ids"], labels=plain_mlm_labels(batch["input_ids"], masked))
    return {"loss": out.loss, "mlm_loss": out.loss}


def corpus_ids(cfg: Config, rows: int, corpus_bytes: int) -> tuple[torch.Tensor, object, str]:
    """Rows of the packed corpus (a prefix of the run's corpus, or the 20 MB sample), via the project's DataModule."""
    from lightning_electra.data.datamodule import PretrainDataModule

    root = Path(cfg.data.data_dir)
    sources = [s for s in [*cfg.data.corpus, "corpus/sample-20mb.txt.xz"] if (root / s).exists()]
    if not sources:
        raise FileNotFoundError(f"No corpus under {root}: looked for {cfg.data.corpus} and corpus/sample-20mb.txt.xz")
    cfg = replace(cfg, data=replace(cfg.data, corpus=[sources[0]], max_corpus_bytes=corpus_bytes))
    dm = PretrainDataModule(cfg)
    dm.prepare_data()
    dm.setup()
    n = len(dm.train_set)
    g = torch.Generator().manual_seed(0)
    index = torch.randperm(n, generator=g)[:rows] if n >= rows else torch.randint(n, (rows,), generator=g)
    ids = torch.stack([dm.train_set[int(i)] for i in index])
    return ids, dm, f"{n:,} packed examples from the first {corpus_bytes / 1e6:g} MB of {sources[0]}"


class PlainElectra(PretrainModule):
    """ELECTRA the plain transformers way, as a module of the suite (its optimiser, schedule, clipping, step)."""

    def build(self) -> None:
        m, vocab = self.cfg.model, self.special.vocab_size
        self.discriminator = build_discriminator(m, vocab)
        self.generator = build_mlm(generator_shape(m), m, vocab)
        share_weights(self.generator, self.discriminator, "embeddings")

    def objective(self, batch, masked):
        t = self.cfg.train
        metrics = plain_electra_objective(self.generator, self.discriminator, batch, masked, t.temperature,
                                          t.disc_weight)
        return {k: v for k, v in metrics.items() if k != "corrupted"}

    def paper_flops_per_step(self) -> float:
        """The algorithm's cost, the suite's ELECTRA's: the convention counts the same model, whatever the code."""
        m = self.cfg.model
        return electra_train_flops(self.shape(discriminator_shape(m)), self.shape(generator_shape(m)),
                                   self.cfg.train.batch_size, 1)

    def backbone(self):
        return self.discriminator.electra

    def exported_models(self):
        return {"discriminator": self.discriminator, "generator": self.generator}
