"""`make data`: the suite's data directory from the Hugging Face hub, as the readers read it.

    corpus/sample-20mb.txt.xz, corpus/wiki-train-00.txt.xz, ...   one paragraph a line, a blank line between documents
    glue/<TASK>/{train,dev}.tsv                                    the glue_data layout (MNLI: dev_matched/mismatched)

The corpus files take the names the scales read (smoke: the sample, tiny: shard 00, small and base: 00-03), whatever
the source; a shard holds about 100 MB of text. Every file is written whole (under a temporary name, then renamed)
and a file already there is kept, so running it again after an interruption goes on where it stopped and running
it on a complete directory does nothing. `source_dir` reads datasets saved with `save_to_disk` instead of the hub
(an offline mirror: <source_dir>/glue/<config>/ and <source_dir>/corpus/<name>/).
"""

from __future__ import annotations

import json
import lzma
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from lightning_electra.data.corpus import CorpusError
from lightning_electra.data.glue_tasks import GLUE_HUB, TASKS, GlueTask, hub_split_of, task_file
from lightning_electra.io import atomic, write_json

SHARD_BYTES = 100_000_000  # of raw text a shard (the shared data's wiki-train shards hold 99.4 MB each)
SAMPLE_BYTES = 20_000_000  # the smoke scale's sample: the corpus's first 20 MB, to a document's end


@dataclass(frozen=True)
class Corpus:
    dataset: str
    config: str | None
    documents: Callable[[Iterable[dict]], Iterator[list[str]]]  # rows -> documents, each a list of paragraphs
    about: str


def wikitext_documents(rows: Iterable[dict]) -> Iterator[list[str]]:
    """WikiText's lines: ` = Title = ` starts an article, ` = = Section = = ` headings are dropped."""
    document: list[str] = []
    for row in rows:
        line = row["text"].strip()
        if re.fullmatch(r"= [^=].* =", line):  # a top-level title: a new article
            if document:
                yield document
            document = []
        elif line and not line.startswith("="):
            document.append(line)
    if document:
        yield document


def article_documents(rows: Iterable[dict]) -> Iterator[list[str]]:
    """One article a row, paragraphs separated by newlines (wikimedia/wikipedia, and most text datasets)."""
    for row in rows:
        paragraphs = [p.strip() for p in row["text"].splitlines() if len(p.split()) >= 4]  # headings dropped
        if paragraphs:
            yield paragraphs


CORPORA = {
    "wikitext-103": Corpus("Salesforce/wikitext", "wikitext-103-raw-v1", wikitext_documents,
                           "WikiText-103 (Merity et al. 2016, CC BY-SA): 28k Wikipedia articles, a substitute for the "
                           "paper's Wikipedia + BooksCorpus that fits a laptop"),
    "wikipedia": Corpus("wikimedia/wikipedia", "20231101.en", article_documents,
                        "English Wikipedia (2023-11-01 dump, CC BY-SA), the paper's corpus but for BooksCorpus"),
}


class OfflineError(CorpusError):
    """The hub cannot be reached."""


def check_online(host: str = "huggingface.co") -> None:
    """Stops at once, saying what was needed, when the hub cannot be reached (rather than after minutes of retries)."""
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as err:
        raise OfflineError(
            f"`make data` fetches the corpus and GLUE from the Hugging Face hub ({host}), which cannot be reached "
            f"({type(err).__name__}: {err}). Offline, use local files: a folder with corpus/*.txt.xz (one paragraph "
            "a line, a blank line between documents) and glue/<TASK>/{train,dev}.tsv (the glue_data layout), given "
            "as DATA_DIR=... (e.g. DATA_DIR=../shared/data); or a mirror of saved datasets: "
            "`python -m lightning_electra data --source-dir DIR`.") from None


def load(dataset: str, config: str | None, split: str, source_dir: Path | None, local: str):
    """A split from the hub (streamed where it can be), or from `source_dir/local` saved with save_to_disk."""
    import datasets

    if source_dir is not None:
        if not (source_dir / local).is_dir():
            raise CorpusError(f"no saved dataset at {source_dir / local}: --source-dir takes a mirror of datasets "
                              "saved with save_to_disk, laid out as <DIR>/glue/<config>/ and <DIR>/corpus/<name>/ "
                              "(the hub's config names, e.g. glue/rte).")
        saved = datasets.load_from_disk(str(source_dir / local))
        return saved[split] if isinstance(saved, datasets.DatasetDict) else saved
    return datasets.load_dataset(dataset, config, split=split, streaming=True)


# ------------------------------------------------------------------------------------------------------- corpus
def write_corpus(documents: Iterable[list[str]], out: Path, max_bytes: int | None = None, progress=None) -> dict:
    """Documents as corpus/wiki-train-NN.txt.xz shards of SHARD_BYTES of text (and the 20 MB sample, the first
    shard's start), each written whole; shards already there are kept and their documents skipped."""
    corpus = out / "corpus"
    manifest_path = corpus / "download.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"shards": {}, "complete": False}
    if manifest["complete"]:
        return manifest
    skip = sum(s["documents"] for s in manifest["shards"].values())
    shard, lines, size, count = len(manifest["shards"]), [], 0, 0
    sample_done = (corpus / "sample-20mb.txt.xz").is_file()
    for index, document in enumerate(documents):
        if index < skip:
            continue
        lines.append("\n".join(document) + "\n\n")
        size += sum(len(p.encode()) + 1 for p in document) + 1
        count += 1
        if progress is not None:
            progress.update(1)
        if not sample_done and shard == 0 and size >= SAMPLE_BYTES:
            write_xz(corpus / "sample-20mb.txt.xz", lines)
            sample_done = True
        if size >= SHARD_BYTES or (max_bytes is not None and shard * SHARD_BYTES + size >= max_bytes):
            shard = flush(corpus, manifest, shard, lines, count, size)
            lines, size, count = [], 0, 0
            if max_bytes is not None and shard * SHARD_BYTES >= max_bytes:
                break
    if lines:
        if not sample_done and shard == 0:
            write_xz(corpus / "sample-20mb.txt.xz", lines)  # a corpus under 20 MB: the sample is all of it
        flush(corpus, manifest, shard, lines, count, size)
    manifest["complete"] = True
    write_json(manifest_path, manifest)
    return manifest


def flush(corpus: Path, manifest: dict, shard: int, lines: list[str], documents: int, size: int) -> int:
    name = f"wiki-train-{shard:02d}.txt.xz"
    write_xz(corpus / name, lines)
    manifest["shards"][name] = {"documents": documents, "bytes": size}
    write_json(corpus / "download.json", manifest)  # after the shard: a kill between the two redoes one shard
    return shard + 1


def write_xz(path: Path, lines: list[str]) -> None:
    with atomic(path) as tmp, lzma.open(tmp, "wt", encoding="utf-8", preset=6) as f:
        f.writelines(lines)


# --------------------------------------------------------------------------------------------------------- GLUE
def clean(text) -> str:
    """A TSV field: no tab, newline or carriage return inside (the readers split on them, quoting off)."""
    return re.sub(r"[\t\r\n]+", " ", str(text)).strip()


def glue_rows(spec: GlueTask, split: str, rows: Iterable[dict], names: list[str] | None) -> Iterator[str]:
    """A hub split's rows as the glue_data file's lines, header first where the file has one."""
    a, b = spec.hub_columns

    def label(row) -> str:
        value = row["label"]
        if spec.labels is None:
            return f"{float(value):g}"
        return names[value] if names and spec.labels != ("0", "1") else str(value)

    if spec.name == "CoLA":  # no header: source, label, original mark, sentence
        yield from (f"hub\t{label(r)}\t{'' if r['label'] else '*'}\t{clean(r[a])}" for r in rows)
    elif spec.name == "SST-2":
        yield "sentence\tlabel"
        yield from (f"{clean(r[a])}\t{label(r)}" for r in rows)
    elif spec.name in ("MRPC", "QQP"):
        yield ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String" if spec.name == "MRPC"
               else "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate")
        if spec.name == "MRPC":
            yield from (f"{label(r)}\t{r['idx']}a\t{r['idx']}b\t{clean(r[a])}\t{clean(r[b])}" for r in rows)
        else:
            yield from (f"{r['idx']}\t{r['idx']}a\t{r['idx']}b\t{clean(r[a])}\t{clean(r[b])}\t{label(r)}" for r in rows)
    elif spec.name == "STS-B":
        yield "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
        yield from (f"{r['idx']}\thub\thub\thub\t{r['idx']}\thub\thub\t{clean(r[a])}\t{clean(r[b])}\t{label(r)}"
                    for r in rows)
    elif spec.name == "MNLI":  # parse columns left empty; dev files carry five annotators' labels
        gold = ["label1", *([f"label{i}" for i in range(2, 6)] if split != "train" else [])]
        yield "\t".join(["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                         "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", *gold, "gold_label"])
        yield from ("\t".join([str(r["idx"]), "", "", "hub", "", "", "", "", clean(r[a]), clean(r[b]),
                               *[label(r)] * (len(gold) + 1)]) for r in rows)
    else:  # QNLI, RTE, WNLI: index, the pair, label
        yield "\t".join(["index", a, b, "label"])
        yield from (f"{r['idx']}\t{clean(r[a])}\t{clean(r[b])}\t{label(r)}" for r in rows)


def write_glue(out: Path, tasks: list[str], source_dir: Path | None, log=print) -> list[Path]:
    """Each task's train and dev splits as glue_data TSV files under out/glue/; files already there are kept."""
    written = []
    for name in tasks:
        spec = TASKS[name]
        for split in ("train", *spec.dev_splits):
            path = task_file(out, spec, split)
            if path.is_file():
                continue
            rows = load(GLUE_HUB, spec.hub_config, hub_split_of(spec, split), source_dir, f"glue/{spec.hub_config}")
            names = getattr(rows.features["label"], "names", None) if rows.features else None
            with atomic(path) as tmp:
                tmp.write_text("\n".join(glue_rows(spec, split, rows, names)) + "\n", encoding="utf-8")
            log(f"[data] {path}")
            written.append(path)
    return written


def download(out: Path, corpus: str = "wikitext-103", tasks: list[str] | None = None, source_dir: Path | None = None,
             max_corpus_bytes: int | None = None, log=print) -> None:
    """The whole data directory (see the module docstring), resumable and idempotent."""
    if corpus not in CORPORA:
        raise CorpusError(f"Unknown corpus '{corpus}' for `make data`; known: {', '.join(CORPORA)}.")
    tasks = list(tasks or TASKS)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise CorpusError(f"Unknown GLUE task(s) {unknown}; known: {', '.join(TASKS)}.")
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise CorpusError("`make data` needs the `datasets` package (pip install datasets, or make install).") from None
    if source_dir is None:
        check_online()
    out.mkdir(parents=True, exist_ok=True)
    log(f"[data] GLUE ({', '.join(tasks)}) -> {out / 'glue'}")
    write_glue(out, tasks, source_dir, log)
    c = CORPORA[corpus]
    log(f"[data] corpus: {c.about} -> {out / 'corpus'}")
    from tqdm.auto import tqdm

    with tqdm(desc="[data] documents", unit=" doc", disable=None) as progress:
        rows = load(c.dataset, c.config, "train", source_dir, f"corpus/{corpus}")
        manifest = write_corpus(c.documents(rows), out, max_corpus_bytes, progress)
    sources = {"corpus": {"name": corpus, "dataset": c.dataset, "config": c.config, "about": c.about,
                          "shards": manifest["shards"]}, "glue": {"dataset": GLUE_HUB, "tasks": tasks}}
    if not (out / "SOURCES.json").is_file() or json.loads((out / "SOURCES.json").read_text()) != sources:
        write_json(out / "SOURCES.json", sources)
    log(f"[data] done: DATA_DIR={out} ({len(manifest['shards'])} corpus shard(s), {len(tasks)} GLUE tasks)")
