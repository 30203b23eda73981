import lzma

import numpy as np
import pytest
import torch

from lightning_electra.config import ConfigError, DataConfig
from lightning_electra.data.corpus import CorpusError, iter_lines
from lightning_electra.data.datamodule import PretrainDataModule, build_packed_corpus
from lightning_electra.data.packing import ExampleBuilder, pack, token_type_ids
from lightning_electra.data.tokenizer import VocabError, special_ids


def test_corpus_reads_xz_and_stops_at_a_document_end(data_dir):
    lines = list(iter_lines(data_dir, ["corpus/sample-20mb.txt.xz"], max_bytes=300_000))
    assert lines[-1] == "" and 300_000 <= sum(len(line) + 1 for line in lines) < 1_000_000
    assert "" in lines[:-1]  # several documents, separated by blank lines


def test_missing_corpus_file_says_how_to_fix(tmp_path):
    with pytest.raises(CorpusError, match="DATA_DIR"):
        list(iter_lines(tmp_path, ["corpus/nothing.txt"]))


def test_packing_invariants(special):
    rng = np.random.default_rng(0)
    docs = [[list(rng.integers(1000, 2000, rng.integers(1, 20))) for _ in range(rng.integers(1, 12))]
            for _ in range(60)]
    stream = [line for doc in docs for line in [*doc, None]]
    builder = ExampleBuilder(special, 64, seed=0)
    examples = list(pack(stream, builder))
    all_tokens = sum(len(line) for doc in docs for line in doc)
    assert examples and sum(len(e) for e in examples) > 0.9 * all_tokens  # little is lost to truncation
    for e in examples:
        assert e[0] == special.cls and e[-1] == special.sep and len(e) <= 64
        assert e.count(special.sep) in (1, 2) and special.cls not in e[1:]
    assert any(e.count(special.sep) == 2 for e in examples) and any(len(e) < 40 for e in examples)


def test_token_type_ids_mark_segment_b_only(special):
    ids = torch.tensor([[special.cls, 5, special.sep, 6, 7, special.sep, special.pad, special.pad]])
    assert token_type_ids(ids, special.sep, special.pad).tolist() == [[0, 0, 0, 1, 1, 1, 0, 0]]


def test_vocab_without_special_tokens_is_refused(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(VocabError, match=r"\[CLS\]"):
        special_ids(vocab)


def test_empty_corpus_is_refused(tmp_path, data_dir):
    (tmp_path / "corpus").mkdir()
    with lzma.open(tmp_path / "corpus" / "empty.txt.xz", "wt") as f:
        f.write("\n\n")
    (tmp_path / "vocab").mkdir()
    (tmp_path / "vocab" / "v.txt").write_bytes((data_dir / "vocab" / "bert-base-uncased-vocab.txt").read_bytes())
    data = DataConfig(data_dir=str(tmp_path), corpus=["corpus/empty.txt.xz"], vocab="vocab/v.txt")
    with pytest.raises(CorpusError, match="no text"):
        build_packed_corpus(data, tmp_path / "out")


def test_packed_corpus_is_cached_and_batches_are_well_formed(smoke_cfg):
    cfg = smoke_cfg()
    dm = PretrainDataModule(cfg)
    dm.prepare_data()
    npy = dm.cache / "examples.npy"
    stamp = npy.stat().st_mtime_ns
    PretrainDataModule(cfg).prepare_data()  # same data config: reuses the cache
    assert npy.stat().st_mtime_ns == stamp
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (cfg.train.batch_size, cfg.data.max_seq_length)
    assert (batch["input_ids"][:, 0] == dm.special_ids.cls).all()
    assert ((batch["input_ids"] != 0) == batch["attention_mask"].bool()).all()
    assert dm.token_counts()[dm.special_ids.cls] == len(dm.train_set)


def test_missing_data_dir_is_a_clear_error(smoke_cfg):
    cfg = smoke_cfg("data.data_dir=/nonexistent/data")
    with pytest.raises(ConfigError, match="DATA_DIR"):
        PretrainDataModule(cfg)


def test_every_packaged_vocabulary_loads_by_name():
    from lightning_electra.config import DataConfig
    from lightning_electra.data.files import PACKAGED_VOCABS, vocab_path
    from lightning_electra.data.tokenizer import build_tokenizer, special_ids

    assert special_ids(vocab_path(DataConfig(vocab="wiki-uncased-8k"))).vocab_size == 8192
    for name in PACKAGED_VOCABS:
        tok = build_tokenizer(vocab_path(DataConfig(vocab=name)))
        assert tok.convert_ids_to_tokens(tok("The cat sat.")["input_ids"])[0] == "[CLS]"


def test_a_corpus_pattern_reads_every_shard_there_and_an_empty_one_says_how_to_fetch(tmp_path):
    import gzip
    import lzma

    import pytest

    from lightning_electra.config import ConfigError, DataConfig
    from lightning_electra.data.corpus import text_bytes
    from lightning_electra.data.files import corpus_files, corpus_sources

    (tmp_path / "corpus").mkdir()
    text = "One paragraph.\n\nAnother document.\n" * 50
    with lzma.open(tmp_path / "corpus/wiki-train-01.txt.xz", "wt") as f:
        f.write(text)
    with gzip.open(tmp_path / "corpus/wiki-train-00.txt.gz", "wt") as f:
        f.write(text)
    (tmp_path / "corpus/wiki-train-02.txt").write_text(text)
    data = DataConfig(data_dir=str(tmp_path), corpus=["corpus/wiki-train-*", "hub:wikitext"])
    assert corpus_sources(data) == ["corpus/wiki-train-00.txt.gz", "corpus/wiki-train-01.txt.xz",
                                    "corpus/wiki-train-02.txt", "hub:wikitext"]
    assert [text_bytes(p) for p in corpus_files(data)] == [len(text.encode())] * 3
    with pytest.raises(ConfigError, match="No corpus file matches 'corpus/none-\\*'.*make data"):
        corpus_sources(DataConfig(data_dir=str(tmp_path), corpus=["corpus/none-*"]))


def test_a_vocabulary_fitted_to_the_corpus_has_the_special_tokens_first_and_tokenises_it(data_dir, tmp_path):
    from lightning_electra.data.tokenizer import SPECIAL_TOKENS, build_tokenizer, read_vocab
    from lightning_electra.data.vocab import fit_wordpiece

    out = fit_wordpiece(data_dir, ["corpus/sample-20mb.txt.xz"], 600, tmp_path / "vocab.txt")
    vocab = read_vocab(out)
    assert list(vocab)[:5] == list(SPECIAL_TOKENS) and 300 < len(vocab) <= 600
    assert "[UNK]" not in build_tokenizer(out).tokenize("the history of the city")
