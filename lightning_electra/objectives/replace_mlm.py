"""Replace-MLM (paper Table 5): MLM in which the chosen positions hold G's samples instead of [MASK].

The discriminator-sized model (`mlm`, as BERT's) predicts the original token at those positions only; G
(lightning_electra/objectives/generator.py) learns by MLM as in ELECTRA. Loss = L_MLM(G) + L_ReplaceMLM; the paper
gives no weighting, and both are cross-entropies of the same scale. `mlm_loss` is G's, as in every objective with a
generator; the model's own is `replace_mlm_loss`.
"""

from lightning_electra.corruption import replace_at
from lightning_electra.flops import mlm_train_flops
from lightning_electra.models import build_mlm, discriminator_shape
from lightning_electra.module import PretrainModule
from lightning_electra.objectives.generator import Generator
from lightning_electra.objectives.losses import mlm_logits, mlm_metrics


class ReplaceMLM(PretrainModule):
    def build(self) -> None:
        self.mlm = build_mlm(discriminator_shape(self.cfg.model), self.cfg.model, self.special.vocab_size)
        self.generator = Generator(self.cfg, self.special, self.token_counts, shares_with=self.mlm)

    @classmethod
    def generator_width(cls, cfg) -> int | None:
        return Generator.width(cfg)

    def objective(self, batch, masked):
        metrics, sampled = self.generator.sample(batch, masked)
        # every chosen position holds a sample: no [MASK] and no kept-as-is positions in the model's input
        corrupted = replace_at(batch["input_ids"], masked.positions, sampled, masked.weights)
        own = mlm_metrics(mlm_logits(self.mlm, corrupted, batch, masked.positions), masked)
        metrics.update({f"replace_{k}": v for k, v in own.items()})
        metrics["replaced_fraction"] = (corrupted != batch["input_ids"]).sum() / batch["attention_mask"].sum()
        metrics["loss"] = metrics["replace_mlm_loss"] + metrics.get("mlm_loss", 0)
        return metrics

    def paper_flops_per_step(self) -> float:
        d = self.shape(discriminator_shape(self.cfg.model))
        return (mlm_train_flops(d, self.cfg.train.batch_size, 1)
                + Generator.train_flops(self.cfg, self.special.vocab_size))

    def backbone(self):
        return self.mlm.electra

    def exported_models(self):
        return {"mlm": self.mlm, **self.generator.exported()}
