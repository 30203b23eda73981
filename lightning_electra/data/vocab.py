"""A WordPiece vocabulary fitted to a corpus with `tokenizers` (uncased, BERT's special tokens first), as
wiki-uncased-8k was made: `python -m lightning_electra vocab --size 8192 corpus/wiki-train-00.txt.xz`.

A refit is like it, not the same file: the trainer breaks ties among rare characters' counts in no fixed order (a
refit of wiki-uncased-8k here differed in 490 of its 8,192 tokens, rare characters and what grew from them), so a
vocabulary is a file kept, and runs are keyed by its contents."""

from __future__ import annotations

from pathlib import Path

from lightning_electra.data.corpus import iter_lines
from lightning_electra.data.tokenizer import SPECIAL_TOKENS, read_vocab
from lightning_electra.io import atomic_write_text


def fit_wordpiece(data_dir: Path, sources: list[str], size: int, out: Path) -> Path:
    """Train an uncased WordPiece of `size` tokens on the corpus files (lines of text) and write its vocab.txt."""
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(lowercase=True, strip_accents=None, clean_text=True)
    lines = (line for line in iter_lines(data_dir, sources) if line)
    tokenizer.train_from_iterator(lines, vocab_size=size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
                                  limit_alphabet=1000, wordpieces_prefix="##", show_progress=False)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    atomic_write_text(out, "".join(f"{token}\n" for token, _ in vocab))
    read_vocab(out)  # its special tokens, no repeats: what the suite will ask of it
    return out
