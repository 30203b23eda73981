"""BERT: masked language modelling with the discriminator-sized model (the paper's baseline)."""

from lightning_electra.flops import mlm_train_flops
from lightning_electra.models import build_mlm, discriminator_shape
from lightning_electra.module import PretrainModule
from lightning_electra.objectives.losses import mlm_logits, mlm_metrics


class BertMLM(PretrainModule):
    def build(self) -> None:
        self.mlm = build_mlm(discriminator_shape(self.cfg.model), self.cfg.model, self.special.vocab_size)

    def objective(self, batch, masked):
        metrics = mlm_metrics(mlm_logits(self.mlm, masked.input_ids, batch, masked.positions), masked)
        return {"loss": metrics["mlm_loss"], **metrics}

    def paper_flops_per_step(self) -> float:
        return mlm_train_flops(self.shape(discriminator_shape(self.cfg.model)), self.cfg.train.batch_size, 1)

    def backbone(self):
        return self.mlm.electra

    def exported_models(self):
        return {"mlm": self.mlm}
