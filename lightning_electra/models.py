"""Generator and discriminator as transformers' ELECTRA classes, sized from the config, with weight sharing.

Using `ElectraForMaskedLM` / `ElectraForPreTraining` keeps every checkpoint loadable by `from_pretrained`; the
variants call their submodules (`.electra`, the heads) directly so the MLM head runs only at masked positions.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn
from torch.nn.utils import parametrize
from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

from lightning_electra.config import ConfigError, ModelConfig, Tie
from lightning_electra.flops import TransformerShape as Shape


def discriminator_shape(m: ModelConfig) -> Shape:
    return Shape(hidden=m.hidden_size, layers=m.num_layers, heads=m.num_heads, intermediate=m.intermediate_size,
                 embedding=m.embedding_size)


def generator_shape(m: ModelConfig) -> Shape:
    """D's depth, a fraction of its width: hidden, FFN = 4 x hidden, heads = max(1, hidden / 64) (at the full
    fraction, D's own layer shapes).

    With shared embeddings G reads D's embedding table, so its embedding size is D's; untied, it has its own table of
    its own width, as the official code's untied generator (embedding_size=None: the hidden size), whatever its size.
    """
    if m.generator_fraction == 1.0:
        layers = discriminator_shape(m)
    else:
        hidden = max(1, round(m.hidden_size * m.generator_fraction))
        heads = max(1, hidden // 64)
        if hidden % heads:
            raise ConfigError(f"Generator hidden size {hidden} (= {m.hidden_size} x {m.generator_fraction}) is not "
                              f"divisible by its {heads} heads; pick a fraction giving a multiple of 64.")
        layers = Shape(hidden=hidden, layers=m.num_layers, heads=heads, intermediate=4 * hidden,
                       embedding=m.embedding_size)
    return replace(layers, embedding=m.embedding_size if m.tie != "none" else layers.hidden)


def electra_config(shape: Shape, m: ModelConfig, vocab_size: int) -> ElectraConfig:
    return ElectraConfig(vocab_size=vocab_size, embedding_size=shape.e, hidden_size=shape.hidden,
                         num_hidden_layers=shape.layers, num_attention_heads=shape.n_heads,
                         intermediate_size=shape.i, hidden_dropout_prob=m.dropout,
                         attention_probs_dropout_prob=m.attention_dropout,
                         max_position_embeddings=m.max_position_embeddings, tie_word_embeddings=True)


def build_discriminator(m: ModelConfig, vocab_size: int) -> ElectraForPreTraining:
    return ElectraForPreTraining(electra_config(discriminator_shape(m), m, vocab_size))


def save_random_encoder(m: ModelConfig, vocab_size: int, where) -> None:
    """A freshly initialised encoder of D's shape in transformers' format, for timing fine-tunes (time does not
    depend on the weights)."""
    from transformers import ElectraModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    ElectraModel(electra_config(discriminator_shape(m), m, vocab_size)).save_pretrained(where)


def build_mlm(shape: Shape, m: ModelConfig, vocab_size: int) -> ElectraForMaskedLM:
    """An MLM transformer: the generator at G's shape, or BERT at D's."""
    return ElectraForMaskedLM(electra_config(shape, m, vocab_size))


def share_weights(generator: ElectraForMaskedLM, discriminator: ElectraForPreTraining, mode: Tie | str) -> None:
    """Make G use D's modules: `embeddings` (token, position, type tables + LayerNorm) or `all` (the encoder too);
    or, with `gdes`, make each of D's embedding weights G's, its gradient stopped, plus a residual of D's own.

    G's output layer always stays tied to whatever input embedding table it reads.
    """
    if mode == "none":
        return
    if mode == "all":
        if encoder_shape(generator) != encoder_shape(discriminator):  # a config asking for it is refused at `check`
            raise ValueError(f"share_weights(mode='all') needs one encoder shape; got G {encoder_shape(generator)}, "
                             f"D {encoder_shape(discriminator)}")
        generator.electra = discriminator.electra
    elif mode == "embeddings":
        generator.electra.embeddings = discriminator.electra.embeddings
    else:  # gdes
        disentangle(discriminator.electra.embeddings, generator.electra.embeddings)
    generator.generator_lm_head.weight = generator.electra.embeddings.word_embeddings.weight


class StopGradientPlus(nn.Module):
    """A parametrization: the weight is stop_gradient(a shared weight) + the residual stored in its place."""

    def __init__(self, shared: nn.Parameter):
        super().__init__()
        self.shared = (shared,)  # a tuple, not an attribute torch registers: the weight's owner lists it, once

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        return self.shared[0].detach() + residual


def disentangle(d_embeddings: nn.Module, g_embeddings: nn.Module) -> None:
    """Gradient-disentangled embedding sharing (DeBERTa-v3, He et al. 2021): every weight of D's embeddings (token,
    position and type tables, LayerNorm) becomes G's weight with D's gradient stopped, plus a zero-initialised
    residual that only D's loss trains. G's embeddings thus learn from the MLM loss alone, D's from both."""
    shared = dict(g_embeddings.named_parameters())
    for name, weight in list(d_embeddings.named_parameters()):
        owner, _, attribute = name.rpartition(".")
        module = d_embeddings.get_submodule(owner)
        with torch.no_grad():
            weight.zero_()  # the residual starts at zero: D starts from G's embeddings
        parametrize.register_parametrization(module, attribute, StopGradientPlus(shared[name]))


def effective_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A module's state dict with each disentangled weight of `discriminator.` as transformers stores a weight: G's
    (same name under `generator.mlm.`) plus the residual, under the weight's own name. Unchanged without `gdes`."""
    out = {}
    for key, value in state.items():
        if ".parametrizations." not in key:
            out[key] = value
        elif key.endswith(".original"):
            owner, _, rest = key.partition(".parametrizations.")
            name = f"{owner}.{rest.removesuffix('.original')}"
            out[name] = state["generator.mlm." + name.removeprefix("discriminator.")] + value
    return out


def saveable(model: nn.Module) -> nn.Module:
    """The model itself, or, when it has disentangled weights, a copy with them made plain (for save_pretrained)."""
    if not any(parametrize.is_parametrized(m) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for module in model.modules():
        for attribute in list(getattr(module, "parametrizations", {}) or {}):
            parametrize.remove_parametrizations(module, attribute, leave_parametrized=True)
    return model


def encoder_shape(model) -> tuple[int, ...]:
    c = model.config
    return (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size, c.embedding_size)
