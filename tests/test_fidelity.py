"""The paper-fidelity protocol (issue 11): each detail where the suite follows the paper's text or the official code,
pinned on small inputs."""

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_electra.data.glue_tasks import get_task
from lightning_electra.config import FinetuneConfig
from lightning_electra.corruption import mask_tokens
from lightning_electra.models import ModelConfig, build_discriminator, build_mlm, generator_shape, share_weights
from lightning_electra.optim import AdamWeightDecay, build_optimizer, warmup_linear_decay
from lightning_electra.runner.configs import load_config
from lightning_electra.runner.pretrain import budget
from tests.test_corruption import packed_batch


def run_objective(module, batch, seed=0):
    torch.manual_seed(seed)
    return module.objective(batch, module.mask(batch))


# --- 1. the generator-size sweep at equal steps ---------------------------------------------------------------------
@pytest.mark.parametrize("scale", ["smoke", "small"])
def test_generator_sizes_train_the_steps_of_the_scales_electra(scale):
    from lightning_electra.runner.sweep import sweep_configs

    _, configs = sweep_configs("generator-size", scale, [])
    configs = [c for c in configs if c.variant != "no-pretraining"]  # the control trains no step
    steps = {c.name: budget(c)["steps"] for c in configs}
    electra = budget(load_config(scale, variant="electra"))["steps"]
    assert set(steps.values()) == {electra}, steps
    flops = [budget(c)["paper_flops"] for c in configs]
    assert flops == sorted(flops), "FLOPs recorded per run, growing with G's width"


def test_table_1_trains_bert_small_its_own_steps():
    from lightning_electra.runner.sweep import sweep_configs

    _, configs = sweep_configs("small-model", "small", [])
    b = {c.name: budget(c) for c in configs}
    assert b["electra"]["steps"] == 1_000_000 and b["bert"]["steps"] == 1_450_000
    assert f"{b['electra']['paper_flops']:.3g}" == "1.29e+18" and f"{b['bert']['paper_flops']:.3g}" == "1.42e+18"
    _, smoke = sweep_configs("small-model", "smoke", [])  # at other scales: one budget
    assert all(c.train.steps is None for c in smoke)


def test_the_plan_prints_a_row_per_run_as_csv(capsys):
    from io import StringIO

    import pandas as pd

    from lightning_electra.cli import main

    main(["plan", "small-model", "--scale", "small", "--csv", "--no-time"])
    frame = pd.read_csv(StringIO(capsys.readouterr().out))
    assert list(frame["run"]) == ["electra", "bert", "control"] and list(frame["steps"]) == [1_000_000, 1_450_000, 0]
    assert {"variant", "batch_size", "paper_flops", "checkpoints", "tasks", "seeds"} <= set(frame.columns)


# --- 2. the official optimiser and schedule -------------------------------------------------------------------------
def test_the_first_updates_are_the_official_formula():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = AdamWeightDecay([{"params": [p], "weight_decay": 0.01}], lr=0.1, eps=1e-6)
    m = v = torch.zeros(3)
    expected = p.detach().clone()
    for grad in ([0.5, -1.0, 2.0], [0.1, 0.3, -0.2]):
        g = torch.tensor(grad)
        p.grad = g.clone()
        opt.step()
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        expected = expected - 0.1 * (m / (v.sqrt() + 1e-6) + 0.01 * expected)  # no bias correction
        torch.testing.assert_close(p.detach(), expected)
    # the first update is lr * g/|g| / sqrt(0.001) * 0.1 = lr * 3.16 sign(g): torch's AdamW would move by lr * sign(g)
    assert isinstance(build_optimizer([{"params": [p]}], 0.1, 1e-6, bias_correction=True), torch.optim.AdamW)


def test_the_fused_update_is_the_foreach_one():
    """The fused kernel (a float lr) and the foreach ops (a tensor lr, as a step graph reads it) make one update."""
    torch.manual_seed(0)
    start = [torch.randn(64, 8), torch.randn(8), torch.randn(3, 5)]
    grads = [[torch.randn_like(w) for w in start] for _ in range(5)]
    finals = []
    for lr in (1e-2, torch.tensor(1e-2)):
        params = [torch.nn.Parameter(w.clone()) for w in start]
        opt = AdamWeightDecay([{"params": params[:2], "weight_decay": 0.01, "lr": lr},
                               {"params": params[2:], "weight_decay": 0.0, "lr": lr}], eps=1e-6)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g
            opt.step()
        finals.append([p.detach() for p in params])
    for fused, foreach, w in zip(*finals, start):
        assert not torch.equal(fused, w)
        torch.testing.assert_close(fused, foreach, rtol=1e-5, atol=1e-6)


def test_the_official_schedule_multiplies_warmup_and_decay():
    f = warmup_linear_decay(total_steps=100, warmup_fraction=0.1, overlap=True)
    assert [f(0), f(5), f(10), f(50), f(100)] == pytest.approx([0.0, 0.5 * 0.95, 0.9, 0.5, 0.0])
    assert max(f(s) for s in range(101)) == pytest.approx(0.9)  # a fine-tune peaks at 0.9 x lr


def test_the_fine_tuning_defaults_are_the_official_run():
    ft = FinetuneConfig()
    assert ft.official_layer_decay and ft.warmup_overlaps_decay and not ft.adam_bias_correction
    assert ft.double_unordered and ft.scale_regression_targets and ft.head_init == "glorot"
    t = load_config("small").train
    assert t.warmup_steps == 10_000 and not t.adam_bias_correction
    assert load_config("base").train.warmup_steps == 10_000 and load_config("tiny").train.warmup_steps is None


def test_pretraining_warms_up_over_the_official_fixed_steps(smoke_cfg, variant_setup):
    module, _ = variant_setup(smoke_cfg("train.steps=1000", "train.warmup_steps=100"))
    opt = module.configure_optimizers()
    assert isinstance(opt["optimizer"], AdamWeightDecay)
    factor = opt["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert factor(50) == pytest.approx(0.5 * 0.95) and factor(100) == pytest.approx(0.9)


def test_a_glue_fine_tune_uses_the_official_optimizer_and_schedule(tiny_backbone):
    from lightning_electra.finetune import GlueClassifier

    model = GlueClassifier(tiny_backbone, get_task("RTE"), FinetuneConfig())
    model.trainer = type("T", (), {"estimated_stepping_batches": 100})()
    opt = model.configure_optimizers()
    assert isinstance(opt["optimizer"], AdamWeightDecay)
    assert opt["lr_scheduler"]["scheduler"].lr_lambdas[0](10) == pytest.approx(0.9)
    lrs = {n: g["initial_lr"] for g in opt["optimizer"].param_groups for n in g["names"]}  # before the schedule
    assert lrs["backbone.encoder.layer.1.output.dense.weight"] == pytest.approx(3e-4 * 0.8 ** 2)  # official


def test_the_classifier_starts_from_glorot_as_the_official_dense_layer(tiny_backbone):
    from lightning_electra.finetune import GlueClassifier

    torch.manual_seed(0)
    w = GlueClassifier(tiny_backbone, get_task("MNLI"), FinetuneConfig()).head.weight
    bound = math.sqrt(6 / (w.shape[0] + w.shape[1]))
    assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound  # uniform on [-bound, bound]
    normal = GlueClassifier(tiny_backbone, get_task("MNLI"), FinetuneConfig(head_init="normal")).head.weight
    assert normal.std() < 0.05


# --- 3, 4. GLUE pairs in both orders, STS-B on [0, 1] ---------------------------------------------------------------
def test_mrpc_and_stsb_train_on_both_orders_and_stsb_on_unit_targets(data_dir):
    from lightning_electra.data.glue_tasks import get_task
    from lightning_electra.data.tokenizer import build_tokenizer
    from lightning_electra.finetune import task_splits

    tokenizer = build_tokenizer(data_dir / "vocab" / "bert-base-uncased-vocab.txt")
    cfg = FinetuneConfig(max_train_examples=50, max_eval_examples=40)
    for task in ("MRPC", "STS-B", "RTE"):
        splits = task_splits(data_dir, get_task(task), cfg, tokenizer, "files")
        single = task_splits(data_dir, get_task(task), FinetuneConfig(max_train_examples=50, max_eval_examples=40,
                                                                     double_unordered=False), tokenizer, "files")
        train, one = splits["train"], single["train"]
        assert len(splits["dev"]) == 40
        if task == "RTE":  # order matters in entailment: not doubled
            assert len(train) == len(one) == 50
            continue
        assert len(train) == 100 and torch.equal(train.labels[:50], train.labels[50:])
        whole = [i for i in range(50) if len(train.input_ids[i]) < cfg.max_seq_length]  # none truncated
        assert len(whole) > 40
        for i in whole:
            ids, sep = train.input_ids[i], tokenizer.sep_token_id
            k = ids.index(sep)
            first, second = ids[1:k], ids[k + 1:-1]
            assert train.input_ids[i + 50] == [tokenizer.cls_token_id, *second, sep, *first, sep]
    sts = task_splits(data_dir, get_task("STS-B"), cfg, tokenizer, "files")
    raw = task_splits(data_dir, get_task("STS-B"), FinetuneConfig(max_train_examples=50, max_eval_examples=40,
                                                                 scale_regression_targets=False), tokenizer, "files")
    torch.testing.assert_close(sts["dev"].labels * 5, raw["dev"].labels)
    assert sts["train"].labels.max() <= 1 and raw["train"].labels.max() > 1


def test_swapped_pairs_hold_the_same_sentences_the_other_way_round():
    from lightning_electra.data.glue_tasks import both_orders, get_task, unit_targets

    pairs = [("the first one", "a second", 1), ("x", "y", 0)]
    assert both_orders(pairs) == pairs + [("a second", "the first one", 1), ("y", "x", 0)]
    assert unit_targets(get_task("STS-B"), [("a", "b", 5.0), ("c", "d", 2.0)]) == [("a", "b", 1.0), ("c", "d", 0.4)]


def test_stsb_scores_do_not_move_with_the_target_scale():
    from lightning_electra.finetune import build_metrics

    preds, labels = torch.tensor([0.1, 0.5, 0.3, 0.9]), torch.tensor([0.0, 3.0, 1.0, 5.0])
    a, b = build_metrics(get_task("STS-B")), build_metrics(get_task("STS-B"))
    a.update(preds, labels)
    b.update(preds / 5, labels / 5)
    assert {k: float(v) for k, v in a.compute().items()} == pytest.approx({k: float(v) for k, v in b.compute().items()})


# --- 5. BERT's masking ---------------------------------------------------------------------------------------------
def test_bert_masks_80_10_10_as_the_paper_states(special):
    cfg = load_config("smoke", variant="bert")
    assert (cfg.data.mask_token_prob, cfg.data.random_token_prob) == (0.8, 0.1)
    assert load_config("smoke", variant="electra").data.random_token_prob == 0  # ELECTRA: the released 85 / 15
    ids = packed_batch(special, batch=512)
    m = mask_tokens(ids, special, 0.15, 0.8, torch.Generator().manual_seed(0), random_token_prob=0.1)
    chosen = m.is_masked
    to_mask = (m.input_ids == special.mask) & chosen
    changed = (m.input_ids != ids) & chosen & ~to_mask
    n = chosen.sum().item()
    assert abs(to_mask.sum().item() / n - 0.8) < 0.02 and abs(changed.sum().item() / n - 0.1) < 0.015
    assert not ((m.input_ids != ids) & ~chosen).any()
    specials = torch.tensor([special.pad, special.cls, special.sep, special.mask])
    assert not torch.isin(m.input_ids[changed], specials).any()


def test_random_tokens_cover_the_vocabulary_but_the_specials(special):
    from lightning_electra.corruption import random_tokens

    ids = random_tokens((200_000,), special, "cpu", torch.Generator().manual_seed(0))
    counts = torch.bincount(ids, minlength=special.vocab_size)
    assert counts[[special.pad, special.cls, special.sep, special.mask]].sum() == 0
    assert counts[special.unk] > 0 and counts[special.vocab_size - 1] > 0 and ids.max() < special.vocab_size


# --- 6. AMOS: the official soft mixture and matched controls -------------------------------------------------------
def test_the_soft_mixture_mixes_the_exits_logits_by_learned_weights(smoke_cfg, variant_setup):
    module, batch = variant_setup(smoke_cfg("amos.mixture=soft", variant="amos"))
    states = module.exit_states(module.mask(batch).input_ids, batch, module.mask(batch).positions)
    mix, weights = module.choose_exits(states, torch.ones(states[0].shape[:2]))
    assert torch.equal(mix, weights) and torch.allclose(mix.sum(-1), torch.ones(()))
    assert ((mix > 0) & (mix < 1)).all(), "soft: every exit contributes"
    run_objective(module, batch)["disc_loss"].backward()
    assert module.mixture.weight.grad.abs().sum() > 0, "D's reversed gradient trains the soft mixture"


def test_the_reference_run_is_the_official_soft_mixture_and_each_ablation_is_compared_with_it():
    from lightning_electra.runner.sweep import sweep_configs

    sweep, configs = sweep_configs("amos", "smoke", [])
    runs = {c.name: c.amos for c in configs if c.variant == "amos"}
    assert runs["amos"].mixture == "soft" and runs["amos"].stop_gradient, "the model that made the paper's numbers"
    assert load_config("smoke", variant="amos").amos.mixture == "soft", "the variant's default is the official mix"
    ablations = {name for name in runs if name not in ("amos", "amos-hard", "random-exit")}
    assert {f"amos > {name}" for name in ablations} | {"amos > electra"} <= set(sweep["claims"])
    for name in ablations:  # each differs from the reference in one thing
        differ = {k for k in ("mixture", "stop_gradient") if getattr(runs[name], k) != getattr(runs["amos"], k)}
        assert len(differ) == 1, (name, differ)
    assert runs["amos-hard"].mixture == "hard" and runs["random-exit"].mixture == "random"
    assert "amos-hard > random-exit" in sweep["claims"]


# --- 7. the adversarial baseline and temperature -------------------------------------------------------------------
def test_the_adversarial_baseline_is_fit_by_cross_entropy_to_the_reward(smoke_cfg, variant_setup):
    module, _ = variant_setup(smoke_cfg(variant="adversarial"))
    hidden = torch.randn(2, 3, module.generator.mlm.config.hidden_size)
    reward, w = torch.rand(2, 3) * 3, torch.ones(2, 3)
    baseline, loss = module.baseline_and_loss(hidden, reward, w)
    score = module.baseline(hidden).squeeze(-1)
    torch.testing.assert_close(baseline, -F.logsigmoid(score))  # b = -log sigmoid(w . h), in the reward's units
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(score, torch.exp(-reward)))
    squared, _ = variant_setup(smoke_cfg("adversarial.baseline_loss=squared-error", variant="adversarial"))
    b2, loss2 = squared.baseline_and_loss(hidden, reward, w)
    torch.testing.assert_close(loss2, ((b2 - reward) ** 2).mean())


def test_reinforce_takes_log_probabilities_at_the_sampling_temperature(smoke_cfg, variant_setup, monkeypatch):
    from lightning_electra.objectives import adversarial

    module, batch = variant_setup(smoke_cfg("train.temperature=2.0", variant="adversarial"))
    seen = {}
    sample, fit = adversarial.sample_tokens, module.baseline_and_loss

    def spy_sample(logits, temperature=1.0):
        seen.update(logits=logits, temperature=temperature, sampled=sample(logits, temperature))
        return seen["sampled"]

    def spy_fit(hidden, reward, w):
        seen.update(reward=reward, w=w)
        seen["baseline"], loss = fit(hidden, reward, w)
        return seen["baseline"], loss

    monkeypatch.setattr(adversarial, "sample_tokens", spy_sample)
    monkeypatch.setattr(module, "baseline_and_loss", spy_fit)
    metrics = run_objective(module, batch)
    log_p = (seen["logits"].float() / 2.0).log_softmax(-1).gather(-1, seen["sampled"][..., None]).squeeze(-1)
    w = seen["w"]
    expected = -(log_p * (seen["reward"] - seen["baseline"]) * w).sum() / w.sum()
    assert seen["temperature"] == 2.0
    torch.testing.assert_close(metrics["reinforce_loss"], expected)
    at_one = -(seen["logits"].float().log_softmax(-1).gather(-1, seen["sampled"][..., None]).squeeze(-1)
               * (seen["reward"] - seen["baseline"]) * w).sum() / w.sum()
    assert not torch.allclose(metrics["reinforce_loss"], at_one)


# --- 8. G's logits in float32 under bf16 autocast -------------------------------------------------------------------
def test_generator_logits_are_float32_under_bf16_autocast():
    from lightning_electra.objectives.losses import vocab_logits

    m = ModelConfig(hidden_size=64, num_layers=1, num_heads=1, intermediate_size=128, embedding_size=32)
    g = build_mlm(generator_shape(m), m, 1000)
    hidden = torch.randn(2, 5, g.config.hidden_size)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = vocab_logits(g, hidden)
        plain = g.generator_lm_head(g.generator_predictions(hidden))
    assert logits.dtype == torch.float32 and plain.dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = g.generator_predictions(hidden)
    exact = F.linear(features.float(), g.generator_lm_head.weight, g.generator_lm_head.bias)
    torch.testing.assert_close(logits, exact)
    assert (plain.float() - exact).abs().max() > (logits - exact).abs().max()


# --- 10. gradient-disentangled embedding sharing --------------------------------------------------------------------
def gdes_pair():
    m = ModelConfig(hidden_size=64, num_layers=2, num_heads=1, intermediate_size=128, embedding_size=32, tie="gdes")
    d, g = build_discriminator(m, 1000), build_mlm(generator_shape(m), m, 1000)
    share_weights(g, d, "gdes")
    return g, d


def test_gdes_d_reads_gs_embeddings_plus_a_zero_residual():
    g, d = gdes_pair()
    ge, de = g.electra.embeddings, d.electra.embeddings
    for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        assert torch.equal(getattr(de, table).weight, getattr(ge, table).weight)
        assert not getattr(de, table).parametrizations.weight.original.any(), "the residual starts at zero"
    assert g.generator_lm_head.weight is ge.word_embeddings.weight, "G's output stays tied to its own table"


def test_gdes_ds_gradient_reaches_only_its_residual():
    g, d = gdes_pair()
    ids = torch.randint(5, 1000, (2, 7))
    d(input_ids=ids).logits.sum().backward()
    ge, de = g.electra.embeddings, d.electra.embeddings
    assert all(p.grad is None for p in ge.parameters()), "D's loss never reaches G's embeddings"
    assert de.word_embeddings.parametrizations.weight.original.grad.abs().sum() > 0
    d.zero_grad()
    g(input_ids=ids).logits.sum().backward()  # G's embeddings learn from G's own loss
    assert ge.word_embeddings.weight.grad.abs().sum() > 0
    assert de.word_embeddings.parametrizations.weight.original.grad is None


def test_gdes_checkpoints_and_exports_hold_ds_own_embeddings(smoke_cfg, variant_setup, tmp_path):
    from transformers import ElectraModel

    from lightning_electra.models import effective_state, saveable

    module, batch = variant_setup(smoke_cfg("model.tie=gdes", "model.generator_fraction=1.0"))
    with torch.no_grad():
        module.discriminator.electra.embeddings.word_embeddings.parametrizations.weight.original.fill_(0.5)
    state = effective_state(module.state_dict())
    key = "discriminator.electra.embeddings.word_embeddings.weight"
    torch.testing.assert_close(state[key], module.generator.mlm.electra.embeddings.word_embeddings.weight + 0.5)
    assert not any("parametrizations" in k for k in state)
    saveable(module.discriminator).electra.save_pretrained(tmp_path)
    loaded = ElectraModel.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.embeddings.word_embeddings.weight, state[key])
    assert "tie-gdes" in {r["name"] for r in __import__("lightning_electra.runner.sweep", fromlist=["x"]).load_sweep(
        "weight-sharing")["runs"]}
