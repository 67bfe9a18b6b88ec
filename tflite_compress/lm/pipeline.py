"""The language-model pipeline: corpus -> tokenizer -> teacher -> student on data -> distilled
student -> pruned -> export (float, dynamic-range int8, full int8) -> evaluate, on `stages.py`.

Every figure of the report is measured from a written `.tflite` file in the interpreter
(`runtime.lm`), on the test split: perplexity and next-token accuracy (teacher-forced), BLEU and
ROUGE of greedy replies, decode tokens/s through the cache. Two reference rows come from the
same split and tokenizer: an interpolated bigram's perplexity and the BLEU/ROUGE of always
answering the most frequent train reply.

The teacher (the same decoder builder, larger) and the student trained on the data alone (the
baseline of the distillation gain) are trained on the train split and cached in `cache_dir`
with their float `.tflite` files, under a key hashed from the corpus, the vocabulary, the
model's config, its training config and the seed; a cached model is loaded, not retrained (the
report says which). The learned vocabulary is cached the same way (key: corpus, tokenizer
config, seed). What a rerun with a warm cache pays is the distillation, pruning, the student's
exports and the evaluation.

A user's own Keras causal LM can be the teacher instead (`teacher_path` + `teacher_vocab`,
`lm/teacher.py` has the contract): the tokenizer stage then reads its vocabulary (nothing
learned), the teacher stage loads and checks the file (nothing trained), distillation and the
pruning fine-tune run from its top-k log-probabilities exactly as from the built-in teacher
(cached under a key of the file's sha256, the vocabulary and the train windows), and its row of
the table is measured in Keras on the same test windows (no `.tflite` of it is written).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import InputError, RunError
from ..files import atomic_write_json, atomic_write_text, atomic_write_via, staged_dir
from ..stages import PipelineState, Stage, log_stderr, run_stages
from .config import LMRecipe
from .corpus import LICENCE, Corpus, examples
from .tokenizer import LMTokenizer, learn_lm_vocabulary, stream, windows

ROWS = ("teacher", "student_data", "distilled", "pruned", "int8_dynamic", "int8_full")
ROW_LABELS = {"teacher": "teacher (float)", "student_data": "student, data alone (float)",
              "distilled": "student, distilled (float)", "pruned": "distilled + pruned (float)",
              "int8_dynamic": "pruned, dynamic-range int8", "int8_full": "pruned, full int8"}
GIVEN_TEACHER_LABEL = "teacher (given, Keras)"
SHIPPED = {"dynamic": "int8_dynamic", "full-int8": "int8_full", "float": "pruned"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LMState(PipelineState):
    recipe: LMRecipe
    corpus: Corpus
    work_dir: Path
    cache_dir: Path
    verbose: int = 0
    teacher_path: Path | None = None  # a user's Keras causal LM (lm/teacher.py); None: the built-in teacher
    teacher_vocab: Path | None = None  # the vocabulary it was trained with (LMTokenizer format)
    unsafe: bool = False  # let the teacher file hold Lambda layers (stored code)
    tokenizer: Any = None
    ids: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    train_windows: np.ndarray | None = None
    models: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    files: Mapping[str, Path] = dataclasses.field(default_factory=dict)


def _with(mapping: Mapping, **items) -> dict:
    return {**mapping, **items}


# ---------------------------------------------------------------- stages

def corpus_stage(state: LMState, log) -> LMState:
    stats = state.corpus.stats()
    log.step(f"corpus: {state.corpus.source}: " + ", ".join(
        f"{k} {v['conversations']} conversations / {v['turns']} turns" for k, v in stats.items()))
    return state.record("corpus", {"source": state.corpus.source, "fingerprint": state.corpus.fingerprint(), **stats})


def _key(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update((part if isinstance(part, str) else json.dumps(part, sort_keys=True)).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def vocabulary_turns(corpus: Corpus, cfg, seed: int) -> list[str]:
    """The train turns a vocabulary is learned on: a seeded sample of `cfg.max_train_texts` (all when fewer)."""
    turns = [t for conv in corpus.train for t in conv]
    if len(turns) > cfg.max_train_texts:
        rng = np.random.default_rng(seed)
        turns = [turns[i] for i in sorted(rng.choice(len(turns), cfg.max_train_texts, replace=False))]
    return turns


def _given_vocabulary(state: LMState, log) -> tuple[LMTokenizer, dict]:
    """The --teacher's vocabulary, read as it is (the recipe's tokenizer settings do not apply)."""
    tok = LMTokenizer.from_file(state.teacher_vocab)
    top_k = state.recipe.distill.top_k
    if top_k > len(tok.vocab):
        raise InputError(f"distill.top_k: expected at most the {len(tok.vocab)} tokens of --teacher-vocab "
                         f"{state.teacher_vocab}; got {top_k}")
    log.step(f"tokenizer: given {len(tok.vocab)}-piece vocabulary {state.teacher_vocab} (the teacher's; not learned)")
    return tok, {"source": "given", "vocab_file": str(state.teacher_vocab)}


def _learned_vocabulary(state: LMState, log) -> tuple[LMTokenizer, dict]:
    cfg = state.recipe.tokenizer
    key = _key(state.corpus.fingerprint(), dataclasses.asdict(cfg), state.recipe.seed, "vocab-1")
    cached = state.cache_dir / f"lm-vocab-{key}.txt"
    tok = None
    if cached.is_file():
        try:
            tok = LMTokenizer.from_file(cached)
            log.step(f"tokenizer: cached {len(tok.vocab)}-piece WordPiece vocabulary {cached}")
        except InputError as exc:
            log.step(f"tokenizer: cache entry unreadable ({str(exc)[:80]}); learning again")
            cached.unlink(missing_ok=True)
    if tok is None:
        turns = vocabulary_turns(state.corpus, cfg, state.recipe.seed)
        log.step(f"tokenizer: learning a {cfg.vocabulary_size}-piece WordPiece vocabulary on {len(turns)} train turns")
        tok = LMTokenizer(learn_lm_vocabulary(turns, cfg.vocabulary_size, cfg.min_frequency))
        state.cache_dir.mkdir(parents=True, exist_ok=True)
        tok.save(cached)
    return tok, {"cache_file": str(cached)}


def _train_budget(state: LMState) -> int:
    """Train tokens any model of the run reads (a given teacher trains on none here)."""
    r = state.recipe
    return max(r.student_train.max_train_tokens, r.teacher_train.max_train_tokens if state.teacher_path is None else 0)


def tokenizer_stage(state: LMState, log) -> LMState:
    tok, source = (_given_vocabulary if state.teacher_vocab is not None else _learned_vocabulary)(state, log)
    tok.save(state.work_dir / "vocab.txt")
    ids = {"train": stream(state.corpus.train, tok, _train_budget(state) + 1),
           "val": stream(state.corpus.val, tok, state.recipe.eval.max_eval_tokens + 1),
           "test": stream(state.corpus.test, tok, state.recipe.eval.max_eval_tokens + 1)}
    context = state.recipe.student.context
    for name, arr in ids.items():
        if len(arr) <= context + 1:
            raise RunError(f"the {name} split has {len(arr)} tokens, fewer than one window of {context + 1}: "
                           f"use a larger corpus or a smaller context")
    unk = float(np.mean(ids["train"] == tok.unk_id))
    log.detail(f"vocabulary {len(tok.vocab)}; tokens train {len(ids['train'])}, val {len(ids['val'])}, "
               f"test {len(ids['test'])}; [UNK] share {unk:.4f}")
    return state.record("tokenizer", {"vocabulary_size": len(tok.vocab), "tokens": {k: len(v) for k, v in ids.items()},
                                      "unk_share_train": unk, **source},
                        tokenizer=tok, ids=ids, train_windows=windows(ids["train"], context))


def _model_key(state: LMState, config, train_cfg) -> str:
    """The cache key of a model trained on the data alone: corpus, vocabulary, its config and seed."""
    return _key(state.corpus.fingerprint(), "\n".join(state.tokenizer.vocab), dataclasses.asdict(config),
                dataclasses.asdict(train_cfg), state.recipe.seed, 2)


def _fit(model, state: LMState, train_cfg, teacher=None, log=None, callbacks=()):
    from . import distill

    w = state.train_windows[: max(1, train_cfg.max_train_tokens // state.recipe.student.context)]
    d = state.recipe.distill
    topk, kd = None, teacher is not None
    if teacher is not None and d.top_k:
        topk = _teacher_topk(state, teacher, len(w), log)
        teacher = None
    t0 = time.perf_counter()
    hist = distill.train(model, w, train_cfg.epochs, train_cfg.batch_size, train_cfg.learning_rate,
                         state.recipe.seed, teacher, d.alpha, d.temperature, callbacks, state.verbose, topk=topk)
    val = distill.keras_perplexity(model, windows(state.ids["val"], state.recipe.student.context))
    seconds = time.perf_counter() - t0
    if log:
        log.detail(f"{len(w)} windows x {train_cfg.epochs} epochs in {seconds:.0f} s; "
                   f"last loss {hist['loss'][-1]:.3f}; val perplexity (Keras) {val:.2f}")
    kd_terms = {"ce": hist["ce"], "kl": hist["kl"]} if kd else {}
    return {"train_windows": len(w), "epochs": train_cfg.epochs, "loss": hist["loss"], **kd_terms,
            "val_perplexity_keras": val, "train_s": seconds}


def _teacher_topk(state: LMState, model, n: int, log):
    """The teacher's top-k logits of the first `n` train windows, cached beside the teacher's weights (a given
    teacher's: under its `topk_cache` stem)."""
    from . import distill

    k, temperature = state.recipe.distill.top_k, state.recipe.distill.temperature
    teacher = state.records["teacher"]
    stem = Path(teacher.get("topk_cache") or teacher["cache_file"])
    path = stem.with_suffix(f".top{k}-T{temperature:g}.npz")
    if path.is_file():
        try:
            with np.load(path) as f:
                if len(f["ids"]) >= n:
                    return f["ids"][:n], f["logits"][:n]
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    ids, logits = distill.teacher_topk(model, state.train_windows[:n], k, temperature)
    atomic_write_via(path, lambda tmp: np.savez(tmp, ids=ids, logits=logits), suffix=".npz")
    if log:
        log.detail(f"teacher top-{k} log-probabilities (T {temperature:g}) of {n} windows computed in {time.perf_counter() - t0:.0f} s "
                   f"and cached ({(ids.nbytes + logits.nbytes) / 2**20:.0f} MB) {path.name}")
    return ids, logits


def _head_bias(state: LMState):
    """Every model's output bias starts at the unigram log-probabilities of the train stream it reads."""
    from .models import unigram_log_probs

    return unigram_log_probs(state.ids["train"][: _train_budget(state)], len(state.tokenizer.vocab))


def _cached_or_trained(state: LMState, log, role: str, config, train_cfg, what: str):
    """A decoder trained on the data alone (CE), loaded from `cache_dir` when the same one was trained before."""
    from . import distill
    from .models import build_decoder, count_params

    key = _model_key(state, config, train_cfg)
    path = state.cache_dir / f"lm-{role.replace('_', '-')}-{key}.h5"  # tf-keras HDF5 weights
    model = build_decoder(config, len(state.tokenizer.vocab), role, state.recipe.seed, _head_bias(state))
    params = count_params(model)
    if path.is_file():
        log.step(f"{what}: cached ({params:,} parameters) {path}")
        try:
            model.load_weights(str(path))
            rec = {"cache_hit": True, "val_perplexity_keras": distill.keras_perplexity(
                model, windows(state.ids["val"], config.context))}
        except (OSError, ValueError, KeyError) as exc:
            log.detail(f"cache entry unreadable ({str(exc)[:80]}); training again")
            path.unlink(missing_ok=True)
            return _cached_or_trained(state, log, role, config, train_cfg, what)
    else:
        log.step(f"{what}: training a {config.layers}-layer d={config.dim} decoder ({params:,} parameters; "
                 f"CE only, seed {state.recipe.seed}; cache miss {key})")
        rec = {"cache_hit": False, **_fit(model, state, train_cfg, log=log)}
        atomic_write_via(path, lambda tmp: model.save_weights(tmp), suffix=".h5")
    return model, {"parameters": params, "seed": state.recipe.seed, "cache_key": key, "cache_file": str(path), **rec}


def _given_teacher_stage(state: LMState, log) -> LMState:
    """Load and check the user's teacher (nothing trained); warn when it is under 4x the student."""
    from . import distill
    from .models import build_decoder, count_params
    from .teacher import MIN_PARAM_RATIO, load_teacher

    r = state.recipe
    vocab = state.tokenizer.vocab
    given = load_teacher(state.teacher_path, len(vocab), state.train_windows[:2, :-1], state.unsafe)
    student = count_params(build_decoder(r.student, len(vocab), "student", r.seed))
    ratio = given.parameters / student
    log.step(f"teacher: given {given.path} ({given.keras}, {given.parameters:,} parameters, {ratio:.1f}x the "
             f"student's {student:,}; not trained here)")
    val = distill.keras_perplexity(given.model, windows(state.ids["val"], r.student.context))
    log.detail(f"val perplexity (Keras) {val:.2f}")
    windows_sha = hashlib.sha256(np.ascontiguousarray(state.train_windows).tobytes()).hexdigest()
    key = _key(given.sha256, "\n".join(vocab), windows_sha, "given-1")
    rec = {"source": "given", "path": str(given.path), "sha256": given.sha256, "keras": given.keras,
           "parameters": given.parameters, "param_ratio_to_student": ratio, "val_perplexity_keras": val,
           "topk_cache": str(state.cache_dir / f"lm-given-teacher-{key}")}
    if ratio < MIN_PARAM_RATIO:
        rec["warning"] = (f"the given teacher has {ratio:.1f}x the student's parameters ({given.parameters:,} / "
                          f"{student:,}); the demo's target is >= {MIN_PARAM_RATIO:g}x, so expect a small "
                          f"distillation gain")
        log.detail("warning: " + rec["warning"])
    return state.record("teacher", rec, models=_with(state.models, teacher=given.model))


def teacher_stage(state: LMState, log) -> LMState:
    if state.teacher_path is not None:
        return _given_teacher_stage(state, log)
    r = state.recipe
    teacher, rec = _cached_or_trained(state, log, "teacher", r.teacher, r.teacher_train, "teacher")
    teacher.trainable = False
    return state.record("teacher", rec, models=_with(state.models, teacher=teacher))


def student_data_stage(state: LMState, log) -> LMState:
    r = state.recipe
    student, rec = _cached_or_trained(state, log, "student_data", r.student, r.student_train,
                                      "student on the data alone")
    return state.record("student_data", rec, models=_with(state.models, student_data=student))


def distill_stage(state: LMState, log) -> LMState:
    from .models import build_decoder, count_params

    r = state.recipe
    student = build_decoder(r.student, len(state.tokenizer.vocab), "student", r.seed, _head_bias(state))
    log.step(f"distillation: same student, seed and data, alpha {r.distill.alpha}, T {r.distill.temperature}, "
             + (f"teacher's top-{r.distill.top_k} logits (cached)" if r.distill.top_k else "teacher logits on the fly"))
    rec = _fit(student, state, r.student_train, teacher=state.models["teacher"], log=log)
    return state.record("distilled", {"parameters": count_params(student), "seed": r.seed,
                                      "alpha": r.distill.alpha, "temperature": r.distill.temperature,
                                      "top_k": r.distill.top_k, **rec},
                        models=_with(state.models, distilled=student))


def prune_stage(state: LMState, log) -> LMState:
    from .. import prune as prune_lib
    from ..config import PruneConfig
    from .models import build_decoder

    r = state.recipe
    target = r.prune.target_sparsity
    source = state.models["distilled"]
    if target <= 0:
        log.step("pruning: off (target 0)")
        return state.record("pruned", {"target_sparsity": 0.0, "sparsity": 0.0}, models=_with(state.models, pruned=source))
    log.step(f"pruning: magnitude pruning of Dense and Embedding kernels to {target:.0%}, KD fine-tuning")
    copy = build_decoder(r.student, len(state.tokenizer.vocab), "pruned", r.seed)
    copy.set_weights(source.get_weights())
    train_cfg = dataclasses.replace(r.student_train, epochs=r.prune.epochs, learning_rate=r.prune.learning_rate,
                                    max_train_tokens=r.prune.max_train_tokens)
    per_epoch = max(1, min(len(state.train_windows), train_cfg.max_train_tokens // r.student.context)
                    // train_cfg.batch_size)
    cfg = PruneConfig(target_sparsity=target, end_fraction=0.7, exclude_layers=("pos_emb",))
    wrapped = prune_lib.prune(copy, cfg, per_epoch * r.prune.epochs)
    rec = _fit(wrapped, state, train_cfg, teacher=state.models["teacher"], log=log, callbacks=prune_lib.callbacks())
    stripped = prune_lib.strip(wrapped)
    pruned = build_decoder(r.student, len(state.tokenizer.vocab), "pruned", r.seed)
    pruned.set_weights(stripped.get_weights())
    by_layer = prune_lib.sparsity_by_layer(pruned)
    dense = {k: v for k, v in by_layer.items() if k != "pos_emb"}
    reached = float(np.mean(list(dense.values())))
    if reached < target - 0.02:
        raise RunError(f"pruning reached {reached:.3f} sparsity, short of the target {target}")
    log.detail(f"sparsity reached {reached:.3f} (mean over {len(dense)} kernels)")
    return state.record("pruned", {"target_sparsity": target, "sparsity": reached, "by_layer": by_layer, **rec},
                        models=_with(state.models, pruned=pruned))


def export_stage(state: LMState, log) -> LMState:
    from . import export

    r = state.recipe
    log.step("export: KV-cache .tflite files (prefill/decode/extend/score, BUILTINS only): "
             "float rows, dynamic-range int8, full int8")
    files, times, cached = {}, {}, []
    pruned_rows = {"pruned": "float", "int8_dynamic": "dynamic", "int8_full": "full-int8"}
    plan = [("teacher", r.teacher, ("float",)), ("student_data", r.student, ("float",)),
            ("distilled", r.student, ("float",)), ("pruned", r.student, tuple(pruned_rows.values()))]
    if state.teacher_path is not None:  # a given teacher has no KV-cache file: its row is measured in Keras
        plan = plan[1:]
    for model_name, cfg, quants in plan:
        t0 = time.perf_counter()
        # the models trained on the data alone are cached with their float file (same key, export format)
        trained = state.records.get(model_name, {}).get("cache_file") if model_name in ("teacher", "student_data") else None
        keep = Path(trained).with_suffix(f".kv{export.EXPORT_FORMAT}.tflite") if trained else None
        if keep is not None and keep.is_file():
            contents = {"float": keep.read_bytes()}
            cached.append(model_name)
        else:
            contents = export.convert_many(state.models[model_name], cfg, quants, state.train_windows,
                                           r.export.calibration_windows)
            if keep is not None:
                export.write(keep, contents["float"])
        rows = pruned_rows if model_name == "pruned" else {model_name: "float"}
        for row, quant in rows.items():
            path = state.work_dir / f"{row}.tflite"
            export.write(path, contents[quant])
            files[row] = path
            log.detail(f"{path.name}: {len(contents[quant]):,} bytes")
        times[model_name] = time.perf_counter() - t0
        log.detail(f"{model_name}: {'cached file' if model_name in cached else ', '.join(quants)} "
                   f"({times[model_name]:.0f} s)")
    shipped = SHIPPED[r.export.quantization]
    shutil.copyfile(files[shipped], state.work_dir / "model.tflite")
    atomic_write_json(state.work_dir / "model_info.json",
                      dict(export.model_info(r.student, len(state.tokenizer.vocab), r.export.quantization),
                           file="model.tflite", source_row=shipped, vocab_file="vocab.txt",
                           tokenizer=state.tokenizer.config.to_info() | {"eot_token": "[EOT]", "eot_id": 2,
                                                                         "sequence_length": None}))
    return state.record("export", {"files": {k: p.name for k, p in files.items()}, "seconds": times,
                                   "cached": cached, "shipped": shipped}, files=files)


def evaluate_stage(state: LMState, log) -> LMState:
    from ..runtime.evaluate import file_stats
    from ..runtime.lm import (LMFile, bigram_perplexity, decode_speed, dialog_saving, evaluate_generation,
                              generation_metrics, most_frequent_reply, next_token_metrics)

    r = state.recipe
    ex = examples(state.corpus.test, limit=r.eval.generation_examples)
    log.step(f"evaluate: every file in the interpreter on the test split ({r.eval.max_eval_tokens:,} tokens, "
             f"{len(ex)} replies generated greedily)")
    rows = {"teacher": _keras_teacher_row(state, log)} if state.teacher_path is not None else {}
    vocab = state.work_dir / "vocab.txt"
    for row, path in state.files.items():
        m = LMFile(path, vocab=vocab)
        content = path.read_bytes()
        ops = sorted({op["op_name"] for op in m.interpreter._get_ops_details()})
        non_builtin = [o for o in ops if o.startswith("Flex") or o == "CUSTOM"]
        if non_builtin:
            raise RunError(f"{path.name} holds non-builtin ops: {', '.join(non_builtin)}")
        params = state.records["teacher" if row == "teacher" else "distilled"]["parameters"]
        res = {"parameters": params, **file_stats(content), **next_token_metrics(m, state.ids["test"], r.eval.max_eval_tokens)}
        gen = evaluate_generation(m, ex, r.eval.max_new_tokens)
        res.update({k: gen[k] for k in ("bleu", "rouge1", "rouge2", "rougeL")})
        res["samples"] = gen["samples"]
        res.update({f"speed_{k}": v for k, v in decode_speed(m).items()})
        rows[row] = res
        log.detail(f"{ROW_LABELS[row]:<30} ppl {res['perplexity']:8.2f}  top1 {res['top1']:.3f}  "
                   f"BLEU {res['bleu']:5.2f}  ROUGE-L {res['rougeL']:.3f}  "
                   f"decode {res['speed_decode_tokens_per_s']:,.0f} tok/s")
    big = bigram_perplexity(state.ids["train"], state.ids["val"], state.ids["test"][: r.eval.max_eval_tokens + 1],
                            len(state.tokenizer.vocab))
    frequent = most_frequent_reply(rep for _, rep in examples(state.corpus.train))
    freq = generation_metrics([frequent] * len(ex), [rep for _, rep in ex])
    refs = {"bigram": big, "most_frequent_reply": {"reply": frequent, **freq}}
    shipped = LMFile(state.work_dir / "model.tflite")
    convs = [c for c in state.corpus.test if len(c) >= 5][:20]
    dialog = dialog_saving(shipped, convs, turns=5) if convs else {}
    return state.record("evaluate", {"rows": rows, "references": refs, "dialog_cache": dialog})


KERAS_ROW_NOTE = ("evaluated in Keras on the test windows (the .tflite rows' windows and arithmetic): a given "
                  "teacher has no .tflite, since lm/export.py builds the KV-cache file from the built-in decoder's "
                  "weights by layer name; so no size, BLEU/ROUGE or decode speed")


def _keras_teacher_row(state: LMState, log) -> dict:
    from ..runtime.lm import next_token_metrics
    from .teacher import KerasScorer

    r = state.recipe
    res = {"parameters": state.records["teacher"]["parameters"], "evaluated_in": "keras", "note": KERAS_ROW_NOTE,
           **next_token_metrics(KerasScorer(state.models["teacher"], r.student.context), state.ids["test"],
                                r.eval.max_eval_tokens)}
    log.detail(f"{GIVEN_TEACHER_LABEL:<30} ppl {res['perplexity']:8.2f}  top1 {res['top1']:.3f}  (in Keras: no .tflite)")
    return res


STAGES = (Stage("corpus", corpus_stage), Stage("tokenizer", tokenizer_stage), Stage("teacher", teacher_stage),
          Stage("student_data", student_data_stage), Stage("distill", distill_stage), Stage("prune", prune_stage),
          Stage("export", export_stage), Stage("evaluate", evaluate_stage))


# ---------------------------------------------------------------- run and report

@dataclasses.dataclass(frozen=True)
class LMRunResult:
    out_dir: Path
    report: dict


def run_lm_pipeline(corpus: Corpus, recipe: LMRecipe, out_dir: str | os.PathLike, cache_dir: str | os.PathLike,
                    log: Callable[[str], None] = log_stderr, verbose: int = 0,
                    teacher_path: str | os.PathLike | None = None, teacher_vocab: str | os.PathLike | None = None,
                    unsafe: bool = False) -> LMRunResult:
    """Run every stage; the run folder appears whole at `out_dir` (or not at all).

    `teacher_path` + `teacher_vocab`: distil from a user's Keras causal LM instead of training the
    built-in teacher (`lm/teacher.py`: the file's contract); `unsafe` lets it hold Lambda layers."""
    from .teacher import check_teacher_options

    check_teacher_options(teacher_path, teacher_vocab, recipe.distill.top_k)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    with staged_dir(out_dir) as work:
        state = LMState(recipe=recipe, corpus=corpus, work_dir=work, cache_dir=Path(cache_dir), verbose=verbose,
                        teacher_path=Path(teacher_path) if teacher_path is not None else None,
                        teacher_vocab=Path(teacher_vocab) if teacher_vocab is not None else None, unsafe=unsafe)
        final = run_stages(STAGES, state, log)
        report = summarise(final, time.perf_counter() - t0)
        atomic_write_json(work / "recipe.json", recipe.to_dict())
        atomic_write_json(work / "report.json", report)
        atomic_write_text(work / "LICENCE-corpus.txt", LICENCE + "\n")
    return LMRunResult(out_dir, report)


def summarise(state: LMState, total_s: float) -> dict:
    rec = state.records_dict()
    ev = rec["evaluate"]
    rows = ev["rows"]
    shipped = rec["export"]["shipped"]
    int8 = rows[shipped]
    summary = {
        "shipped": shipped,
        "shipped_size_bytes": int8["size_bytes"],
        "teacher_cached": rec["teacher"].get("cache_hit", False),
        "student_data_cached": rec["student_data"]["cache_hit"],
        "param_ratio_teacher_student": rows["teacher"]["parameters"] / rows["distilled"]["parameters"],
        "int8_vs_float_student_ppl": int8["perplexity"] / rows["pruned"]["perplexity"] - 1,
        "int8_vs_distilled_ppl": int8["perplexity"] / rows["distilled"]["perplexity"] - 1,
        "int8_vs_teacher_ppl": int8["perplexity"] / rows["teacher"]["perplexity"] - 1,
        "distill_gain_ppl": rows["student_data"]["perplexity"] - rows["distilled"]["perplexity"],
        "bigram_ppl": ev["references"]["bigram"]["perplexity"],
        "decode_tokens_per_s": int8["speed_decode_tokens_per_s"],
        "decode_speedup_vs_score64": int8["speed_speedup_vs_score"],
        "decode_tokens_per_s_cpu": int8.get("speed_decode_tokens_per_s_cpu"),
        "decode_speedup_vs_score64_cpu": int8.get("speed_speedup_vs_score_cpu"),
        "dialog_prefill_token_ratio": ev["dialog_cache"].get("token_ratio"),
        "dialog_prefill_time_ratio": ev["dialog_cache"].get("time_ratio"),
        "seed": state.recipe.seed,
        "total_s": total_s,
    }
    if rec["teacher"].get("source") == "given":
        summary["teacher_given"] = rec["teacher"]["path"]
        if "warning" in rec["teacher"]:
            summary["teacher_warning"] = rec["teacher"]["warning"]
    return {"recipe": state.recipe.name, "summary": summary, "stages": rec,
            "timings_s": dict(state.timings), "corpus_licence": LICENCE}


def format_table(report: dict) -> str:
    ev = report["stages"]["evaluate"]
    s = report["summary"]
    head = (f"{'model':<30} {'params':>9} {'size KB':>8} {'gzip KB':>8} {'ppl':>8} {'top1':>6} {'BLEU':>6} "
            f"{'ROUGE-L':>7} {'decode tok/s':>12} {'(cpu)':>8}")
    lines = [head, "-" * len(head)]
    for row in ROWS:
        r = ev["rows"][row]
        mark = " *" if row == s["shipped"] else ""
        if r.get("evaluated_in") == "keras":  # a given teacher: no file, so no size, BLEU/ROUGE or speed
            lines.append(f"{GIVEN_TEACHER_LABEL:<30} {r['parameters']:>9,} {'-':>8} {'-':>8} {r['perplexity']:>8.2f} "
                         f"{r['top1']:>6.3f} {'-':>6} {'-':>7} {'-':>12} {'-':>8}")
            continue
        lines.append(f"{ROW_LABELS[row] + mark:<30} {r['parameters']:>9,} {r['size_bytes'] / 1024:>8.0f} "
                     f"{r['gzip_bytes'] / 1024:>8.0f} {r['perplexity']:>8.2f} {r['top1']:>6.3f} {r['bleu']:>6.2f} "
                     f"{r['rougeL']:>7.3f} {r['speed_decode_tokens_per_s']:>12,.0f} "
                     f"{r.get('speed_decode_tokens_per_s_cpu', float('nan')):>8,.0f}")
    refs = ev["references"]
    fr = refs["most_frequent_reply"]
    lines.append(f"{'bigram (reference)':<30} {'':>9} {'':>8} {'':>8} {refs['bigram']['perplexity']:>8.2f}")
    lines.append(f"{'most frequent reply (ref.)':<30} {'':>9} {'':>8} {'':>8} {'':>8} {'':>6} {fr['bleu']:>6.2f} "
                 f"{fr['rougeL']:>7.3f}   ({fr['reply']!r})")
    d = ev["dialog_cache"]
    teacher = (f"given ({s['teacher_given']})" if "teacher_given" in s
               else 'loaded from the cache' if s['teacher_cached'] else 'trained in this run')
    lines += ["", f"* shipped: model.tflite = {ROW_LABELS[s['shipped']]}; teacher "
                  f"{teacher}, student on the data alone "
                  f"{'loaded from the cache' if s.get('student_data_cached') else 'trained in this run'}; "
                  f"teacher/student parameters {s['param_ratio_teacher_student']:.1f}x",
              f"perplexity: shipped vs its float student {100 * s['int8_vs_float_student_ppl']:+.1f}%, "
              f"vs the teacher {100 * s['int8_vs_teacher_ppl']:+.1f}%; distillation gain "
              f"{s['distill_gain_ppl']:+.2f} ppl (data alone -> distilled, seed {s['seed']})",
              f"decode {s['decode_tokens_per_s']:,.0f} tokens/s wall, {s.get('decode_tokens_per_s_cpu', float('nan')):,.0f} "
              f"in CPU time (1 thread); {s['decode_speedup_vs_score64']:.1f}x (CPU time: "
              f"{s.get('decode_speedup_vs_score64_cpu', float('nan')):.1f}x) faster per token than re-running score "
              f"over 64 tokens"]
    if "teacher_given" in s:
        lines.append(f"{GIVEN_TEACHER_LABEL}: {ev['rows']['teacher']['note']}")
        if "teacher_warning" in s:
            lines.append(f"warning: {s['teacher_warning']}")
    if d:
        lines.append(f"dialog cache ({d['dialogs']} test dialogs x {d['turns']} turns): "
                     f"{d['uncached']['prefilled_tokens']:,} -> {d['cached']['prefilled_tokens']:,} prefilled tokens "
                     f"({d['token_ratio']:.1f}x fewer), prefill time {d['time_ratio']:.1f}x less")
    lines.append(f"total {s['total_s']:.0f} s")
    return "\n".join(lines)
