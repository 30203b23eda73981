"""The signals that show learning early: D's AUROC and its prior's loss, the MLM's unigram plateau."""

import math

import pytest
import torch

from lightning_electra.corruption import Masked
from lightning_electra.objectives.losses import auroc, binary_entropy, discriminator_metrics, mlm_metrics


def brute_force_auroc(scores, positive, counted):
    pos, neg = scores[positive & counted], scores[~positive & counted]
    wins = (pos[:, None] > neg[None, :]).float() + 0.5 * (pos[:, None] == neg[None, :]).float()
    return wins.mean().item()


def test_auroc_counts_ties_half_and_ignores_uncounted_entries():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        scores = torch.randint(0, 12, (400,), generator=g).float()  # many ties
        positive, counted = torch.rand(400, generator=g) < 0.3, torch.rand(400, generator=g) < 0.7
        assert math.isclose(auroc(scores, positive, counted).item(), brute_force_auroc(scores, positive, counted),
                            rel_tol=1e-6)


def test_auroc_is_a_half_for_a_constant_or_one_class_score_and_one_for_a_perfect_one():
    labels, every = torch.arange(10) < 3, torch.ones(10, dtype=torch.bool)
    assert auroc(torch.zeros(10), labels, every).item() == 0.5
    assert auroc(torch.arange(10.0), torch.zeros(10, dtype=torch.bool), every).item() == 0.5
    assert auroc(-torch.arange(10.0), labels, every).item() == 1.0


def test_a_discriminator_at_its_prior_scores_the_prior_loss_and_a_half():
    replaced = torch.rand(4, 50, generator=torch.Generator().manual_seed(1)) < 0.15
    scored = torch.ones(4, 50, dtype=torch.bool)
    rate = replaced.float().mean()
    prior_logit = torch.logit(rate).expand(4, 50)
    m = discriminator_metrics(prior_logit, replaced, scored)
    assert torch.isclose(m["disc_loss"], m["disc_prior_loss"], atol=1e-5) and m["disc_auroc"].item() == 0.5
    assert torch.isclose(binary_entropy(torch.tensor(0.5)), torch.tensor(math.log(2)))


def test_unigram_accuracy_is_the_share_of_the_most_frequent_masked_token():
    labels = torch.tensor([[3, 3, 5, 7], [3, 5, 0, 0]])
    weights = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]])  # the last two slots are filler
    masked = Masked(labels, torch.zeros_like(labels), labels, weights, labels.bool())
    m = mlm_metrics(torch.zeros(2, 4, 10), masked)
    assert math.isclose(m["mlm_unigram_accuracy"].item(), 3 / 6)


def test_context_accuracy_leaves_out_the_positions_whose_input_shows_the_answer():
    labels = torch.tensor([[3, 4, 5, 6]])
    shown = torch.tensor([[3, 9, 9, 1]])  # kept, [MASK] (9), [MASK], a random token
    masked = Masked(shown, torch.arange(4)[None], labels, torch.ones(1, 4), torch.ones(1, 4, dtype=torch.bool))
    copying = torch.nn.functional.one_hot(torch.tensor([[3, 0, 5, 0]]), 10).float()  # the kept one and one [MASK]
    m = mlm_metrics(copying, masked)
    assert m["mlm_accuracy"].item() == pytest.approx(2 / 4) and m["mlm_context_accuracy"].item() == pytest.approx(1 / 3)
    assert m["mlm_context_unigram_accuracy"].item() == pytest.approx(1 / 3)
