"""`make data` (lightning_electra/data/download.py), offline: datasets the test saves stand in for the hub; what the
command writes must be what the suite's readers read, and running it twice, or after a kill, must give the same."""

import lzma
import os
import subprocess
import sys

import pytest

from lightning_electra.data.corpus import iter_lines
from lightning_electra.data.download import download, write_corpus
from lightning_electra.data.glue_tasks import TASKS, get_task, load_examples

datasets = pytest.importorskip("datasets")

BINARY, NLI = ["unacceptable", "acceptable"], ["entailment", "not_entailment"]
GLUE = {  # config: (columns, label names or None for a score), three rows a split
    "cola": (("sentence",), BINARY), "sst2": (("sentence",), ["negative", "positive"]),
    "mrpc": (("sentence1", "sentence2"), ["not_equivalent", "equivalent"]), "stsb": (("sentence1", "sentence2"), None),
    "qqp": (("question1", "question2"), ["not_duplicate", "duplicate"]),
    "mnli": (("premise", "hypothesis"), ["entailment", "neutral", "contradiction"]),
    "qnli": (("question", "sentence"), NLI), "rte": (("sentence1", "sentence2"), NLI),
    "wnli": (("sentence1", "sentence2"), ["not_entailment", "entailment"]),
}


def glue_split(config: str, split: str):
    columns, names = GLUE[config]
    rows = {c: [f"{config} {split} {c} {i}\twith a tab" if i == 1 else f'{config} "{split}" {c} {i}' for i in range(3)]
            for c in columns}
    rows["label"] = [i * 1.5 for i in range(3)] if names is None else [i % len(names) for i in range(3)]
    rows["idx"] = list(range(3))
    features = {c: datasets.Value("string") for c in columns}
    features["label"] = datasets.Value("float32") if names is None else datasets.ClassLabel(names=names)
    features["idx"] = datasets.Value("int32")
    return datasets.Dataset.from_dict(rows, features=datasets.Features(features))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A saved-datasets mirror of the hub: nine GLUE configs and a WikiText-like corpus of three articles."""
    root = tmp_path_factory.mktemp("mirror")
    for config in GLUE:
        splits = ["train", "validation_matched", "validation_mismatched"] if config == "mnli" else ["train",
                                                                                                   "validation"]
        datasets.DatasetDict({s: glue_split(config, s) for s in splits}).save_to_disk(str(root / "glue" / config))
    lines = [" = Alpha = ", " The first paragraph of alpha . ", " = = History = = ", " A second one . ", "",
             " = Beta = ", " Beta's only paragraph . ", " = Gamma = ", " Gamma one . ", " Gamma two . "]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": lines})}).save_to_disk(
        str(root / "corpus" / "wikitext-103"))
    return root


def test_what_make_data_writes_is_what_the_readers_read(mirror, tmp_path):
    out = tmp_path / "data"
    download(out, source_dir=mirror, log=lambda *_: None)
    for task, spec in TASKS.items():
        config = spec.hub_config
        columns, names = GLUE[config]
        splits = ([("train", "train"), ("dev", "validation_matched"), ("dev_mismatched", "validation_mismatched")]
                  if spec.extra_dev else [("train", "train"), ("dev", "validation")])
        for split, hub in splits:
            rows = glue_split(config, hub)
            examples = load_examples(out, spec, split)
            assert len(examples) == 3, (task, split)
            for (a, b, label), row in zip(examples, rows):
                assert a == row[columns[0]].replace("\t", " ")  # a tab inside a field would split it
                assert b == (row[columns[1]].replace("\t", " ") if len(columns) > 1 else None)
                expected = row["label"] if names is None else (
                    row["label"] if spec.labels == ("0", "1") else spec.labels.index(names[row["label"]]))
                assert label == pytest.approx(expected), (task, split)
    text = list(iter_lines(out, ["corpus/wiki-train-00.txt.xz"]))
    assert text == ["The first paragraph of alpha .", "A second one .", "", "Beta's only paragraph .", "",
                    "Gamma one .", "Gamma two .", "", ""]
    assert lzma.open(out / "corpus" / "sample-20mb.txt.xz", "rt").read() == lzma.open(
        out / "corpus" / "wiki-train-00.txt.xz", "rt").read()  # a corpus under 20 MB: the sample is all of it


def test_make_data_is_idempotent_and_resumes(mirror, tmp_path):
    out = tmp_path / "data"
    download(out, tasks=["RTE"], source_dir=mirror, log=lambda *_: None)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    download(out, tasks=["RTE"], source_dir=mirror, log=lambda *_: None)  # complete: nothing is rewritten
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    (out / "glue" / "RTE" / "dev.tsv").unlink()  # as a kill would leave it: the dev file never written
    download(out, tasks=["RTE"], source_dir=mirror, log=lambda *_: None)
    assert len(load_examples(out, get_task("RTE"), "dev")) == 3


def test_corpus_shards_resume_where_they_stopped(tmp_path, monkeypatch):
    import lightning_electra.data.download as download_module

    monkeypatch.setattr(download_module, "SHARD_BYTES", 60)  # a shard every couple of documents
    documents = [[f"document {i} paragraph {j} of some words" for j in range(2)] for i in range(10)]
    straight = write_corpus(documents, tmp_path / "straight")

    def killed_after(n):
        for i, document in enumerate(documents):
            if i == n:
                raise KeyboardInterrupt
            yield document

    with pytest.raises(KeyboardInterrupt):
        write_corpus(killed_after(5), tmp_path / "resumed")
    resumed = write_corpus(documents, tmp_path / "resumed")
    assert resumed == straight and len(straight["shards"]) > 2
    for name in straight["shards"]:
        assert (tmp_path / "straight" / "corpus" / name).read_bytes() == (tmp_path / "resumed" / "corpus" /
                                                                            name).read_bytes()
    assert not list((tmp_path / "resumed" / "corpus").glob(".*tmp*")), "no partial file is left"


def test_offline_it_stops_at_once_saying_what_it_needed(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(os.getcwd())}
    proc = subprocess.run([sys.executable, "-m", "lightning_electra", "data", "--out", str(tmp_path / "d")],
                          capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode == 0:
        pytest.skip("this machine reaches the hub: the offline message cannot be seen here")
    assert "Hugging Face hub" in proc.stderr and "DATA_DIR" in proc.stderr and "--source-dir" in proc.stderr
    assert not (tmp_path / "d" / "glue").exists()
