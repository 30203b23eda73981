"""Two-stage training (paper Fig. 3 right): (1) train G alone by MLM; (2) start D from G's weights, freeze G and
train D alone on the discriminator loss, with G still sampling (its forward FLOPs count).

Two fits in sequence, each a module of its own stage objective (`GeneratorStage`, then `DiscriminatorStage`); stage 2
starts from the state stage 1 ended with. G and D must be the same size (D copies G). Stage 2 gives D its own copy of
every weight, so G's frozen embeddings cannot freeze D's: weight sharing does not apply, and `model.tie=all` (one
network for both) is refused.
"""

import torch

from lightning_electra.config import ConfigError
from lightning_electra.flops import discriminator_train_flops
from lightning_electra.models import build_discriminator, discriminator_shape
from lightning_electra.module import PretrainModule
from lightning_electra.objectives.generator import Generator
from lightning_electra.objectives.losses import discriminator_metrics, mlm_logits, mlm_metrics


class TwoStage(PretrainModule):
    """What both stages share: the checks, the budget and G."""

    stages = 2

    @classmethod
    def for_stage(cls, stage: int) -> type[PretrainModule]:
        return (GeneratorStage, DiscriminatorStage)[stage - 1]

    @classmethod
    def check_config(cls, cfg) -> None:
        m = cfg.model
        if m.generator != "learned" or m.generator_fraction != 1.0 or m.tie == "all":
            raise ConfigError("two-stage training initialises D from G, so G must be a learned generator of D's "
                              f"size with its own weights: set model.generator_fraction=1.0 (got "
                              f"{m.generator_fraction}), model.generator=learned (got {m.generator}) and "
                              f"model.tie=embeddings or none (got {m.tie}).")

    @classmethod
    def generator_width(cls, cfg) -> int | None:
        return Generator.width(cfg)

    def build(self) -> None:
        self.generator = Generator(self.cfg, self.special)  # its own weights: D copies them in stage 2

    def budget_flops_per_step(self) -> float:
        return GeneratorStage.paper_flops_per_step(self) + DiscriminatorStage.paper_flops_per_step(self)


class GeneratorStage(TwoStage):
    """Stage 1: G alone, by MLM."""

    def objective(self, batch, masked):
        metrics = mlm_metrics(mlm_logits(self.generator.mlm, masked.input_ids, batch, masked.positions), masked)
        return {"loss": metrics["mlm_loss"], **metrics}

    def paper_flops_per_step(self) -> float:
        return Generator.train_flops(self.cfg, self.special.vocab_size)

    def backbone(self):
        return self.generator.mlm.electra

    def exported_models(self):
        return self.generator.exported()


class DiscriminatorStage(TwoStage):
    """Stage 2: D, initialised from G, on the discriminator loss; G frozen, sampling."""

    def build(self) -> None:
        super().build()
        self.discriminator = build_discriminator(self.cfg.model, self.special.vocab_size)
        self.generator.requires_grad_(False)

    def start_from(self, previous_stage: dict) -> None:
        prefix = "generator."
        self.generator.load_state_dict({k[len(prefix):]: v for k, v in previous_stage.items() if k.startswith(prefix)})
        self.discriminator.electra.load_state_dict(self.generator.mlm.electra.state_dict())

    def objective(self, batch, masked):
        with torch.no_grad():
            metrics, corrupted = self.generator.corrupt(batch, masked)
        logits = self.discriminator.discriminator_predictions(self.discriminator.electra(
            input_ids=corrupted, attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"]).last_hidden_state)
        metrics.update(discriminator_metrics(logits, corrupted != batch["input_ids"], batch["attention_mask"].bool()))
        metrics["loss"] = metrics["disc_loss"]
        return metrics

    def paper_flops_per_step(self) -> float:
        """D's training and G's forward (half of G's training cost: train = 2 x forward)."""
        d = self.shape(discriminator_shape(self.cfg.model))
        return (discriminator_train_flops(d, self.cfg.train.batch_size, 1)
                + Generator.train_flops(self.cfg, self.special.vocab_size) / 2)

    def backbone(self):
        return self.discriminator.electra

    def exported_models(self):
        return {"discriminator": self.discriminator, **self.generator.exported()}
