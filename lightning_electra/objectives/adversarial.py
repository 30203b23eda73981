"""Adversarial ELECTRA (paper section 3.2, Fig. 3 right, appendix F): G trained by REINFORCE to raise D's loss.

Following the paper's per-position factorisation, the reward at a masked position t is D's binary cross-entropy on
the token G sampled there (high when D is fooled). G's loss is -sum_t log p_G(x_t) * (R_t - b_t) with one sample
per position, log p_G at the sampling temperature, and b_t a learned baseline read off G's hidden state at t
(detached: the baseline learns to predict R_t without shaping G). As appendix F has it, b_t = -log sigmoid(w . h_t)
and its probability sigmoid(w . h_t) is trained by cross-entropy to match exp(-R_t), D's probability of the right
label, so b_t is in the reward's units (`adversarial.baseline_loss=squared-error`: a linear b_t by squared error).
D trains as in ELECTRA. How much MLM loss G keeps and an MLE warm-up are flags (`adversarial.*`), both off by
default as the paper describes none.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lightning_electra.config import NON_NEGATIVE, PROBABILITY, ConfigError, choice, ranged
from lightning_electra.corruption import replace_at, sample_tokens
from lightning_electra.objectives.electra import Electra
from lightning_electra.objectives.losses import (discriminator_metrics, hidden_at, mlm_metrics, sampled_accuracy,
                                                 vocab_logits)


BaselineLoss = choice("BaselineLoss", ["cross-entropy", "squared-error"], __name__)


@dataclass
class Options:
    """The paper leaves these open (notes section 3)."""

    # how much MLM loss G keeps beside the REINFORCE loss (the paper describes none)
    mlm_weight: float = ranged(0.0, NON_NEGATIVE)
    # train G by MLM alone (no REINFORCE) for this fraction of the steps first
    mle_warmup_fraction: float = ranged(0.0, PROBABILITY)
    baseline_weight: float = ranged(1.0, NON_NEGATIVE)  # weight of the baseline's loss
    # cross-entropy (paper appendix F): b = -log sigmoid(w . h_G), its probability trained by cross-entropy to match
    # exp(-reward), D's probability of being right; squared-error: b = w . h_G + c, trained by squared error
    baseline_loss: BaselineLoss = BaselineLoss("cross-entropy")


class Adversarial(Electra):
    Options = Options

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.model.generator != "learned":
            raise ConfigError("The adversarial variant trains a network generator: set model.generator=learned.")

    def build(self) -> None:
        super().build()
        self.baseline = torch.nn.Linear(self.generator.mlm.config.hidden_size, 1)

    def phase(self, step: int) -> bool:
        """Whether step `step` is in the MLE warm-up (G trained by MLM alone)."""
        return step - 1 < self.cfg.adversarial.mle_warmup_fraction * self.steps

    def objective(self, batch, masked, mle_warm_up: bool = False):
        a, w = self.cfg.adversarial, masked.weights
        n = w.sum().clamp_min(1)
        hidden = hidden_at(self.generator.mlm, masked.input_ids, batch, masked.positions)
        logits = vocab_logits(self.generator.mlm, hidden)
        metrics = mlm_metrics(logits, masked)
        sampled = sample_tokens(logits, self.cfg.train.temperature)
        corrupted = replace_at(batch["input_ids"], masked.positions, sampled, w)
        replaced = corrupted != batch["input_ids"]
        d_logits = self.discriminate(batch, corrupted)
        metrics.update(discriminator_metrics(d_logits, replaced, batch["attention_mask"].bool()))

        reward = F.binary_cross_entropy_with_logits(d_logits.gather(1, masked.positions).detach().float(),
                                                    replaced.gather(1, masked.positions).float(), reduction="none")
        baseline, metrics["baseline_loss"] = self.baseline_and_loss(hidden.detach(), reward, w)
        log_probs = (logits.float() / self.cfg.train.temperature).log_softmax(-1)  # what the samples came from
        log_p_sampled = log_probs.gather(-1, sampled[..., None]).squeeze(-1)
        metrics["reinforce_loss"] = -(log_p_sampled * (reward - baseline).detach() * w).sum() / n
        metrics["reward"] = (reward * w).sum() / n
        metrics["generator_entropy"] = (-(log_probs.exp() * log_probs).sum(-1) * w).sum().detach() / n
        metrics["sampled_accuracy"] = sampled_accuracy(sampled, masked)

        generator_loss = (metrics["mlm_loss"] if mle_warm_up
                          else metrics["reinforce_loss"] + a.mlm_weight * metrics["mlm_loss"])
        metrics["loss"] = (generator_loss + a.baseline_weight * metrics["baseline_loss"]
                           + self.cfg.train.disc_weight * metrics["disc_loss"])
        return metrics

    def baseline_and_loss(self, hidden: torch.Tensor, reward: torch.Tensor, w: torch.Tensor):
        """b_t in the reward's units, and the loss that fits it (weighted mean over the real slots)."""
        score = self.baseline(hidden).squeeze(-1).float()
        n = w.sum().clamp_min(1)
        if self.cfg.adversarial.baseline_loss == "squared-error":
            return score, ((score - reward) ** 2 * w).sum() / n
        # the reward is -log q, q D's probability of the right label: fit sigmoid(score) to q, so b = -log sigmoid
        fit = F.binary_cross_entropy_with_logits(score, torch.exp(-reward), reduction="none")
        return F.softplus(-score), (fit * w).sum() / n
