"""The compression pipeline for text classifiers, stage by stage.

    tokenizer -> teacher (cached) -> float student (distilled) -> pruned -> QAT (prune-preserving)
    -> full-INT8 .tflite -> validation in the LiteRT interpreter

Every output of a run is written into a temp folder beside `out_dir` and renamed into place at
the end: an interrupted run never leaves a half-written `runs/<name>/`, and an earlier
complete run stays intact until the new one is whole.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .config import Recipe
from .data import TextDataset, stratified_sample
from .errors import InputError, RunError
from .files import atomic_write_json, atomic_write_text
from .tokenizer import WordPieceTokenizer, learn_vocabulary

MODEL_FILE = "model_int8.tflite"
INFO_SCHEMA_VERSION = 1


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclasses.dataclass
class RunResult:
    out_dir: Path
    report: dict
    recipe: Recipe

    @property
    def model_path(self) -> Path:
        return self.out_dir / MODEL_FILE


def _keras_metrics(model, x, y, label_names, oos_label, batch_size=512) -> tuple[dict, np.ndarray]:
    from .runtime import classification_metrics

    logits = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    pred = logits.argmax(axis=1)
    m = classification_metrics(y, pred, label_names, oos_label)
    m.pop("most_confused", None)
    return m, pred


def _count_params(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def model_info(content_model, recipe: Recipe, label_names, oos_label) -> dict:
    from .runtime import inspect_model

    ins = inspect_model(content_model)
    return {
        "schema_version": INFO_SCHEMA_VERSION,
        "task": "text_classification",
        "model_file": MODEL_FILE,
        "labels_file": "labels.txt",
        "num_labels": len(label_names),
        "oos_label": oos_label,
        "sequence_length": recipe.tokenizer.sequence_length,
        "input": ins["input"],
        "output": ins["output"],
        "tokenizer": recipe.tokenizer.to_info(),
        "tflite_compress_version": __version__,
    }


def run_text_pipeline(
    dataset: TextDataset,
    recipe: Recipe,
    out_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    calibration_texts: tuple[str, ...] | None = None,
    log: Callable[[str], None] = _log_default,
    verbose: int | None = None,
    vocab: list[str] | None = None,
    student=None,
    extra_report: dict | None = None,
) -> RunResult:
    """Run every stage the recipe switches on; write the run folder; return its report.

    Optional (`tflite-compress compress`): `vocab`, a fixed vocabulary (not learned); `student`, an
    initial model taking the token ids (fine-tuned by distillation when `stages.distill`, else
    taken as it is); `extra_report`, keys added to report.json.
    """
    from . import convert, distill, prune
    from .runtime import evaluate_text, file_stats, latency_us, load_bundle, weight_sparsity
    from .students import build_student
    from .teacher import teacher_outputs

    if verbose is None:
        verbose = 1 if sys.stderr.isatty() else 2
    out_dir = Path(out_dir)
    stages: dict[str, dict] = {}
    timings: dict[str, float] = {}
    label_names = list(dataset.label_names)
    num_labels = len(label_names)
    oos_label = dataset.oos_label
    t_all = time.perf_counter()

    # 1. Tokenizer: a WordPiece vocabulary learned on the train split.
    t0 = time.perf_counter()
    if vocab is None:
        log(f"[1/7] tokenizer: learning a {recipe.tokenizer.vocabulary_size}-piece WordPiece vocabulary on {len(dataset.train)} texts")
        vocab = learn_vocabulary(dataset.train.texts, recipe.tokenizer)
    else:
        log(f"[1/7] tokenizer: the given {len(vocab)}-token vocabulary")
    tokenizer = WordPieceTokenizer(vocab, recipe.tokenizer)
    x = {s: tokenizer.encode_batch(getattr(dataset, s).texts) for s in ("train", "val", "test")}
    y = {s: getattr(dataset, s).label_ids(label_names, f"{s} split") for s in ("train", "val", "test")}
    truncated = float(np.mean([len(tokenizer.tokenize(t)) > recipe.tokenizer.sequence_length for t in dataset.train.texts]))
    stages["tokenizer"] = {"vocabulary_size": len(vocab), "sequence_length": recipe.tokenizer.sequence_length,
                           "train_truncated_share": truncated}
    timings["tokenizer"] = time.perf_counter() - t0

    # 2. Teacher: logits (and features) for every split, from the cache when present; also for
    #    augmented copies of the train texts, which it labels for distillation.
    teacher_logits = None
    teacher_features = None
    if recipe.stages.distill:
        t0 = time.perf_counter()
        log("[2/7] teacher")
        texts = {s: getattr(dataset, s).texts for s in ("train", "val", "test")}
        if recipe.distill.augment_copies > 0:
            texts["augmented"] = tuple(distill.augment_texts(
                dataset.train.texts, recipe.distill.augment_copies, recipe.distill.augment_word_dropout,
                recipe.distill.augment_swap_probability, seed=recipe.seed))
            x["augmented"] = tokenizer.encode_batch(texts["augmented"])
        outs = teacher_outputs(recipe.teacher, texts, y["train"], num_labels, cache_dir, student_ids=x, log=log)
        teacher_logits = outs.logits
        teacher_features = outs.features
        from .runtime import classification_metrics

        t_split = "test" if "test" in outs.logits else "train"  # precomputed logits cover train only
        tm = classification_metrics(y[t_split], outs.logits[t_split].argmax(1), label_names, oos_label)
        tm.pop("most_confused", None)
        stages["teacher"] = {"description": outs.description, "parameters": outs.parameters,
                             "cache_hit": outs.cache_hit, "cache_key": outs.cache_key, t_split: tm}
        timings["teacher"] = time.perf_counter() - t0
        log(f"      teacher: {outs.description}, {outs.parameters:,} parameters, "
            f"{t_split} {_fmt_acc(tm)}{' (cached)' if outs.cache_hit else ''}")
    else:
        log("[2/7] teacher: off (stages.distill=false), training on labels alone")

    targets = {s: distill.pack_targets(y[s], teacher_logits.get(s) if teacher_logits else None, num_labels)
               for s in ("train", "val")}
    alpha = recipe.distill.alpha if teacher_logits else 1.0
    if teacher_logits and "augmented" in teacher_logits:
        # Distillation data: the train texts and their augmented copies (labelled by the teacher;
        # the CE term keeps the original label). Teachers with train logits only skip this.
        copies = recipe.distill.augment_copies
        stages["augment"] = {"copies": copies, "texts": int(len(x["augmented"]))}
        log(f"      distillation data: {len(x['train'])} train texts + {len(x['augmented'])} augmented copies")
        x["train"] = np.concatenate([x["train"], x["augmented"]])
        targets["train"] = np.concatenate([targets["train"], distill.pack_targets(
            np.tile(y["train"], copies), teacher_logits["augmented"], num_labels)])
        if teacher_features and "augmented" in teacher_features:
            teacher_features = dict(teacher_features, train=np.concatenate(
                [teacher_features["train"], teacher_features["augmented"]]))

    # 3. Float student, distilled.
    t0 = time.perf_counter()
    given = student is not None
    if given:
        im, _ = _keras_metrics(student, x["test"], y["test"], label_names, oos_label)
        stages["input"] = {"parameters": _count_params(student), "test": im}
        log(f"      input model {student.name}: test {_fmt_acc(im)}")
    else:
        student = build_student(recipe.student, len(vocab), recipe.tokenizer.sequence_length, num_labels, seed=recipe.seed)
    if given and (not recipe.stages.distill or recipe.distill.epochs == 0):
        log(f"[3/7] student: {student.name}, {_count_params(student):,} parameters, taken as given")
    else:
        log(f"[3/7] student: {student.name}, {_count_params(student):,} parameters; distillation "
            f"alpha={alpha} T={recipe.distill.temperature}, {recipe.distill.epochs} epochs")
        distill_fit(student, recipe, x, targets, alpha, teacher_features, log, verbose)
    float_metrics, float_pred = _keras_metrics(student, x["test"], y["test"], label_names, oos_label)
    stages["float"] = {"parameters": _count_params(student), "test": float_metrics}
    timings["float"] = time.perf_counter() - t0
    log(f"      float student: test {_fmt_acc(float_metrics)}")
    current = student

    # 4-5. Pruning to the target sparsity, then QAT that keeps the zeros.
    def evaluate(model) -> dict:
        return _keras_metrics(model, x["test"], y["test"], label_names, oos_label)[0]

    current = prune_stage(current, recipe, x["train"], targets["train"], alpha, stages, timings, evaluate,
                          log, "[4/7]", verbose)
    current = qat_stage(current, recipe, x["train"], targets["train"], alpha, stages, timings, evaluate,
                        log, "[5/7]", verbose)

    # 6. Full-integer conversion, calibrated on calibration_data samples.
    t0 = time.perf_counter()
    cal_texts = calibration_texts
    if cal_texts is None:
        idx = stratified_sample(dataset.train.labels, recipe.convert.calibration_samples, seed=recipe.seed)
        cal_texts = tuple(dataset.train.texts[i] for i in idx)
    log(f"[6/7] convert: full-integer INT8, {len(cal_texts)} calibration samples")
    content = convert.to_int8(current, tokenizer.encode_batch(cal_texts), recipe.convert)
    timings["convert"] = time.perf_counter() - t0

    # Write the run folder (temp folder, renamed into place when whole).
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / MODEL_FILE).write_bytes(content)
        tokenizer.save(tmp / "vocab.txt")
        atomic_write_text(tmp / "labels.txt", "\n".join(label_names) + "\n")
        from .runtime import TFLiteModel

        atomic_write_json(tmp / "model_info.json", model_info(TFLiteModel(content), recipe, label_names, oos_label))
        atomic_write_json(tmp / "recipe.json", recipe.to_dict())

        # 7. Validate the written files in the LiteRT interpreter (numpy + interpreter only).
        t0 = time.perf_counter()
        log("[7/7] validate: LiteRT interpreter on the test split")
        bundle = load_bundle(tmp / MODEL_FILE)
        ev = evaluate_text(bundle, dataset.test.texts, dataset.test.labels, "test split")
        agreement = float(np.mean(ev["predictions"] == float_pred))
        from .runtime import inspect_model

        ins = inspect_model(bundle.model)
        sp = weight_sparsity(bundle.model)
        lat = latency_us(bundle.model, x["test"], texts=dataset.test.texts, tokenizer=bundle.tokenizer)
        stages["int8"] = {
            "test": ev["metrics"],
            "agreement_with_float": agreement,
            **file_stats(content),
            "weight_sparsity": sp["overall"],
            "weight_sparsity_by_tensor": {k: v["sparsity"] for k, v in sp["tensors"].items()},
            "weight_sparsity_by_layer": prune.tflite_sparsity_by_layer(
                content, [getattr(lay, "layer", lay).name for lay in current.layers])["by_layer"],
            "latency": lat,
            "xnnpack": bundle.model.xnnpack_applied,
            "runtime_backend": bundle.model.backend,
            "ops": ins["ops"],
            "op_counts": ins["op_counts"],
            "float_ops": ins["float_ops"],
            "input": ins["input"],
            "output": ins["output"],
        }
        timings["validate"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_all
        report = _summarise(stages, timings, recipe, dataset, len(content))
        report.update(extra_report or {})
        atomic_write_json(tmp / "report.json", report)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RunResult(out_dir, report, recipe)


def distill_fit(student, recipe: Recipe, x: dict, targets: dict, alpha: float, teacher_features: dict | None,
                log: Callable[[str], None], verbose: int) -> None:
    """Train `student` in place on packed targets (train, with val for validation).

    Logits distillation always; feature distillation too when the recipe asks for it and the
    teacher has train and val features (a training-only projection: `student` keeps the logits path).
    """
    from . import distill

    train_model, fit_targets = student, targets
    if recipe.distill.feature_weight > 0 and teacher_features and {"train", "val"} <= set(teacher_features):
        log(f"      + feature distillation: {recipe.distill.feature_loss} on teacher features "
            f"({teacher_features['train'].shape[1]}-d), weight {recipe.distill.feature_weight}")
        train_model, fit_targets = distill.feature_distillation(student, recipe.distill, targets, teacher_features,
                                                                alpha=alpha, seed=recipe.seed)
    else:
        distill.compile_for_distillation(student, recipe.distill, alpha=alpha)
    distill.fit(train_model, x["train"], fit_targets["train"], recipe.distill.epochs, recipe.distill.batch_size,
                validation=(x["val"], fit_targets["val"]), verbose=verbose, seed=recipe.seed,
                callbacks=[_cosine_lr(recipe.distill.learning_rate, recipe.distill.epochs)])


def prune_stage(model, recipe: Recipe, x_train: np.ndarray, targets: np.ndarray, alpha: float, stages: dict,
                timings: dict, evaluate: Callable, log: Callable[[str], None], step: str, verbose: int):
    """Prune to the recipe's target (tfmot), train with the distillation loss, strip the wrappers.

    Records `stages["pruned"]` (sparsity overall and by layer, test metrics) and returns the
    stripped model, or `model` itself when pruning is off.
    """
    from . import distill, prune

    if not (recipe.stages.prune and recipe.prune.target_sparsity > 0):
        log(f"{step} pruning: off")
        return model
    t0 = time.perf_counter()
    log(f"{step} pruning: target sparsity {recipe.prune.target_sparsity:.0%} over {recipe.prune.epochs} epochs")
    batch = recipe.distill.batch_size
    total_steps = int(np.ceil(len(x_train) / batch)) * recipe.prune.epochs
    pruned = prune.prune(model, recipe.prune, total_steps)
    distill.compile_for_distillation(pruned, recipe.distill, learning_rate=recipe.prune.learning_rate, alpha=alpha)
    distill.fit(pruned, x_train, targets, recipe.prune.epochs, batch,
                callbacks=prune.callbacks(), verbose=verbose, seed=recipe.seed + 1)
    stripped = prune.strip(pruned)
    measured = prune.sparsity_report(stripped, recipe.prune)  # over the weights it wrapped
    overall = measured["sparsity"]
    for name, info in measured["not_pruned"].items():
        log(f"      not pruned: {name} ({info['weights']:,} weights, sparsity {info['sparsity']:.1%}): {info['why']}")
    per_layer = recipe.prune.layer_targets or recipe.prune.exclude_layers  # overall differs from the target then
    if not per_layer and overall < recipe.prune.target_sparsity - 0.02:
        raise RunError(f"pruning reached {overall:.1%}, short of the {recipe.prune.target_sparsity:.0%} target: "
                         "raise prune.epochs or lower prune.end_fraction")
    pm = evaluate(stripped)
    stages["pruned"] = {"sparsity": overall, "sparsity_by_layer": measured["by_layer"],
                        "not_pruned": measured["not_pruned"], "test": pm}
    timings["pruned"] = time.perf_counter() - t0
    log(f"      pruned: sparsity {overall:.1%}, test {_fmt_acc(pm)}")
    return stripped


def qat_stage(model, recipe: Recipe, x_train: np.ndarray, targets: np.ndarray, alpha: float, stages: dict,
              timings: dict, evaluate: Callable, log: Callable[[str], None], step: str, verbose: int):
    """Quantization-aware fine-tuning (prune-preserving after pruning), with the distillation loss.

    Records `stages["qat"]` and returns the QAT model, or `model` itself when QAT is off (the
    INT8 file then comes from post-training quantization).
    """
    from . import distill, qat

    if not recipe.stages.qat:
        log(f"{step} QAT: off (post-training quantization)")
        return model
    t0 = time.perf_counter()
    preserve = recipe.qat.preserve_sparsity and "pruned" in stages
    log(f"{step} QAT: {recipe.qat.epochs} epochs{' (prune-preserving)' if preserve else ''}")
    q = qat.quantize_student(model, preserve_sparsity=preserve)
    distill.compile_for_distillation(q, recipe.distill, learning_rate=recipe.qat.learning_rate, alpha=alpha)
    distill.fit(q, x_train, targets, recipe.qat.epochs, recipe.distill.batch_size, verbose=verbose,
                seed=recipe.seed + 2)
    qm = evaluate(q)
    stages["qat"] = {"test": qm, "preserve_sparsity": preserve}
    timings["qat"] = time.perf_counter() - t0
    log(f"      QAT: test {_fmt_acc(qm)}")
    return q


def _cosine_lr(base: float, epochs: int):
    from ._tf import keras

    def schedule(epoch, lr):
        return float(base * 0.5 * (1 + np.cos(np.pi * epoch / max(1, epochs))))

    return keras.callbacks.LearningRateScheduler(schedule)


def _fmt_acc(m: dict) -> str:
    if "accuracy_in_scope" in m:
        return f"in-scope accuracy {m['accuracy_in_scope']:.2%}, out-of-scope recall {m['recall_out_of_scope']:.2%}"
    return f"accuracy {m['accuracy']:.2%}"


def _summarise(stages: dict, timings: dict, recipe: Recipe, dataset: TextDataset, size_bytes: int) -> dict:
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
    if "input" in stages:
        summary["input_" + key] = stages["input"]["test"][key]
        summary["drop_points_vs_input"] = 100 * (stages["input"]["test"][key] - stages["int8"]["test"][key])
    if "teacher" in stages:
        if "test" in stages["teacher"]:
            summary["teacher_" + key] = stages["teacher"]["test"][key]
        summary["teacher_parameters"] = stages["teacher"]["parameters"]
        # Teacher size in float32 bytes against the student's INT8 file.
        summary["size_ratio_teacher_to_student"] = 4 * stages["teacher"]["parameters"] / size_bytes
    return {"summary": summary, "stages": stages, "timings_s": timings, "recipe": recipe.name,
            "tflite_compress_version": __version__}


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Put `tmp` at `out_dir`; an existing `out_dir` is replaced only once `tmp` is whole."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def format_table(report: dict) -> str:
    """The terminal table of a report: one row per stage."""
    st = report["stages"]
    key = report["summary"]["metric"]
    rows = [("stage", "in-scope acc" if key == "accuracy_in_scope" else "accuracy", "oos recall", "size", "notes")]

    def acc(m):
        return f"{100 * m[key]:.2f}%"

    def oos(m):
        return f"{100 * m['recall_out_of_scope']:.1f}%" if "recall_out_of_scope" in m else "-"

    if "teacher" in st:
        t = st["teacher"]
        tt = t.get("test") or t["train"]
        rows.append(("teacher", acc(tt), oos(tt), f"{4 * t['parameters'] / 1e6:.1f} MB f32",
                     f"{t['parameters']:,} params{', cached' if t['cache_hit'] else ''}{'' if 'test' in t else ', train split'}"))
    if "input" in st:
        rows.append(("input model", acc(st["input"]["test"]), oos(st["input"]["test"]),
                     f"{4 * st['input']['parameters'] / 1e3:.0f} KB f32", f"{st['input']['parameters']:,} params"))
    f = st["float"]
    rows.append(("float student", acc(f["test"]), oos(f["test"]), f"{4 * f['parameters'] / 1e3:.0f} KB f32", f"{f['parameters']:,} params"))
    if "pruned" in st:
        p = st["pruned"]
        rows.append(("pruned", acc(p["test"]), oos(p["test"]), "-", f"sparsity {100 * p['sparsity']:.1f}%"))
    if "qat" in st:
        q = st["qat"]
        rows.append(("QAT", acc(q["test"]), oos(q["test"]), "-", "fake-quant, Keras"))
    i = st["int8"]
    lat = i["latency"]
    rows.append(("INT8 .tflite", acc(i["test"]), oos(i["test"]),
                 f"{i['size_bytes'] / 1024:.0f} KB ({i['gzip_bytes'] / 1024:.0f} KB gz)",
                 f"agree {100 * i['agreement_with_float']:.1f}%, sparsity {100 * i['weight_sparsity']:.1f}%, "
                 f"p50 {lat['invoke_us_p50']:.0f} us invoke"
                 + (f" / {lat['end_to_end_us_p50']:.0f} us e2e" if "end_to_end_us_p50" in lat else "")))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(r[c].ljust(widths[c]) for c in range(len(r))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    s = report["summary"]
    tail = [f"integer-only: {'yes' if s['integer_only'] else 'NO'}; drop vs float: {s['drop_points']:.2f} points"]
    if "size_ratio_teacher_to_student" in s:
        tail.append(f"teacher/student size ratio: {s['size_ratio_teacher_to_student']:.0f}x")
    return "\n".join(lines + [""] + tail)


def dumps(report: dict) -> str:
    return json.dumps(report, indent=2)
