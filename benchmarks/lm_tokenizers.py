"""Choosing the LM tokenizer on the VALIDATION split: WordPiece (the suite's) against SentencePiece (unigram),
both learned with keras-nlp's trainers at the same vocabulary size on the same train turns, side by side.

    .venv/bin/python benchmarks/lm_tokenizers.py                    # vocabulary 1000, one seed
    .venv/bin/python benchmarks/lm_tokenizers.py --words 20000      # a smoke run (20k train words)
    .venv/bin/python benchmarks/lm_tokenizers.py --vocab 2000 --seeds 0 1

Both learners read the same normalised words (`lm.tokenizer.words`) of the default recipe's vocabulary
sample (15,000 train turns, `pipeline.vocabulary_turns`). WordPiece is the suite's (`learn_lm_vocabulary`,
cached in `runs/cache` like the pipeline's); SentencePiece is `keras_nlp.tokenizers.compute_sentence_piece_proto`
(unigram; keras-nlp reserves <pad>=0, <unk>=1, <s>=2, </s>=3: </s> serves as [EOT], <s> is never emitted),
encoded here with the `sentencepiece` package. Both vocabularies have the same number of entries, so the
students have the same parameter count.

Per tokenizer, on the first `--val-words` words of the val split (whole conversations, the same text for both):
tokens per word, [UNK] share of the tokens, round-trip exactness (share of val turns t with
decode(encode(words(t))) == words(t)), and the default recipe's student trained on the data alone with the
recipe's training settings on the SAME train words for both (a prefix of the train split: by default the words
that make the recipe's 600k WordPiece tokens; `--words N`). Its quality is the val **per-word perplexity**,
exp(sum of next-token NLL over every val token, [EOT] included / number of val words): token perplexities
are not comparable across tokenizers. Every row is appended to `--out` as a JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "runs" / "lm-tokenizers.jsonl"


@dataclasses.dataclass
class Arm:
    """One tokenizer as the benchmark uses it: encode normalised words (no [EOT]) and decode back."""

    name: str
    vocab_size: int
    encode: object  # str -> list[int]
    decode: object  # list[int] -> str
    unk_id: int
    eot_id: int
    pad_id: int
    learn_s: float  # NaN: the vocabulary came from the cache


def wordpiece_arm(recipe, cache_dir: Path, work: Path) -> Arm:
    """The suite's WordPiece through the pipeline's tokenizer stage (vocabulary cached in `cache_dir`)."""
    from tflite_compress.lm.corpus import load_chitchat
    from tflite_compress.lm.pipeline import STAGES, LMState
    from tflite_compress.stages import run_stages

    # The vocabulary's cache key is corpus + tokenizer config + seed; small train budgets only keep the
    # stage from encoding the teacher's whole-train-split stream, which this benchmark does not use.
    small = dataclasses.replace(recipe, teacher_train=dataclasses.replace(recipe.teacher_train, max_train_tokens=1024),
                                student_train=dataclasses.replace(recipe.student_train, max_train_tokens=1024))
    msgs: list[str] = []
    t0 = time.perf_counter()
    state = run_stages(STAGES[:2], LMState(recipe=small, corpus=load_chitchat(), work_dir=work, cache_dir=cache_dir),
                       msgs.append)
    seconds = time.perf_counter() - t0
    print("\n".join(msgs), file=sys.stderr)
    tok = state.tokenizer
    cached = any("tokenizer: cached" in m for m in msgs)
    return Arm("wordpiece", len(tok.vocab), tok.tokenize, tok.decode, tok.unk_id, tok.eot_id, tok.pad_id,
               float("nan") if cached else seconds)


def sentencepiece_arm(turns: list[str], vocab_size: int) -> Arm:
    """keras-nlp's SentencePiece trainer (unigram) on the same normalised words, encoded with `sentencepiece`."""
    from tflite_compress._tf import tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
    import keras_nlp
    import sentencepiece as spm

    from tflite_compress.lm.tokenizer import words

    t0 = time.perf_counter()
    ds = tf.data.Dataset.from_tensor_slices([words(t) for t in turns])
    proto = keras_nlp.tokenizers.compute_sentence_piece_proto(ds, vocab_size, model_type="unigram")
    sp = spm.SentencePieceProcessor(model_proto=proto)
    seconds = time.perf_counter() - t0
    return Arm("sentencepiece", sp.get_piece_size(), lambda text: sp.encode(text), lambda ids: sp.decode(list(ids)),
               sp.unk_id(), sp.eos_id(), sp.pad_id(), seconds)


def take_words(conversations, n_words: int) -> list[str]:
    """Normalised turns of whole conversations, in order, until `n_words` words are reached."""
    from tflite_compress.lm.tokenizer import words

    out, count = [], 0
    for conv in conversations:
        for turn in conv:
            w = words(turn)
            if w:
                out.append(w)
                count += len(w.split())
        if count >= n_words:
            break
    return out


def train_words_for_tokens(conversations, arm: Arm, tokens: int) -> int:
    """The words of the train prefix whose encoding (each turn closed by [EOT]) reaches `tokens` tokens."""
    from tflite_compress.lm.tokenizer import words

    n_tok = n_words = 0
    for conv in conversations:
        for turn in conv:
            w = words(turn)
            if w:
                n_tok += len(arm.encode(w)) + 1
                n_words += len(w.split())
        if n_tok >= tokens:
            break
    return n_words


def encode_stream(arm: Arm, turns: list[str], lead_eot: bool = False) -> np.ndarray:
    ids = [arm.eot_id] if lead_eot else []
    for t in turns:
        ids.extend(arm.encode(t))
        ids.append(arm.eot_id)
    return np.asarray(ids, np.int32)


def text_stats(arm: Arm, val_turns: list[str]) -> dict:
    n_words = sum(len(t.split()) for t in val_turns)
    encoded = [arm.encode(t) for t in val_turns]
    n_tok = sum(len(e) for e in encoded)
    unk = sum(sum(1 for i in e if i == arm.unk_id) for e in encoded)
    exact = sum(arm.decode(e) == t for e, t in zip(encoded, val_turns))
    return {"tokens_per_word": round(n_tok / n_words, 4), "unk_share": round(unk / n_tok, 5),
            "roundtrip": round(exact / len(val_turns), 4)}


def per_word_perplexity(model, arm: Arm, val_turns: list[str], context: int) -> tuple[float, float]:
    """exp(NLL over every val token / val words) and the token perplexity, all tokens scored: the stream
    starts with [EOT] (a turn boundary) and is cut into rows with contiguous targets, the last padded."""
    from tflite_compress.lm.distill import nll_sum
    from tflite_compress.lm.tokenizer import windows

    ids = encode_stream(arm, val_turns, lead_eot=True)
    rows = -(-(len(ids) - 1) // context)
    padded = np.full(rows * context + 1, arm.pad_id, np.int32)
    padded[:len(ids)] = ids
    total, count = nll_sum(model, windows(padded, context), ignore_id=arm.pad_id)
    assert count == len(ids) - 1, (count, len(ids))
    n_words = sum(len(t.split()) for t in val_turns)
    return math.exp(total / n_words), math.exp(total / count)


def train_student(recipe, arm: Arm, train_turns: list[str], seed: int):
    from tflite_compress.lm import distill
    from tflite_compress.lm.models import build_decoder, unigram_log_probs
    from tflite_compress.lm.tokenizer import windows

    cfg, tc = recipe.student, recipe.student_train
    ids = encode_stream(arm, train_turns)
    w = windows(ids, cfg.context)
    model = build_decoder(cfg, arm.vocab_size, "student", seed, unigram_log_probs(ids, arm.vocab_size))
    t0 = time.perf_counter()
    distill.train(model, w, tc.epochs, tc.batch_size, tc.learning_rate, seed)
    return model, {"train_tokens": int(len(w) * cfg.context), "steps": (len(w) // tc.batch_size) * tc.epochs,
                   "train_s": round(time.perf_counter() - t0, 1)}


HEAD = (f"{'tokenizer':<14} {'vocab':>5} {'learn s':>7} {'tok/word':>8} {'[UNK]':>7} {'round-trip':>10} "
        f"{'train words':>11} {'train tok':>9} {'steps':>5} {'seed':>4} {'val ppl/word':>12} {'ppl/tok':>7} "
        f"{'train s':>7} {'load':>5}")


def _print_row(r: dict) -> None:
    print(f"{r['tokenizer']:<14} {r['vocab']:>5} {'cached' if r['learn_s'] is None else format(r['learn_s'], '.0f'):>7} {r['tokens_per_word']:>8.3f} "
          f"{r['unk_share']:>7.2%} {r['roundtrip']:>10.2%} {r['train_words']:>11,} {r['train_tokens']:>9,} "
          f"{r['steps']:>5} {r['seed']:>4} {r['val_ppl_word']:>12.2f} {r['val_ppl_token']:>7.2f} "
          f"{r['train_s']:>7.0f} {r['load']:>5.1f}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=1000, help="vocabulary size of both tokenizers (entries)")
    ap.add_argument("--words", type=int, help="train words for each student (default: the words that make the "
                                              "recipe's student budget of WordPiece tokens)")
    ap.add_argument("--val-words", type=int, default=100_000, help="val words scored (whole conversations)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "cache")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    import tempfile

    from tflite_compress.lm.config import LMRecipe
    from tflite_compress.lm.corpus import load_chitchat
    from tflite_compress.lm.pipeline import vocabulary_turns

    recipe = LMRecipe()
    recipe = dataclasses.replace(recipe, tokenizer=dataclasses.replace(recipe.tokenizer, vocabulary_size=args.vocab))
    corpus = load_chitchat()
    wp = wordpiece_arm(recipe, args.cache_dir, Path(tempfile.mkdtemp(prefix="lm_tokenizers_")))
    # the same number of entries (WordPiece's trainer may stop short of the requested size)
    sp = sentencepiece_arm(vocabulary_turns(corpus, recipe.tokenizer, recipe.seed), wp.vocab_size)
    n_words = args.words or train_words_for_tokens(corpus.train, wp, recipe.student_train.max_train_tokens)
    train_turns = take_words(corpus.train, n_words)
    val_turns = take_words(corpus.val, args.val_words)
    n_train_words = sum(len(t.split()) for t in train_turns)
    n_val_words = sum(len(t.split()) for t in val_turns)
    print(f"train: {len(train_turns):,} turns, {n_train_words:,} words; val: {len(val_turns):,} turns, "
          f"{n_val_words:,} words; student {recipe.student.layers}x{recipe.student.dim}, "
          f"epochs {recipe.student_train.epochs}, batch {recipe.student_train.batch_size}, "
          f"lr {recipe.student_train.learning_rate:g}", flush=True)
    print(HEAD, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for arm in (wp, sp):
        stats = text_stats(arm, val_turns)
        for seed in args.seeds:
            model, train = train_student(recipe, arm, train_turns, seed)
            ppl_word, ppl_tok = per_word_perplexity(model, arm, val_turns, recipe.student.context)
            row = {"tokenizer": arm.name, "vocab": arm.vocab_size, "learn_s": None if math.isnan(arm.learn_s) else round(arm.learn_s, 1), **stats,
                   "train_words": n_train_words, **train, "seed": seed, "val_words": n_val_words,
                   "val_ppl_word": round(ppl_word, 2), "val_ppl_token": round(ppl_tok, 2),
                   "load": round(os.getloadavg()[0], 1)}
            _print_row(row)
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
