"""Seeds fine-tuned together as one batched ensemble behave as independent models (issue 4)."""

import copy
from pathlib import Path

import pandas as pd
import pytest
import torch

from lightning_electra.config import FinetuneConfig
from lightning_electra.data.glue_tasks import get_task
from lightning_electra.data.tokenizer import build_tokenizer
from lightning_electra.finetune import GlueClassifier, encoded
from lightning_electra.finetune.ensemble import SeedBatches, SeedEnsemble, finetune_seeds


@pytest.fixture(scope="module")
def tokenizer(data_dir):
    return build_tokenizer(data_dir / "vocab" / "bert-base-uncased-vocab.txt")


@pytest.fixture(scope="module")
def backbone(tiny_backbone) -> Path:
    return tiny_backbone


def test_each_member_gets_its_own_gradient_and_clipping(backbone, tokenizer, data_dir):
    cfg = FinetuneConfig(dropout=0.0)
    spec = get_task("RTE")
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        member = GlueClassifier(backbone, spec, cfg)
        for m in member.modules():  # no dropout: the same function both ways
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        members.append(member)
    references = [copy.deepcopy(m) for m in members]
    ensemble = SeedEnsemble(members)
    data = encoded(data_dir, spec, "train", 16, "files", tokenizer, 128)
    batch = next(iter(SeedBatches(data, [0, 1], FinetuneConfig(batch_size=8), tokenizer.pad_token_id)))
    assert batch["input_ids"].shape[:2] == (2, 8) and not torch.equal(*batch["input_ids"])  # own data order each
    ensemble.training_step(batch, 0).backward()
    index = {n: i for i, n in enumerate(ensemble.names)}
    for k, reference in enumerate(references):  # each on its own seed's batch
        member_batch = {key: value[k] for key, value in batch.items()}
        logits = reference(member_batch["input_ids"], member_batch["attention_mask"], member_batch["token_type_ids"])
        torch.nn.functional.cross_entropy(logits, member_batch["labels"]).backward()
        for name, p in reference.named_parameters():
            torch.testing.assert_close(ensemble.stacked[index[name]].grad[k], p.grad, atol=2e-5, rtol=1e-4)
    norms = [torch.cat([p.grad.flatten() for p in r.parameters()]).norm() for r in references]
    ensemble.configure_gradient_clipping(None, gradient_clip_val=min(norms).item() / 2)
    for k in range(2):  # every member clipped to the limit by its own norm
        clipped = torch.cat([p.grad[k].flatten() for p in ensemble.stacked]).norm()
        torch.testing.assert_close(clipped, min(norms) / 2, rtol=1e-4, atol=0)


def test_finetune_seeds_returns_a_result_per_seed(backbone, tokenizer, data_dir):
    cfg = FinetuneConfig(epochs=1, batch_size=8)
    spec = get_task("STS-B")  # regression: the other loss
    train = encoded(data_dir, spec, "train", 32, "files", tokenizer, 128)
    dev = encoded(data_dir, spec, "dev", 32, "files", tokenizer, 128)
    results = finetune_seeds(backbone, spec, cfg, [0, 1, 2], train, [dev], ["dev"], tokenizer.pad_token_id,
                             accelerator="cpu")
    assert len(results) == 3 and all(set(r) >= {"spearman", "pearson", "score"} for r in results)
    assert len({round(r["score"], 6) for r in results}) > 1  # three different models


def spy(monkeypatch, name: str) -> list:
    """The calls `lightning_electra.finetune.<name>` gets from here on (one entry, its seeds, per call)."""
    import lightning_electra.finetune as finetune

    calls, real = [], getattr(finetune, name)

    def recorded(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune, name, recorded)
    return calls


def test_a_sweep_run_fine_tunes_its_seeds_as_one_ensemble(smoke_cfg, monkeypatch):
    from lightning_electra.runner.resolved import ResolvedRun
    from lightning_electra.runner.run import train_and_score

    ensembles, one_by_one = spy(monkeypatch, "finetune_seeds"), spy(monkeypatch, "train_one")
    cfg = smoke_cfg("train.steps=2", "train.checkpoint_fractions=[1.0]", "finetune.tasks=[RTE]",
                    "finetune.seeds=2", "finetune.batched_seeds=true", "finetune.max_train_examples=16",
                    "finetune.max_eval_examples=16", "finetune.task_epochs.RTE=1")
    table = pd.read_csv(train_and_score(ResolvedRun.of(cfg, "ensemble-test")))
    assert sorted(table.query("metric == 'score'")["finetune_seed"]) == [0, 1]
    assert len(ensembles) == 1 and list(ensembles[0][3]) == [0, 1] and not one_by_one  # both seeds, in one ensemble


def test_the_finetune_benchmark_times_both_modes(data_dir, tmp_path, monkeypatch):
    from lightning_electra.tools.finetune_benchmark import main

    monkeypatch.setenv("DATA_DIR", str(data_dir))
    ensembles, one_by_one = spy(monkeypatch, "finetune_seeds"), spy(monkeypatch, "train_one")
    table = main(["--scale", "smoke", "--tasks", "RTE", "--seeds", "2", "--out", str(tmp_path),
                  "--modes", "sequential,batched,batched-unbucketed", "finetune.length_buckets=[32,64]",
                  "finetune.max_train_examples=16", "finetune.max_eval_examples=16", "finetune.task_epochs.RTE=1"])
    assert list(table["mode"]) == ["sequential", "batched", "batched-unbucketed"]
    # each mode trained what it names: two seeds one by one, then the two batched modes one ensemble each
    assert len(one_by_one) == 2 and [list(call[3]) for call in ensembles] == [[0, 1], [0, 1]]
    assert (table["seeds"] == 2).all() and table["median_score"].notna().all()
    assert list(table["length_buckets"]) == ["32-64", "32-64", "none"]
    from analysis.finetune_benchmark import render

    (tmp_path / "finetune.md").unlink(missing_ok=True)
    text = render(tmp_path).read_text()  # the Markdown from the table and its provenance alone
    assert "| sequential | RTE | 2 |" in text and "scale `smoke`" in text.lower() and "random encoder" in text
    with pytest.raises(SystemExit):
        main(["--modes", "batched,bucketed", "--out", str(tmp_path)])
