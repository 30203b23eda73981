"""All-Tokens MLM (paper Table 5): inputs corrupted by G as in ELECTRA; the model predicts every token's identity.

Through a copy mechanism: p(x_t) = D(x, t) * 1[x_t = input_t] + (1 - D(x, t)) * p_MLM(x_t), with D a per-token
sigmoid (ELECTRA's discriminator head) and p_MLM the MLM head over the vocabulary, both on one encoder. The loss is
-log p(x_t) over all non-pad tokens; G learns by MLM as in ELECTRA. Loss = L_MLM(G) + L_AllTokens (no weighting
given in the paper; both are cross-entropies).
"""

import copy
from dataclasses import replace

import torch
import torch.nn.functional as F
from transformers import ElectraForMaskedLM
from transformers.models.electra.modeling_electra import ElectraGeneratorPredictions

from lightning_electra.flops import mlm_train_flops
from lightning_electra.models import discriminator_shape
from lightning_electra.objectives.electra import Electra


def copy_log_prob(copy_logit: torch.Tensor, mlm_log_prob: torch.Tensor, is_input: torch.Tensor) -> torch.Tensor:
    """log p(x_t) under the copy mechanism, in log space: log(sigmoid(c) * 1[x = in] + sigmoid(-c) * p_MLM(x))."""
    generate = F.logsigmoid(-copy_logit) + mlm_log_prob
    return torch.where(is_input, torch.logaddexp(F.logsigmoid(copy_logit), generate), generate)


class AllTokensMLM(Electra):
    def build(self) -> None:
        super().build()
        # D's MLM head: dense + GELU + LayerNorm as the generator's, output tied to D's embedding table
        self.mlm_predictions = ElectraGeneratorPredictions(self.discriminator.config)
        self.mlm_bias = torch.nn.Parameter(torch.zeros(self.special.vocab_size))

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        table = self.discriminator.electra.embeddings.word_embeddings.weight
        return F.linear(self.mlm_predictions(hidden), table, self.mlm_bias)

    def objective(self, batch, masked):
        metrics, corrupted = self.generator.corrupt(batch, masked)
        hidden = self.discriminator.electra(input_ids=corrupted, attention_mask=batch["attention_mask"],
                                            token_type_ids=batch["token_type_ids"]).last_hidden_state
        copy_logit = self.discriminator.discriminator_predictions(hidden).float()
        logits = self.mlm_logits(hidden).float()
        original = batch["input_ids"]
        mlm_log_prob = logits.log_softmax(-1).gather(-1, original[..., None]).squeeze(-1)
        log_p = copy_log_prob(copy_logit, mlm_log_prob, original == corrupted)
        scored = batch["attention_mask"].float()
        metrics["all_tokens_loss"] = -(log_p * scored).sum() / scored.sum()
        replaced = (corrupted != original) & scored.bool()
        metrics["replaced_fraction"] = replaced.sum() / scored.sum()
        metrics["replaced_accuracy"] = ((logits.argmax(-1) == original) & replaced).sum() / replaced.sum().clamp_min(1)
        metrics["loss"] = metrics["all_tokens_loss"] + metrics.get("mlm_loss", 0)
        return metrics

    def exported_models(self):
        """D with its replaced-token head (the copy gate), and D's encoder with its MLM head as one ElectraForMaskedLM,
        beside G. The latter is built around the module's own tensors."""
        d = self.discriminator
        mlm = ElectraForMaskedLM(copy.deepcopy(d.config))  # a copy: save_pretrained records its class in it
        mlm.electra, mlm.generator_predictions = d.electra, self.mlm_predictions
        mlm.generator_lm_head.weight = d.electra.embeddings.word_embeddings.weight
        mlm.generator_lm_head.bias = self.mlm_bias
        models = super().exported_models()
        return {"discriminator": models.pop("discriminator"), "mlm": mlm.eval(), **models}

    def paper_flops_per_step(self) -> float:
        """G as in ELECTRA, plus D with an MLM output layer at every position and the binary copy head."""
        batch = self.cfg.train.batch_size
        d = self.shape(discriminator_shape(self.cfg.model))
        return (mlm_train_flops(replace(d, output_frac=1.0), batch, 1) + 2 * batch * d.binary_head_flops()
                + self.generator_flops_per_step())
