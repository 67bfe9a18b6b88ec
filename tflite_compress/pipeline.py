"""The compression pipeline for classifiers: one ordered list of stages, run by `demo` and
`compress` alike, on text or on arrays.

    data -> tokenizer -> teacher (cached) -> student (distilled) -> prune -> QAT (prune-preserving)
    -> convert (full INT8) -> validate (LiteRT interpreter, on the written files) -> report

Each stage is a function `(ClassifierState, StageLog) -> ClassifierState` over a frozen state
(`stages.py`); the `[n/N]` lines and timings come from `run_stages`. Every output is written
into a temp folder beside `out_dir` (`files.staged_dir`) that replaces `out_dir` only when the
run is whole: an interrupted run never leaves a half-written `runs/<name>/`, and an earlier
complete run stays intact until the new one is whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import numpy as np

from . import __version__
from .config import Recipe
from .data import ArrayDataset, TextDataset, stratified_sample
from .errors import InputError, RunError
from .files import atomic_write_bytes, atomic_write_json, atomic_write_text, staged_dir, temp_files_in
from .stages import PipelineState, Stage, StageLog, log_stderr, run_stages
from .tokenizer import WordPieceTokenizer, cached_vocabulary

MODEL_FILE = "model_int8.tflite"
INFO_SCHEMA_VERSION = 1
REPORT_SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")

Dataset = Union[TextDataset, ArrayDataset]


@dataclasses.dataclass
class RunResult:
    out_dir: Path
    report: dict
    recipe: Recipe

    @property
    def model_path(self) -> Path:
        return self.out_dir / MODEL_FILE


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """What a run starts from besides its data and recipe.

    `calibration`: calibration inputs (texts, or array rows), sampled down to
    `convert.calibration_samples`; None takes a stratified sample of train. `vocab`: a fixed
    vocabulary (not learned). `student`: an initial tf-keras model taking the model inputs
    (fine-tuned by distillation when `stages.distill`, else taken as it is). `extra_report`: keys
    added to report.json. `verbose`: Keras fit verbosity (None: bars on a terminal, else a line an epoch).
    `unsafe`: trust stored code (Lambda layers) in a Keras teacher file, as `--unsafe` does.
    """

    cache_dir: Path | None  # teacher outputs and distilled students; None: no cache (--no-cache)
    calibration: tuple[str, ...] | np.ndarray | None = None
    vocab: tuple[str, ...] | None = None
    student: Any = None
    extra_report: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    verbose: int | None = None
    unsafe: bool = False  # a Keras teacher may hold Lambda layers (stored code)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClassifierState(PipelineState):
    """What the classifier stages pass along; each stage returns a new one."""

    dataset: Dataset
    recipe: Recipe
    inputs: RunInputs
    out_dir: Path
    work_dir: Path
    tokenizer: WordPieceTokenizer | None = None
    vocab_texts: tuple[str, ...] | None = None  # the task's own train texts (not extra negatives)
    x: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    y: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    targets: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    teacher_features: Mapping[str, np.ndarray] | None = None
    alpha: float = 1.0
    model: Any = None
    float_pred: np.ndarray | None = None
    content: bytes | None = None
    report: Mapping[str, Any] | None = None

    @property
    def is_text(self) -> bool:
        return isinstance(self.dataset, TextDataset)

    @property
    def label_names(self) -> list[str]:
        return list(self.dataset.label_names)

    @property
    def verbose(self) -> int:
        v = self.inputs.verbose
        return (1 if sys.stderr.isatty() else 2) if v is None else v

    def test_metrics(self, model) -> tuple[dict, np.ndarray]:
        """Test-split metrics of a Keras model, and its predictions."""
        return _keras_metrics(model, self.x["test"], self.y["test"], self.label_names, self.dataset.oos_label)


def _keras_metrics(model, x, y, label_names, oos_label, batch_size=512) -> tuple[dict, np.ndarray]:
    from .runtime import classification_metrics

    logits = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    pred = logits.argmax(axis=1)
    m = classification_metrics(y, pred, label_names, oos_label)
    m.pop("most_confused", None)
    return m, pred


def _count_params(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def model_info(content_model, recipe: Recipe, label_names, oos_label: str | None, text: bool = True,
               oos_rule=None) -> dict:
    """`model_info.json`: what an app needs to feed the file and read its output; `oos_rule` (an
    `OOSRule`) when one was calibrated."""
    from .runtime import inspect_model

    ins = inspect_model(content_model)
    info = {
        "schema_version": INFO_SCHEMA_VERSION,
        "task": "text_classification" if text else "array_classification",
        "model_file": MODEL_FILE,
        "labels_file": "labels.txt",
        "num_labels": len(label_names),
        "oos_label": oos_label,
        "input": ins["input"],
        "output": ins["output"],
        "tflite_compress_version": __version__,
    }
    if text:
        info.update(sequence_length=recipe.tokenizer.sequence_length, tokenizer=recipe.tokenizer.to_info())
    if oos_rule is not None:
        info["oos_rule"] = oos_rule.to_info()
    return info


def _oos_figures(recipe: Recipe, val_logits, y_val, test_logits, y_test, label_names, oos_label) -> dict:
    """{"oos": report} for one model's logits (the threshold chosen on val, both schemes on test);
    {} when the recipe or the data has no out-of-scope calibration."""
    from .oos import evaluate_oos

    if not recipe.oos.calibrate or not oos_label:
        return {}
    _, rep = evaluate_oos(val_logits, y_val, test_logits, y_test, label_names, oos_label, recipe.oos.target_recall,
                          recipe.oos.score)
    return {"oos": rep} if rep else {}


# ---------------------------------------------------------------- the stages


def data_stage(state: ClassifierState, log: StageLog) -> ClassifierState:
    """Label ids of every split (texts stay texts until the tokenizer stage); extra out-of-scope
    train examples when the recipe asks for them (`oos.chitchat_negatives`, `oos.mix_negatives`)."""
    from .data import add_oos_negatives

    ds = state.dataset
    negatives: dict = {}
    if state.is_text:
        state = state.replace(vocab_texts=ds.train.texts)
        ds, negatives = add_oos_negatives(ds, state.recipe.oos, state.recipe.seed)
        state = state.replace(dataset=ds)
        y = {s: getattr(ds, s).label_ids(ds.label_names, f"{s} split") for s in SPLITS}
        what = "texts"
    else:
        y = {s: np.asarray(getattr(ds, s).y) for s in SPLITS}
        what = f"rows of shape {tuple(ds.train.x.shape[1:])}"
    sizes = {s: len(getattr(ds, s)) for s in SPLITS}
    log.step(f"data: {ds.name}, {sizes['train']} train / {sizes['val']} val / {sizes['test']} test {what}, "
             f"{len(ds.label_names)} labels" + (f" (out-of-scope: {ds.oos_label!r})" if ds.oos_label else ""))
    if negatives:
        log.detail(f"extra out-of-scope train examples: {negatives}")
        state = state.record("oos_negatives", negatives)
    return state.record("data", {"name": ds.name, "kind": "text" if state.is_text else "arrays", "rows": sizes,
                                 "labels": len(ds.label_names), "oos_label": ds.oos_label}, y=y)


def tokenizer_stage(state: ClassifierState, log: StageLog) -> ClassifierState:
    """Text: a WordPiece vocabulary learned on the train split (or the given one); ids for every split."""
    ds, cfg = state.dataset, state.recipe.tokenizer
    if not state.is_text:
        log.step("tokenizer: none (array inputs go to the model as they are)")
        return state.replace(x={s: getattr(ds, s).x for s in SPLITS})
    if state.inputs.vocab is None:
        vocab_texts = state.vocab_texts or ds.train.texts  # the task's own texts, not extra negatives
        vocab, hit = cached_vocabulary(vocab_texts, cfg, state.inputs.cache_dir, log)
        log.step(f"tokenizer: {'read the cached' if hit else 'learned a'} {len(vocab)}-piece WordPiece vocabulary "
                 f"on {len(vocab_texts)} texts (at most {cfg.vocabulary_size})")
    else:
        vocab = list(state.inputs.vocab)
        log.step(f"tokenizer: the given {len(vocab)}-token vocabulary")
    tokenizer = WordPieceTokenizer(vocab, cfg)
    x = {s: tokenizer.encode_batch(getattr(ds, s).texts) for s in SPLITS}
    truncated = float(np.mean([len(tokenizer.tokenize(t)) > cfg.sequence_length for t in ds.train.texts]))
    return state.record("tokenizer", {"vocabulary_size": len(vocab), "sequence_length": cfg.sequence_length,
                                      "train_truncated_share": truncated}, tokenizer=tokenizer, x=x)


def teacher_texts(dataset: TextDataset, recipe: Recipe) -> dict[str, tuple[str, ...]]:
    """The texts the teacher labels: train/val/test, plus the augmented train copies the recipe asks for
    (the teacher stage, and `scale/` running the same teacher pass on Beam, both take them from here)."""
    from . import distill

    texts = {s: getattr(dataset, s).texts for s in SPLITS}
    if recipe.distill.augment_copies > 0:
        texts["augmented"] = tuple(distill.augmented_copies(dataset.train.texts, recipe.distill, seed=recipe.seed))
    return texts


def teacher_stage(state: ClassifierState, log: StageLog) -> ClassifierState:
    """Teacher logits (and features) for every split, cached; distillation targets for train and val.

    Text teachers also label augmented copies of the train texts, which join the distillation data
    (the CE term keeps the original label).
    """
    from . import distill
    from .runtime import classification_metrics
    from .teacher import teacher_outputs

    recipe, ds = state.recipe, state.dataset
    num_labels = len(ds.label_names)
    x, y = dict(state.x), state.y
    if not recipe.stages.distill:
        log.step("teacher: off (stages.distill=false), training on labels alone")
        targets = {s: distill.pack_targets(y[s], None, num_labels) for s in ("train", "val")}
        return state.replace(targets=targets, alpha=1.0)
    log.step(f"teacher: {recipe.teacher.kind}")
    texts: dict = {}
    if state.is_text:
        texts = teacher_texts(ds, recipe)
        if "augmented" in texts:
            x["augmented"] = state.tokenizer.encode_batch(texts["augmented"])
    elif recipe.teacher.kind in ("minilm", "preset"):
        raise InputError(f"teacher kind {recipe.teacher.kind!r} reads text; the data are arrays")
    outs = teacher_outputs(recipe.teacher, texts, y["train"], num_labels, state.inputs.cache_dir, student_ids=x, log=log,
                           unsafe=state.inputs.unsafe)
    t_split = "test" if "test" in outs.logits else "train"  # precomputed logits cover train only
    tm = classification_metrics(y[t_split], outs.logits[t_split].argmax(1), ds.label_names, ds.oos_label)
    tm.pop("most_confused", None)
    oos_figures = (_oos_figures(recipe, outs.logits["val"], y["val"], outs.logits["test"], y["test"], ds.label_names,
                                ds.oos_label) if t_split == "test" and "val" in outs.logits else {})
    state = state.record("teacher", {"description": outs.description, "parameters": outs.parameters,
                                     "cache_hit": outs.cache_hit, "cache_key": outs.cache_key, t_split: tm,
                                     **oos_figures})
    log.detail(f"teacher: {outs.description}, {outs.parameters:,} parameters, "
               f"{t_split} {_fmt_acc(tm)}{' (cached)' if outs.cache_hit else ''}")
    targets = {s: distill.pack_targets(y[s], outs.logits.get(s), num_labels) for s in ("train", "val")}
    features = outs.features
    if "augmented" in outs.logits:
        copies = recipe.distill.augment_copies
        state = state.record("augment", {"copies": copies, "texts": int(len(x["augmented"]))})
        log.detail(f"distillation data: {len(x['train'])} train texts + {len(x['augmented'])} augmented copies")
        x["train"] = np.concatenate([x["train"], x["augmented"]])
        targets["train"] = np.concatenate([targets["train"], distill.pack_targets(
            np.tile(y["train"], copies), outs.logits["augmented"], num_labels)])
        if features and "augmented" in features:
            features = dict(features, train=np.concatenate([features["train"], features["augmented"]]))
    return state.replace(x=x, targets=targets, teacher_features=features, alpha=recipe.distill.alpha)


STUDENT_CACHE_VERSION = 1  # bump when the student's training gives other weights for the same inputs


def student_cache_key(state: ClassifierState) -> str:
    """The cache key of a float student built and distilled here: everything its training reads
    (the recipe's student, distill and tokenizer sections, seed, the token ids, the packed teacher
    targets and, when feature distillation is on, the teacher's features); not the later stages."""
    from .cache import hash_arrays

    r = state.recipe
    source = {"version": STUDENT_CACHE_VERSION, "package": __version__, "seed": r.seed, "distill_on": r.stages.distill,
              "alpha": state.alpha, "vocab": len(state.tokenizer.vocab), "labels": state.label_names,
              **{k: r.to_dict()[k] for k in ("student", "distill", "tokenizer")}}
    arrays = {f"{kind}_{s}": d[s] for kind, d in (("x", state.x), ("targets", state.targets)) for s in ("train", "val")}
    if r.distill.feature_weight > 0 and state.teacher_features:
        arrays.update({f"features_{s}": v for s, v in state.teacher_features.items() if s in ("train", "val")})
    h = hashlib.sha256(json.dumps(source, sort_keys=True).encode())
    h.update(hash_arrays(arrays).encode())
    return "student-" + h.hexdigest()[:16]


def _student_weights(student) -> Callable[[bytes], list[np.ndarray]]:
    """Decode a cached student's weights, checked against `student`'s (a mismatch is a damaged entry)."""
    from .cache import decode_npz

    def decode(payload: bytes) -> list[np.ndarray]:
        arrays = decode_npz(payload)
        weights = [arrays[f"w{i:04d}"] for i in range(len(arrays))]
        expected = [tuple(w.shape) for w in student.weights]
        if [w.shape for w in weights] != expected:
            raise ValueError(f"{len(weights)} weights, shapes differ from the student's {len(expected)}")
        return weights
    return decode


def student_stage(state: ClassifierState, log: StageLog) -> ClassifierState:
    """The float student: built from the recipe (text) or given, distilled unless taken as given.

    A student built here is cached under the run's cache folder (`student_cache_key`): a second
    run with the same data, teacher targets and student/distill/tokenizer settings reads its
    weights instead of training again (`--no-cache` trains). A given model is always trained.
    """
    from .cache import EntryStore, encode_npz
    from .students import build_student

    recipe = state.recipe
    student = state.inputs.student
    given = student is not None
    if given:
        im, _ = state.test_metrics(student)
        state = state.record("input", {"parameters": _count_params(student), "test": im})
    else:
        student = build_student(recipe.student, len(state.tokenizer.vocab), recipe.tokenizer.sequence_length,
                                len(state.label_names), seed=recipe.seed)
    train = not given or (recipe.stages.distill and recipe.distill.epochs > 0)
    store = EntryStore(state.inputs.cache_dir if not given else None, ".npz", log)
    key = student_cache_key(state) if store.enabled else None
    cache: dict = {"cache_hit": False, "cache_key": key} if key else {}
    with store.lock(key) if key else contextlib.nullcontext():
        weights = store.read(key, _student_weights(student)) if key else None
        if weights is not None:
            student.set_weights(weights)
            cache["cache_hit"], train = True, False
            log.step(f"student: {student.name}, {_count_params(student):,} parameters; distilled before, "
                     f"read from the cache ({store.path(key).name})")
        elif not train:
            log.step(f"student: {student.name}, {_count_params(student):,} parameters, taken as given")
        else:
            soft = ("logit MSE" if recipe.distill.logit_loss == "mse" else f"T={recipe.distill.temperature}")
            how = f"distillation alpha={state.alpha} {soft}" if recipe.stages.distill else "labels alone"
            log.step(f"student: {student.name}, {_count_params(student):,} parameters; {how}, {recipe.distill.epochs} epochs"
                     + (f" (cache miss {key})" if key else ""))
        if given:
            log.detail(f"input model: test {_fmt_acc(state.records['input']['test'])}")
        if train:  # XLA for the students built here (known to compile); a given model trains as Keras runs it
            distill_fit(student, recipe, state.x, state.targets, state.alpha, state.teacher_features, log, state.verbose,
                        xla=not given, length_margin=_length_margin(state))
            if key:
                store.write(key, encode_npz({f"w{i:04d}": w for i, w in enumerate(student.get_weights())}))
    fm, pred = state.test_metrics(student)
    log.detail(f"float student: test {_fmt_acc(fm)}")
    oos_figures = _oos_figures(recipe, student.predict(state.x["val"], batch_size=512, verbose=0), state.y["val"],
                               student.predict(state.x["test"], batch_size=512, verbose=0), state.y["test"],
                               state.label_names, state.dataset.oos_label)
    return state.record("float", {"parameters": _count_params(student), "test": fm, **cache, **oos_figures},
                        model=student, float_pred=pred)


def prune_stage(state: ClassifierState, log: StageLog) -> ClassifierState:
    """Prune to the recipe's target (tfmot), train with the distillation loss, strip the wrappers."""
    from . import distill, prune

    recipe = state.recipe
    if not (recipe.stages.prune and recipe.prune.target_sparsity > 0):
        log.step("pruning: off")
        return state
    log.step(f"pruning: target sparsity {recipe.prune.target_sparsity:.0%} over {recipe.prune.epochs} epochs")
    batch, margin = recipe.distill.batch_size, _length_margin(state)
    total_steps = distill.batches_per_epoch(state.x["train"], batch, margin) * recipe.prune.epochs
    pruned = prune.prune(state.model, recipe.prune, total_steps)
    distill.compile_for_distillation(pruned, recipe.distill, learning_rate=recipe.prune.learning_rate, alpha=state.alpha)
    distill.fit(pruned, state.x["train"], state.targets["train"], recipe.prune.epochs, batch,
                callbacks=prune.callbacks(), verbose=state.verbose, seed=recipe.seed + 1, length_margin=margin)
    stripped = prune.strip(pruned)
    measured = prune.sparsity_report(stripped, recipe.prune)  # over the weights it wrapped
    overall = measured["sparsity"]
    for name, info in measured["not_pruned"].items():
        log.detail(f"not pruned: {name} ({info['weights']:,} weights, sparsity {info['sparsity']:.1%}): {info['why']}")
    per_layer = recipe.prune.layer_targets or recipe.prune.exclude_layers  # overall differs from the target then
    if not per_layer and overall < recipe.prune.target_sparsity - 0.02:
        raise RunError(f"pruning reached {overall:.1%}, short of the {recipe.prune.target_sparsity:.0%} target: "
                       "raise prune.epochs or lower prune.end_fraction")
    pm, _ = state.test_metrics(stripped)
    log.detail(f"pruned: sparsity {overall:.1%}, test {_fmt_acc(pm)}")
    return state.record("pruned", {"sparsity": overall, "sparsity_by_layer": measured["by_layer"],
                                   "not_pruned": measured["not_pruned"], "test": pm}, model=stripped)


def qat_stage(state: ClassifierState, log: StageLog) -> ClassifierState:
    """Quantization-aware fine-tuning (prune-preserving after pruning), with the distillation loss.

    Off: the INT8 file comes from post-training quantization of the model as it is.
    """
    from . import distill, qat

    recipe = state.recipe
    if not recipe.stages.qat:
        log.step("QAT: off (post-training quantization)")
        return state
    preserve = recipe.qat.preserve_sparsity and "pruned" in state.records
    log.step(f"QAT: {recipe.qat.epochs} epochs{' (prune-preserving)' if preserve else ''}")
    q = qat.quantize_student(state.model, preserve_sparsity=preserve)
    distill.compile_for_distillation(q, recipe.distill, learning_rate=recipe.qat.learning_rate, alpha=state.alpha)
    distill.fit(q, state.x["train"], state.targets["train"], recipe.qat.epochs, recipe.distill.batch_size,
                verbose=state.verbose, seed=recipe.seed + 2, length_margin=_length_margin(state))
    qm, _ = state.test_metrics(q)
    log.detail(f"QAT: test {_fmt_acc(qm)}")
    return state.record("qat", {"test": qm, "preserve_sparsity": preserve}, model=q)


def calibration_inputs(state: ClassifierState) -> np.ndarray:
    """Model inputs to calibrate on: the given calibration data sampled down, else a stratified train sample."""
    n, seed, ds = state.recipe.convert.calibration_samples, state.recipe.seed, state.dataset
    given = state.inputs.calibration
    if given is None:
        idx = stratified_sample(ds.train.labels if state.is_text else ds.train.y.tolist(), n, seed=seed)
        return state.tokenizer.encode_batch([ds.train.texts[i] for i in idx]) if state.is_text else ds.train.x[idx]
    if len(given) > n:
        pick = np.sort(np.random.default_rng(seed).choice(len(given), n, replace=False))
        given = tuple(given[i] for i in pick) if state.is_text else given[pick]
    return state.tokenizer.encode_batch(given) if state.is_text else np.asarray(given)


def convert_stage(state: ClassifierState, log: StageLog) -> ClassifierState:
    """INT8 conversion for `convert.target`: "npu" full integer (int8 weights, activations, output;
    float inputs quantized to int8), "cpu" the fastest plan measured in the interpreter."""
    from . import convert

    cal = calibration_inputs(state)
    target = state.recipe.convert.target
    log.step(f"convert: {'full-integer INT8' if target == 'npu' else 'INT8 plan for phone CPUs (measured)'}, "
             f"{len(cal)} calibration samples")
    with temp_files_in(state.work_dir):  # the converter's SavedModel: inside the run's temp folder
        result = convert.convert(state.model, cal, state.recipe.convert)
    if target == "cpu":
        log.detail(f"cpu plan: {result.plan.get('chosen')} ({result.plan.get('why', '')})")
    return state.record("convert", result.plan, content=result.content)


def validate_stage(state: ClassifierState, log: StageLog) -> ClassifierState:
    """Write the model files, then measure the written file in the LiteRT interpreter (numpy + interpreter only)."""
    from . import prune
    from .runtime import (TFLiteModel, evaluate_arrays, evaluate_text, file_stats, inspect_model, latency_us,
                          load_bundle, weight_sparsity)

    ds, recipe, work, content = state.dataset, state.recipe, state.work_dir, state.content
    atomic_write_bytes(work / MODEL_FILE, content)
    if state.tokenizer is not None:
        state.tokenizer.save(work / "vocab.txt")
    atomic_write_text(work / "labels.txt", "\n".join(ds.label_names) + "\n")
    rule = rule_calibration = None
    names, oos_label = list(ds.label_names), ds.oos_label
    if recipe.oos.calibrate and oos_label and np.any(state.y["val"] == names.index(oos_label)):
        # The shipped rule: its threshold chosen on the INT8 file's own val logits.
        from .oos import calibrate_rule

        rule, rule_calibration = calibrate_rule(TFLiteModel(content).predict(state.x["val"]), state.y["val"], names,
                                                oos_label, recipe.oos.target_recall, recipe.oos.score)
    atomic_write_json(work / "model_info.json", model_info(TFLiteModel(content), recipe, names, oos_label,
                                                          text=state.is_text, oos_rule=rule))
    atomic_write_json(work / "recipe.json", recipe.to_dict())

    log.step(f"validate: LiteRT interpreter on the {'test split' if state.is_text else 'eval data'}")
    bundle = load_bundle(work / MODEL_FILE)
    if state.is_text:
        ev = evaluate_text(bundle, ds.test.texts, ds.test.labels, "test split")
        lat = latency_us(bundle.model, state.x["test"], texts=ds.test.texts, tokenizer=bundle.tokenizer)
    else:
        ev = evaluate_arrays(bundle, ds.test.x, ds.test.y, "eval data")
        lat = latency_us(bundle.model, ds.test.x)
    metrics = dict(ev["metrics"])
    ins = inspect_model(bundle.model)
    sp = weight_sparsity(bundle.model)
    oos_report = {}
    if rule is not None:
        from .oos import log_rule
        from .runtime.oos_rule import OOSRule, rule_report

        shipped = OOSRule.from_info(bundle.info["oos_rule"])  # as the harness reads it back
        oos_report = {"oos": {**rule_report(ev["scores"], state.y["test"], names, oos_label, shipped),
                              "calibration": rule_calibration}}
        log_rule(shipped, oos_report["oos"], log)
    return state.record("int8", {
        **oos_report,
        "test": metrics,
        "agreement_with_float": float(np.mean(ev["predictions"] == state.float_pred)),
        **file_stats(content),
        "weight_sparsity": sp["overall"],
        "weight_sparsity_by_tensor": {k: v["sparsity"] for k, v in sp["tensors"].items()},
        "weight_sparsity_by_layer": prune.tflite_sparsity_by_layer(
            content, [getattr(lay, "layer", lay).name for lay in state.model.layers])["by_layer"],
        "latency": lat,
        # Which layers lost most to quantization (drawn by report.html), on 64 test rows.
        "quantization_error_by_layer": _layer_errors_or_note(state, content),
        "xnnpack": bundle.model.xnnpack_applied,
        "runtime_backend": bundle.model.backend,
        "ops": ins["ops"],
        "op_counts": ins["op_counts"],
        "float_ops": ins["float_ops"],
        "input": ins["input"],
        "output": ins["output"],
    })


def _layer_errors_or_note(state: ClassifierState, content: bytes) -> list | dict:
    """Per-layer quantization error (a diagnostic): a note instead when this model cannot be matched."""
    from .debug import layer_errors

    try:
        return layer_errors(state.model, content, state.x["test"][:64])
    except Exception as exc:  # noqa: BLE001 - e.g. a file whose batch is fixed at 1
        return {"not_measured": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}


def report_stage(state: ClassifierState, log: StageLog) -> ClassifierState:
    """report.json: the summary, every stage's record and timings, and what the caller adds."""
    timings = dict(state.timings)
    timings["total"] = sum(timings.values())
    report = _summarise(state.records_dict(), timings, state.recipe, state.dataset, len(state.content))
    report.update(state.inputs.extra_report)
    atomic_write_json(state.work_dir / "report.json", report)
    from .report_html import write_report_html

    try:  # the page is a view of report.json: a rendering fault must not cost the run
        write_report_html(state.work_dir, final_dir=state.out_dir)
        log.step("report: report.json, report.html")
    except Exception as exc:  # noqa: BLE001
        log.step(f"report: report.json (report.html not written: {type(exc).__name__}: {str(exc)[:200]})")
    return state.replace(report=report)


CLASSIFIER_STAGES = (
    Stage("data", data_stage),
    Stage("tokenizer", tokenizer_stage),
    Stage("teacher", teacher_stage),
    Stage("student", student_stage),
    Stage("prune", prune_stage),
    Stage("qat", qat_stage),
    Stage("convert", convert_stage),
    Stage("validate", validate_stage),
    Stage("report", report_stage),
)


def run_pipeline(dataset: Dataset, recipe: Recipe, out_dir: str | os.PathLike, inputs: RunInputs,
                 log: Callable[[str], None] = log_stderr) -> RunResult:
    """Run every stage of `CLASSIFIER_STAGES` the recipe switches on; write the run folder whole; its report."""
    out_dir = Path(out_dir)
    with staged_dir(out_dir, log) as work:
        state = ClassifierState(dataset=dataset, recipe=recipe, inputs=inputs, out_dir=out_dir, work_dir=work)
        final = run_stages(CLASSIFIER_STAGES, state, log)
    return RunResult(out_dir, dict(final.report), recipe)


def run_text_pipeline(
    dataset: TextDataset,
    recipe: Recipe,
    out_dir: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    calibration_texts: tuple[str, ...] | None = None,
    log: Callable[[str], None] = log_stderr,
    verbose: int | None = None,
    vocab: list[str] | None = None,
    student=None,
    extra_report: dict | None = None,
) -> RunResult:
    """`run_pipeline` on a text dataset (the public entry point of the README)."""
    inputs = RunInputs(cache_dir=None if cache_dir is None else Path(cache_dir), calibration=calibration_texts,
                       vocab=None if vocab is None else tuple(vocab), student=student,
                       extra_report=dict(extra_report or {}), verbose=verbose)
    return run_pipeline(dataset, recipe, out_dir, inputs, log)


def _length_margin(state: ClassifierState) -> int | None:
    """`students.length_margin` of the student built here when the recipe cuts batches
    (`distill.cut_batches`); None otherwise, and for a model the user brings."""
    from .students import length_margin

    built = state.is_text and state.inputs.student is None
    return length_margin(state.recipe.student) if built and state.recipe.distill.cut_batches else None


def distill_fit(student, recipe: Recipe, x: Mapping, targets: Mapping, alpha: float, teacher_features: Mapping | None,
                log: Callable[[str], None], verbose: int, xla: bool = False, length_margin: int | None = None) -> None:
    """Train `student` in place on packed targets (train, with val for validation).

    Logits distillation always; feature distillation too when the recipe asks for it and the
    teacher has train and val features (a training-only projection: `student` keeps the logits path).
    `xla`: an XLA-compiled train step, `distill.XLA_STEPS` steps per call, whole batches only.
    `length_margin`: short rows train cut, in batches of their own (`distill.fit`).
    """
    from . import distill

    train_model, fit_targets = student, targets
    if recipe.distill.feature_weight > 0 and teacher_features and {"train", "val"} <= set(teacher_features):
        log(f"      + feature distillation: {recipe.distill.feature_loss} on teacher features "
            f"({teacher_features['train'].shape[1]}-d), weight {recipe.distill.feature_weight}")
        train_model, fit_targets = distill.feature_distillation(student, recipe.distill, dict(targets),
                                                                dict(teacher_features), alpha=alpha, seed=recipe.seed,
                                                                xla=xla)
    else:
        distill.compile_for_distillation(student, recipe.distill, alpha=alpha, xla=xla)
    if length_margin:
        buckets = distill.length_buckets(x["train"], recipe.distill.batch_size, length_margin, whole_batches=xla)
        log(f"      cut batches: {int(buckets[1].sum())} of {len(x['train'])} rows at {buckets[0]} of "
            f"{x['train'].shape[1]} positions" if buckets else "      cut batches: none (one length is as cheap)")
    distill.fit(train_model, x["train"], fit_targets["train"], recipe.distill.epochs, recipe.distill.batch_size,
                validation=(x["val"], fit_targets["val"]), verbose=verbose, seed=recipe.seed,
                callbacks=[_cosine_lr(recipe.distill.learning_rate, recipe.distill.epochs)], length_margin=length_margin)
    if xla:  # predict as Keras runs it: an XLA predict compiles once per batch shape (~30 s on the demo's splits)
        train_model.jit_compile = False


def _cosine_lr(base: float, epochs: int):
    from ._tf import keras

    def schedule(epoch, lr):
        return float(base * 0.5 * (1 + np.cos(np.pi * epoch / max(1, epochs))))

    return keras.callbacks.LearningRateScheduler(schedule)


def _fmt_acc(m: dict) -> str:
    if "accuracy_in_scope" in m:
        return f"in-scope accuracy {m['accuracy_in_scope']:.2%}, out-of-scope recall {m['recall_out_of_scope']:.2%}"
    return f"accuracy {m['accuracy']:.2%}"


def _summarise(stages: dict, timings: dict, recipe: Recipe, dataset: Dataset, size_bytes: int) -> dict:
    key = "accuracy_in_scope" if dataset.oos_label else "accuracy"
    summary = {
        "dataset": dataset.name,
        "metric": key,
        "int8_" + key: stages["int8"]["test"][key],
        "float_" + key: stages["float"]["test"][key],
        "drop_points": 100 * (stages["float"]["test"][key] - stages["int8"]["test"][key]),
        "size_bytes": size_bytes,
        "gzip_bytes": stages["int8"]["gzip_bytes"],
        "integer_only": not stages["int8"]["float_ops"],
    }
    for name in ("float", "int8"):  # both schemes: arg-max above, the val-chosen oos rule here
        o = stages[name].get("oos")
        if o and "rule" in o:
            summary.update({f"{name}_{k}_rule": o["rule"][k] for k in
                            ("accuracy_in_scope", "recall_out_of_scope", "precision_out_of_scope")})
            summary[f"{name}_precision_out_of_scope"] = o["argmax"]["precision_out_of_scope"]
            summary.update({f"{name}_{k}": v for k, v in o.items() if k.startswith("auroc_")})
    if "oos" in stages["int8"]:
        summary["oos_rule"] = {k: stages["int8"]["oos"]["rule"][k] for k in ("score", "threshold", "label")}
    if "input" in stages:
        summary["input_" + key] = stages["input"]["test"][key]
        summary["drop_points_vs_input"] = 100 * (stages["input"]["test"][key] - stages["int8"]["test"][key])
    if "teacher" in stages:
        if "test" in stages["teacher"]:
            summary["teacher_" + key] = stages["teacher"]["test"][key]
        summary["teacher_parameters"] = stages["teacher"]["parameters"]
        # Teacher size in float32 bytes against the student's INT8 file.
        summary["size_ratio_teacher_to_student"] = 4 * stages["teacher"]["parameters"] / size_bytes
    return {"schema_version": REPORT_SCHEMA_VERSION, "summary": summary, "stages": stages, "timings_s": timings,
            "recipe": recipe.name, "tflite_compress_version": __version__}


def format_table(report: dict) -> str:
    """The terminal table of a report: one row per stage."""
    st = report["stages"]
    key = report["summary"]["metric"]
    rule = key == "accuracy_in_scope" and "oos" in st["int8"]
    rows = [("stage", "in-scope acc" if key == "accuracy_in_scope" else "accuracy", "oos recall")
            + (("in-scope (rule)", "oos recall (rule)", "oos prec (rule)", "threshold") if rule else ())
            + ("size", "notes")]

    def rule_cols(stage: dict) -> tuple:
        if not rule:
            return ()
        r = (stage.get("oos") or {}).get("rule")
        if r is None:
            return ("-",) * 4
        return (f"{100 * r['accuracy_in_scope']:.2f}%", f"{100 * r['recall_out_of_scope']:.1f}%",
                f"{100 * r['precision_out_of_scope']:.1f}%", f"{r['threshold']:.3f}")

    def acc(m):
        return f"{100 * m[key]:.2f}%"

    def oos(m):
        return f"{100 * m['recall_out_of_scope']:.1f}%" if "recall_out_of_scope" in m else "-"

    if "teacher" in st:
        t = st["teacher"]
        tt = t.get("test") or t["train"]
        rows.append(("teacher", acc(tt), oos(tt), *rule_cols(t), f"{4 * t['parameters'] / 1e6:.1f} MB f32",
                     f"{t['parameters']:,} params{', cached' if t['cache_hit'] else ''}{'' if 'test' in t else ', train split'}"))
    if "input" in st:
        rows.append(("input model", acc(st["input"]["test"]), oos(st["input"]["test"]), *rule_cols({}),
                     f"{4 * st['input']['parameters'] / 1e3:.0f} KB f32", f"{st['input']['parameters']:,} params"))
    f = st["float"]
    rows.append(("float student", acc(f["test"]), oos(f["test"]), *rule_cols(f), f"{4 * f['parameters'] / 1e3:.0f} KB f32", f"{f['parameters']:,} params"))
    if "pruned" in st:
        p = st["pruned"]
        rows.append(("pruned", acc(p["test"]), oos(p["test"]), *rule_cols(p), "-", f"sparsity {100 * p['sparsity']:.1f}%"))
    if "qat" in st:
        q = st["qat"]
        rows.append(("QAT", acc(q["test"]), oos(q["test"]), *rule_cols(q), "-", "fake-quant, Keras"))
    i = st["int8"]
    lat = i["latency"]
    rows.append(("INT8 .tflite", acc(i["test"]), oos(i["test"]), *rule_cols(i),
                 f"{i['size_bytes'] / 1024:.0f} KB ({i['gzip_bytes'] / 1024:.0f} KB gz)",
                 f"agree {100 * i['agreement_with_float']:.1f}%, sparsity {100 * i['weight_sparsity']:.1f}%, "
                 f"p50 {lat['invoke_us_p50']:.0f} us invoke"
                 + (f" / {lat['end_to_end_us_p50']:.0f} us e2e" if "end_to_end_us_p50" in lat else "")))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(r[c].ljust(widths[c]) for c in range(len(r))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    s = report["summary"]
    tail = [f"integer-only: {'yes' if s['integer_only'] else 'NO'}; drop vs float: {s['drop_points']:.2f} points"]
    if "oos_rule" in s:
        r = s["oos_rule"]
        tail.append(f"oos rule (model_info.json): {r['score']} < {r['threshold']:.4f} -> {r['label']!r}, chosen on val "
                    f"({st['int8']['oos']['calibration']['scheme']}); rule columns: each model's own val-chosen threshold")
    if "size_ratio_teacher_to_student" in s:
        tail.append(f"teacher/student size ratio: {s['size_ratio_teacher_to_student']:.0f}x")
    return "\n".join(lines + [""] + tail)
