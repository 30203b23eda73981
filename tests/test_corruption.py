import torch

from lightning_electra.corruption import mask_tokens, max_predictions, replace_at, sample_tokens


def packed_batch(special, batch=64, length=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (batch, length), generator=g)
    lengths = torch.randint(6, length + 1, (batch,), generator=g)
    ids[:, 0] = special.cls
    for row, n in zip(ids, lengths):
        row[n // 2] = special.sep
        row[n - 1] = special.sep
        row[n:] = special.pad
    return ids


def test_masking_invariants(special):
    ids = packed_batch(special)
    m = mask_tokens(ids, special, 0.15, 0.85, torch.Generator().manual_seed(1))
    special_pos = (ids == special.cls) | (ids == special.sep) | (ids == special.pad)
    assert not (m.is_masked & special_pos).any(), "special tokens are never chosen"
    candidates = (~special_pos).sum(1)
    expected = torch.round(candidates * 0.15).clamp(1, max_predictions(128, 0.15)).minimum(candidates)
    assert torch.equal(m.is_masked.sum(1), expected.long())
    assert torch.equal(m.weights.sum(1).long(), expected.long())
    assert torch.equal(m.labels[m.weights.bool()], ids.gather(1, m.positions)[m.weights.bool()])
    changed = m.input_ids != ids
    assert not (changed & ~m.is_masked).any(), "only chosen positions change"
    assert (m.input_ids[changed] == special.mask).all(), "no random tokens: a change is always [MASK]"
    share_mask_token = changed.sum() / m.is_masked.sum()
    assert 0.8 < share_mask_token < 0.9


def test_masking_is_dynamic(special):
    ids = packed_batch(special)
    a = mask_tokens(ids, special, 0.15, 0.85)
    b = mask_tokens(ids, special, 0.15, 0.85)
    assert not torch.equal(a.is_masked, b.is_masked)


def test_cap_is_the_official_max_predictions():
    assert max_predictions(128, 0.15) == 19 and max_predictions(512, 0.15) == 79


def test_gumbel_samples_follow_the_softmax():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])).repeat(40_000, 1)
    samples = sample_tokens(logits.half(), generator=torch.Generator().manual_seed(0))  # fp16 in, fp32 inside
    freq = torch.bincount(samples, minlength=4).float() / len(samples)
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.01)
    assert not sample_tokens(logits.requires_grad_()).requires_grad


def test_in_place_gumbel_max_draws_what_the_formula_draws():
    """The in-place noise is a speed change only: the same tokens as argmax(logits / T - log(-log(u)))."""
    logits = torch.randn(4, 19, 300) * 3
    for temperature in (1.0, 0.5):
        u = torch.rand(logits.shape, generator=torch.Generator().manual_seed(7))
        expected = (logits / temperature - torch.log(-torch.log(u.clamp_min(torch.finfo(torch.float32).tiny))))
        drawn = sample_tokens(logits, temperature, torch.Generator().manual_seed(7))
        assert torch.equal(drawn, expected.argmax(-1))


def test_replacement_writes_only_real_slots():
    ids = torch.arange(10).repeat(2, 1)
    positions = torch.tensor([[1, 2], [3, 4]])
    out = replace_at(ids, positions, torch.tensor([[99, 98], [97, 96]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    assert out[0].tolist() == [0, 99, 2, 3, 4, 5, 6, 7, 8, 9]
    assert out[1].tolist() == [0, 1, 2, 97, 96, 5, 6, 7, 8, 9]
