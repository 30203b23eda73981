"""AMOS's defining properties (issue 5): gradient reversal, exits trained by MLM only, the straight-through sample,
and the ablations' exit choices."""

import pytest
import torch

from lightning_electra.config import ConfigError
from lightning_electra.objectives import amos as amos_module
from lightning_electra.objectives.amos import reverse_gradient, switch_exit


def objective(module, batch, seed=0):
    torch.manual_seed(seed)
    return module.objective(batch, module.mask(batch))


def generator_own_params(module):
    """G's parameters that D does not share (its layers and MLM head): the exits."""
    shared = {id(p) for p in module.discriminator.parameters()}
    return {n: p for n, p in module.generator.named_parameters() if id(p) not in shared}


def test_reverse_gradient_flips_the_sign():
    x = torch.randn(5, requires_grad=True)
    (reverse_gradient(x) * torch.arange(5.0)).sum().backward()
    assert torch.equal(x.grad, -torch.arange(5.0))


def test_the_mixture_learns_to_raise_the_discriminators_loss(smoke_cfg, monkeypatch, variant_setup):
    module, batch = variant_setup(smoke_cfg(variant="amos"))
    grads = []
    for reverse in (True, False):
        if not reverse:
            monkeypatch.setattr(amos_module, "reverse_gradient", lambda x: x)
        module.zero_grad()
        objective(module, batch)["disc_loss"].backward()
        grads.append(module.mixture.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], -grads[1])


def test_exits_get_no_gradient_from_the_discriminator(smoke_cfg, variant_setup):
    module, batch = variant_setup(smoke_cfg(variant="amos"))
    objective(module, batch)["disc_loss"].backward()
    exits = generator_own_params(module)
    assert exits and all(p.grad is None or not p.grad.any() for p in exits.values())
    assert module.mixture.weight.grad.abs().sum() > 0
    module.zero_grad()
    objective(module, batch)["mlm_loss"].backward()  # they do learn by MLM
    assert all(p.grad is not None and p.grad.any() for n, p in exits.items() if "layer.0." in n)


def test_the_one_hot_sample_is_the_sampled_token(smoke_cfg, variant_setup):
    module, batch = variant_setup(smoke_cfg(variant="amos"))
    seen = {}
    real = module.discriminate_sample

    def spy(b, corrupted, masked, sample):
        seen.update(corrupted=corrupted, masked=masked, sample=sample)
        return real(b, corrupted, masked, sample)

    module.discriminate_sample = spy
    embeddings = module.discriminator.electra.embeddings
    embeddings.register_forward_pre_hook(  # shared with G, which passes input_ids
        lambda m, args, kw: seen.update(embeds=kw["inputs_embeds"]) if kw.get("inputs_embeds") is not None else None,
        with_kwargs=True)
    objective(module, batch)
    sample, masked, corrupted = seen["sample"], seen["masked"], seen["corrupted"]
    real_slots = masked.weights.bool()
    assert torch.equal(sample.sum(-1), torch.ones_like(masked.weights))  # exactly one-hot
    assert torch.equal(sample.argmax(-1)[real_slots], corrupted.gather(1, masked.positions)[real_slots])
    # what D reads is its own embedding of the corrupted input: the one-hot times the table, exactly
    torch.testing.assert_close(seen["embeds"], embeddings.word_embeddings(corrupted), rtol=0, atol=0)


def test_random_exit_ablation_picks_exits_uniformly(smoke_cfg, variant_setup):
    module, _ = variant_setup(smoke_cfg("model.num_layers=3", "amos.exits=[1,2,3]", "amos.mixture=random",
                                        variant="amos"))
    states = [torch.zeros(200, 100, 16)] * 3
    torch.manual_seed(0)
    choice, _ = module.choose_exits(states, torch.ones(200, 100))
    assert torch.equal(choice.sum(-1), torch.ones(200, 100))
    shares = choice.mean((0, 1))
    torch.testing.assert_close(shares, torch.full((3,), 1 / 3), atol=0.01, rtol=0)  # 20,000 draws: sd 0.003


def test_layer_switch_goes_from_shallow_to_deep(smoke_cfg, variant_setup):
    assert [switch_exit(s, 90, 3) for s in (0, 29, 30, 59, 60, 89)] == [0, 0, 1, 1, 2, 2]
    switching, batch = variant_setup(smoke_cfg("model.num_layers=3", "amos.exits=[1,2,3]", "amos.mixture=switch",
                                               "train.steps=90", variant="amos"))
    assert [switching.phase(s) for s in (1, 30, 31, 90)] == [0, 0, 1, 2], "the exit in use is the step's phase"
    torch.manual_seed(0)
    deepest = switching.masked_objective(batch, 2)
    assert (deepest["exit3_share"], deepest["exit1_share"]) == (1, 0)
    soft, _ = variant_setup(smoke_cfg(variant="amos"))
    assert soft.phase(1) is None, "only the switch has a phase"


def test_stop_gradient_between_blocks(smoke_cfg, variant_setup):
    for stop in (True, False):
        module, batch = variant_setup(smoke_cfg(f"amos.stop_gradient={stop}", variant="amos"))
        objective(module, batch)["mlm_loss_exit2"].backward()
        first_block = [p for n, p in generator_own_params(module).items() if "layer.0." in n]
        reached = any(p.grad is not None and p.grad.any() for p in first_block)
        assert reached is (not stop)


def test_exit_states_match_the_transformers_forward(smoke_cfg, variant_setup):
    module, batch = variant_setup(smoke_cfg("amos.mixture=single", "model.dropout=0", "model.attention_dropout=0",
                                    variant="amos"))
    masked = module.mask(batch)
    (state,) = module.exit_states(masked.input_ids, batch, masked.positions)
    hidden = module.generator.mlm.electra(input_ids=masked.input_ids, attention_mask=batch["attention_mask"],
                                      token_type_ids=batch["token_type_ids"]).last_hidden_state
    torch.testing.assert_close(state, hidden.gather(1, masked.positions[..., None].expand(-1, -1, hidden.shape[-1])))


@pytest.mark.parametrize("overrides, message", [
    (["amos.exits=null"], "collide"),
    (["amos.exits=[2,1]"], "increasing"),
    (["amos.exits=[1]", "amos.mixture=hard"], "has one"),
    (["amos.mixture=learned"], "'learned' is not one of hard, soft.*Did you mean hard"),
    (["model.tie=all", "model.generator_fraction=1.0"], "shallower than D"),
])
def test_impossible_amos_configs_are_refused(smoke_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message):
        smoke_cfg(*overrides, variant="amos")


def test_one_exit_at_full_depth_is_joint_electra(smoke_cfg, variant_setup):
    """AMOS with only its deepest exit, at D's depth, is ELECTRA's generator: same weights, same draws, same loss."""
    losses = []
    for variant, extra in (("electra", []), ("amos", ["amos.mixture=single"])):
        torch.manual_seed(0)
        module, batch = variant_setup(smoke_cfg(*extra, variant=variant))
        metrics = objective(module, batch)
        losses.append((metrics["disc_loss"], metrics["mlm_loss"]))
    torch.testing.assert_close(losses[0], losses[1])
