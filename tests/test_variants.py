"""Each pre-training variant's defining property, on a small real batch."""

import math

import pytest
import torch

from lightning_electra.data.datamodule import PretrainDataModule
from lightning_electra.objectives import OBJECTIVES, objective
from lightning_electra.objectives.all_tokens_mlm import copy_log_prob
from lightning_electra.runner.pretrain import build_module


def run_objective(module, batch, seed=0, step=1):
    torch.manual_seed(seed)
    return module.masked_objective(batch, module.phase(step))


@pytest.mark.parametrize("variant", sorted(v for v in OBJECTIVES if objective(v).stages))
def test_every_variant_trains_one_step(smoke_cfg, variant, variant_setup):
    module, batch = variant_setup(smoke_cfg(variant=variant))
    loss = run_objective(module, batch)["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.backbone().parameters())
    assert module.paper_flops_per_step() > 0


def test_the_control_is_a_saved_random_initialisation_fine_tuned_at_step_0(smoke_cfg, tmp_path):
    from lightning_electra.runner.pretrain import budget, pretrain
    from lightning_electra.runner.identity import RunLayout

    cfg = smoke_cfg(variant="no-pretraining")
    assert budget(cfg) == {"steps": 0, "stages": 0, "paper_flops": 0.0, "checkpoints": [0]}
    summary = pretrain(cfg, tmp_path / "run")
    assert summary["step"] == 0 and summary["checkpoints"] == [0]
    (step,) = RunLayout(tmp_path / "run").step_dirs()
    assert step.name == "step-0000000" and (step / "model.safetensors").exists()
    again = pretrain(smoke_cfg("train.seed=1", variant="no-pretraining"), tmp_path / "other")
    assert again["step"] == 0  # another initialisation seed, another encoder
    from safetensors.torch import load_file

    a, b = (load_file(d / "model.safetensors") for d in (step, *RunLayout(tmp_path / "other").step_dirs()))
    assert not torch.equal(a["encoder.layer.0.attention.self.query.weight"],
                           b["encoder.layer.0.attention.self.query.weight"])


def test_electra_15_ignores_unmasked_positions(smoke_cfg, variant_setup):
    module, batch = variant_setup(smoke_cfg(variant="electra-15"))
    torch.manual_seed(0)
    masked = module.mask(batch)
    real = module.discriminate
    noise = torch.randn(batch["input_ids"].shape) * 10
    losses = []
    for scale in (0.0, 1.0):  # change D's logits off the masked positions only
        module.discriminate = lambda b, c: real(b, c) + scale * noise * ~masked.is_masked
        torch.manual_seed(1)
        losses.append(module.objective(batch, masked)["disc_loss"])
    assert torch.isclose(losses[0], losses[1])


def test_replace_mlm_inputs_hold_no_mask_token(smoke_cfg, variant_setup):
    module, batch = variant_setup(smoke_cfg(variant="replace-mlm"))
    seen = []
    module.mlm.electra.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["input_ids"]),
                                                           with_kwargs=True)
    metrics = run_objective(module, batch)
    assert seen and not (seen[0] == module.special.mask).any()
    assert metrics["replaced_fraction"] > 0


def test_all_tokens_copy_probability_at_the_extremes():
    lp = torch.log(torch.tensor([0.2, 0.2, 0.2]))
    big = torch.tensor([50.0, -50.0, 50.0])
    out = copy_log_prob(big, lp, torch.tensor([True, True, False]))
    assert out[0].abs() < 1e-6, "D sure the token is the input's, and it is: p = 1"
    assert torch.isclose(out[1], lp[1], atol=1e-6), "D sure it is not: p = p_MLM"
    assert out[2] < -40, "D sure it is the input's, but it is not: p ~ 0"
    mid = copy_log_prob(torch.zeros(1), lp[:1], torch.tensor([True]))
    assert torch.isclose(mid.exp(), torch.tensor([0.5 + 0.5 * 0.2]))


def test_all_tokens_mlm_scores_every_position(smoke_cfg, monkeypatch, variant_setup):
    import lightning_electra.objectives.all_tokens_mlm as all_tokens

    module, batch = variant_setup(smoke_cfg(variant="all-tokens-mlm"))
    seen = []
    monkeypatch.setattr(all_tokens, "copy_log_prob", lambda *args: seen.append(copy_log_prob(*args)) or seen[-1])
    metrics = run_objective(module, batch)
    log_p, mask = seen[0], batch["attention_mask"].float()
    assert log_p.shape == batch["input_ids"].shape, "a log-probability for every position"
    assert torch.isclose(metrics["all_tokens_loss"], -(log_p * mask).sum() / mask.sum())
    assert "disc_loss" not in metrics


def generator_grads(module, loss):
    module.zero_grad()
    loss.backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for n, p in module.generator.named_parameters() if "embeddings" not in n]


def test_adversarial_generator_learns_from_the_reward_only(smoke_cfg, variant_setup):
    module, batch = variant_setup(smoke_cfg(variant="adversarial"))
    total = generator_grads(module, run_objective(module, batch)["loss"])
    reward_only = generator_grads(module, run_objective(module, batch)["reinforce_loss"])
    assert any(g.abs().sum() > 0 for g in reward_only), "REINFORCE gives G a gradient"
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(total, reward_only)), "no MLM, no D gradient"
    module, batch = variant_setup(smoke_cfg("adversarial.mlm_weight=1.0", variant="adversarial"))
    with_mlm = generator_grads(module, run_objective(module, batch)["loss"])
    reward_only = generator_grads(module, run_objective(module, batch)["reinforce_loss"])
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(with_mlm, reward_only))


def test_adversarial_logs_accuracy_and_entropy(smoke_cfg, variant_setup):
    module, batch = variant_setup(smoke_cfg(variant="adversarial"))
    m = run_objective(module, batch)
    assert 0 <= m["mlm_accuracy"] <= 1 and 0 < m["generator_entropy"] <= math.log(module.special.vocab_size) + 1e-3


def test_unigram_generator_samples_follow_corpus_frequencies(smoke_cfg, variant_setup):
    module, batch = variant_setup(smoke_cfg("model.generator=unigram"))
    assert module.generator.mlm is None and module.generator_flops_per_step() == 0
    probs = module.generator.sampling_probs
    s = module.special
    assert probs[[s.pad, s.cls, s.sep, s.mask]].sum() == 0 and torch.isclose(probs.sum(), torch.tensor(1.0))
    counts = torch.bincount(torch.multinomial(probs, 200_000, replacement=True), minlength=len(probs)).float()
    top = probs.topk(5).indices  # the most frequent tokens of the corpus ("the", ",", ".", ...)
    assert torch.allclose(counts[top] / 200_000, probs[top], rtol=0.05)
    m = run_objective(module, batch)
    assert "mlm_loss" not in m and torch.isclose(m["loss"], 50 * m["disc_loss"])


def test_uniform_generator_spreads_over_the_vocabulary(smoke_cfg, variant_setup):
    module, _ = variant_setup(smoke_cfg("model.generator=uniform"))
    probs = module.generator.sampling_probs
    nonzero = probs[probs > 0]
    assert len(nonzero) == module.special.vocab_size - 4 and torch.allclose(nonzero, nonzero[0])


def test_two_stage_starts_d_from_g_and_leaves_g_untouched(smoke_cfg, variant_setup):
    from lightning_electra.config import ConfigError

    cfg = smoke_cfg(variant="two-stage")
    dm = PretrainDataModule(cfg)
    stage1 = build_module(cfg, data=dm)
    assert not hasattr(stage1, "discriminator") and stage1.backbone() is stage1.generator.mlm.electra
    batch = dm.collate([dm.train_set[i] for i in range(8)])
    assert set(run_objective(stage1, batch)) == {"loss", "mlm_loss", "mlm_accuracy", "mlm_unigram_accuracy",
                                                 "mlm_context_accuracy", "mlm_context_unigram_accuracy"}
    stage2 = build_module(cfg, 2, dm)
    stage2.start_from(stage1.state_dict())
    for (name, d), g in zip(stage2.discriminator.electra.named_parameters(), stage2.generator.mlm.electra.parameters()):
        assert torch.equal(d, g) and d.data_ptr() != g.data_ptr(), name
    before = {k: v.clone() for k, v in stage2.generator.state_dict().items()}
    stage2.trainer = None
    optimizer = torch.optim.SGD([p for p in stage2.parameters() if p.requires_grad], lr=1.0)
    run_objective(stage2, batch)["loss"].backward()
    optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in stage2.generator.state_dict().items()), "G is frozen"
    assert stage2.discriminator.electra.embeddings.word_embeddings.weight.grad.abs().sum() > 0, "D trains"
    assert stage2.paper_flops_per_step() > stage1.paper_flops_per_step() / 2, "stage 2 counts G's forward too"
    with pytest.raises(ConfigError, match="generator_fraction=1.0"):
        variant_setup(smoke_cfg("model.generator_fraction=0.25", variant="two-stage"))


def test_adversarial_mle_warm_up_trains_g_by_mlm(smoke_cfg, variant_setup):
    module, batch = variant_setup(smoke_cfg("adversarial.mle_warmup_fraction=0.5", variant="adversarial"))
    assert module.phase(1) and not module.phase(module.steps), "the warm-up is the first half of the steps"
    total = generator_grads(module, run_objective(module, batch)["loss"])
    mlm = generator_grads(module, run_objective(module, batch)["mlm_loss"])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(total, mlm))


def test_a_checkpoint_from_before_the_generator_component_still_loads(smoke_cfg, variant_setup):
    """G's weights were the objective's own `generator.*` (an ElectraForMaskedLM); now they sit in the component."""
    module, _ = variant_setup(smoke_cfg(variant="electra"))
    state = module.state_dict()
    before = {k.replace("generator.mlm.", "generator."): v for k, v in state.items()}
    assert any(k.startswith("generator.electra.") for k in before)
    fresh, _ = variant_setup(smoke_cfg(variant="electra"))
    torch.nn.init.zeros_(fresh.generator.mlm.generator_predictions.dense.weight)
    fresh.load_state_dict(before)  # strict
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in state.items())
