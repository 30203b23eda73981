"""Where the data files are: everything under data.data_dir, but the vocabulary, which ships with the package."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from lightning_electra.config import Config, ConfigError, DataConfig
from lightning_electra.data.corpus import file_lines
from lightning_electra.data.glue_tasks import TASKS, glue_tasks, load_examples, reported_dev_splits
from lightning_electra.data.tokenizer import read_vocab

PACKAGED_VOCAB = "bert-base-uncased"
# by data.vocab name: BERT's uncased WordPiece (Apache-2.0, google-research/bert), and an uncased WordPiece of 8,192
# tokens fitted to the shared corpus's first Wikipedia shard (lightning_electra/data/vocab.py), for small models:
# at a width of 128 BERT's 30,522-way softmax costs G more than its encoder does
PACKAGED_VOCABS = {name: Path(__file__).resolve().parent / f"{name}-vocab.txt"
                   for name in (PACKAGED_VOCAB, "wiki-uncased-8k")}
PACKAGED_VOCAB_FILE = PACKAGED_VOCABS[PACKAGED_VOCAB]


def data_file(data: DataConfig, relative: str) -> Path:
    """A file under data.data_dir, with an error saying how to point the suite at the data."""
    root = Path(data.data_dir).expanduser()
    if not root.is_dir():
        raise ConfigError(f"Data directory '{root}' does not exist: it should hold corpus/ and glue/. Fetch them with "
                          "`make data` (from the Hugging Face hub into ./data, or DATA_DIR=...), or point DATA_DIR at "
                          "a copy (e.g. DATA_DIR=../shared/data; or data.data_dir=...).")
    path = root / relative
    if not path.exists():
        raise ConfigError(f"Missing data file '{path}'. Check DATA_DIR (now '{root}') and the config key that names "
                          f"'{relative}'.")
    return path


def vocab_path(data: DataConfig) -> Path:
    """data.vocab's file: a packaged vocabulary by name, or a path under data_dir (or absolute)."""
    if data.vocab in PACKAGED_VOCABS:
        return PACKAGED_VOCABS[data.vocab]
    path = Path(data.vocab).expanduser()
    if path.is_absolute():
        if not path.is_file():
            raise ConfigError(f"Missing vocabulary '{path}' (data.vocab). Use a packaged one by name "
                              f"({', '.join(PACKAGED_VOCABS)}) or the path of a vocab.txt.")
        return path
    return data_file(data, data.vocab)


def corpus_sources(data: DataConfig) -> list[str]:
    """data.corpus with its patterns expanded: `corpus/wiki-train-*.txt.xz` is every shard there, in name order (so a
    scale reads whatever `make data` fetched); a pattern that matches nothing is an error saying how to fetch."""
    sources = []
    for source in data.corpus:
        if source.startswith("hub:") or not any(c in source for c in "*?["):
            sources.append(source)
            continue
        root = Path(data.data_dir).expanduser()
        found = sorted(str(p.relative_to(root)) for p in root.glob(source) if p.is_file())
        if not found:
            raise ConfigError(f"No corpus file matches '{source}' (data.corpus) under '{root}'. Fetch shards with "
                              "`make data ARGS=\"--corpus wikipedia --max-corpus-mb N\"` (N MB of text, 100 a "
                              "shard), or point DATA_DIR at a folder that has them.")
        sources += found
    return sources


def corpus_files(data: DataConfig) -> list[Path]:
    """The local files of data.corpus (hub sources aside, patterns expanded), each checked to exist."""
    return [data_file(data, source) for source in corpus_sources(data) if not source.startswith("hub:")]


def check_data(cfg: Config, announce: bool = False) -> list[str]:
    """Every data file a run will read, checked before any work, each problem naming the file: the corpus files (they
    exist and start as text), the vocabulary (its special tokens), and each GLUE task's files, parsed whole. Returns
    the GLUE tasks it will fine-tune (`announce`: says which it leaves out for want of files)."""
    for path in corpus_files(cfg.data):
        list(islice(file_lines(path), 10))  # a damaged or not-text file says so now, not when packing
    read_vocab(vocab_path(cfg.data))
    tasks = glue_tasks(cfg, announce=announce)
    if cfg.finetune.source == "files":
        for task in tasks:
            spec = TASKS[task]
            for split in ("train", *reported_dev_splits(cfg.data.data_dir, spec)):
                load_examples(cfg.data.data_dir, spec, split)
    return tasks
