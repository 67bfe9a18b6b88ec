"""WordPiece tokenization, in pure Python (no TensorFlow).

One tokenizer serves training, calibration, validation and the on-device harness, and
`android_demo/core` ports it line by line. The vocabulary itself is learned with keras-nlp
(`learn_vocabulary`, which needs TensorFlow); tokenizing never does.

Algorithm (the same as BERT's basic + WordPiece tokenizer, which keras-nlp follows):
1. normalise: lowercase, then NFD and drop combining marks (accents);
2. split on whitespace (dropped) and punctuation / CJK characters (kept, one token each);
3. WordPiece: greedy longest-match-first; continuation pieces carry `suffix_indicator`;
   a word with no full split, or longer than `max_chars_per_word`, becomes the unknown token;
4. truncate to `sequence_length` (keep the start), pad with the pad id at the end.
"""

from __future__ import annotations

import dataclasses
import os
import unicodedata
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import InputError
from .files import atomic_write_text

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
RESERVED_TOKENS = (PAD_TOKEN, UNK_TOKEN)


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """Settings of the student tokenizer; written into `model_info.json`."""

    vocabulary_size: int = 8000
    sequence_length: int = 32
    lowercase: bool = True
    strip_accents: bool = True
    suffix_indicator: str = "##"
    max_chars_per_word: int = 100
    min_frequency: int = 10  # a piece is learned when it occurs this often in the train texts

    def __post_init__(self):
        for key, minimum in (("vocabulary_size", len(RESERVED_TOKENS) + 1), ("sequence_length", 1),
                             ("max_chars_per_word", 1), ("min_frequency", 1)):
            value = getattr(self, key)
            if value < minimum:
                raise InputError(f"{key}: expected a value >= {minimum}; got {value!r}")
        if not self.suffix_indicator:
            raise InputError(f"suffix_indicator: expected a non-empty string; got {self.suffix_indicator!r}")

    def to_info(self) -> dict:
        return {
            "type": "wordpiece",
            "vocab_file": "vocab.txt",
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
            "suffix_indicator": self.suffix_indicator,
            "max_chars_per_word": self.max_chars_per_word,
            "pad_token": PAD_TOKEN,
            "unk_token": UNK_TOKEN,
            "pad_id": 0,
            "unk_id": 1,
            "sequence_length": self.sequence_length,
            "truncation": "keep_first",
            "padding": "end",
        }


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # ASCII non-alphanumerics count as punctuation (as in BERT), e.g. "$", "^", "`".
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _is_whitespace(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def normalize(text: str, lowercase: bool = True, strip_accents: bool = True) -> str:
    """Lowercase and strip accents (NFD, drop category Mn); drop control characters."""
    if lowercase:
        text = text.lower()
    if strip_accents:
        text = unicodedata.normalize("NFD", text)
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    return "".join(c for c in text if not _is_control(c) and c != "\ufffd" and c != "\x00")


def split_words(text: str) -> list[str]:
    """Split normalised text on whitespace; punctuation and CJK characters stand alone."""
    words: list[str] = []
    current: list[str] = []
    for ch in text:
        if _is_whitespace(ch):
            if current:
                words.append("".join(current))
                current = []
        elif _is_punctuation(ch) or _is_cjk(ch):
            if current:
                words.append("".join(current))
                current = []
            words.append(ch)
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


class WordPieceTokenizer:
    """Text -> fixed-length int32 token ids, from a `vocab.txt` (one token a line)."""

    def __init__(self, vocab: Sequence[str], config: TokenizerConfig = TokenizerConfig()):
        self.vocab = list(vocab)
        self.config = config
        if len(self.vocab) < 2 or self.vocab[0] != PAD_TOKEN or self.vocab[1] != UNK_TOKEN:
            raise InputError(
                f"vocabulary must start with {PAD_TOKEN!r}, {UNK_TOKEN!r}; "
                f"got {self.vocab[:2]!r}"
            )
        self.token_to_id = {tok: i for i, tok in enumerate(self.vocab)}
        if len(self.token_to_id) != len(self.vocab):
            raise InputError("vocabulary has duplicate tokens")
        self.pad_id = 0
        self.unk_id = 1

    @classmethod
    def from_file(cls, path: str | os.PathLike, config: TokenizerConfig = TokenizerConfig()):
        path = Path(path)
        vocab = read_vocab_lines(path)
        try:
            return cls(vocab, config)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None

    def wordpiece(self, word: str) -> list[int]:
        if len(word) > self.config.max_chars_per_word:
            return [self.unk_id]
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end]
                if start > 0:
                    piece = self.config.suffix_indicator + piece
                found = self.token_to_id.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unk_id]
            ids.append(found)
            start = end
        return ids

    def tokenize(self, text: str) -> list[int]:
        """Token ids of one text, unpadded and untruncated."""
        norm = normalize(text, self.config.lowercase, self.config.strip_accents)
        ids: list[int] = []
        for word in split_words(norm):
            ids.extend(self.wordpiece(word))
        return ids

    def encode(self, text: str) -> np.ndarray:
        """Fixed-length int32 ids: truncated to the sequence length, padded with the pad id."""
        length = self.config.sequence_length
        ids = self.tokenize(text)[:length]
        out = np.full((length,), self.pad_id, dtype=np.int32)
        out[: len(ids)] = ids
        return out

    def encode_batch(self, texts: Iterable[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.config.sequence_length), dtype=np.int32)
        for i, text in enumerate(texts):
            out[i] = self.encode(text)
        return out

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(Path(path), "\n".join(self.vocab) + "\n")


def learn_vocabulary(texts: Sequence[str], config: TokenizerConfig = TokenizerConfig()) -> list[str]:
    """Learn a WordPiece vocabulary on `texts` with keras-nlp's trainer (imports TensorFlow).

    These are the steps of `keras_nlp.tokenizers.compute_word_piece_vocabulary` (its
    pretokenizer, then tensorflow-text's learner), with one setting it hides exposed:
    `min_frequency` (keras-nlp fixes it at 10, which leaves CLINC150 with 1,384 pieces).
    """
    from ._tf import tf  # sets TF_USE_LEGACY_KERAS before TensorFlow loads
    from keras_hub.src.tokenizers.word_piece_tokenizer import pretokenize
    from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

    # Pretokenized 1,024 texts at a time: the learner counts the words of each element, flattened,
    # so the counts are those of one text at a time (the same vocabulary), ~10x faster to count.
    ds = tf.data.Dataset.from_tensor_slices(list(texts)).batch(1024).map(
        lambda t: pretokenize(t, config.lowercase, config.strip_accents, True, True)
    )
    vocab = learner.learn(
        learner.count_words(ds),
        vocab_size=config.vocabulary_size,
        reserved_tokens=list(RESERVED_TOKENS),
        lower_thresh=config.min_frequency,
        include_joiner_token=True,
        joiner=config.suffix_indicator,
    )
    return list(vocab)[: config.vocabulary_size]


def cached_vocabulary(texts: Sequence[str], config: TokenizerConfig, cache_dir, log=print) -> tuple[list[str], bool]:
    """`learn_vocabulary`, kept as a sealed `.npz` entry of the teacher's cache folder (so `cache list`
    and `cache clear` see it), keyed by the texts and the tokenizer settings: ~30 s of a warm demo
    otherwise. `cache_dir` None learns every time. Returns the vocabulary and whether it was cached."""
    import dataclasses
    import hashlib
    import json

    import numpy as np

    from .cache import EntryStore, decode_npz, encode_npz, hash_texts

    store = EntryStore(cache_dir, ".npz", log)
    if not store.enabled:
        return learn_vocabulary(texts, config), False
    source = {"tokenizer": dataclasses.asdict(config), "texts": hash_texts(texts)}
    key = "vocab-" + hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]
    with store.lock(key):
        entry = store.read(key, decode_npz)
        if entry is not None and "vocab" in entry:
            return [str(v) for v in entry["vocab"]], True
        vocab = learn_vocabulary(texts, config)
        store.write(key, encode_npz({"vocab": np.array(vocab, dtype=str)}))
        return vocab, False


def read_vocab_lines(path: Path) -> list[str]:
    """The lines of a vocab.txt (one token a line); `InputError` naming the file when missing or not UTF-8."""
    if not path.is_file():
        raise InputError(f"{path}: vocabulary file not found (expected vocab.txt, one token a line)")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: vocabulary is not UTF-8 text ({exc.reason})") from None
