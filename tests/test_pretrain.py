import torch

from lightning_electra.data.datamodule import PretrainDataModule
from lightning_electra.flops import electra_train_flops, mlm_train_flops
from lightning_electra.models import discriminator_shape, generator_shape
from lightning_electra.runner.pretrain import build_module


def module_and_batch(cfg):
    dm = PretrainDataModule(cfg)
    module = build_module(cfg, data=dm)
    return module, dm.collate([dm.train_set[i] for i in range(8)])


def test_discriminator_loss_never_reaches_the_generator(smoke_cfg):
    torch.manual_seed(0)
    module, batch = module_and_batch(smoke_cfg())
    metrics = module.objective(batch, module.mask(batch))
    metrics["disc_loss"].backward()
    own = [p for n, p in module.generator.named_parameters() if "embeddings" not in n]  # embeddings are D's too
    assert own and all(p.grad is None or not p.grad.any() for p in own)
    assert module.discriminator.discriminator_predictions.dense.weight.grad.abs().sum() > 0


def test_electra_labels_and_metrics(smoke_cfg):
    torch.manual_seed(0)
    module, batch = module_and_batch(smoke_cfg())
    m = module.objective(batch, module.mask(batch))
    assert torch.isclose(m["loss"], m["mlm_loss"] + 50 * m["disc_loss"])
    # an untrained G rarely samples the original token: most masked positions end up replaced
    assert 0.05 < m["replaced_fraction"] < 0.2 and 0 <= m["sampled_accuracy"] < 0.2
    for key in ("mlm_accuracy", "disc_accuracy", "disc_precision", "disc_recall"):
        assert 0 <= m[key] <= 1, key


def test_bert_is_mlm_with_the_discriminator_sized_model(smoke_cfg):
    cfg = smoke_cfg(variant="bert")
    module, batch = module_and_batch(cfg)
    assert module.backbone().config.hidden_size == cfg.model.hidden_size
    m = module.objective(batch, module.mask(batch))
    assert set(m) == {"loss", "mlm_loss", "mlm_accuracy", "mlm_unigram_accuracy", "mlm_context_accuracy",
                      "mlm_context_unigram_accuracy"} and m["loss"] > 5  # ~ln(30522) untrained


def test_a_flops_budget_gives_bert_more_steps_than_electra(smoke_cfg):
    electra, _ = module_and_batch(smoke_cfg("train.flops_budget=1e13"))
    bert, _ = module_and_batch(smoke_cfg("train.flops_budget=1e13", variant="bert"))
    assert bert.steps > electra.steps
    cfg = electra.cfg
    d = electra.shape(discriminator_shape(cfg.model))
    g = electra.shape(generator_shape(cfg.model))
    per_step = electra_train_flops(d, g, cfg.train.batch_size, 1)
    assert abs(electra.paper_flops_per_step() / per_step - 1) < 1e-9 and abs(electra.steps * per_step - 1e13) <= per_step
    assert bert.paper_flops_per_step() == mlm_train_flops(d, cfg.train.batch_size, 1)


def test_schedule_is_the_official_warmup_times_linear_decay(smoke_cfg):
    module, _ = module_and_batch(smoke_cfg("train.flops_budget=null", "train.steps=100", "train.warmup_fraction=0.1"))
    module.trainer = None
    opt = module.configure_optimizers()
    schedule = opt["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(100):
        lrs.append(schedule.get_last_lr()[0])
        opt["optimizer"].step()
        schedule.step()
    peak = module.cfg.train.lr
    assert lrs[0] == 0 and abs(lrs[10] - peak * 0.9) < 1e-9 and abs(lrs[5] - peak * 0.5 * 0.95) < 1e-9


def test_a_sample_equal_to_the_original_counts_as_original(smoke_cfg):
    module, batch = module_and_batch(smoke_cfg())
    masked = module.mask(batch)
    module.generator.sample = lambda b, m: ({}, m.labels)  # a generator that always samples the original token
    metrics = module.objective(batch, masked)
    assert metrics["replaced_fraction"] == 0 and metrics["sampled_accuracy"] == 1
    module.generator.sample = lambda b, m: ({}, torch.full_like(m.labels, 1999))  # never the original ("1999")
    metrics = module.objective(batch, masked)
    real = masked.weights.bool() & (masked.labels != 1999)
    assert metrics["replaced_fraction"] * batch["attention_mask"].sum() == real.sum()


def test_an_explicit_step_count_overrides_the_scales_flops_budget(smoke_cfg):
    module, _ = module_and_batch(smoke_cfg("train.steps=37"))
    assert module.steps == 37
