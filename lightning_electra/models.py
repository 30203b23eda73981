"""Generator and discriminator as transformers' ELECTRA classes, sized from the config, with weight sharing.

Using `ElectraForMaskedLM` / `ElectraForPreTraining` keeps every checkpoint loadable by `from_pretrained`; the
variants call their submodules (`.electra`, the heads) directly so the MLM head runs only at masked positions.
"""

from __future__ import annotations

from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

from lightning_electra.config import ConfigError, ModelConfig
from lightning_electra.flops import TransformerShape as Shape


def discriminator_shape(m: ModelConfig) -> Shape:
    return Shape(hidden=m.hidden_size, layers=m.num_layers, heads=m.num_heads, intermediate=m.intermediate_size,
                 embedding=m.embedding_size)


def generator_shape(m: ModelConfig) -> Shape:
    """D's depth, a fraction of its width: hidden, FFN = 4 x hidden, heads = max(1, hidden / 64).

    With shared embeddings G reads D's embedding table (so its embedding size is D's); untied, its own of its width.
    """
    if m.generator_fraction == 1.0:
        return discriminator_shape(m)
    hidden = max(1, round(m.hidden_size * m.generator_fraction))
    heads = max(1, hidden // 64)
    if hidden % heads:
        raise ConfigError(f"Generator hidden size {hidden} (= {m.hidden_size} x {m.generator_fraction}) is not "
                          f"divisible by its {heads} heads; pick a fraction giving a multiple of 64.")
    embedding = m.embedding_size if m.tie != "none" else hidden
    return Shape(hidden=hidden, layers=m.num_layers, heads=heads, intermediate=4 * hidden, embedding=embedding)


def electra_config(shape: Shape, m: ModelConfig, vocab_size: int) -> ElectraConfig:
    return ElectraConfig(vocab_size=vocab_size, embedding_size=shape.e, hidden_size=shape.hidden,
                         num_hidden_layers=shape.layers, num_attention_heads=shape.n_heads,
                         intermediate_size=shape.i, hidden_dropout_prob=m.dropout,
                         attention_probs_dropout_prob=m.attention_dropout,
                         max_position_embeddings=m.max_position_embeddings, tie_word_embeddings=True)


def build_discriminator(m: ModelConfig, vocab_size: int) -> ElectraForPreTraining:
    return ElectraForPreTraining(electra_config(discriminator_shape(m), m, vocab_size))


def build_mlm(shape: Shape, m: ModelConfig, vocab_size: int) -> ElectraForMaskedLM:
    """An MLM transformer: the generator at G's shape, or BERT at D's."""
    return ElectraForMaskedLM(electra_config(shape, m, vocab_size))


def share_weights(generator: ElectraForMaskedLM, discriminator: ElectraForPreTraining, mode: str) -> None:
    """Make G use D's modules: `embeddings` (token, position, type tables + LayerNorm) or `all` (the encoder too).

    G's output layer always stays tied to whatever input embedding table it reads.
    """
    if mode == "none":
        return
    if mode == "all":
        if discriminator_shape_of(generator) != discriminator_shape_of(discriminator):
            raise ConfigError("model.tie=all needs a generator the size of the discriminator "
                              "(model.generator_fraction=1.0).")
        generator.electra = discriminator.electra
    elif mode == "embeddings":
        if generator.config.embedding_size != discriminator.config.embedding_size:
            raise ConfigError("model.tie=embeddings needs G and D to have the same embedding size.")
        generator.electra.embeddings = discriminator.electra.embeddings
    else:
        raise ConfigError(f"Unknown model.tie '{mode}': use none, embeddings or all.")
    generator.generator_lm_head.weight = generator.electra.embeddings.word_embeddings.weight


def discriminator_shape_of(model) -> tuple[int, ...]:
    c = model.config
    return (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size, c.embedding_size)
