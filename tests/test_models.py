import pytest

from lightning_electra.config import ModelConfig
from lightning_electra.models import build_discriminator, build_mlm, generator_shape, share_weights

SMALL = dict(hidden_size=64, num_layers=2, num_heads=1, intermediate_size=128, embedding_size=32)


def pair(tie: str, fraction: float = 0.25):
    m = ModelConfig(**SMALL, tie=tie, generator_fraction=fraction)
    d = build_discriminator(m, 1000)
    g = build_mlm(generator_shape(m), m, 1000)
    share_weights(g, d, tie)
    return g, d


def same(a, b) -> bool:
    return a.data_ptr() == b.data_ptr()


def test_generator_shape_is_a_fraction_of_the_discriminator():
    s = generator_shape(ModelConfig(hidden_size=256, num_layers=12, embedding_size=128))
    assert (s.hidden, s.layers, s.i, s.n_heads, s.e) == (64, 12, 256, 1, 128)
    assert generator_shape(ModelConfig(hidden_size=768, num_heads=12, generator_fraction=1 / 3)).n_heads == 4


@pytest.mark.parametrize("fraction", [0.25, 1.0])
def test_an_untied_generator_has_its_own_table_of_its_own_width_whatever_its_size(fraction):
    """The official untied G (embedding_size=None): its hidden width, also at D's size (it had D's 128 there)."""
    small = ModelConfig(hidden_size=256, num_layers=12, embedding_size=128, generator_fraction=fraction, tie="none")
    s = generator_shape(small)
    assert s.e == s.hidden == 256 * fraction
    tied = generator_shape(ModelConfig(hidden_size=256, num_layers=12, embedding_size=128, generator_fraction=fraction))
    assert tied.e == 128 and (tied.hidden, tied.i, tied.n_heads) == (s.hidden, s.i, s.n_heads)


def test_the_untied_fix_moves_only_the_hashes_of_the_runs_it_changes():
    from lightning_electra.runner.configs import load_config
    from lightning_electra.runner.identity import config_hash, pretrain_hash, protocol_fixes

    untied = load_config("smoke", overrides=["model.tie=none", "model.generator_fraction=1.0"])
    assert protocol_fixes(untied) and not protocol_fixes(load_config("smoke", overrides=["model.tie=none"]))
    assert not protocol_fixes(load_config("smoke"))
    intended = load_config("smoke", overrides=["finetune.official_layer_decay=false"])
    assert pretrain_hash(intended) == pretrain_hash(load_config("smoke")) != config_hash(intended)


def test_tie_embeddings_shares_tables_and_layernorm_only():
    g, d = pair("embeddings")
    ge, de = g.electra.embeddings, d.electra.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"):
        assert same(getattr(ge, name).weight, getattr(de, name).weight), name
    assert same(g.generator_lm_head.weight, de.word_embeddings.weight), "G's output layer reads the shared table"
    assert not same(g.electra.encoder.layer[0].attention.self.query.weight,
                    d.electra.encoder.layer[0].attention.self.query.weight)


def test_no_tying_shares_nothing_but_keeps_gs_own_input_output_tie():
    g, d = pair("none")
    assert not same(g.electra.embeddings.word_embeddings.weight, d.electra.embeddings.word_embeddings.weight)
    assert same(g.generator_lm_head.weight, g.electra.embeddings.word_embeddings.weight)


def test_tie_all_shares_the_encoder():
    g, d = pair("all", 1.0)
    assert g.electra is d.electra
    assert not same(g.generator_predictions.dense.weight, d.discriminator_predictions.dense.weight)


def test_tie_all_with_unequal_sizes_is_refused():
    m = ModelConfig(**SMALL, generator_fraction=0.25)
    d, g = build_discriminator(m, 1000), build_mlm(generator_shape(m), m, 1000)
    with pytest.raises(ValueError, match="one encoder shape"):
        share_weights(g, d, "all")
