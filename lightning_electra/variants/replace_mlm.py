"""Replace-MLM (paper Table 5): MLM in which the chosen positions hold G's samples instead of [MASK].

The discriminator-sized model predicts the original token at those positions only; G learns by MLM as in ELECTRA.
Loss = L_MLM(G) + L_MLM(D); the paper gives no weighting, and both are cross-entropies of the same scale.
"""

from lightning_electra.corruption import replace_at
from lightning_electra.flops import mlm_train_flops
from lightning_electra.models import build_mlm, discriminator_shape
from lightning_electra.pretrain import mlm_logits, mlm_metrics
from lightning_electra.variants.electra import Electra


class ReplaceMLM(Electra):
    def build_discriminator(self):
        return build_mlm(discriminator_shape(self.cfg.model), self.cfg.model, self.special.vocab_size)

    def objective(self, batch, masked):
        g_metrics, sampled = self.generate(batch, masked)
        # every chosen position holds a sample: no [MASK] and no kept-as-is positions in D's input
        corrupted = replace_at(batch["input_ids"], masked.positions, sampled, masked.weights)
        d_metrics = mlm_metrics(mlm_logits(self.discriminator, corrupted, batch, masked.positions), masked)
        metrics = {**{f"gen_{k}": v for k, v in g_metrics.items()}, **d_metrics}
        metrics["replaced_fraction"] = (corrupted != batch["input_ids"]).sum() / batch["attention_mask"].sum()
        metrics["loss"] = d_metrics["mlm_loss"] + g_metrics.get("mlm_loss", 0)
        return metrics

    def paper_flops_per_step(self) -> float:
        d = self.shape(discriminator_shape(self.cfg.model))
        return mlm_train_flops(d, self.cfg.train.batch_size, 1) + self.generator_flops_per_step()
