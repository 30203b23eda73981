"""Exported checkpoints load with `from_pretrained` and compute what the module computed; GLUE from any ELECTRA
directory; pre-training loggers. One real 2-step pre-training run is shared by the tests that need one."""

import importlib.util
import json
import math
import shutil

import pytest
import torch
from transformers import AutoTokenizer, ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining, ElectraModel

from lightning_electra.data.glue_tasks import get_task
from lightning_electra.__main__ import main
from lightning_electra.config import ConfigError
from lightning_electra.data.tokenizer import build_tokenizer
from lightning_electra.finetune import finetune_task
from lightning_electra.runner.configs import load_config, load_run_config, save_config
from lightning_electra.runner.export import ExportError, export, load_module
from lightning_electra.runner.pretrain import build_module, pretrain
from lightning_electra.runner.resolved import ResolvedRun

SENTENCES = ["the quick brown fox jumps over the lazy dog .", "electra detects replaced tokens"]


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    """A real 2-step ELECTRA pre-training (Trainer, last.ckpt, step checkpoints, loggers) at smoke shapes."""
    tmp = tmp_path_factory.mktemp("run")
    cfg = load_config("smoke", overrides=[
        f"data.data_dir={data_dir}", f"results_dir={tmp / 'results'}", f"data.cache_dir={tmp / 'cache'}",
        "data.max_corpus_bytes=200000", "train.flops_budget=null", "train.steps=2", "train.log_every_n_steps=1"])
    out = ResolvedRun.of(cfg, "export-test").layout.root
    out.mkdir(parents=True)
    save_config(cfg, out / "config.yaml")
    pretrain(cfg, out)
    return out


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    main(["export", str(trained_run), str(out)])  # through the command line; a run directory gives its last.ckpt
    return out


def encode(model_dir):
    return AutoTokenizer.from_pretrained(str(model_dir))(SENTENCES, padding=True, return_tensors="pt")


def test_export_reloads_with_the_modules_logits(trained_run, exported, data_dir):
    meta = json.loads((exported / "export.json").read_text())
    assert meta["models"] == {"discriminator": "ElectraForPreTraining", "generator": "ElectraForMaskedLM"}
    assert meta["step"] == 2 and meta["variant"] == "electra" and meta["not_exported"] == []
    module, _ = load_module(trained_run / "pretrain" / "last.ckpt", load_run_config(trained_run / "config.yaml"), None)
    batch = encode(exported / "discriminator")
    # the exported tokenizer is the suite's vocabulary, lower-cased like pre-training's
    ours = build_tokenizer(data_dir / "vocab" / "bert-base-uncased-vocab.txt")(SENTENCES, padding=True,
                                                                              return_tensors="pt")
    assert torch.equal(batch["input_ids"], ours["input_ids"])
    d = ElectraForPreTraining.from_pretrained(exported / "discriminator").eval()
    g = ElectraForMaskedLM.from_pretrained(exported / "generator").eval()
    with torch.no_grad():
        assert torch.allclose(d(**batch).logits, module.discriminator(**batch).logits, atol=1e-5)
        assert torch.allclose(g(**batch).logits, module.generator.mlm(**batch).logits, atol=1e-5)
        # last.ckpt holds the final weights: the encoder saved from the live module at step 2 is the same
        live = ElectraModel.from_pretrained(trained_run / "checkpoints" / "step-0000002").eval()
        assert torch.allclose(live(**batch).last_hidden_state, d.electra(**batch).last_hidden_state, atol=1e-5)


def test_pretraining_writes_csv_and_tensorboard_logs(trained_run):
    assert (trained_run / "pretrain" / "logs" / "metrics.csv").stat().st_size > 0
    assert list((trained_run / "pretrain" / "tensorboard").glob("events.out.tfevents.*"))


def test_a_step_directory_exports_its_encoder_only(trained_run, tmp_path):
    meta = export(trained_run / "checkpoints" / "step-0000001", tmp_path / "out")
    assert meta["models"] == {"encoder": "ElectraModel"} and meta["step"] == 1
    assert not (tmp_path / "out" / "discriminator").exists()  # no head to give: not a random one with a warning
    ElectraModel.from_pretrained(tmp_path / "out" / "encoder")


def test_a_checkpoint_of_another_variant_is_a_clear_error(trained_run, tmp_path):
    cfg = load_run_config(trained_run / "config.yaml")
    cfg.variant = "bert"
    save_config(cfg, tmp_path / "config.yaml")
    with pytest.raises(ExportError, match=r"does not fit variant 'bert'.*fit electra"):
        export(trained_run / "pretrain" / "last.ckpt", tmp_path / "out", config=tmp_path / "config.yaml")
    with pytest.raises(ExportError, match="not an earlier export"):  # never writes into an unrelated directory
        export(trained_run, trained_run / "checkpoints")


def test_a_checkpoint_of_an_earlier_layout_exports(trained_run, tmp_path):
    """G's weights were once the objective's own `generator.*`: such a last.ckpt loads through the module's hook."""
    saved = torch.load(trained_run / "pretrain" / "last.ckpt", weights_only=False)
    state = saved["state_dict"]
    saved["state_dict"] = {k.replace("generator.mlm.", "generator."): v for k, v in state.items()}
    run = tmp_path / trained_run.name
    (run / "pretrain").mkdir(parents=True)
    shutil.copy(trained_run / "config.yaml", run / "config.yaml")
    torch.save(saved, run / "pretrain" / "last.ckpt")
    module, _ = load_module(run / "pretrain" / "last.ckpt", load_run_config(run / "config.yaml"), None)
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize("variant, stage, roles", [
    ("bert", 1, {"mlm"}),
    ("two-stage", 1, {"generator"}),
    ("two-stage", 2, {"discriminator", "generator"}),
    ("replace-mlm", 1, {"mlm", "generator"}),
    ("all-tokens-mlm", 1, {"discriminator", "mlm", "generator"}),
])
def test_each_variant_exports_the_models_it_has(variant, stage, roles, smoke_cfg, tmp_path):
    """Untrained modules saved as Lightning would (state_dict under a run directory): the layout is what counts."""
    cfg = smoke_cfg(*(["model.generator_fraction=1.0"] if variant == "two-stage" else []), variant=variant)
    run = tmp_path / "run"
    stage_dir = run / ("pretrain" if variant != "two-stage" else f"pretrain-stage{stage}")  # as run.py names them
    stage_dir.mkdir(parents=True)
    save_config(cfg, run / "config.yaml")
    torch.manual_seed(0)
    module = build_module(cfg, stage).eval()
    torch.save({"state_dict": module.state_dict(), "global_step": 0}, stage_dir / "last.ckpt")
    meta = export(run, tmp_path / "out")
    assert set(meta["models"]) == roles
    batch = encode(tmp_path / "out" / next(iter(roles)))
    reference = {"generator": lambda: module.generator.mlm(**batch).logits,
                 "discriminator": lambda: module.discriminator(**batch).logits,
                 "mlm": lambda: (module.mlm(**batch).logits if variant == "bert"
                                 else module.mlm(**batch).logits if variant == "replace-mlm"
                                 else module.mlm_logits(module.discriminator.electra(**batch).last_hidden_state))}
    with torch.no_grad():
        for role in roles:
            cls = ElectraForPreTraining if role == "discriminator" else ElectraForMaskedLM
            loaded = cls.from_pretrained(tmp_path / "out" / role).eval()
            assert torch.allclose(loaded(**batch).logits, reference[role](), atol=1e-5), role


def test_finetune_from_an_exported_directory(exported, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    out = tmp_path / "glue.json"
    main(["finetune", str(exported / "discriminator"), "--tasks", "RTE", "--seeds", "1", "finetune.epochs=1",
          "finetune.task_epochs.RTE=1", "finetune.max_train_examples=32", "finetune.max_eval_examples=32",
          "train.accelerator=cpu", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["tokenizer"] == str(exported / "discriminator")  # the model's own tokenizer files
    assert math.isfinite(result["glue"]) and 0 <= result["tasks"]["RTE"]["score"] <= 100
    assert "GLUE-1" in capsys.readouterr().out


def test_a_tokenizer_of_another_vocabulary_is_refused(tmp_path, data_dir):
    model = ElectraModel(ElectraConfig(vocab_size=1000, embedding_size=16, hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=1, intermediate_size=32))
    model.save_pretrained(tmp_path / "small-vocab")
    cfg = load_run_config(None, [f"data.data_dir={data_dir}"])
    with pytest.raises(ValueError, match="1,000-token vocabulary but the tokenizer has 30,522"):
        finetune_task(tmp_path / "small-vocab", get_task("RTE"), data_dir, cfg.finetune,
                      data_dir / "vocab" / "bert-base-uncased-vocab.txt", seed=0, accelerator="cpu")


def test_unknown_or_missing_loggers_are_config_errors(smoke_cfg):
    assert smoke_cfg().train.loggers == ["csv", "tensorboard"]
    with pytest.raises(ConfigError, match="'mlflow' is not one of csv, tensorboard, wandb"):
        smoke_cfg("train.loggers=[csv,mlflow]")
    if importlib.util.find_spec("wandb") is None:  # opt-in and not installed: refused before any work
        with pytest.raises(ConfigError, match="wandb, which is not installed"):
            smoke_cfg("train.loggers=[csv,tensorboard,wandb]")


def test_a_run_directory_exports_the_weights_its_last_step_ended_with(data_dir, tmp_path):
    """Checkpoints come every steps // 10 steps, but last.ckpt is saved again at the final step: the exported model
    is the one the report scored (its step-* encoder), and export.json says which step it is."""
    from safetensors.torch import load_file

    cfg = load_config("smoke", overrides=[
        f"data.data_dir={data_dir}", f"results_dir={tmp_path / 'results'}", f"data.cache_dir={tmp_path / 'cache'}",
        "data.max_corpus_bytes=200000", "train.flops_budget=null", "train.steps=25", "train.checkpoint_fractions=[1.0]",
        "model.dropout=0", "model.attention_dropout=0"])
    out = ResolvedRun.of(cfg, "export-final").layout.root
    out.mkdir(parents=True)
    save_config(cfg, out / "config.yaml")
    pretrain(cfg, out)  # checkpoints at steps 2, 4, ..., 24, and the final one at 25
    meta = export(out, tmp_path / "exported")
    assert meta["step"] == 25
    scored = load_file(out / "checkpoints" / "step-0000025" / "model.safetensors")
    exported = load_file(tmp_path / "exported" / "discriminator" / "model.safetensors")
    for name, weight in scored.items():
        torch.testing.assert_close(exported[f"electra.{name}"], weight, msg=name)


def test_the_model_card_holds_the_runs_training_scores_and_provenance(trained_run, tmp_path):
    """A run directory laid out as a sweep leaves it (results table, sweep.json beside): the card reads them back."""
    from lightning_electra.results import COLUMNS, write_table

    run = tmp_path / "results" / "training-algorithms" / "smoke" / trained_run.name
    shutil.copytree(trained_run, run)
    name = load_run_config(run / "config.yaml").name
    base = {"sweep": "training-algorithms", "run": name, "variant": "electra", "scale": "smoke", "seed": 0,
            "tokens": 0, "flops_paper": 0, "flops_measured": 0, "commit": "abc1234", "config_hash": "0123456789"}
    scores = {("RTE", 0): 50.0, ("RTE", 1): 54.0, ("RTE", 2): 60.0, ("MRPC", 0): 70.0, ("MRPC", 1): 72.0,
              ("MRPC", 2): 68.0}
    rows = [{**base, "step": step, "task": task, "metric": metric, "value": value + step, "finetune_seed": seed}
            for (task, seed), value in scores.items() for step in (1, 2) for metric in ("score", "accuracy")]
    write_table([{c: r[c] for c in COLUMNS} for r in rows], run / "results-0123456789.csv")
    invocation = {"command": "python -m lightning_electra sweep training-algorithms --scale smoke", "commit": "abc1234",
                  "hardware": "CPU (x86_64, 2 cores)", "finished": "2026-01-01T00:00:00+00:00", "runs": {name: "x"}}
    (run.parent / "sweep.json").write_text(json.dumps({"invocations": [invocation]}))
    out = tmp_path / "exported"
    main(["export", str(run), str(out)])

    card = (out / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    assert "language: en" in front and "license: apache-2.0" in front and "- electra" in front
    assert "- nyu-mll/glue" in front and (out / "discriminator" / "README.md").read_text() == card
    assert "| steps | 2 |" in body and "| scale | `smoke` |" in body and "pre-training FLOPs" in body
    assert "A smoke-scale model" in body
    # step 2's rows only (the last.ckpt's step), each task's median over the three seeds, GLUE-2 their mean
    assert "| RTE | accuracy | 56.00 |" in body and "| MRPC | accuracy | 72.00 |" in body
    assert "| **GLUE-2** | mean | **64.00** |" in body and "median of 3 fine-tuning seed(s)" in body
    assert f"- trained: `{invocation['command']}` at commit `abc1234`" in body
    assert "- fine-tuned at commit `abc1234`" in body
    assert f"- exported: `python -m lightning_electra export {run} {out}` at commit `" in body


def test_a_card_without_scores_says_how_to_measure_them(exported):
    card = (exported / "README.md").read_text()
    assert "None: the run directory holds no results table" in card and "datasets:" not in card
    assert "the command is not recorded in the run directory" in card
