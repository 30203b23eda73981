"""Where the data files are: everything under data.data_dir, but the vocabulary, which ships with the package."""

from __future__ import annotations

from pathlib import Path

from lightning_electra.config import ConfigError, DataConfig

PACKAGED_VOCAB = "bert-base-uncased"
PACKAGED_VOCAB_FILE = Path(__file__).resolve().parent / "bert-base-uncased-vocab.txt"  # Apache-2.0, google-research/bert


def data_file(data: DataConfig, relative: str) -> Path:
    """A file under data.data_dir, with an error saying how to point the suite at the data."""
    root = Path(data.data_dir).expanduser()
    if not root.is_dir():
        raise ConfigError(f"Data directory '{root}' does not exist. Set DATA_DIR=/path/to/data (e.g. "
                          "DATA_DIR=../shared/data) or data.data_dir=...; it should hold corpus/ and glue/.")
    path = root / relative
    if not path.exists():
        raise ConfigError(f"Missing data file '{path}'. Check DATA_DIR (now '{root}') and the config key that names "
                          f"'{relative}'.")
    return path


def vocab_path(data: DataConfig) -> Path:
    """data.vocab's file: the packaged BERT vocabulary, or a path under data_dir (or absolute)."""
    if data.vocab == PACKAGED_VOCAB:
        return PACKAGED_VOCAB_FILE
    path = Path(data.vocab).expanduser()
    if path.is_absolute():
        if not path.is_file():
            raise ConfigError(f"Missing vocabulary '{path}' (data.vocab). Use data.vocab={PACKAGED_VOCAB} (the "
                              "packaged BERT uncased vocabulary) or the path of a vocab.txt.")
        return path
    return data_file(data, data.vocab)


def corpus_files(data: DataConfig) -> list[Path]:
    """The local files of data.corpus (hub sources aside), each checked to exist."""
    return [data_file(data, source) for source in data.corpus if not source.startswith("hub:")]
