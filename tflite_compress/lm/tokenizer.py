"""The LM tokenizer: the suite's pure-Python WordPiece plus an end-of-turn token (no TensorFlow here).

Vocabulary: `[PAD]` (0), `[UNK]` (1), `[EOT]` (2, ends every turn), then the pieces keras-nlp's
WordPiece trainer learns on the train split (`learn_lm_vocabulary`, which imports TensorFlow).
Encoding and decoding are shared by training, the pipeline's evaluation and the harness.

Decoding joins pieces into the normalised words they came from (lowercase, accents stripped,
punctuation as its own word): `decode(encode(t)) == words(t)` for text without unknown pieces,
which is what BLEU and ROUGE compare.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import InputError
from ..tokenizer import (PAD_TOKEN, UNK_TOKEN, TokenizerConfig, WordPieceTokenizer, normalize, read_vocab_lines,
                         split_words)

EOT_TOKEN = "[EOT]"
LM_RESERVED = (PAD_TOKEN, UNK_TOKEN, EOT_TOKEN)
EOT_ID = 2


def words(text: str) -> str:
    """The normalised words of `text`, space-separated (what decoding gives back)."""
    return " ".join(split_words(normalize(text)))


class LMTokenizer(WordPieceTokenizer):
    """WordPiece with `[EOT]` at id 2; `encode_turns` gives one id stream, each turn closed by `[EOT]`."""

    def __init__(self, vocab: Sequence[str]):
        super().__init__(vocab, TokenizerConfig(vocabulary_size=len(vocab), sequence_length=1 << 20))
        if len(self.vocab) < 3 or self.vocab[EOT_ID] != EOT_TOKEN:
            raise InputError(f"LM vocabulary must start with {', '.join(LM_RESERVED)}; got {self.vocab[:3]!r}")
        self.eot_id = EOT_ID

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "LMTokenizer":
        path = Path(path)
        vocab = read_vocab_lines(path)
        try:
            return cls(vocab)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None

    def encode_turns(self, turns: Iterable[str]) -> list[int]:
        ids: list[int] = []
        for turn in turns:
            ids.extend(self.tokenize(turn))
            ids.append(self.eot_id)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> normalised words; `[EOT]` becomes a line break, `[PAD]` is dropped."""
        out: list[str] = []
        suffix = self.config.suffix_indicator
        for i in ids:
            i = int(i)
            if i == self.pad_id or not 0 <= i < len(self.vocab):
                continue
            tok = self.vocab[i]
            if i == self.eot_id:
                out.append("\n")
            elif tok.startswith(suffix) and out and out[-1] not in ("\n",):
                out[-1] = out[-1] + tok[len(suffix):]
            else:
                out.append(tok)
        return " ".join(out).replace(" \n ", "\n").replace(" \n", "\n").replace("\n ", "\n").strip()


def stream(conversations: Sequence[Sequence[str]], tokenizer: LMTokenizer, max_tokens: int | None = None) -> np.ndarray:
    """One int32 stream of every conversation's turns, each turn closed by `[EOT]` (cut at `max_tokens`)."""
    ids: list[int] = []
    for conv in conversations:
        ids.extend(tokenizer.encode_turns(conv))
        if max_tokens and len(ids) >= max_tokens:
            break
    arr = np.asarray(ids[:max_tokens] if max_tokens else ids, dtype=np.int32)
    return arr


def windows(ids: np.ndarray, length: int) -> np.ndarray:
    """Non-overlapping rows of `length + 1` ids (input = row[:-1], target = row[1:]); the tail is dropped."""
    n = (len(ids) - 1) // length
    if n < 1:
        raise InputError(f"too few tokens ({len(ids)}) for one window of {length + 1}")
    return np.stack([ids[i * length: i * length + length + 1] for i in range(n)]).astype(np.int32)


def learn_lm_vocabulary(texts: Sequence[str], vocabulary_size: int, min_frequency: int) -> list[str]:
    """A WordPiece vocabulary learned with keras-nlp's trainer (imports TensorFlow), `[EOT]` reserved."""
    from ..tokenizer import learn_vocabulary

    vocab = learn_vocabulary(texts, TokenizerConfig(vocabulary_size=vocabulary_size - 1, min_frequency=min_frequency))
    return [PAD_TOKEN, UNK_TOKEN, EOT_TOKEN] + [t for t in vocab[2:] if t != EOT_TOKEN]
