"""The BERT uncased WordPiece vocabulary: its special ids, and the one tokenizer builder (transformers' fast tokenizer,
whose Rust core also packs the corpus)."""

from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from lightning_electra.errors import SuiteError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class VocabError(SuiteError, ValueError):
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
    """The Rust tokenizer behind `build_tokenizer`'s, for packing (which places [CLS] and [SEP] itself: encode with
    add_special_tokens=False); batched, it tokenises millions of lines a minute."""
    return build_tokenizer(path).backend_tokenizer


def build_tokenizer(vocab_path: Union[str, Path], tokenizer_class: Any = None, **kwargs: Any) -> Any:
    """An uncased WordPiece tokenizer from a vocab.txt: `BertTokenizerFast`, or `tokenizer_class` (export writes
    ElectraTokenizerFast, what AutoTokenizer gives back for ELECTRA); kwargs go to its constructor."""
    from transformers import BertTokenizerFast

    tokenizer_class = tokenizer_class or BertTokenizerFast
    vocab = read_vocab(Path(vocab_path))
    # transformers 5 takes `vocab` and silently ignores `vocab_file` (leaving a 5-token vocabulary); 4.x wants
    # `vocab_file`.
    if "vocab" in inspect.signature(tokenizer_class.__init__).parameters:
        tok = tokenizer_class(vocab=vocab, do_lower_case=True, **kwargs)
    else:
        tok = tokenizer_class(vocab_file=str(vocab_path), do_lower_case=True, **kwargs)
    if len(tok) != len(vocab) or tok.cls_token_id != vocab["[CLS]"]:
        raise VocabError(f"Tokenizer built from {vocab_path} has {len(tok)} tokens ([CLS]={tok.cls_token_id}), "
                         f"the file {len(vocab)} ([CLS]={vocab['[CLS]']}); check the transformers version.")
    return tok

