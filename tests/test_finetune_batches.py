"""The batches a fine-tune draws: the official random ones, or length buckets (finetune.length_buckets) with every
example once an epoch, a few static widths, seeds of an ensemble in step, and dev metrics that do not move."""

from __future__ import annotations

import pytest
import torch

from lightning_electra.config import ConfigError, FinetuneConfig
from lightning_electra.data.glue import GlueCollator
from lightning_electra.data.glue_tasks import get_task
from lightning_electra.data.tokenizer import build_tokenizer
from lightning_electra.finetune import encoded, finetune_task
from lightning_electra.finetune.data import LengthBuckets, bucket_widths, eval_loader, train_loader
from lightning_electra.finetune.ensemble import SeedBatches
from tests.conftest import FIXTURES

WIDTHS = (16, 32, 64, 128)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(FIXTURES / "vocab" / "bert-base-uncased-vocab.txt")


@pytest.fixture(scope="module")
def sst2(tokenizer):
    return encoded(FIXTURES, get_task("SST-2"), "train", 200, "files", tokenizer, 128)


def bucket(length: int) -> int:
    return next(w for w in WIDTHS if length <= w)


def test_length_buckets_hold_every_example_once_an_epoch_and_one_width_a_batch(sst2):
    lengths = sst2.lengths
    assert len({bucket(n) for n in lengths}) > 1, "the fixture's sentences fill more than one bucket"
    sampler = LengthBuckets(lengths, 8, WIDTHS, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    epochs = [list(sampler), list(sampler)]
    for batches in epochs:
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert all(len({bucket(lengths[i]) for i in b}) == 1 for b in batches)
    assert epochs[0] != epochs[1], "each epoch its own order"
    assert [len({bucket(lengths[i]) for i in b}) for b in epochs[0]] == [1] * len(epochs[0])
    # the buckets' batches interleave (their order is shuffled), not one bucket after another
    order = [bucket(lengths[b[0]]) for b in epochs[0]]
    assert sum(a != b for a, b in zip(order, order[1:])) > len(set(order))


def test_a_bucketed_batch_is_padded_to_its_bucket_s_width(sst2, tokenizer):
    cfg = FinetuneConfig(batch_size=8, length_buckets=[16, 32, 64])
    assert bucket_widths(cfg) == WIDTHS and bucket_widths(FinetuneConfig()) == ()
    assert bucket_widths(FinetuneConfig(length_buckets=[16, 256], max_seq_length=64)) == (16, 64)
    for batch in train_loader(sst2, cfg, tokenizer.pad_token_id, seed=0):
        width = batch["input_ids"].shape[1]
        assert width in WIDTHS and bucket(int(batch["attention_mask"].sum(1).max())) == width
    plain = GlueCollator(tokenizer.pad_token_id)([sst2[0], sst2[1]])
    assert plain["input_ids"].shape[1] == max(sst2.lengths[:2])  # no widths: the longest, as before


def test_the_seeds_of_an_ensemble_step_through_one_bucket_each_with_their_own_examples(sst2, tokenizer):
    cfg = FinetuneConfig(batch_size=8, length_buckets=[16, 32, 64])
    loaders = SeedBatches(sst2, [3, 4, 5], cfg, tokenizer.pad_token_id).loaders
    epochs = [list(loader) for loader in loaders]
    assert len({len(e) for e in epochs}) == 1
    for batches in zip(*epochs):  # one shape at each step: the stacked batch needs no padding between seeds
        assert len({b["input_ids"].shape for b in batches}) == 1
    assert not torch.equal(epochs[0][0]["input_ids"], epochs[1][0]["input_ids"])
    stacked = next(iter(SeedBatches(sst2, [3, 4, 5], cfg, tokenizer.pad_token_id)))
    assert stacked["input_ids"].shape[:2] == (3, 8) and stacked["input_ids"].shape[2] in WIDTHS


def test_dev_sets_in_length_order_score_as_in_file_order(tokenizer, tiny_backbone):
    from lightning_electra.finetune.classifier import GlueClassifier, glue_trainer, quiet

    spec = get_task("STS-B")  # Spearman and Pearson: the metrics that see every prediction at once
    dev = encoded(FIXTURES, spec, "dev", 64, "files", tokenizer, 128)
    scores = []
    for cfg in (FinetuneConfig(), FinetuneConfig(length_buckets=[16, 32], eval_batch_size=48)):
        torch.manual_seed(0)
        model = GlueClassifier(tiny_backbone, spec, cfg, dev_splits=["dev"])
        with quiet():
            glue_trainer(cfg, spec, "cpu").validate(model, dataloaders=[eval_loader(dev, cfg, tokenizer.pad_token_id)],
                                                    verbose=False)
        scores.append(model.dev_results)
    sizes = [len(b["labels"]) for b in eval_loader(dev, FinetuneConfig(length_buckets=[16], eval_batch_size=48), 0)]
    assert sizes == [48, 16]
    assert scores[0].keys() == scores[1].keys()
    for key in scores[0]:
        assert scores[1][key] == pytest.approx(scores[0][key], abs=1e-3)


def test_a_bucketed_fine_tune_one_by_one_and_batched(tokenizer, tiny_backbone):
    from lightning_electra.finetune import finetune_task_seeds

    cfg = FinetuneConfig(max_train_examples=48, max_eval_examples=32, task_epochs={"RTE": 1}, batch_size=8,
                         length_buckets=[32, 64], eval_batch_size=64)
    one = finetune_task(tiny_backbone, get_task("RTE"), FIXTURES, cfg, tokenizer, seed=1, accelerator="cpu")
    assert 0 <= one["score"] <= 100
    batched = finetune_task_seeds(tiny_backbone, get_task("RTE"), FIXTURES, FinetuneConfig(**{**cfg.__dict__,
                                                                                     "batched_seeds": True}),
                                  tokenizer, [0, 1], accelerator="cpu")
    assert len(batched) == 2 and all(0 <= r["score"] <= 100 for r in batched)


@pytest.mark.parametrize("buckets", [[64, 32], [0, 16], [16, 16]])
def test_length_buckets_must_be_increasing_positive_widths(smoke_cfg, buckets):
    with pytest.raises(ConfigError, match=r"finetune.length_buckets must be increasing positive widths"):
        smoke_cfg(f"finetune.length_buckets={buckets}".replace(" ", ""))


def test_buckets_and_the_eval_batch_stay_out_of_existing_hashes(smoke_cfg):
    from lightning_electra.runner.identity import config_hash

    base = smoke_cfg()
    assert config_hash(smoke_cfg("finetune.eval_batch_size=512")) == config_hash(base)  # how fast, not what
    assert config_hash(smoke_cfg("finetune.length_buckets=[]")) == config_hash(base)
    assert config_hash(smoke_cfg("finetune.length_buckets=[32]")) != config_hash(base)


def test_tokenised_splits_are_kept_on_disk_keyed_by_the_file_s_contents(tokenizer, tmp_path, monkeypatch):
    import shutil

    from lightning_electra.data.glue import GlueDataset
    from lightning_electra.finetune import data as finetune_data

    data_dir = tmp_path / "data"
    shutil.copytree(FIXTURES / "glue" / "MRPC", data_dir / "glue" / "MRPC")
    spec, cache = get_task("MRPC"), tmp_path / "cache"

    def split(**kwargs):
        return encoded(data_dir, spec, "train", 50, "files", tokenizer, 128, both_orders_=True, cache_dir=cache,
                       **kwargs)

    finetune_data._ENCODED.clear()  # a fresh process (the split's contents may be in memory from another test)
    first = split()
    files = list((cache / "glue").glob("MRPC-train-*.pt"))
    assert len(files) == 1
    finetune_data._ENCODED.clear()  # a new process: read back, not tokenised
    monkeypatch.setattr(GlueDataset, "__init__", lambda *a, **k: pytest.fail("tokenised again"))
    again = split()
    assert again.input_ids == first.input_ids and again.token_type_ids == first.token_type_ids
    assert torch.equal(again.labels, first.labels) and len(again) == 100
    monkeypatch.undo()

    files[0].write_bytes(b"cut short")  # a damaged cache: tokenised again and rewritten
    finetune_data._ENCODED.clear()
    assert split().input_ids == first.input_ids and len(list((cache / "glue").glob("MRPC-train-*.pt"))) == 1
    path = data_dir / "glue" / "MRPC" / "train.tsv"  # another file's contents: another entry
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    finetune_data._ENCODED.clear()
    assert split().input_ids != first.input_ids and len(list((cache / "glue").glob("MRPC-train-*.pt"))) == 2


def test_a_split_that_fails_to_load_fails_again_and_a_cache_that_cannot_be_written_is_only_a_warning(tokenizer,
                                                                                                     tmp_path):
    from lightning_electra.data.glue_tasks import GlueDataError

    spec = get_task("RTE")
    for _ in range(2):  # nothing half-made is kept for the next call
        with pytest.raises(GlueDataError):
            encoded(tmp_path / "nowhere", spec, "train", None, "files", tokenizer, 128, cache_dir=tmp_path / "c")
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache's folder would go")
    with pytest.warns(UserWarning, match="without being cached"):
        data = encoded(FIXTURES, spec, "dev", 23, "files", tokenizer, 128, cache_dir=blocked / "cache")
    assert len(data) == 23


def test_tokenizers_that_encode_differently_do_not_share_a_cached_split(tokenizer):
    from lightning_electra.finetune.data import tokenizer_key

    same, cased = (build_tokenizer(FIXTURES / "vocab" / "bert-base-uncased-vocab.txt") for _ in range(2))
    assert tokenizer_key(same) == tokenizer_key(tokenizer)  # another object, the same encoding
    cased.backend_tokenizer.normalizer = type(cased.backend_tokenizer.normalizer)(lowercase=False)
    assert cased("Hello")["input_ids"] != tokenizer("Hello")["input_ids"]
    assert tokenizer_key(cased) != tokenizer_key(tokenizer)
