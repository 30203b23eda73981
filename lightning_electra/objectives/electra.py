"""ELECTRA, trained jointly: L_MLM(G) + lambda * L_Disc(D), the discriminator loss never reaching G.

G (lightning_electra/objectives/generator.py) fills the masked positions with its samples; a sample equal to the
original counts as original; D labels every non-pad token replaced or original.
"""

from lightning_electra.flops import discriminator_train_flops
from lightning_electra.models import build_discriminator, discriminator_shape
from lightning_electra.module import PretrainModule
from lightning_electra.objectives.generator import Generator
from lightning_electra.objectives.losses import discriminator_metrics


class Electra(PretrainModule):
    def build(self) -> None:
        self.discriminator = build_discriminator(self.cfg.model, self.special.vocab_size)
        self.generator = Generator(self.cfg, self.special, self.token_counts, shares_with=self.discriminator)

    @classmethod
    def generator_width(cls, cfg) -> int | None:
        return Generator.width(cfg)

    def exported_models(self):
        return {"discriminator": self.discriminator, **self.generator.exported()}

    def discriminate(self, batch, corrupted):
        hidden = self.discriminator.electra(input_ids=corrupted, attention_mask=batch["attention_mask"],
                                            token_type_ids=batch["token_type_ids"]).last_hidden_state
        return self.discriminator.discriminator_predictions(hidden)  # (B, L): HF squeezes the last dim

    def objective(self, batch, masked):
        metrics, corrupted = self.generator.corrupt(batch, masked)
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
        return Generator.train_flops(self.cfg, self.special.vocab_size)

    def backbone(self):
        return self.discriminator.electra
