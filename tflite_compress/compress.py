"""`compress`: option resolution for a user's model, data and teacher; then the one pipeline.

    read data -> resolve recipe and teacher -> load model (Keras 3 rebuilt) -> check it fits the data
    -> `pipeline.run_pipeline` (the demo's stages, on a TextDataset or an ArrayDataset)

Every check on inputs runs before any training, and outputs go to a temp folder renamed into
place at the end, so a bad input ends with one `InputError` and nothing half-written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .cache import default_cache_dir
from .config import Recipe, Stages, TeacherConfig
from .data import (OOS_LABEL, ArrayDataset, TextDataset, holdout_split, load_array_file, load_text_file, load_texts,
                   stratified_sample)
from .errors import InputError
from .pipeline import RunInputs, run_pipeline
from .recipes import load_recipe, with_target
from .stages import log_stderr

BUILTIN_STUDENTS = ("cnn", "bag")
ARRAY_SUFFIXES = (".npz",)
VAL_ROWS = 500  # rows of the eval set shown as validation during training
MIN_PRUNE_STEPS = 300  # below this, pruning on small data reaches its target with no steps left to recover
MIN_QAT_STEPS = 150  # and QAT's moving-average ranges have not settled


@dataclasses.dataclass
class CompressOptions:
    """Everything `tflite-compress compress` takes (paths as given by the user)."""

    train: Path
    out_dir: Path
    model: str | None = None
    eval: Path | None = None
    calibration: Path | None = None
    calibration_samples: int | None = None
    teacher: str | None = None
    recipe: str | Recipe | None = None
    vocab: Path | None = None
    labels: Path | None = None
    text_column: str | None = None
    label_column: str | None = None
    unsafe: bool = False
    cache_dir: Path | None = None
    no_cache: bool = False  # --no-cache: compute the teacher's outputs, read and write no cache
    target: str | None = None  # --target npu|cpu: overrides the recipe's convert.target
    eval_share: float = 0.2
    self_teacher: bool = False  # set by `compress`: no --teacher given with a model file
    fit_epochs_to_data: bool = True  # raise prune/QAT epochs to a minimum of steps on small data
    oos_label: str | None = None  # the out-of-scope label (default: "oos" when the data has it)
    target_oos_recall: float | None = None  # the rule's threshold: lowest reaching this val recall


# ---------------------------------------------------------------- teachers


def resolve_teacher(spec: str | None, data_kind: str, model_given: bool) -> TeacherConfig | None:
    """`--teacher` -> a TeacherConfig, or None for no teacher.

    Default: the pretrained MiniLM for text data without a model file; no teacher otherwise.
    """
    from .teacher import is_preset_dir

    if spec is None:
        spec = "minilm" if (data_kind == "text" and not model_given) else "none"
    if spec == "none":
        return None
    if spec == "minilm":
        if data_kind != "text":
            raise InputError("--teacher minilm reads text; array data needs a model-file, .tflite or .npy teacher")
        return TeacherConfig(kind="minilm")
    path = Path(spec)
    if not path.exists():
        raise InputError(f"--teacher {spec}: not found (expected minilm, none, a .keras/.h5 file, a SavedModel, "
                         "a .tflite, a .npy of logits or a BERT preset folder)")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return TeacherConfig(kind="tflite", model_path=str(path))
    if suffix == ".npy":
        return TeacherConfig(kind="logits", model_path=str(path))
    if suffix in (".keras", ".h5", ".hdf5"):
        return TeacherConfig(kind="keras", model_path=str(path))
    if path.is_dir() and is_preset_dir(path):
        if data_kind != "text":
            raise InputError(f"--teacher {spec}: a BERT preset reads text; the data are arrays")
        return TeacherConfig(kind="preset", model_path=str(path))
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return TeacherConfig(kind="keras", model_path=str(path))
    raise InputError(f"--teacher {spec}: unsupported teacher (expected a .keras/.h5 file, a .tflite, a .npy of "
                     "logits or a BERT preset folder)")


# ---------------------------------------------------------------- data


def _label_names(train_labels: Sequence[str], labels_file: Path | None) -> list[str]:
    if labels_file is not None:
        if not labels_file.is_file():
            raise InputError(f"--labels {labels_file}: file not found")
        names = [n for n in labels_file.read_text(encoding="utf-8").splitlines() if n.strip()]
        if len(set(names)) != len(names):
            raise InputError(f"--labels {labels_file}: duplicate label names")
        unknown = sorted(set(train_labels) - set(names))
        if unknown:
            raise InputError(f"--labels {labels_file}: train labels missing from it: {', '.join(map(repr, unknown[:5]))}")
        return names
    names = sorted(set(train_labels))
    if OOS_LABEL in names:  # the suite's convention: out-of-scope last
        names = [n for n in names if n != OOS_LABEL] + [OOS_LABEL]
    return names


def _check_eval_labels(eval_labels: Sequence[str], label_names: Sequence[str], eval_path, log) -> None:
    unknown = sorted(set(eval_labels) - set(label_names))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise InputError(f"{eval_path}: label set differs from train: eval labels not in train: {shown}")
    missing = sorted(set(label_names) - set(eval_labels))
    if missing:
        log(f"data: note: {len(missing)} label(s) have no eval rows: {', '.join(missing[:5])}")


def _read_vocab(path: Path) -> list[str]:
    """A vocab.txt, one token a line; an empty first line (Keras TextVectorization's padding) reads as [PAD]."""
    from .tokenizer import PAD_TOKEN, WordPieceTokenizer

    if not path.is_file():
        raise InputError(f"--vocab {path}: vocabulary file not found")
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    if lines and lines[0] == "":
        lines[0] = PAD_TOKEN
    try:
        WordPieceTokenizer(lines)
    except InputError as exc:
        raise InputError(f"--vocab {path}: {exc}") from None
    return lines


# ---------------------------------------------------------------- the entry point


def compress(opts: CompressOptions, log: Callable[[str], None] = log_stderr, verbose: int | None = None):
    """Run the compress pipeline; returns the `RunResult` (out_dir, report, recipe)."""
    data_kind = "arrays" if opts.train.suffix.lower() in ARRAY_SUFFIXES else "text"
    recipe = with_target(opts.recipe if isinstance(opts.recipe, Recipe) else load_recipe(opts.recipe), opts.target)
    cache_dir = None if opts.no_cache else (opts.cache_dir or default_cache_dir())
    model_is_file = opts.model is not None and opts.model not in BUILTIN_STUDENTS
    if data_kind == "arrays" and not model_is_file:
        raise InputError(f"{opts.train}: array data needs a MODEL file (built-in students "
                         f"{', '.join(BUILTIN_STUDENTS)} read text)")
    if data_kind == "text" and model_is_file and opts.vocab is None:
        raise InputError(f"{opts.model}: a text model file needs the vocabulary it was trained with (--vocab vocab.txt)")
    if not model_is_file and opts.vocab is not None:
        raise InputError("--vocab goes with a MODEL file; the built-in student learns its vocabulary")
    if opts.teacher is None and recipe.teacher.model_path:
        # A recipe naming a teacher file (e.g. a resolved recipe.json fed back) keeps it.
        teacher = resolve_teacher(recipe.teacher.model_path, data_kind, model_is_file)
    else:
        teacher = resolve_teacher(opts.teacher, data_kind, model_is_file)
    skipped: dict[str, str] = {}
    notes: list[str] = []

    # 1. Stages and teacher into the recipe (the resolved recipe is written beside the model).
    stages = recipe.stages
    self_teacher = teacher is None and model_is_file and opts.teacher is None and stages.distill
    if teacher is None and stages.distill and not self_teacher:
        stages = dataclasses.replace(stages, distill=False)
        skipped["distill"] = ("no teacher (--teacher): the model is taken as given" if model_is_file
                              else "--teacher none: the student trains on labels alone")
    if teacher is not None:
        recipe = recipe.replace(teacher=dataclasses.replace(recipe.teacher, kind=teacher.kind, model_path=teacher.model_path))
        if not stages.distill:
            notes.append(f"--teacher given but the recipe switches distillation off ({recipe.name})")
    if opts.calibration_samples is not None:
        if opts.calibration_samples < 1:
            raise InputError(f"--calibration-samples must be at least 1, got {opts.calibration_samples}")
        recipe = recipe.replace(convert=dataclasses.replace(recipe.convert, calibration_samples=opts.calibration_samples))
    if opts.target_oos_recall is not None:
        try:
            recipe = recipe.replace(oos=dataclasses.replace(recipe.oos, target_recall=opts.target_oos_recall))
        except InputError as exc:
            raise InputError(f"--target-oos-recall: {str(exc).split(': ', 1)[-1]}") from None
    recipe = recipe.replace(stages=stages)
    opts = dataclasses.replace(opts, self_teacher=self_teacher)
    if teacher is not None and teacher.kind == "logits" and opts.eval is None:
        raise InputError(f"--teacher {teacher.model_path}: precomputed logits are aligned with the train rows; "
                         "give --eval too (without it a holdout would be cut from train)")

    if data_kind == "text":
        return _compress_text(opts, recipe, teacher, model_is_file, cache_dir, skipped, notes, log, verbose)
    return _compress_arrays(opts, recipe, cache_dir, skipped, notes, log, verbose)


def _fit_epochs(recipe: Recipe, train_rows: int, notes: list[str], log) -> Recipe:
    """Raise prune/QAT epochs so each runs a minimum of steps on small data (noted in the report)."""
    steps = int(np.ceil(train_rows / recipe.distill.batch_size))
    for stage, minimum, on in (("prune", MIN_PRUNE_STEPS, recipe.stages.prune and recipe.prune.target_sparsity > 0),
                               ("qat", MIN_QAT_STEPS, recipe.stages.qat)):
        cfg = getattr(recipe, stage)
        if not on or steps * cfg.epochs >= minimum:
            continue
        epochs = int(np.ceil(minimum / steps))
        note = (f"{stage}.epochs raised from {cfg.epochs} to {epochs}: {train_rows} train rows give {steps} steps "
                f"an epoch, and {stage} needs about {minimum} steps")
        log(f"recipe: {note}")
        notes.append(note)
        recipe = recipe.replace(**{stage: dataclasses.replace(cfg, epochs=epochs)})
    return recipe


def _check_logits_file(recipe: Recipe, train_rows: int, num_labels: int) -> None:
    """Fail before any training when a .npy teacher does not match the train rows and labels."""
    if not (recipe.stages.distill and recipe.teacher.kind == "logits"):
        return
    path = recipe.teacher.model_path
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy of teacher logits ({str(exc).splitlines()[0]})") from None
    if shape != (train_rows, num_labels):
        raise InputError(f"{path}: teacher logits have shape {shape}, expected ({train_rows}, {num_labels}): "
                         "one row per train row, in the same order, one column per label")


def skipped_lines(skipped: dict[str, str]) -> list[str]:
    """One line per reason: "skipped prune, qat: <why>"."""
    by_reason: dict[str, list[str]] = {}
    for stage, why in skipped.items():
        by_reason.setdefault(why, []).append(stage)
    return [f"skipped {', '.join(stages)}: {why}" for why, stages in by_reason.items()]


def _off(recipe: Recipe, skipped: dict, reason: str) -> Recipe:
    for stage in ("distill", "prune", "qat"):
        if getattr(recipe.stages, stage):
            skipped[stage] = reason
    return recipe.replace(stages=Stages(distill=False, prune=False, qat=False))


def _load_user_model(opts: CompressOptions, recipe: Recipe, sample, skipped: dict, notes: list, log):
    """Load the model; without --teacher the model is its own teacher (self-distillation)."""
    from .models import load_model, strip_final_softmax

    loaded = load_model(opts.model, unsafe=opts.unsafe, sample=sample, log=log)
    if not loaded.trainable_by_tfmot:
        recipe = _off(recipe, skipped, loaded.notes[-1])
    elif opts.self_teacher:
        if loaded.file_format == "savedmodel":
            recipe = recipe.replace(stages=dataclasses.replace(recipe.stages, distill=False))
            skipped["distill"] = "no teacher (--teacher); a SavedModel cannot serve as its own teacher"
        else:
            # Pruning and QAT learn from the input model's own logits, which keeps the compressed
            # model close to it; distill.epochs=0 leaves the float model as given.
            recipe = recipe.replace(teacher=dataclasses.replace(recipe.teacher, kind="keras", model_path=str(opts.model)),
                                    distill=dataclasses.replace(recipe.distill, epochs=0))
            note = ("no --teacher: the input model is its own teacher (pruning and QAT learn from its logits; "
                    "distill.epochs=0 keeps the float model as given)")
            notes.append(note)  # printed with the results (after the fit checks)
    loaded = strip_final_softmax(loaded, log=log)
    if loaded.trainable_by_tfmot:
        recipe = _quantization_path(loaded.model, recipe, skipped)
    return loaded, recipe


RECURRENT_PTQ_REASON = ("recurrent layer(s) {names}: tfmot 0.8.1's 8-bit QAT does not support LSTM/GRU layers "
                        "(\"Layer ... is not supported\"); post-training INT8 instead, calibrated on the train data")


def _quantization_path(model, recipe: Recipe, skipped: dict) -> Recipe:
    """QAT where tfmot can, else post-training INT8 with the reason (printed with the skipped stages).

    Models with LSTM/GRU/Bidirectional layers are refused first, before any training, when a layer
    cannot become integer-only (`convert.check_recurrent`: one line naming it, exit 3).
    """
    from . import qat
    from .convert import check_recurrent, recurrent_layers

    names = recurrent_layers(model)
    if names:
        check_recurrent(model)
    if not recipe.stages.qat:
        return recipe
    if names:
        why = RECURRENT_PTQ_REASON.format(names=", ".join(repr(n) for n in names))
    else:
        try:
            qat.quantize_student(model, preserve_sparsity=False)
            return recipe
        except (InputError, ValueError, TypeError, RuntimeError) as exc:
            why = (f"tfmot cannot quantization-aware train this model ({str(exc).splitlines()[0][:160]}); "
                   "post-training INT8 instead, calibrated on the train data")
    skipped["qat"] = why
    return recipe.replace(stages=dataclasses.replace(recipe.stages, qat=False))


def _precheck_stages(model, recipe: Recipe, path) -> None:
    """Wrap a copy for pruning before any training, so an unsupported layer fails first. (QAT was
    tried already, by `_quantization_path` when the model was loaded: a model tfmot cannot
    quantization-aware train takes post-training INT8 instead, so it is not wrapped twice.)"""
    from . import prune

    if recipe.stages.prune and recipe.prune.target_sparsity > 0:
        try:
            prune.prune(model, recipe.prune, total_steps=10)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path}: unsupported layer for pruning ({str(exc).splitlines()[0][:200]}); "
                             "use a recipe without pruning, e.g. --recipe int8-default") from None


def _extra(opts: CompressOptions, loaded, teacher_desc, skipped, notes, train_n, eval_n, eval_source) -> dict:
    return {"compress": {
        "model": str(opts.model) if opts.model else "cnn (built-in)",
        "model_format": loaded.file_format if loaded else "built-in",
        "rebuilt_from_keras3": bool(loaded and loaded.rebuilt_from_keras3),
        "post_training_only": bool(loaded and not loaded.trainable_by_tfmot),
        "teacher": teacher_desc,
        "skipped": skipped,
        "notes": (loaded.notes if loaded else []) + notes,
        "data": {"train": str(opts.train), "eval": eval_source, "train_rows": train_n, "eval_rows": eval_n,
                 "calibration": str(opts.calibration) if opts.calibration else "stratified sample of train"},
    }}


# ---------------------------------------------------------------- text


def _compress_text(opts, recipe, teacher, model_is_file, cache_dir, skipped, notes, log, verbose):
    train = load_text_file(opts.train, opts.text_column, opts.label_column)
    if opts.eval is not None:
        ev = load_text_file(opts.eval, opts.text_column, opts.label_column)
        eval_source = str(opts.eval)
    else:
        tr_idx, ev_idx = holdout_split(train.labels, opts.eval_share, recipe.seed)
        train, ev = train.take(tr_idx), train.take(ev_idx)
        eval_source = f"stratified {opts.eval_share:.0%} holdout of train"
        log(f"data: no --eval; holding out {len(ev)} of the train rows for evaluation")
    label_names = _label_names(train.labels, opts.labels)
    if len(label_names) < 2:
        raise InputError(f"{opts.train}: needs at least 2 labels; found {len(label_names)}")
    _check_eval_labels(ev.labels, label_names, opts.eval or opts.train, log)
    calibration_texts = load_texts(opts.calibration, opts.text_column) if opts.calibration is not None else None
    val = ev.take(stratified_sample(ev.labels, VAL_ROWS, recipe.seed)) if len(ev) > VAL_ROWS else ev
    oos_label = opts.oos_label or OOS_LABEL
    if opts.oos_label is not None and oos_label not in label_names:
        raise InputError(f"--oos-label {oos_label!r}: no such label in {opts.train} (labels: {', '.join(label_names[:8])}"
                         f"{', ...' if len(label_names) > 8 else ''})")
    dataset = TextDataset(train, val, ev, tuple(label_names),
                          oos_label=oos_label if oos_label in label_names else None, name=opts.train.stem)
    log(f"data: {len(train)} train rows, {len(ev)} eval rows, {len(label_names)} labels")
    _check_logits_file(recipe, len(train), len(label_names))

    vocab = None
    student = None
    loaded = None
    if model_is_file:
        vocab = _read_vocab(opts.vocab)
        # The Keras 3 -> tf-keras equality check runs on random ids below the embedding's rows.
        loaded, recipe = _load_user_model(opts, recipe, None, skipped, notes, log)
        from .models import check_fits

        check_fits(loaded, "text", len(label_names), vocab_size=len(vocab))
        seq_len = loaded.input_shape[1]
        if seq_len is None:
            seq_len = recipe.tokenizer.sequence_length
            notes.append(f"the model takes any sequence length; using the recipe's {seq_len}")
        recipe = recipe.replace(tokenizer=dataclasses.replace(recipe.tokenizer, sequence_length=int(seq_len),
                                                              vocabulary_size=len(vocab)))
        student = loaded.model
        if loaded.trainable_by_tfmot:
            _precheck_stages(student, recipe, opts.model)
    else:
        family = opts.model or recipe.student.family
        recipe = recipe.replace(student=dataclasses.replace(recipe.student, family=family))

    if opts.fit_epochs_to_data:
        recipe = _fit_epochs(recipe, len(train), notes, log)
    extra = _extra(opts, loaded, _teacher_label(recipe.teacher if recipe.stages.distill else None),
                   skipped, notes, len(train), len(ev), eval_source)
    for line in skipped_lines(skipped):
        log(line)
    inputs = RunInputs(cache_dir=cache_dir, calibration=calibration_texts,
                       vocab=None if vocab is None else tuple(vocab), student=student, extra_report=extra, verbose=verbose,
                       unsafe=opts.unsafe)
    return run_pipeline(dataset, recipe, opts.out_dir, inputs, log)


def _teacher_label(teacher: TeacherConfig | None) -> str | None:
    if teacher is None:
        return None
    return teacher.kind if not teacher.model_path else f"{teacher.kind}: {teacher.model_path}"


# ---------------------------------------------------------------- arrays


def _compress_arrays(opts, recipe, cache_dir, skipped, notes, log, verbose):
    train = load_array_file(opts.train, allow_pickle=opts.unsafe)
    if opts.eval is not None:
        ev = load_array_file(opts.eval, allow_pickle=opts.unsafe)
        eval_source = str(opts.eval)
        if ev.x.shape[1:] != train.x.shape[1:]:
            raise InputError(f"{opts.eval}: rows of shape {ev.x.shape[1:]} differ from the train rows {train.x.shape[1:]}")
    else:
        tr_idx, ev_idx = holdout_split(train.y.tolist(), opts.eval_share, recipe.seed)
        train, ev = train.take(tr_idx), train.take(ev_idx)
        eval_source = f"stratified {opts.eval_share:.0%} holdout of train"
        log(f"data: no --eval; holding out {len(ev)} of the train rows for evaluation")
    if opts.labels is not None:
        label_names = _label_names([], opts.labels)
    else:
        label_names = list(train.label_names or [str(i) for i in range(int(train.y.max()) + 1)])
    if int(train.y.max()) >= len(label_names):
        raise InputError(f"{opts.train}: class id {int(train.y.max())} but only {len(label_names)} labels")
    train_ids, eval_ids = set(train.y.tolist()), set(ev.y.tolist())
    if not eval_ids <= train_ids:
        extra_ids = sorted(eval_ids - train_ids)
        raise InputError(f"{opts.eval or opts.train}: label set differs from train: eval class ids not in train: "
                         f"{', '.join(map(str, extra_ids[:5]))}")
    if ev.label_names and train.label_names and ev.label_names != train.label_names:
        raise InputError(f"{opts.eval}: label set differs from train: its 'labels' array names other classes")
    calibration = None
    if opts.calibration is not None:
        calibration = load_array_file(opts.calibration, need_labels=False, allow_pickle=opts.unsafe).x
        if calibration.shape[1:] != train.x.shape[1:]:
            raise InputError(f"{opts.calibration}: rows of shape {calibration.shape[1:]} differ from the train rows")
    log(f"data: {len(train)} train rows {train.x.shape[1:]}, {len(ev)} eval rows, {len(label_names)} labels")
    _check_logits_file(recipe, len(train), len(label_names))

    loaded, recipe = _load_user_model(opts, recipe, train.x[:32], skipped, notes, log)
    from .models import check_fits

    check_fits(loaded, "arrays", len(label_names), row_shape=train.x.shape[1:])
    if loaded.trainable_by_tfmot:
        _precheck_stages(loaded.model, recipe, opts.model)
    for line in skipped_lines(skipped):
        log(line)
    if opts.fit_epochs_to_data:
        recipe = _fit_epochs(recipe, len(train), notes, log)
    extra = _extra(opts, loaded, _teacher_label(None if not recipe.stages.distill else recipe.teacher),
                   skipped, notes, len(train), len(ev), eval_source)
    val = ev.take(stratified_sample(ev.y.tolist(), VAL_ROWS, recipe.seed)) if len(ev) > VAL_ROWS else ev
    dataset = ArrayDataset(train, val, ev, tuple(label_names), name=opts.train.stem)
    inputs = RunInputs(cache_dir=cache_dir, calibration=calibration, student=loaded.model, extra_report=extra,
                       verbose=verbose, unsafe=opts.unsafe)
    return run_pipeline(dataset, recipe, opts.out_dir, inputs, log)
