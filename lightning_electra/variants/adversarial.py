"""Adversarial ELECTRA (paper section 3.2, Fig. 3 right): G trained by REINFORCE to raise D's loss on its samples.

Following the paper's per-position factorisation, the reward at a masked position t is D's binary cross-entropy on
the token G sampled there (high when D is fooled). G's loss is -sum_t log p_G(x_t) * (R_t - b_t) with one sample
per position and b_t a learned baseline read off G's hidden state at t (detached: the baseline learns to predict
R_t without shaping G). D trains as in ELECTRA. How much MLM loss G keeps and an MLE warm-up are flags
(`adversarial.*`), both off by default as the paper describes none.
"""

import torch
import torch.nn.functional as F

from lightning_electra.config import ConfigError
from lightning_electra.corruption import replace_at, sample_tokens
from lightning_electra.pretrain import discriminator_metrics, hidden_at, mlm_metrics, sampled_accuracy
from lightning_electra.variants.electra import Electra


class Adversarial(Electra):
    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.model.generator != "learned":
            raise ConfigError("The adversarial variant trains a network generator: set model.generator=learned.")

    def build(self) -> None:
        super().build()
        self.baseline = torch.nn.Linear(self.generator.config.hidden_size, 1)
        self.mle_warm_up = self.cfg.adversarial.mle_warmup_fraction > 0

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # a plain flag set outside the (maybe compiled) objective: torch.compile recompiles once when it flips,
        # where reading global_step inside would recompile every step
        self.mle_warm_up = self.global_step < self.cfg.adversarial.mle_warmup_fraction * self.steps

    def objective(self, batch, masked):
        a, w = self.cfg.adversarial, masked.weights
        n = w.sum().clamp_min(1)
        hidden = hidden_at(self.generator, masked.input_ids, batch, masked.positions)
        logits = self.generator.generator_lm_head(self.generator.generator_predictions(hidden))
        metrics = mlm_metrics(logits, masked)
        sampled = sample_tokens(logits, self.cfg.train.temperature)
        corrupted = replace_at(batch["input_ids"], masked.positions, sampled, w)
        replaced = corrupted != batch["input_ids"]
        d_logits = self.discriminate(batch, corrupted)
        metrics.update(discriminator_metrics(d_logits, replaced, batch["attention_mask"].bool()))

        reward = F.binary_cross_entropy_with_logits(d_logits.gather(1, masked.positions).detach().float(),
                                                    replaced.gather(1, masked.positions).float(), reduction="none")
        baseline = self.baseline(hidden.detach()).squeeze(-1).float()
        log_probs = logits.float().log_softmax(-1)
        log_p_sampled = log_probs.gather(-1, sampled[..., None]).squeeze(-1)
        metrics["reinforce_loss"] = -(log_p_sampled * (reward - baseline).detach() * w).sum() / n
        metrics["baseline_loss"] = ((baseline - reward) ** 2 * w).sum() / n
        metrics["reward"] = (reward * w).sum() / n
        metrics["generator_entropy"] = (-(log_probs.exp() * log_probs).sum(-1) * w).sum().detach() / n
        metrics["sampled_accuracy"] = sampled_accuracy(sampled, masked)

        generator_loss = (metrics["mlm_loss"] if self.mle_warm_up
                          else metrics["reinforce_loss"] + a.mlm_weight * metrics["mlm_loss"])
        metrics["loss"] = (generator_loss + a.baseline_weight * metrics["baseline_loss"]
                           + self.cfg.train.disc_weight * metrics["disc_loss"])
        return metrics
