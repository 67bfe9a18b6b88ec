"""Conversations for the language model: the bundled Chit-Chat corpus or your own text (no TensorFlow).

A corpus is a list of conversations, each a list of turns (strings). The bundled default is the
Chit-Chat dataset (PyPI `chitchat-dataset==0.9.0`, MIT licence, BYU PCC lab; the data ships in
the wheel as `chitchat_dataset/dataset.json`): consecutive messages of one sender form a turn.
It is split by conversation, deterministically, by a hash of the conversation id
(80% train, 10% val, 10% test).

Your own corpus (`load_corpus(path)`):
- `.txt`: one document a line (each line a one-turn "conversation");
- `.jsonl`: one object a line, with `text` (one document), or `context` (a string or a list of
  turns) and `reply` (a string): a conversation of the context turns then the reply.
A user file is split by a hash of the line number in the same proportions.

Examples for generation metrics are (previous turns -> reply) pairs (`examples`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Sequence

from ..errors import InputError

SPLITS = ("train", "val", "test")
CHITCHAT_PACKAGE = "chitchat_dataset"
CHITCHAT_INSTALL = "pip install chitchat-dataset==0.9.0"
MIN_TRAIN_CONVERSATIONS = 8
LICENCE = ("Chit-Chat dataset (BYU PCC lab, https://github.com/BYU-PCCL/chitchat-dataset), MIT licence; "
           "PyPI chitchat-dataset==0.9.0")

Conversation = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Conversations split into train/val/test; `source` names where they came from."""

    source: str
    train: tuple[Conversation, ...]
    val: tuple[Conversation, ...]
    test: tuple[Conversation, ...]

    def split(self, name: str) -> tuple[Conversation, ...]:
        if name not in SPLITS:
            raise InputError(f"split {name!r} is not one of: {', '.join(SPLITS)}")
        return getattr(self, name)

    def fingerprint(self) -> str:
        """A hash of every conversation of every split (keys the teacher cache)."""
        h = hashlib.sha256()
        for name in SPLITS:
            h.update(name.encode())
            for conv in self.split(name):
                for turn in conv:
                    h.update(turn.encode("utf-8"))
                    h.update(b"\x1e")
                h.update(b"\x1d")
        return h.hexdigest()[:16]

    def stats(self) -> dict:
        return {name: {"conversations": len(self.split(name)),
                       "turns": sum(len(c) for c in self.split(name)),
                       "words": sum(len(t.split()) for c in self.split(name) for t in c)} for name in SPLITS}


def split_of(key: str) -> str:
    """The split of a conversation key: 80/10/10 by the first byte of its SHA-256."""
    b = hashlib.sha256(key.encode("utf-8")).digest()[0] * 100 // 256
    return "train" if b < 80 else "val" if b < 90 else "test"


def _clean(text) -> str:
    return " ".join(str(text).split())


def _make(source: str, keyed: Sequence[tuple[str, Conversation]], where: str) -> Corpus:
    parts: dict[str, list[Conversation]] = {s: [] for s in SPLITS}
    for key, conv in keyed:
        conv = tuple(t for t in (_clean(x) for x in conv) if t)
        if conv:
            parts[split_of(key)].append(conv)
    corpus = Corpus(source, *(tuple(parts[s]) for s in SPLITS))
    if len(corpus.train) < MIN_TRAIN_CONVERSATIONS or not corpus.val or not corpus.test:
        total = sum(len(parts[s]) for s in SPLITS)
        raise InputError(f"{where}: too small a corpus ({total} non-empty documents; need at least "
                         f"{MIN_TRAIN_CONVERSATIONS} in train and one each in val and test after the 80/10/10 split, "
                         f"so about {MIN_TRAIN_CONVERSATIONS * 2 + 10} lines)")
    return corpus


def chitchat_file() -> Path:
    spec = importlib.util.find_spec(CHITCHAT_PACKAGE)
    if spec is None or spec.origin is None:
        raise InputError(f"the Chit-Chat corpus is not installed: {CHITCHAT_INSTALL}")
    path = Path(spec.origin).parent / "dataset.json"
    if not path.is_file():
        raise InputError(f"{path}: the Chit-Chat data file is missing; reinstall: {CHITCHAT_INSTALL}")
    return path


def load_chitchat(path: str | os.PathLike | None = None, max_conversations: int | None = None) -> Corpus:
    """The Chit-Chat conversations (turns = consecutive messages of one sender), split by conversation id."""
    path = Path(path) if path else chitchat_file()
    try:
        stat = path.stat()
    except OSError:
        stat = None
    return _load_chitchat(path, max_conversations, (stat.st_size, stat.st_mtime_ns) if stat else None)


@functools.lru_cache(maxsize=4)
def _load_chitchat(path: Path, max_conversations: int | None, _version) -> Corpus:
    """One parse per file version (a frozen `Corpus`: shared safely by every caller in a process)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable Chit-Chat JSON file ({exc})") from None
    keyed = []
    for key in sorted(data):
        turns = [" ".join(_clean(m.get("text", "")) for m in group) for group in data[key].get("messages", [])]
        keyed.append((key, tuple(turns)))
        if max_conversations and len(keyed) >= max_conversations:
            break
    return _make(f"chitchat:{path.name}", keyed, str(path))


def read_conversations(path: str | os.PathLike) -> list[tuple[str, Conversation]]:
    """(key, conversation) pairs of a user file: `.txt` (one document a line) or `.jsonl`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: corpus file not found (expected .txt, one document a line, or .jsonl)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    keyed: list[tuple[str, Conversation]] = []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for n, line in enumerate(lines, 1):
            if line.strip():
                keyed.append((f"{n}", _jsonl_conversation(line, f"{path}:{n}")))
    elif path.suffix.lower() == ".txt":
        keyed = [(f"{n}", (line,)) for n, line in enumerate(lines, 1) if line.strip()]
    else:
        raise InputError(f"{path}: unknown corpus format {path.suffix!r}; expected .txt (one document a line) or .jsonl")
    if not keyed:
        raise InputError(f"{path}: the corpus is empty")
    return keyed


def load_corpus(path: str | os.PathLike) -> Corpus:
    """A user corpus: `.txt` (one document a line) or `.jsonl` (`text`, or `context` + `reply`), split 80/10/10."""
    return _make(str(path), read_conversations(path), str(path))


def load_eval(spec: str | os.PathLike) -> list[Conversation]:
    """Evaluation conversations: "chitchat" (its test split), "chitchat:val", or every line of a user file."""
    spec = str(spec)
    if spec == "chitchat" or spec.startswith("chitchat:"):
        split = spec.partition(":")[2] or "test"
        if split not in SPLITS:
            raise InputError(f"--data {spec!r}: expected chitchat, chitchat:val, chitchat:test or a .txt/.jsonl file")
        return list(load_chitchat().split(split))
    convs = [tuple(t for t in (_clean(x) for x in conv) if t) for _, conv in read_conversations(spec)]
    return [c for c in convs if c]


def _jsonl_conversation(line: str, where: str) -> Conversation:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not a JSON object ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object with 'text' or 'context' and 'reply'")
    if "reply" in obj:
        ctx = obj.get("context", [])
        ctx = [ctx] if isinstance(ctx, str) else ctx
        if not isinstance(ctx, list) or not all(isinstance(t, str) for t in ctx) or not isinstance(obj["reply"], str):
            raise InputError(f"{where}: 'context' must be a string or a list of strings and 'reply' a string")
        return tuple(ctx) + (obj["reply"],)
    if isinstance(obj.get("text"), str):
        return (obj["text"],)
    raise InputError(f"{where}: expected a 'text' string, or 'context' and 'reply'; got keys {sorted(obj)}")


def load(spec: str | os.PathLike | None) -> Corpus:
    """`None` or "chitchat" -> the bundled corpus; else a user file."""
    if spec is None or str(spec) == "chitchat":
        return load_chitchat()
    return load_corpus(spec)


def examples(conversations: Sequence[Conversation], limit: int | None = None,
             max_context_turns: int = 3) -> list[tuple[tuple[str, ...], str]]:
    """(previous turns, reply) pairs: every turn after the first of each conversation, in order."""
    out = []
    for conv in conversations:
        for i in range(1, len(conv)):
            out.append((tuple(conv[max(0, i - max_context_turns):i]), conv[i]))
            if limit and len(out) >= limit:
                return out
    return out
