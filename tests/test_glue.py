"""GLUE readers, tokenisation, metrics, layer-wise lrs, scoring and one tiny end-to-end fine-tuning run."""

from __future__ import annotations

import copy
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from lightning_electra.config import FinetuneConfig
from lightning_electra.data.glue import GlueCollator, GlueDataset
from lightning_electra.data.glue_tasks import TASKS, GlueDataError, available_tasks, get_task, load_examples
from lightning_electra.data.tokenizer import build_tokenizer
from lightning_electra.finetune import (GlueClassifier, build_metrics, finetune_task, layerwise_param_groups,
                                        load_backbone, warmup_linear_decay)
from tests.conftest import FIXTURES, shared_data

DATA = FIXTURES  # the tests' own slices; the `full_data` ones read the whole data (DATA_DIR)
VOCAB = DATA / "vocab" / "bert-base-uncased-vocab.txt"
FULL = shared_data()


def needs_data(test):
    """The whole GLUE files (their published row and label counts): marked full_data, out of `make test`."""
    return pytest.mark.full_data(pytest.mark.skipif(not (FULL / "glue").is_dir(), reason=f"no GLUE data under "
                                                    f"{FULL}: set DATA_DIR")(test))


needs_vocab = pytest.mark.skipif(not VOCAB.is_file(), reason=f"no vocabulary at {VOCAB}")


def write(path: Path, lines: list[str], bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer():
    if not VOCAB.is_file():
        pytest.skip(f"no vocabulary at {VOCAB}")
    return build_tokenizer(VOCAB)


@pytest.fixture(scope="module")
def backbone(tiny_backbone) -> Path:
    return tiny_backbone


# ------------------------------------------------------------------------------------------- readers, real files

DEV_ROWS = {"CoLA": 1043, "SST-2": 872, "MRPC": 408, "STS-B": 1500, "RTE": 277, "QNLI": 5463, "WNLI": 71}


@needs_data
@pytest.mark.parametrize("task", list(DEV_ROWS))
def test_real_dev_files(task: str) -> None:
    examples = load_examples(FULL, get_task(task), "dev")
    assert len(examples) == DEV_ROWS[task]
    spec = TASKS[task]
    assert all(isinstance(a, str) and a for a, _, _ in examples)
    assert all((b is None) == (spec.text_b is None) for _, b, _ in examples)
    if spec.is_regression:
        assert all(0.0 <= y <= 5.0 for _, _, y in examples)
    else:
        assert {y for _, _, y in examples} == set(range(spec.num_labels))


@needs_data
def test_real_label_counts_and_train_rows() -> None:
    cola = load_examples(FULL, get_task("CoLA"), "dev")
    assert sum(y for _, _, y in cola) == 721  # acceptable, as published
    mrpc = load_examples(FULL, get_task("MRPC"), "train")
    assert len(mrpc) == 3668 and sum(y for _, _, y in mrpc) == 2474
    rte = load_examples(FULL, get_task("RTE"), "dev")
    assert rte[0][0].startswith("Dana Reeve") and rte[0][2] == TASKS["RTE"].labels.index("not_entailment")
    assert len(load_examples(FULL, get_task("SST-2"), "train")) == 67349


@needs_data
def test_max_examples_is_a_fixed_subset_in_file_order() -> None:
    full = load_examples(FULL, get_task("CoLA"), "dev")
    a = load_examples(FULL, get_task("CoLA"), "dev", max_examples=64)
    assert len(a) == 64 and a == load_examples(FULL, get_task("CoLA"), "dev", max_examples=64)
    positions = [full.index(e) for e in a]
    assert positions == sorted(positions) and positions[-1] > 527  # reaches the out-of-domain half


def test_available_tasks(tmp_path: Path) -> None:
    write(tmp_path / "glue" / "RTE" / "train.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tentailment"])
    write(tmp_path / "glue" / "RTE" / "dev.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tentailment"])
    write(tmp_path / "glue" / "QNLI" / "dev.tsv", ["index\tquestion\tsentence\tlabel", "0\tq\ts\tentailment"])
    assert available_tasks(tmp_path, ["RTE", "QNLI", "MNLI"]) == (["RTE"], ["QNLI", "MNLI"])


# ------------------------------------------------------------------------------------------- readers, tiny files


def test_layouts_bom_no_header_quotes_and_mnli(tmp_path: Path) -> None:
    g = tmp_path / "glue"
    write(g / "CoLA" / "dev.tsv", ["gj04\t1\t\tThe sailors rode.", "gj04\t0\t*\tRode the sailors \" the."])
    write(g / "MRPC" / "dev.tsv", ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "1\t1\t2\t\" A .\tB \" ."], bom=True)
    write(g / "STS-B" / "dev.tsv", ["\t".join(f"c{i}" for i in range(10)), "0\tg\tf\ty\t0\tn\tn\tA.\tB.\t3.800"])
    head = "index promptID pairID genre s1b s2b s1p s2p sentence1 sentence2".split()
    write(g / "MNLI" / "dev_matched.tsv", ["\t".join(head + [f"label{i}" for i in range(1, 6)] + ["gold_label"]),
                                           "\t".join(["0"] * 8 + ["P.", "H."] + ["neutral"] * 5 + ["neutral"])])
    write(g / "MNLI" / "train.tsv", ["\t".join(head + ["label1", "gold_label"]),
                                     "\t".join(["0"] * 8 + ["P2.", "H2.", "entailment", "contradiction"])])
    assert load_examples(tmp_path, get_task("CoLA"), "dev") == [("The sailors rode.", None, 1),
                                                      ('Rode the sailors " the.', None, 0)]
    assert load_examples(tmp_path, get_task("MRPC"), "dev") == [('" A .', 'B " .', 1)]
    assert load_examples(tmp_path, get_task("STS-B"), "dev") == [("A.", "B.", 3.8)]
    labels = TASKS["MNLI"].labels
    assert load_examples(tmp_path, get_task("MNLI"), "dev") == [("P.", "H.", labels.index("neutral"))]
    assert load_examples(tmp_path, get_task("mnli"), "train") == [("P2.", "H2.", labels.index("contradiction"))]
    assert load_examples(g, get_task("MNLI"), "train")  # a glue_data folder itself is accepted too


def test_malformed_row_error(tmp_path: Path) -> None:
    path = write(tmp_path / "glue" / "RTE" / "dev.tsv",
                 ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tentailment", "1\ta truncated row"])
    with pytest.raises(GlueDataError) as err:
        load_examples(tmp_path, get_task("RTE"), "dev")
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert str(path.resolve()) in msg and "line 3" in msg
    assert "expected 4" in msg and "found 2" in msg and "download" in msg


def test_missing_file_and_unknown_label_errors(tmp_path: Path) -> None:
    with pytest.raises(GlueDataError, match=r"(?s)SST-2/dev\.tsv.*DATA_DIR.*glue/<TASK>"):
        load_examples(tmp_path, get_task("SST-2"), "dev")
    write(tmp_path / "glue" / "RTE" / "train.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tmaybe"])
    with pytest.raises(GlueDataError, match=r"'maybe'.*line 2|line 2.*'maybe'"):
        load_examples(tmp_path, get_task("RTE"), "train")
    with pytest.raises(GlueDataError, match="Unknown GLUE task"):
        load_examples(tmp_path, get_task("SQuAD"), "dev")


def test_hub_source_maps_labels_and_reports_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fake(list):
        features = {"label": types.SimpleNamespace(names=["entailment", "neutral", "contradiction"])}

    calls = []
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda name, config, split: calls.append((name, config, split)) or Fake(
        [{"premise": "P", "hypothesis": "H", "label": 2}])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert load_examples("unused", get_task("MNLI"), "dev_mismatched", source="hub") == [
        ("P", "H", TASKS["MNLI"].labels.index("contradiction"))]
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    fake.load_dataset = offline
    with pytest.raises(GlueDataError, match=r"(?s)ConnectionError.*network.*source='files'"):
        load_examples("unused", get_task("RTE"), "dev", source="hub")


# ------------------------------------------------------------------------------------------- tokenisation


def test_tokenizer_dataset_and_dynamic_padding(tokenizer) -> None:
    assert tokenizer.cls_token_id == 101 and tokenizer.sep_token_id == 102 and len(tokenizer) == 30522
    examples = [("Hello World", "foo", 1), ("a " * 300, "b " * 300, 0), ("x", "y", 0)]
    data = GlueDataset(examples, tokenizer, max_seq_length=16, regression=False)
    assert data.input_ids[0] == [101, 7592, 2088, 102, 29379, 102] and data.token_type_ids[0] == [0, 0, 0, 0, 1, 1]
    assert len(data.input_ids[1]) == 16  # truncated to max_seq_length
    batch = GlueCollator(tokenizer.pad_token_id)([data[0], data[2]])
    assert batch["input_ids"].shape == (2, 6)  # the longest in the batch, not 16
    assert batch["attention_mask"].tolist() == [[1] * 6, [1] * 5 + [0]]
    assert batch["input_ids"][1, -1] == tokenizer.pad_token_id and batch["labels"].tolist() == [1, 0]
    single = GlueDataset([("just one", None, 1.5)], tokenizer, 16, regression=True)
    assert set(single.token_type_ids[0]) == {0} and single.labels.dtype == torch.float32


# ------------------------------------------------------------------------------------------- metrics, scoring


def _score(task: str, preds: list, labels: list) -> dict[str, float]:
    metrics = build_metrics(get_task(task))
    metrics.update(torch.tensor(preds), torch.tensor(labels))
    return {k: 100 * float(v) for k, v in metrics.compute().items()}


def test_metrics_on_known_inputs() -> None:
    y = [0, 1, 1, 0, 1, 0, 0, 1]
    assert _score("CoLA", y, y)["mcc"] == pytest.approx(100)
    assert _score("CoLA", [1 - v for v in y], y)["mcc"] == pytest.approx(-100)
    assert _score("CoLA", [1, 0, 0, 1], [1, 1, 0, 0])["mcc"] == pytest.approx(0)
    # the official scorer's (sklearn's) value, by hand: (tp tn - fp fn) / sqrt(...) with tp 2, fp 1, tn 1, fn 0
    assert _score("CoLA", [1, 1, 1, 0], [1, 1, 0, 0])["mcc"] == pytest.approx(100 * 2 / math.sqrt(3 * 2 * 1 * 2))


@pytest.mark.parametrize("constant", [0, 1])
def test_mcc_of_a_constant_classifier_is_zero_as_the_official_scorer_says(constant: int) -> None:
    labels = [1] * 722 + [0] * 321  # CoLA dev's classes; torchmetrics' epsilon scored this about +-2.6
    assert _score("CoLA", [constant] * len(labels), labels)["mcc"] == 0
    assert _score("CoLA", [0, 1, 0, 1], [1] * 4)["mcc"] == 0  # constant labels: also undefined, also 0
    sts = _score("STS-B", [0.1, 0.2, 0.5, 0.9, 3.0], [0.0, 1.0, 2.0, 3.0, 5.0])
    assert sts["spearman"] == pytest.approx(100) and sts["pearson"] < 100
    mrpc = _score("MRPC", [1, 1, 0, 0], [1, 0, 1, 0])  # tp 1, fp 1, fn 1
    assert mrpc == pytest.approx({"accuracy": 50.0, "f1": 50.0})
    assert _score("MNLI", [0, 1, 2, 2], [0, 1, 2, 0]) == pytest.approx({"accuracy": 75.0})


def test_layerwise_learning_rates(backbone: Path) -> None:
    model = GlueClassifier(backbone, get_task("RTE"), FinetuneConfig())
    lr, d, n = 1e-3, 0.8, 2

    def lrs(official: bool) -> dict[str, float]:
        groups = layerwise_param_groups(model, lr, d, n, weight_decay=0.01, official=official)
        assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
        return {name: g["lr"] for g in groups for name in g["names"]}

    plain = lrs(False)  # the intended scheme: each depth one step below the one above, the head at lr
    assert plain["backbone.embeddings.word_embeddings.weight"] == pytest.approx(lr * d ** 3)
    assert plain["backbone.encoder.layer.0.attention.self.query.weight"] == pytest.approx(lr * d ** 2)
    assert plain["backbone.encoder.layer.1.output.dense.weight"] == pytest.approx(lr * d)
    assert plain["head.weight"] == lr and min(plain.values()) == plain["backbone.embeddings.LayerNorm.weight"]
    official = lrs(True)
    assert official["backbone.encoder.layer.1.output.dense.weight"] == pytest.approx(lr * d ** 2)
    assert official["backbone.embeddings.word_embeddings.weight"] == pytest.approx(lr * d ** 4)
    assert official["head.weight"] == lr

    groups = layerwise_param_groups(model, lr, d, n, weight_decay=0.01)
    decay_of = {name: g["weight_decay"] for g in groups for name in g["names"]}
    assert decay_of["head.bias"] == 0 and decay_of["backbone.embeddings.LayerNorm.weight"] == 0
    assert decay_of["backbone.encoder.layer.0.intermediate.dense.weight"] == 0.01


def test_a_backbone_runs_its_own_torch_code_not_kernels_from_the_hub(backbone: Path) -> None:
    model = load_backbone(backbone)
    from transformers import PreTrainedModel

    if hasattr(PreTrainedModel, "set_use_kernels"):  # transformers 5.25 turns them on by default; older never did
        assert model.use_kernels is False
    copy.deepcopy(model).to("meta").train()  # the seed ensemble's weightless template switches modes (no kernel there)


def test_warmup_then_linear_decay() -> None:
    f = warmup_linear_decay(total_steps=100, warmup_fraction=0.1)
    assert [f(0), f(5), f(10), f(55), f(100)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])


# ------------------------------------------------------------------------------------------- end to end


@needs_vocab
def test_finetune_task_end_to_end(backbone: Path, tokenizer) -> None:
    cfg = FinetuneConfig(max_train_examples=64, max_eval_examples=64, task_epochs={"RTE": 2})
    result = finetune_task(backbone, get_task("RTE"), DATA, cfg, tokenizer, seed=1, accelerator="cpu")
    assert set(result) == {"accuracy", "constant", "score"}
    assert math.isfinite(result["score"]) and 0 <= result["score"] <= 100
    assert result["score"] == result["accuracy"]
