"""Two-stage training (paper Fig. 3 right): (1) train G alone by MLM; (2) start D from G's weights, freeze G and
train D alone on the discriminator loss, with G still sampling (its forward FLOPs count).

Two fits in sequence (`stages = 2`), each a fresh module; stage 2 starts from the state stage 1 ended with. G and D
must be the same size (D copies G). Stage 2 gives D its own copy of every weight, so G's frozen embeddings cannot
freeze D's: weight sharing does not apply, and `model.tie=all` (one network for both) is refused.
"""

import torch

from lightning_electra.config import ConfigError
from lightning_electra.flops import discriminator_train_flops, mlm_train_flops
from lightning_electra.models import build_discriminator, build_mlm, discriminator_shape, generator_shape
from lightning_electra.objectives.electra import Electra
from lightning_electra.objectives.losses import discriminator_metrics, mlm_logits, mlm_metrics


class TwoStage(Electra):
    stages = 2

    @classmethod
    def check_config(cls, cfg) -> None:
        m = cfg.model
        if m.generator != "learned" or m.generator_fraction != 1.0 or m.tie == "all":
            raise ConfigError("two-stage training initialises D from G, so G must be a learned generator of D's "
                              f"size with its own weights: set model.generator_fraction=1.0 (got "
                              f"{m.generator_fraction}), model.generator=learned (got {m.generator}) and "
                              f"model.tie=embeddings or none (got {m.tie}).")

    def build(self) -> None:
        m, vocab = self.cfg.model, self.special.vocab_size
        self.generator = build_mlm(generator_shape(m), m, vocab)
        if self.stage == 2:
            self.discriminator = build_discriminator(m, vocab)
            self.generator.requires_grad_(False)

    def start_from(self, previous_stage: dict) -> None:
        prefix = "generator."
        self.generator.load_state_dict({k[len(prefix):]: v for k, v in previous_stage.items() if k.startswith(prefix)})
        self.discriminator.electra.load_state_dict(self.generator.electra.state_dict())

    def objective(self, batch, masked):
        if self.stage == 1:
            metrics = mlm_metrics(mlm_logits(self.generator, masked.input_ids, batch, masked.positions), masked)
            return {"loss": metrics["mlm_loss"], **metrics}
        with torch.no_grad():
            metrics, corrupted = self.corrupt(batch, masked)
        logits = self.discriminate(batch, corrupted)
        metrics.update(discriminator_metrics(logits, corrupted != batch["input_ids"], batch["attention_mask"].bool()))
        metrics["loss"] = metrics["disc_loss"]
        return metrics

    def paper_flops_per_step(self) -> float:
        return self.stage_flops_per_step(self.stage)

    def stage_flops_per_step(self, stage: int) -> float:
        """Stage 1 trains G; stage 2 trains D and runs G forward (half of G's training cost: train = 2 x forward)."""
        batch = self.cfg.train.batch_size
        g_train = mlm_train_flops(self.shape(generator_shape(self.cfg.model)), batch, 1)
        if stage == 1:
            return g_train
        return discriminator_train_flops(self.shape(discriminator_shape(self.cfg.model)), batch, 1) + g_train / 2

    def budget_flops_per_step(self) -> float:
        return self.stage_flops_per_step(1) + self.stage_flops_per_step(2)

    def backbone(self):
        return self.generator.electra if self.stage == 1 else self.discriminator.electra

    def exported_models(self):
        return {**({"discriminator": self.discriminator} if self.stage == 2 else {}), "generator": self.generator}
