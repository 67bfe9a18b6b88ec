"""Language-model files in the interpreter, TensorFlow-free: perplexity, generation through the
KV cache, dialog sessions that keep the cache across turns, BLEU and ROUGE, reference baselines.

A KV-cache LM file (written by `tflite_compress.lm.export`) has the signatures `prefill`,
`decode`, `extend` and `score`; its folder holds `vocab.txt` and `model_info.json` (the context
and the signatures' shapes). `LMFile` opens one, checks the signatures and runs them.

BLEU and ROUGE are computed here in plain Python so that the harness needs neither TensorFlow
nor extra packages; a test cross-checks them against sacrebleu (`corpus_bleu(..., tokenize="none")`,
its default "exp" smoothing) and rouge-score (`RougeScorer(["rouge1", "rouge2", "rougeL"])`, no
stemming). Both are computed on the normalised words (`lm.tokenizer.words`) of hypotheses and
references.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import InputError
from ..lm.tokenizer import EOT_ID, LMTokenizer, windows, words
from .interpreter import RuntimeOptions, make_interpreter, read_model_bytes

REQUIRED_SIGNATURES = ("prefill", "decode", "score")


class LMFile:
    """A KV-cache LM `.tflite` loaded in the interpreter, with its tokenizer."""

    def __init__(self, path: str | os.PathLike, options: RuntimeOptions = RuntimeOptions(),
                 vocab: str | os.PathLike | None = None, content: bytes | None = None):
        self.path = Path(path)
        self.content = content if content is not None else read_model_bytes(self.path)
        self.options = options
        try:
            self.backend, self.interpreter = make_interpreter(self.content, options)
            sigs = self.interpreter.get_signature_list()
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"{self.path}: the interpreter cannot load it ({str(exc).splitlines()[0][:200]})") from None
        missing = [s for s in REQUIRED_SIGNATURES if s not in sigs]
        if missing:
            raise InputError(f"{self.path}: not a KV-cache language model: no {', '.join(missing)} signature(s) "
                             f"(found: {', '.join(sorted(sigs)) or 'none'}); write one with `tflite-compress demo-lm`")
        self.signatures = sorted(sigs)
        self.runners = {name: self.interpreter.get_signature_runner(name) for name in sigs}
        self._decode = _StaticRunner(self.runners["decode"])
        cache = self.runners["decode"].get_input_details()["k_cache"]
        self.cache_shape = tuple(int(d) for d in cache["shape"])
        self.context = self.cache_shape[2]
        self.vocab_size = int(self.runners["decode"].get_output_details()["logits"]["shape"][-1])
        vocab = Path(vocab) if vocab else self.path.parent / "vocab.txt"
        self.tokenizer = LMTokenizer.from_file(vocab)
        if len(self.tokenizer.vocab) != self.vocab_size:
            raise InputError(f"{vocab}: {len(self.tokenizer.vocab)} tokens, but {self.path} has {self.vocab_size} logits")
        self.info = {}
        info = self.path.parent / "model_info.json"
        if info.is_file():
            try:
                self.info = json.loads(info.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise InputError(f"{info}: not valid JSON") from None

    # ---- signatures
    def empty_cache(self) -> tuple[np.ndarray, np.ndarray]:
        z = np.zeros(self.cache_shape, np.float32)
        return z, z.copy()

    def score(self, ids: Sequence[int]) -> np.ndarray:
        """Logits [T, V] of every position of `ids` (1 <= T <= context)."""
        ids = self._check_len(ids, 0)
        return self.runners["score"](token_ids=ids[None])["logits"][0]

    def prefill(self, ids: Sequence[int]):
        ids = self._check_len(ids, 0)
        out = self.runners["prefill"](token_ids=ids[None])
        return out["logits"][0], out["k_cache"], out["v_cache"]

    def extend(self, ids: Sequence[int], start: int, k, v):
        ids = self._check_len(ids, start)
        if "extend" not in self.runners:  # older files: one decode step per token
            for j, t in enumerate(ids):
                logits, k, v = self.decode(int(t), start + j, k, v)
            return logits, k, v
        out = self.runners["extend"](token_ids=ids[None], start=np.array([start], np.int32), k_cache=k, v_cache=v)
        return out["logits"][0], out["k_cache"], out["v_cache"]

    def decode(self, token: int, position: int, k, v):
        if not 0 <= position < self.context:
            raise InputError(f"position {position} is outside the model's context of {self.context}")
        out = self._decode(token_id=np.array([token], np.int32), position=np.array([position], np.int32),
                           k_cache=k, v_cache=v)
        return out["logits"][0], out["k_cache"], out["v_cache"]

    def _check_len(self, ids, start: int) -> np.ndarray:
        ids = np.asarray(ids, np.int32)
        if ids.ndim != 1 or len(ids) < 1:
            raise InputError("expected at least one token id")
        if start + len(ids) > self.context:
            raise InputError(f"{start + len(ids)} tokens do not fit the model's context of {self.context}")
        return ids


class _StaticRunner:
    """A signature whose input shapes never change (`decode`), run without the per-call glue.

    LiteRT's `SignatureRunner.__call__` resizes every input and re-allocates the subgraph on every
    call, about a quarter of a decode step's time at these model sizes (side by side on a
    dynamic-range file of the demo student's shape: 83 us a step through the runner, 61 us
    setting, invoking and reading directly). Once the first call has allocated it, a static
    subgraph needs only its inputs set, one invoke and its outputs read: the same steps through
    the same interpreter wrapper, in the same order. Interpreters without that wrapper (another
    backend) keep the plain call."""

    def __init__(self, runner):
        self.runner = runner
        parts = ("_interpreter_wrapper", "_inputs", "_outputs", "_subgraph_index")
        self.fast = all(hasattr(runner, a) for a in parts)
        self.ready = False

    def __call__(self, **inputs):
        if not (self.fast and self.ready):
            out = self.runner(**inputs)
            self.ready = True
            return out
        r = self.runner
        w, index = r._interpreter_wrapper, r._subgraph_index
        for name, value in inputs.items():
            w.SetTensor(r._inputs[name], value, index)
        w.Invoke(index)
        return {name: w.GetTensor(i, index) for name, i in r._outputs}


# ---------------------------------------------------------------- perplexity and next-token accuracy

def _log_softmax(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))


def next_token_metrics(model: LMFile, ids: np.ndarray, max_tokens: int | None = None) -> dict:
    """Teacher-forced perplexity and top-1/top-5 next-token accuracy over `ids` (windows of the context)."""
    if max_tokens:
        ids = ids[: max_tokens + 1]
    rows = windows(np.asarray(ids, np.int32), model.context)
    nll, top1, top5, n = 0.0, 0, 0, 0
    for row in rows:
        logp = _log_softmax(model.score(row[:-1]).astype(np.float64))
        target = row[1:]
        nll -= float(logp[np.arange(len(target)), target].sum())
        top = np.argsort(-logp, axis=-1)[:, :5]
        top1 += int((top[:, 0] == target).sum())
        top5 += int((top == target[:, None]).any(axis=1).sum())
        n += len(target)
    return {"perplexity": math.exp(nll / n), "top1": top1 / n, "top5": top5 / n, "tokens": n}


# ---------------------------------------------------------------- generation

def sample(logits: np.ndarray, rng: np.random.Generator | None, temperature: float = 1.0, top_k: int = 0) -> int:
    """Greedy when `rng` is None or temperature is 0; else top-k (0 = all) sampling at `temperature`."""
    if rng is None or temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if top_k and top_k < len(z):
        cut = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= cut, z, -np.inf)
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def generate_ids(model: LMFile, prompt: Sequence[int], max_new_tokens: int = 32, temperature: float = 0.0,
                 top_k: int = 0, seed: int | None = 0, stop_at_eot: bool = True) -> list[int]:
    """New token ids after `prompt` (prefill once, then one `decode` per token through the cache)."""
    prompt = list(prompt)
    if len(prompt) >= model.context:
        raise InputError(f"the prompt has {len(prompt)} tokens; the model's context is {model.context} "
                         f"(at most {model.context - 1} leave room for a reply)")
    rng = None if temperature <= 0 else np.random.default_rng(seed)
    logits, k, v = model.prefill(prompt)
    out: list[int] = []
    pos = len(prompt)
    while len(out) < max_new_tokens:
        tok = sample(logits, rng, temperature, top_k)
        out.append(tok)
        if (stop_at_eot and tok == EOT_ID) or pos >= model.context:
            break
        logits, k, v = model.decode(tok, pos, k, v)
        pos += 1
    return out


def context_ids(model: LMFile, turns: Sequence[str], room: int) -> list[int]:
    """The ids of `turns` (each closed by [EOT]), cut from the left so that `room` tokens still fit."""
    ids = model.tokenizer.encode_turns(turns)
    keep = max(1, model.context - room)
    return ids[-keep:]


def reply(model: LMFile, turns: Sequence[str], max_new_tokens: int = 24, **kw) -> str:
    """The model's next turn after `turns`, as normalised words."""
    ids = generate_ids(model, context_ids(model, turns, max_new_tokens), max_new_tokens, **kw)
    return model.tokenizer.decode([t for t in ids if t != EOT_ID])


class DialogSession:
    """A conversation that keeps its KV cache across turns: each turn prefills only its new tokens.

    `pending` holds tokens known but not yet in the cache (the [EOT] that closed the last reply).
    When the context would overflow, the session starts over from the most recent tokens
    (`resets` counts it). `prefilled_tokens` counts what the cache had to prefill; a session
    without the cache would prefill the whole history every turn (`history_tokens` sums that).
    """

    def __init__(self, model: LMFile, max_new_tokens: int = 24, temperature: float = 0.0, top_k: int = 0,
                 seed: int | None = 0, use_cache: bool = True):
        self.model, self.max_new_tokens = model, max_new_tokens
        self.temperature, self.top_k = temperature, top_k
        self.rng = None if temperature <= 0 else np.random.default_rng(seed)
        self.use_cache = use_cache
        self.history: list[int] = []  # every token of the conversation
        self.base = 0  # history index of the cache's first token
        self.pos = 0  # tokens in the cache
        self.k, self.v = model.empty_cache()
        self.prefilled_tokens = 0
        self.history_tokens = 0
        self.resets = 0
        self.prefill_s = 0.0

    def turn(self, text: str) -> str:
        new = self.model.tokenizer.encode_turns([text])
        self.history.extend(new)
        room = self.max_new_tokens
        t0 = time.perf_counter()
        if not self.use_cache or self.pos == 0 or len(self.history) - self.base + room > self.model.context:
            if self.pos and self.use_cache:
                self.resets += 1
            keep = self.history[-max(1, self.model.context - room):]
            logits, self.k, self.v = self.model.prefill(keep)
            self.base, self.pos = len(self.history) - len(keep), len(keep)
            self.prefilled_tokens += len(keep)
        else:
            todo = self.history[self.base + self.pos:]
            logits, self.k, self.v = self.model.extend(todo, self.pos, self.k, self.v)
            self.pos += len(todo)
            self.prefilled_tokens += len(todo)
        self.prefill_s += time.perf_counter() - t0
        self.history_tokens += min(len(self.history), self.model.context - room)
        out: list[int] = []
        while len(out) < self.max_new_tokens:
            tok = sample(logits, self.rng, self.temperature, self.top_k)
            out.append(tok)
            self.history.append(tok)
            if tok == EOT_ID or self.pos >= self.model.context:
                break
            logits, self.k, self.v = self.model.decode(tok, self.pos, self.k, self.v)
            self.pos += 1
        if out[-1] != EOT_ID:
            self.history.append(EOT_ID)
        return self.model.tokenizer.decode([t for t in out if t != EOT_ID])


def dialog_saving(model: LMFile, conversations: Sequence[Sequence[str]], turns: int = 5,
                  max_new_tokens: int = 16) -> dict:
    """Tokens prefilled (and seconds) over `turns`-turn dialogs, with the session cache and without it."""
    out = {}
    for use_cache in (True, False):
        prefilled = history = resets = 0
        seconds = 0.0
        for conv in conversations:
            s = DialogSession(model, max_new_tokens, use_cache=use_cache)
            for text in list(conv)[:turns]:
                s.turn(text)
            prefilled += s.prefilled_tokens
            history += s.history_tokens
            resets += s.resets
            seconds += s.prefill_s
        out["cached" if use_cache else "uncached"] = {"prefilled_tokens": prefilled, "prefill_s": seconds,
                                                       "resets": resets}
    c, u = out["cached"], out["uncached"]
    out["dialogs"], out["turns"] = len(conversations), turns
    out["token_ratio"] = u["prefilled_tokens"] / max(1, c["prefilled_tokens"])
    out["time_ratio"] = u["prefill_s"] / c["prefill_s"] if c["prefill_s"] > 0 else float("nan")
    return out


# ---------------------------------------------------------------- BLEU and ROUGE

def _ngrams(tokens: Sequence[str], n: int) -> collections.Counter:
    return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], max_order: int = 4) -> float:
    """Corpus BLEU (0-100) on whitespace tokens, one reference each, with sacrebleu's "exp" smoothing."""
    correct = [0] * max_order
    total = [0] * max_order
    sys_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        h, r = hyp.split(), ref.split()
        sys_len += len(h)
        ref_len += len(r)
        for n in range(1, max_order + 1):
            hc, rc = _ngrams(h, n), _ngrams(r, n)
            correct[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            total[n - 1] += max(0, len(h) - n + 1)
    if not any(correct):
        return 0.0
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0)
    precisions, smooth = [0.0] * max_order, 1.0
    for n in range(max_order):
        if total[n] == 0:
            break
        if correct[n] == 0:
            smooth *= 2
            precisions[n] = 100.0 / (smooth * total[n])
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    return bp * math.exp(sum(math.log(p) if p > 0 else -9999999999 for p in precisions) / max_order)


_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenizer: lowercase, non-alphanumerics to spaces, no stemming."""
    return [t for t in _NON_ALNUM.sub(" ", text.lower()).split() if t]


def _f(overlap: int, pred: int, target: int) -> float:
    p = overlap / pred if pred else 0.0
    r = overlap / target if target else 0.0
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """Mean ROUGE-1/2/L F1 (0-1) over the pairs, as rouge-score computes each."""
    sums = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hyp, ref in zip(hypotheses, references, strict=True):
        h, r = rouge_tokens(hyp), rouge_tokens(ref)
        for n, key in ((1, "rouge1"), (2, "rouge2")):
            hc, rc = _ngrams(h, n), _ngrams(r, n)
            overlap = sum(min(c, rc[g]) for g, c in hc.items())
            sums[key] += _f(overlap, sum(hc.values()), sum(rc.values()))
        sums["rougeL"] += _f(_lcs(r, h), len(h), len(r)) if h and r else 0.0
    n = max(1, len(hypotheses))
    return {k: v / n for k, v in sums.items()}


def generation_metrics(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    refs = [words(r) for r in references]
    return {"bleu": corpus_bleu(hypotheses, refs), **rouge(hypotheses, refs), "examples": len(refs)}


def evaluate_generation(model: LMFile, examples: Sequence[tuple[Sequence[str], str]], max_new_tokens: int = 24) -> dict:
    """Greedy replies from their contexts, scored with BLEU and ROUGE against the real replies."""
    hyps = [reply(model, ctx, max_new_tokens) for ctx, _ in examples]
    out = generation_metrics(hyps, [r for _, r in examples])
    out["samples"] = [{"context": list(ctx), "reference": ref, "generated": h}
                      for (ctx, ref), h in list(zip(examples, hyps))[:3]]
    return out


# ---------------------------------------------------------------- reference rows

def unigram_probs(ids, vocab_size: int) -> np.ndarray:
    """The add-one unigram probabilities of a token stream (float64 [vocab_size])."""
    counts = np.bincount(np.asarray(ids, np.int64), minlength=vocab_size).astype(np.float64) + 1.0
    return counts / counts.sum()


def bigram_perplexity(train_ids: np.ndarray, val_ids: np.ndarray, test_ids: np.ndarray, vocab_size: int) -> dict:
    """An interpolated bigram (lambda * ML bigram + (1 - lambda) * add-one unigram); lambda chosen on val."""
    train_ids = np.asarray(train_ids, np.int64)
    uni = unigram_probs(train_ids, vocab_size)
    pairs = train_ids[:-1] * vocab_size + train_ids[1:]
    keys, counts = np.unique(pairs, return_counts=True)
    prev_counts = np.bincount(train_ids[:-1], minlength=vocab_size).astype(np.float64)

    def nll(ids, lam):
        ids = np.asarray(ids, np.int64)
        q = ids[:-1] * vocab_size + ids[1:]
        pos = np.searchsorted(keys, q)
        pos = np.minimum(pos, len(keys) - 1)
        c = np.where(keys[pos] == q, counts[pos], 0).astype(np.float64)
        ml = np.divide(c, prev_counts[ids[:-1]], out=np.zeros_like(c), where=prev_counts[ids[:-1]] > 0)
        return float(-np.mean(np.log(lam * ml + (1 - lam) * uni[ids[1:]])))

    lams = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99]
    best = min(lams, key=lambda lam: nll(val_ids, lam))
    return {"perplexity": math.exp(nll(test_ids, best)), "lambda": best}


def most_frequent_reply(train_replies: Iterable[str]) -> str:
    counts = collections.Counter(words(r) for r in train_replies)
    return counts.most_common(1)[0][0] if counts else ""


# ---------------------------------------------------------------- speed

def decode_speed(model: LMFile, context_tokens: int = 64, steps: int = 64, repeats: int = 3) -> dict:
    """Decode tokens/s through the cache against re-running `score` over a `context_tokens` context.

    Both measured here, side by side, on the same model, batch 1: `prefill` of `context_tokens`
    tokens, then `steps` decode steps (the signature calls from Python, glue included); and
    `score` over `context_tokens` tokens (what a cacheless step costs). Best of `repeats`, in wall
    time and in this process's CPU time (`*_cpu`: on a shared, loaded machine the wall time also
    counts the time other processes hold the core; with one interpreter thread the CPU time is
    the work itself).
    """
    context_tokens = max(1, min(context_tokens, model.context // 2))
    steps = max(1, min(steps, model.context - context_tokens))
    rng = np.random.default_rng(0)
    ids = rng.integers(3, model.vocab_size, context_tokens + steps).astype(np.int32)
    best = {key: float("inf") for key in ("prefill", "decode", "score", "prefill_cpu", "decode_cpu", "score_cpu")}

    def timed(key, fn, n=1):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best[key] = min(best[key], (time.perf_counter() - w0) / n)
        best[key + "_cpu"] = min(best[key + "_cpu"], (time.process_time() - c0) / n)
        return out

    def run_decode(k, v):
        for j in range(steps):
            _, k, v = model.decode(int(ids[context_tokens + j]), context_tokens + j, k, v)

    def run_score():
        for _ in range(8):
            model.score(ids[:context_tokens])

    for _ in range(repeats):
        _, k, v = timed("prefill", lambda: model.prefill(ids[:context_tokens]))
        timed("decode", lambda: run_decode(k, v), steps)
        timed("score", run_score, 8)
    out = {"context_tokens": context_tokens, "decode_steps": steps}
    for suffix in ("", "_cpu"):
        dec, sc = max(best["decode" + suffix], 1e-9), max(best["score" + suffix], 1e-9)
        out.update({f"prefill_ms{suffix}": best["prefill" + suffix] * 1e3, f"decode_ms_per_token{suffix}": dec * 1e3,
                    f"decode_tokens_per_s{suffix}": 1.0 / dec, f"score_ms{suffix}": sc * 1e3,
                    f"speedup_vs_score{suffix}": sc / dec})
    return out


def decode_profile(model: LMFile, context_tokens: int = 64, runs: int = 100, warmup: int = 10) -> dict:
    """Where one decode step's time goes: each op of the `decode` signature run alone (median of `runs`
    invokes, the kernel that runs it), beside the whole step, after `context_tokens` prefilled tokens.

    The signature's subgraph is cut out as a model of its own (`delegation.signature_model`) and
    profiled as `bench --profile` profiles a classifier (`delegation.profile_ops`)."""
    from .delegation import profile_ops, signature_model

    context_tokens = max(1, min(context_tokens, model.context - 1))
    ids = np.random.default_rng(0).integers(3, model.vocab_size, context_tokens + 1).astype(np.int32)
    _, k, v = model.prefill(ids[:context_tokens])
    feed = {"token_id": ids[-1:], "position": np.array([context_tokens], np.int32), "k_cache": k, "v_cache": v}
    content = signature_model(model.content, "decode")
    _, interp = make_interpreter(content, model.options)
    xs = []
    for d in interp.get_input_details():
        name = next((n for n in feed if d["name"].endswith(f"{n}:0") or d["name"] == n), None)
        if name is None:
            raise InputError(f"{model.path}: decode input {d['name']!r} is none of {', '.join(feed)}")
        xs.append(feed[name])
    return dict(profile_ops(content, model.options, xs, runs=runs, warmup=warmup),
                context_tokens=context_tokens)


def evaluate_lm(model: LMFile, conversations: Sequence[Sequence[str]], max_tokens: int = 20_000,
                generation_examples: int = 200, max_new_tokens: int = 24) -> dict:
    """`eval-lm`'s report: next-token metrics over the conversations' stream, BLEU/ROUGE of greedy replies."""
    from ..lm.corpus import examples
    from ..lm.tokenizer import stream

    ids = stream(conversations, model.tokenizer, max_tokens + 1)
    if len(ids) <= model.context + 1:
        raise InputError(f"the evaluation data has {len(ids)} tokens, fewer than one window of {model.context + 1}")
    out = {"model": str(model.path), "context": model.context, **next_token_metrics(model, ids, max_tokens)}
    ex = examples(conversations, limit=generation_examples) if generation_examples > 0 else []  # limit 0: none, not all
    if ex:
        gen = evaluate_generation(model, ex, max_new_tokens)
        out.update({k: gen[k] for k in ("bleu", "rouge1", "rouge2", "rougeL", "examples", "samples")})
    return out
