"""ELECTRA, trained jointly: L_MLM(G) + lambda * L_Disc(D), the discriminator loss never reaching G.

G fills the masked positions with samples (fp32 Gumbel-max, no gradient); a sample equal to the original counts as
original; D labels every non-pad token replaced or original.
"""

from lightning_electra.corruption import replace_at, sample_tokens
from lightning_electra.flops import electra_train_flops
from lightning_electra.models import (build_discriminator, build_mlm, discriminator_shape, generator_shape,
                                      share_weights)
from lightning_electra.pretrain import PretrainModule, discriminator_metrics, mlm_logits, mlm_metrics


class Electra(PretrainModule):
    def build(self) -> None:
        m, vocab = self.cfg.model, self.special.vocab_size
        self.discriminator = build_discriminator(m, vocab)
        self.generator = build_mlm(generator_shape(m), m, vocab)
        share_weights(self.generator, self.discriminator, m.tie)

    def corrupt(self, batch, masked):
        """G's MLM metrics and the corrupted input: masked positions hold G's samples."""
        logits = mlm_logits(self.generator, masked.input_ids, batch, masked.positions)
        sampled = sample_tokens(logits, self.cfg.train.temperature)
        corrupted = replace_at(batch["input_ids"], masked.positions, sampled, masked.weights)
        metrics = mlm_metrics(logits, masked)
        metrics["sampled_accuracy"] = ((sampled == masked.labels).float() * masked.weights).sum() \
            / masked.weights.sum().clamp_min(1)
        return metrics, corrupted

    def discriminate(self, batch, corrupted):
        hidden = self.discriminator.electra(input_ids=corrupted, attention_mask=batch["attention_mask"],
                                            token_type_ids=batch["token_type_ids"]).last_hidden_state
        return self.discriminator.discriminator_predictions(hidden)  # (B, L): HF squeezes the last dim

    def objective(self, batch, masked):
        metrics, corrupted = self.corrupt(batch, masked)
        replaced = corrupted != batch["input_ids"]  # a sample equal to the original counts as original
        logits = self.discriminate(batch, corrupted)
        metrics.update(discriminator_metrics(logits, replaced, self.scored_positions(batch, masked)))
        metrics["loss"] = metrics["mlm_loss"] + self.cfg.train.disc_weight * metrics["disc_loss"]
        return metrics

    def scored_positions(self, batch, masked):
        """Where the discriminator loss is taken: every non-pad token."""
        return batch["attention_mask"].bool()

    def paper_flops_per_step(self) -> float:
        m = self.cfg.model
        return electra_train_flops(self.shape(discriminator_shape(m)), self.shape(generator_shape(m)),
                                   self.cfg.train.batch_size, 1)

    def backbone(self):
        return self.discriminator.electra
