from dataclasses import fields

import pytest

from lightning_electra.config import ConfigError
from lightning_electra.objectives import OBJECTIVES
from lightning_electra.runner.configs import CONFIG_ROOT, load_config, save_config
from lightning_electra.runner.identity import config_hash


def test_defaults_are_the_papers_small_recipe():
    cfg = load_config("small")
    assert (cfg.model.hidden_size, cfg.model.num_layers, cfg.model.embedding_size) == (256, 12, 128)
    assert cfg.train.lr == 5e-4 and cfg.train.disc_weight == 50 and cfg.data.mask_prob == 0.15
    assert cfg.finetune.layer_decay == 0.8 and cfg.finetune.task_epochs == {"RTE": 10, "STS-B": 10}


def test_unknown_key_names_the_closest_valid_ones():
    with pytest.raises(ConfigError, match=r"Unknown config key 'train\.lr_rate'.*train\.lr"):
        load_config("smoke", overrides=["train.lr_rate=1e-3"])
    with pytest.raises(ConfigError, match=r"model\.hidden_size"):
        load_config("smoke", overrides=["model.hiden_size=128"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_config("smoke", overrides=["train.batch_size=lots"])


def test_a_choice_names_its_values_and_the_closest_and_is_its_plain_string(tmp_path):
    with pytest.raises(ConfigError, match=r"'model\.tie'.*'embedings' is not one of none, embeddings, all, gdes\. "
                                          r"Did you mean embeddings\?"):
        load_config("smoke", overrides=["model.tie=embedings"])
    cfg = load_config("smoke", overrides=["model.tie=gdes"])
    assert cfg.model.tie == "gdes" and f"{cfg.model.tie}" == str(cfg.model.tie) == "gdes"
    save_config(cfg, tmp_path / "config.yaml")
    assert "tie: gdes" in (tmp_path / "config.yaml").read_text()


def test_malformed_override_says_how_to_write_one():
    with pytest.raises(ConfigError, match="key=value"):
        load_config("smoke", overrides=["train.steps"])


@pytest.mark.parametrize("overrides, message", [
    (["model.tie=all", "model.generator_fraction=0.25"], "same size"),
    (["model.hidden_size=100", "model.num_heads=3"], "not divisible"),
    (["model.tie=some"], "none, embeddings, all, gdes"),
    (["variant=electar"], "electra"),
    (["finetune.tasks=[CoLA,SQuAD]"], "Unknown GLUE task"),
    (["train.flops_budget=null", "train.steps=null"], "budget"),
])
def test_impossible_configs_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("smoke", overrides=overrides)


def test_missing_scale_file_lists_the_known_ones():
    with pytest.raises(ConfigError, match="smoke"):
        load_config("huge")


@pytest.mark.parametrize("scale", sorted(p.stem for p in (CONFIG_ROOT / "scales").glob("*.yaml")))
@pytest.mark.parametrize("variant", sorted(OBJECTIVES))
def test_every_shipped_scale_and_variant_loads(scale, variant):
    cfg = load_config(scale, variant=variant)
    assert cfg.scale == scale and cfg.variant == variant


def test_every_shipped_sweep_expands():
    from lightning_electra.runner.sweep import sweep_configs

    for path in (CONFIG_ROOT / "sweeps").glob("*.yaml"):
        _, configs = sweep_configs(path.stem, "smoke", [])
        assert len({config_hash(c) for c in configs}) == len(configs), f"{path.stem}: two runs are identical"


def test_config_hash_ignores_where_a_run_goes_but_not_what_it_computes():
    base = load_config("smoke")
    assert config_hash(base) == config_hash(load_config("smoke", overrides=["results_dir=/elsewhere",
                                                                             "train.devices=1"]))
    assert config_hash(base) != config_hash(load_config("smoke", overrides=["train.lr=1e-4"]))


def test_scale_auto_picks_smoke_without_gpu(monkeypatch):
    monkeypatch.delenv("SCALE", raising=False)
    import torch

    assert load_config().scale == ("tiny" if torch.cuda.is_available() else "smoke")


def test_variant_constraints_fail_when_the_config_loads():
    with pytest.raises(ConfigError, match="two-stage"):
        load_config("smoke", variant="two-stage", overrides=["model.generator_fraction=0.5"])
    with pytest.raises(ConfigError, match="generator=learned"):
        load_config("smoke", variant="adversarial", overrides=["model.generator=unigram"])


def test_an_objectives_options_are_its_own_section_checked_as_any_key():
    from lightning_electra.config import Config
    from lightning_electra.objectives import OBJECTIVES, objective, section
    from lightning_electra.runner.configs import compose, parse_overrides

    with pytest.raises(ConfigError, match=r"Unknown config key 'adversarial\.mlm_wieght'.*adversarial\.mlm_weight"):
        load_config("smoke", variant="adversarial", overrides=["adversarial.mlm_wieght=1"])
    with pytest.raises(ConfigError, match=r"amos\.temperature must be above 0"):
        load_config("smoke", variant="amos", overrides=["amos.temperature=0"])
    with pytest.raises(ConfigError, match="adversarial.baseline_loss.*not one of cross-entropy, squared-error"):
        load_config("smoke", variant="adversarial", overrides=["adversarial.baseline_loss=l1"])
    with pytest.raises(ConfigError, match="Unknown config key 'bert'"):  # bert has no options
        load_config("smoke", variant="bert", overrides=["bert.foo=1"])
    # the core schema, without torch, leaves an objective's section to the full check
    layer = parse_overrides(["adversarial.mlm_wieght=1", "train.lr=1e-3", "train.steps=1"])
    core = compose([(layer, "test")], checked="fields")
    assert type(core) is Config and core.train.lr == 1e-3
    owners = {section(v) for v in OBJECTIVES if objective(v).Options is not None}
    assert owners == {"adversarial", "amos"} and not owners & {f.name for f in fields(Config)}
    # an objective's options enter its own hash only
    electra, adversarial = (load_config("smoke", variant=v) for v in ("electra", "adversarial"))
    assert config_hash(electra) == config_hash(load_config("smoke", overrides=["adversarial.mlm_weight=1"]))
    assert config_hash(adversarial) != config_hash(load_config("smoke", variant="adversarial",
                                                               overrides=["adversarial.mlm_weight=1"]))


def test_fine_tuning_settings_never_move_the_pretraining_directory():
    from lightning_electra.runner.identity import finetune_hash, pretrain_hash

    base = load_config("smoke")
    more_seeds = load_config("smoke", overrides=["finetune.seeds=5"])
    other_lr = load_config("smoke", overrides=["finetune.lr=1e-4"])
    assert pretrain_hash(base) == pretrain_hash(more_seeds) == pretrain_hash(other_lr)
    assert finetune_hash(base) == finetune_hash(more_seeds) != finetune_hash(other_lr)
    assert config_hash(base) != config_hash(more_seeds)
    assert pretrain_hash(base) != pretrain_hash(load_config("smoke", overrides=["model.tie=none"]))


def test_new_switches_do_not_move_existing_runs(monkeypatch, tmp_path):
    """Hashes of the shipped sweeps, as recorded when the paper-fidelity protocol (issue 11) moved every run: adding a
    config key must not re-run anyone's results (new variant sections and switches stay out of the hash while
    unused)."""
    from lightning_electra.runner.sweep import sweep_configs

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    _, configs = sweep_configs("training-algorithms", "smoke", [])
    first_seeds = {c.name: config_hash(c) for c in configs if "-seed" not in c.name}  # more seeds came later
    assert list(first_seeds.values()) == ["465050f62f", "e7f3bcdae3", "9e84ba92ab", "a7a1b1f5c5",
                                          "c1314189bf"]  # + the no-pre-training control, added later


def test_batched_seeds_make_the_seed_count_part_of_the_protocol(tmp_path):
    from lightning_electra.runner.identity import finetune_hash

    def ft_hash(*overrides):
        return finetune_hash(load_config("smoke", overrides=[f"data.data_dir={tmp_path}", *overrides]))

    assert ft_hash("finetune.seeds=2") == ft_hash("finetune.seeds=3")  # one by one: more seeds reuse the rest
    batched = "finetune.batched_seeds=true"
    assert ft_hash(batched, "finetune.seeds=2") != ft_hash(batched, "finetune.seeds=3")


def test_pre_training_seeds_are_runs_of_their_own_and_the_first_keeps_its_hash(tmp_path):
    from lightning_electra.runner.identity import config_hash
    from lightning_electra.runner.sweep import sweep_configs

    path = tmp_path / "seeded.yaml"
    path.write_text("name: seeded\nseeds: 3\nruns:\n  - {name: electra, variant: electra}\n"
                    "  - {name: bert, variant: bert, seeds: 1}\n")
    _, configs = sweep_configs(str(path), "smoke", [])
    assert [(c.name, c.train.seed) for c in configs] == [("electra", 0), ("electra-seed1", 1), ("electra-seed2", 2),
                                                         ("bert", 0)]
    _, plain = sweep_configs("training-algorithms", "smoke", [])
    electra = next(c for c in plain if c.name == "electra")
    assert config_hash(configs[0]) == config_hash(electra) != config_hash(configs[1])
    path.write_text("name: seeded\nruns:\n  - {name: electra, variant: electra, seeds: 0}\n")
    with pytest.raises(ConfigError, match="seeds .* at least 1; got 0 for run electra"):
        sweep_configs(str(path), "smoke", [])


def test_one_run_of_a_sweep_is_composed_alone_and_an_unknown_one_named():
    from lightning_electra.runner.sweep import sweep_configs

    _, every = sweep_configs("training-algorithms", "smoke", [])
    _, (alone,) = sweep_configs("training-algorithms", "smoke", [], only="electra-seed1")
    assert alone == next(c for c in every if c.name == "electra-seed1")
    with pytest.raises(ConfigError, match="no run named electra-seed9 in sweep training-algorithms; its runs: bert"):
        sweep_configs("training-algorithms", "smoke", [], only="electra-seed9")
