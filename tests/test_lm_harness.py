"""The TensorFlow-free side of the LM path: BLEU/ROUGE against sacrebleu/rouge-score, the LM
tokenizer's decoding, corpus loading and its errors, the LM recipe's checks."""

import json
import subprocess
import sys

import pytest

from tflite_compress.errors import InputError
from tflite_compress.lm import corpus as corpus_lib
from tflite_compress.lm.config import DecoderConfig, LMRecipe
from tflite_compress.lm.tokenizer import EOT_ID, LMTokenizer, words
from tflite_compress.runtime.lm import corpus_bleu, rouge

HYPS = ["i am doing well thanks", "what do you do for work ?", "yes", "i like to read books and play games",
        "that sounds fun ! i have never been there", ""]
REFS = ["i am doing well , how are you ?", "what do you do for a living ?", "no , not really",
        "i like to play games with my friends", "that sounds like fun , i have been there once", "ok then"]


def test_bleu_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    ref = sacrebleu.corpus_bleu(HYPS, [REFS], tokenize="none").score
    assert corpus_bleu(HYPS, REFS) == pytest.approx(ref, abs=1e-9)
    assert corpus_bleu(HYPS[:1], REFS[:1]) == pytest.approx(sacrebleu.corpus_bleu(HYPS[:1], [REFS[:1]], tokenize="none").score)
    assert corpus_bleu(["a b"], ["c d"]) == 0.0


def test_rouge_matches_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    expect = {k: sum(scorer.score(r, h)[k].fmeasure for h, r in zip(HYPS, REFS)) / len(HYPS)
              for k in ("rouge1", "rouge2", "rougeL")}
    got = rouge(HYPS, REFS)
    for k, v in expect.items():
        assert got[k] == pytest.approx(v, abs=1e-12), k
    assert got["rougeL"] > 0.2


def test_tokenizer_decodes_to_normalised_words():
    vocab = ["[PAD]", "[UNK]", "[EOT]", "hel", "##lo", "how", "are", "you", "?", ",", "i", "'", "m"]
    tok = LMTokenizer(vocab)
    ids = tok.encode_turns(["Hello, how are you?", "I'm"])
    assert ids.count(EOT_ID) == 2
    assert tok.decode(ids) == "hello , how are you ?\ni ' m"
    assert tok.decode(tok.encode_turns(["Héllo how ARE you"])) == words("Héllo how ARE you")
    with pytest.raises(InputError, match=r"\[EOT\]"):
        LMTokenizer(["[PAD]", "[UNK]", "hello"])


def test_user_corpus_formats_and_errors(tmp_path):
    jl = tmp_path / "c.jsonl"
    rows = [{"context": ["hi", "hello"], "reply": f"reply {i}"} if i % 2 else {"text": f"doc {i}"} for i in range(60)]
    jl.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    c = corpus_lib.load_corpus(jl)
    assert sum(len(c.split(s)) for s in corpus_lib.SPLITS) == 60
    assert c.fingerprint() == corpus_lib.load_corpus(jl).fingerprint()  # deterministic split
    assert ("hi", "hello", "reply 1") in c.train + c.val + c.test
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="empty"):
        corpus_lib.load_corpus(tmp_path / "empty.txt")
    (tmp_path / "small.txt").write_text("one\ntwo\nthree\n", encoding="utf-8")
    with pytest.raises(InputError, match="too small"):
        corpus_lib.load_corpus(tmp_path / "small.txt")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2: expected a JSON object"):
        corpus_lib.load_corpus(tmp_path / "bad.jsonl")
    (tmp_path / "c.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown corpus format"):
        corpus_lib.load_eval(tmp_path / "c.csv")
    with pytest.raises(InputError, match="chitchat:val"):
        corpus_lib.load_eval("chitchat:dev")


def test_chitchat_split_is_by_conversation():
    c = corpus_lib.load_chitchat(max_conversations=200)
    n = sum(len(c.split(s)) for s in corpus_lib.SPLITS)
    assert 190 <= n <= 200 and len(c.train) > 5 * len(c.test) > 0
    ex = corpus_lib.examples(c.test, limit=5)
    assert len(ex) == 5 and all(ctx and reply for ctx, reply in ex)


def test_recipe_checks_and_round_trip(tmp_path):
    r = LMRecipe()
    assert LMRecipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    with pytest.raises(InputError, match=r"heads: expected a divisor of dim=64; got 5"):
        DecoderConfig(dim=64, heads=5)
    with pytest.raises(InputError, match=r"export.quantization: expected one of .*got 'int4'"):
        LMRecipe.from_dict({"export": {"quantization": "int4"}})
    with pytest.raises(InputError, match=r"recipe.student: unknown key\(s\) depth"):
        LMRecipe.from_dict({"student": {"depth": 3}})
    with pytest.raises(InputError, match="student.context"):
        LMRecipe.from_dict({"student": {"context": 64}})


def test_harness_does_not_import_tensorflow():
    code = ("import sys, tflite_compress.runtime.lm, tflite_compress.lm.corpus, tflite_compress.commands_lm\n"
            "assert 'tensorflow' not in sys.modules\nprint('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
