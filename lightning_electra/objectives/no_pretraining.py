"""The control: no pre-training. The discriminator at its random initialisation (train.seed), fine-tuned under the
same protocol and seeds as every objective's: the floor that shows what pre-training bought. It is not at chance
(a random-init ELECTRA-Small reaches ~80% on SST-2: notes section 9), so it is measured, not assumed."""

from lightning_electra.models import build_discriminator
from lightning_electra.module import PretrainModule


class NoPretraining(PretrainModule):
    stages = 0  # no fit: runner.pretrain saves the initialised encoder as the run's one checkpoint, at step 0

    def build(self) -> None:
        self.discriminator = build_discriminator(self.cfg.model, self.special.vocab_size)

    def paper_flops_per_step(self) -> float:
        return 0.0

    def backbone(self):
        return self.discriminator.electra

    def exported_models(self):
        return {"discriminator": self.discriminator}
