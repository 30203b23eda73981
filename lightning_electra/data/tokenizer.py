"""The BERT uncased WordPiece vocabulary, through `tokenizers` (Rust, batched)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class VocabError(ValueError):
    pass


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    unk: int
    cls: int
    sep: int
    mask: int
    vocab_size: int


def read_vocab(path: Path) -> dict[str, int]:
    tokens = path.read_text(encoding="utf-8").splitlines()
    if not tokens:
        raise VocabError(f"Vocabulary {path} is empty; use a BERT WordPiece vocab.txt (one token a line).")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):  # a repeated token would leave ids past the end of the embedding table
        repeated = sorted(t for t, n in Counter(tokens).items() if n > 1)[:5]
        raise VocabError(f"Vocabulary {path} repeats token(s) {repeated}: every line must be a distinct token. "
                         "Use bert-base-uncased-vocab.txt or remove the repeats.")
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise VocabError(f"Vocabulary {path} lacks the special token(s) {', '.join(missing)}: ELECTRA needs "
                         f"{', '.join(SPECIAL_TOKENS)}. Use bert-base-uncased-vocab.txt or add them.")
    return vocab


def special_ids(path: Path) -> SpecialIds:
    v = read_vocab(path)
    return SpecialIds(v["[PAD]"], v["[UNK]"], v["[CLS]"], v["[SEP]"], v["[MASK]"], len(v))


def wordpiece(path: Path) -> Tokenizer:
    """Uncased WordPiece without special tokens added: packing places [CLS]/[SEP] itself."""
    vocab = read_vocab(path)
    return BertWordPieceTokenizer(vocab, lowercase=True, strip_accents=True, clean_text=True)
