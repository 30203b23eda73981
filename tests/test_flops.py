"""FLOPs: the paper-convention counts reproduce the ELECTRA paper's figures; the torch counter counts what we expect."""

from __future__ import annotations

import pytest
import torch

from lightning_electra.flops import (
    TransformerShape,
    discriminator_train_flops,
    electra_train_flops,
    measure_flops,
    mlm_train_flops,
)

SMALL_D = TransformerShape(hidden=256, layers=12, embedding=128, seq=128)


def small_gen(hidden: int) -> TransformerShape:
    """ELECTRA-Small's generator: D's depth, `hidden` wide, tied to D's 128-wide embeddings."""
    return TransformerShape(hidden=hidden, layers=12, embedding=128, seq=128)


# Values printed by the official google-research/electra flops_computation.py (MODEL_FLOPS), quoted in the paper.
@pytest.mark.parametrize(
    ("flops", "expected"),
    [
        pytest.param(lambda: mlm_train_flops(TransformerShape(768, 12, seq=512), 256, 1e6), 6.43e19, id="bert-base"),
        pytest.param(lambda: mlm_train_flops(SMALL_D, 128, 1.45e6), 1.42e18, id="bert-small"),
        pytest.param(lambda: electra_train_flops(SMALL_D, small_gen(64), 128, 1e6), 1.29e18, id="electra-small"),
        pytest.param(lambda: electra_train_flops(SMALL_D, small_gen(128), 128, 1e6), 1.42e18, id="electra-small-g128"),
    ],
)
def test_reference_values(flops, expected):
    assert flops() == pytest.approx(expected, rel=0.01)


def test_shape_defaults_follow_bert():
    s = TransformerShape(hidden=768, layers=12)
    assert (s.e, s.i, s.n_heads) == (768, 3072, 12)
    assert TransformerShape(hidden=32, layers=1).n_heads == 1  # never zero heads


def test_generator_cost_grows_with_width_and_vanishes_without_one():
    totals = [electra_train_flops(SMALL_D, small_gen(h), 128, 1000) for h in (64, 128, 256)]
    assert totals[0] < totals[1] < totals[2]
    assert electra_train_flops(SMALL_D, None, 128, 1000) == discriminator_train_flops(SMALL_D, 128, 1000)


def test_untied_generator_uses_its_own_embedding_size():
    tied, untied = small_gen(64), TransformerShape(hidden=64, layers=12, seq=128)
    assert untied.e == 64
    # A 64-wide embedding is a cheaper one-hot lookup and output projection than D's 128-wide one.
    assert mlm_train_flops(untied, 1, 1) < mlm_train_flops(tied, 1, 1)


def test_forward_flops_heads():
    s = SMALL_D
    body = s.layers * s.block_flops() + s.embedding_flops()
    assert s.forward_flops("none") == body
    assert s.forward_flops("binary") == body + s.binary_head_flops()
    assert s.forward_flops("mlm") == body + s.embedding_flops(output=True)
    with pytest.raises(ValueError):
        s.forward_flops("softmax")


@pytest.mark.parametrize("input_grad", [True, False])
def test_measure_flops_linear(input_grad):
    batch, n, m = 8, 16, 4
    layer = torch.nn.Linear(n, m)
    x = torch.randn(batch, n, requires_grad=input_grad)
    forward = 2 * batch * n * m  # the bias add and the sum are not matmuls, so torch does not count them
    backward = 2 * forward if input_grad else forward  # weight grad always; input grad only when x needs it
    assert measure_flops(lambda: layer(x).sum()) == forward + backward
