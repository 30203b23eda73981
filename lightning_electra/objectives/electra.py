"""ELECTRA, trained jointly: L_MLM(G) + lambda * L_Disc(D), the discriminator loss never reaching G.

G fills the masked positions with samples (fp32 Gumbel-max, no gradient); a sample equal to the original counts as
original; D labels every non-pad token replaced or original. `model.generator` may instead be `unigram` (samples
by corpus token frequency) or `uniform` (the official code's `uniform_generator`): no network, no MLM loss.
"""

import torch

from lightning_electra.corruption import replace_at, sample_tokens
from lightning_electra.flops import discriminator_train_flops, mlm_train_flops
from lightning_electra.models import build_discriminator, build_mlm, discriminator_shape, generator_shape, share_weights
from lightning_electra.module import PretrainModule
from lightning_electra.objectives.losses import discriminator_metrics, mlm_logits, mlm_metrics, sampled_accuracy


class Electra(PretrainModule):
    def build(self) -> None:
        self.discriminator = build_discriminator(self.cfg.model, self.special.vocab_size)
        self.build_generator(shares_with=self.discriminator)

    def build_generator(self, shares_with) -> None:
        """G, sharing `model.tie`'s weights with the model it corrupts the input of; or a fixed sampling distribution:
        the corpus token frequencies (unigram) or uniform."""
        m, vocab = self.cfg.model, self.special.vocab_size
        self.generator = None
        if m.generator == "learned":
            self.generator = build_mlm(generator_shape(m), m, vocab)
            share_weights(self.generator, shares_with, m.tie)
        else:
            unigram = m.generator == "unigram" and self.token_counts is not None
            weights = torch.from_numpy(self.token_counts) if unigram else torch.ones(vocab)
            self.register_buffer("sampling_probs", self._never_sample_specials(weights))

    @classmethod
    def generator_width(cls, cfg) -> int | None:
        return generator_shape(cfg.model).hidden if cfg.model.generator == "learned" else 0

    def exported_models(self):
        return {"discriminator": self.discriminator, **({"generator": self.generator} if self.generator else {})}

    def _never_sample_specials(self, weights: torch.Tensor) -> torch.Tensor:
        s = self.special
        weights = weights.double().clone()
        weights[[s.pad, s.cls, s.sep, s.mask]] = 0
        return (weights / weights.sum()).float()

    def generate(self, batch, masked):
        """(G's MLM metrics, sampled tokens (B, P))."""
        if self.generator is None:
            flat = torch.multinomial(self.sampling_probs, masked.positions.numel(), replacement=True)
            return {}, flat.view_as(masked.positions)
        logits = mlm_logits(self.generator, masked.input_ids, batch, masked.positions)
        return mlm_metrics(logits, masked), sample_tokens(logits, self.cfg.train.temperature)

    def corrupt(self, batch, masked):
        """G's metrics and the corrupted input: masked positions hold G's samples."""
        metrics, sampled = self.generate(batch, masked)
        metrics["sampled_accuracy"] = sampled_accuracy(sampled, masked)
        return metrics, replace_at(batch["input_ids"], masked.positions, sampled, masked.weights)

    def discriminate(self, batch, corrupted):
        hidden = self.discriminator.electra(input_ids=corrupted, attention_mask=batch["attention_mask"],
                                            token_type_ids=batch["token_type_ids"]).last_hidden_state
        return self.discriminator.discriminator_predictions(hidden)  # (B, L): HF squeezes the last dim

    def objective(self, batch, masked):
        metrics, corrupted = self.corrupt(batch, masked)
        replaced = corrupted != batch["input_ids"]  # a sample equal to the original counts as original
        logits = self.discriminate(batch, corrupted)
        metrics.update(discriminator_metrics(logits, replaced, self.scored_positions(batch, masked)))
        metrics["loss"] = metrics.get("mlm_loss", 0) + self.cfg.train.disc_weight * metrics["disc_loss"]
        return metrics

    def scored_positions(self, batch, masked):
        """Where the discriminator loss is taken: every non-pad token."""
        return batch["attention_mask"].bool()

    def paper_flops_per_step(self) -> float:
        d = self.shape(discriminator_shape(self.cfg.model))
        return discriminator_train_flops(d, self.cfg.train.batch_size, 1) + self.generator_flops_per_step()

    def generator_flops_per_step(self) -> float:
        """G's training cost (MLM at the masked positions); a unigram or uniform sampler costs nothing."""
        if self.cfg.model.generator != "learned":
            return 0.0
        return mlm_train_flops(self.shape(generator_shape(self.cfg.model)), self.cfg.train.batch_size, 1)

    def backbone(self):
        return self.discriminator.electra
