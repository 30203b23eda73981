"""Raw pre-training text: local files (plain, .xz, .gz) or a Hugging Face dataset.

Format of local files: one paragraph a line, documents separated by a blank line. Every source yields lines in that
format, so packing sees one stream whatever the origin.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

from lightning_electra.errors import SuiteError


class CorpusError(SuiteError, ValueError):
    pass


def _open_text(path: Path):
    opener = {".xz": lzma.open, ".gz": gzip.open}.get(path.suffix, open)
    return opener(path, "rt", encoding="utf-8")


def _hub_lines(spec: str) -> Iterator[str]:
    """`hub:<dataset>[:<config>]`: documents from a dataset's `text` column, streamed (needs network)."""
    try:
        import datasets
    except ImportError:
        raise CorpusError("Reading a corpus from the hub needs the `datasets` package: pip install datasets") from None
    name, _, config = spec.removeprefix("hub:").partition(":")
    try:
        ds = datasets.load_dataset(name, config or None, split="train", streaming=True)
    except Exception as err:  # datasets raises many types when offline
        raise CorpusError(f"Could not load '{name}' from the Hugging Face hub ({type(err).__name__}: {err}). "
                          "Offline? Use local files instead: data.corpus=[corpus/...] with DATA_DIR set.") from None
    for row in ds:
        text = row.get("text")
        if text is None:
            raise CorpusError(f"Hub dataset '{name}' has no 'text' column; columns: {list(row)}")
        yield from (line for line in text.splitlines() if line.strip())
        yield ""


def file_lines(path: Path) -> Iterator[str]:
    """A local file's lines; a damaged file is a CorpusError naming it (the decoders' own errors do not)."""
    try:
        with _open_text(path) as f:
            yield from (line.rstrip("\n") for line in f)
    except (EOFError, lzma.LZMAError, gzip.BadGzipFile, UnicodeDecodeError) as err:
        raise CorpusError(f"Corpus file '{path}' cannot be read ({type(err).__name__}: {err}): it is truncated, "
                          "damaged or not UTF-8 text. Download it again, or leave it out of data.corpus.") from None


def iter_lines(data_dir: Path, sources: list[str], max_bytes: int | None = None) -> Iterator[str]:
    """Lines of every source in order, stopping at the first document end after `max_bytes` of text."""
    read = 0
    for source in sources:
        if source.startswith("hub:"):
            lines = _hub_lines(source)
        else:
            path = data_dir / source
            if not path.is_file():
                raise CorpusError(f"Corpus file '{path}' not found. Set DATA_DIR to the folder holding corpus/ "
                                  "(e.g. DATA_DIR=../shared/data) or fix data.corpus.")
            lines = file_lines(path)
        for line in lines:
            line = line.strip()
            if not line and max_bytes is not None and read >= max_bytes:
                yield ""
                return
            read += len(line) + 1
            yield line
        yield ""  # a file end also ends a document


def text_bytes(path: Path) -> int:
    """How many bytes of text a corpus file holds, without reading it where the format says: xz's index (`xz
    --list`), gzip's trailer (the size modulo 4 GiB: one shard of this suite is far smaller), a plain file's size;
    else by decompressing it."""
    if path.suffix == ".xz" and shutil.which("xz"):
        listed = subprocess.run(["xz", "--robot", "--list", str(path)], capture_output=True, text=True)
        totals = [line.split("\t") for line in listed.stdout.splitlines() if line.startswith("totals")]
        if listed.returncode == 0 and totals:
            return int(totals[0][4])
    if path.suffix == ".gz":
        with open(path, "rb") as f:
            f.seek(-4, 2)
            return int.from_bytes(f.read(4), "little")
    if path.suffix not in (".xz", ".gz"):
        return path.stat().st_size
    with lzma.open(path, "rb") as f:
        return sum(len(chunk) for chunk in iter(lambda: f.read(1 << 24), b""))
