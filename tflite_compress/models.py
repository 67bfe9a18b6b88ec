"""User model files -> tf-keras models that tfmot can wrap, with safety checks first.

    read the file's config (no code runs) -> refuse unsafe parts -> load -> rebuild Keras 3 as
    tf-keras (config JSON + weights copied) -> check outputs equal -> fit to the data

Formats: tf-keras `.keras`, `.h5` and SavedModel folders load with tf-keras. A Keras 3 `.keras`
file (the default since TF 2.16) is rebuilt as a tf-keras model when every layer has a tf-keras
twin: its `config.json` is translated, the weights copied from the Keras 3 model, and both run on
sample inputs, which must agree. Without a twin the Keras 3 model itself is returned with
`trainable_by_tfmot=False`: the caller takes the post-training path (no pruning, no QAT).

Unsafe deserialization (Lambda layers, which carry marshalled Python bytecode, and pickles) is
refused unless `unsafe=True`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .runtime.interpreter import first_line

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill")
UNSAFE_CLASSES = ("Lambda",)
UNSAFE_HINT = "it runs stored Python code when loaded; pass --unsafe if you trust the file"


@dataclasses.dataclass
class LoadedModel:
    """A model ready for the pipeline, and how it was obtained."""

    model: Any  # a tf-keras Model, or a Keras 3 Model when `trainable_by_tfmot` is False
    path: Path
    file_format: str  # "keras3", "tf-keras", "h5", "savedmodel"
    trainable_by_tfmot: bool
    notes: list[str]
    rebuilt_from_keras3: bool = False
    max_abs_diff: float | None = None  # rebuilt vs original outputs on sample inputs
    softmax_removed: bool = False

    @property
    def input_shape(self) -> tuple:
        shape = self.model.inputs[0].shape
        return tuple(None if d is None else int(d) for d in shape)

    @property
    def input_dtype(self) -> str:
        dtype = self.model.inputs[0].dtype
        return getattr(dtype, "name", str(dtype))

    @property
    def num_outputs(self) -> int:
        return int(self.model.outputs[0].shape[-1])


# ---------------------------------------------------------------- reading configs (no code runs)


def keras_file_info(path: Path) -> tuple[str, dict]:
    """(`keras_version`, model config) of a `.keras` zip, read as JSON only."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise InputError(f"{path}: not a Keras model file (no config.json inside the .keras zip)")
            config = json.loads(z.read("config.json"))
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path}: not a readable .keras file ({exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: config.json inside is not valid JSON ({exc})") from None
    return str(meta.get("keras_version", "")), config


def _h5_config(path: Path) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 model file ({str(exc).splitlines()[0]})") from None
    if raw is None:
        raise InputError(f"{path}: holds weights only (no model_config); save the whole model with model.save(...)")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    return json.loads(raw)


def iter_layers(config: Any):
    """Every layer entry (dict with class_name and config) in a model config, nested models included."""
    if isinstance(config, dict):
        if "class_name" in config and isinstance(config.get("config"), dict):
            yield config
        for value in config.values():
            yield from iter_layers(value)
    elif isinstance(config, list):
        for value in config:
            yield from iter_layers(value)


def unsafe_parts(config: Any) -> list[str]:
    """Names of the parts of a config that would run stored code (Lambda layers, lambda functions)."""
    found = []
    for entry in iter_layers(config):
        if entry["class_name"] in UNSAFE_CLASSES:
            found.append(f"{entry['class_name']} layer {entry['config'].get('name', '?')!r}")
    text = json.dumps(config)
    if not found and ('"__lambda__"' in text or '"function_type": "lambda"' in text):
        found.append("a serialized Python lambda")
    return found


def _refuse_unsafe(path: Path, config: Any, unsafe: bool) -> None:
    parts = unsafe_parts(config)
    if parts and not unsafe:
        raise InputError(f"{path}: refused to load {', '.join(parts)}: {UNSAFE_HINT}")


# ---------------------------------------------------------------- loading


def load_model(path: str | os.PathLike, unsafe: bool = False, sample: np.ndarray | None = None,
               log=print) -> LoadedModel:
    """Load a user model file as a tf-keras model (Keras 3 files rebuilt), or say why it cannot be.

    Args:
        path: `.keras` (Keras 3 or tf-keras), `.h5`/`.hdf5` or a SavedModel folder.
        unsafe: allow Lambda layers (stored bytecode).
        sample: model inputs for the Keras 3 -> tf-keras equality check (random ones if None).
    Raises:
        InputError: missing, unsupported or unsafe file; a layer Keras cannot load.
    """
    from . import _tf  # noqa: F401 - TF_USE_LEGACY_KERAS before Keras 3 imports TensorFlow

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: model file not found")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(f"{path}: pickled models are not loaded ({UNSAFE_HINT.split(';')[0]}); "
                         "save the model with model.save('model.keras')")
    if path.is_dir():
        return _load_savedmodel(path, unsafe)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        config = _h5_config(path)
        _refuse_unsafe(path, config, unsafe)
        model = as_functional(_tf_keras_load(path, unsafe))
        return LoadedModel(model, path, "h5", True, [])
    if suffix == ".keras":
        version, config = keras_file_info(path)
        _refuse_unsafe(path, config, unsafe)
        if version.startswith("3"):
            return _load_keras3(path, config, unsafe, sample, log)
        model = as_functional(_tf_keras_load(path, unsafe))
        return LoadedModel(model, path, "tf-keras", True, [])
    raise InputError(f"{path}: unsupported model format {suffix!r} (expected .keras, .h5 or a SavedModel folder)")


def _tf_keras_load(path: Path, unsafe: bool):
    from ._tf import keras

    kwargs = {"compile": False}
    if path.suffix.lower() == ".keras":
        kwargs["safe_mode"] = not unsafe
    try:
        return keras.models.load_model(path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - Keras raises many kinds for a bad file
        raise InputError(f"{path}: cannot load it with tf-keras ({_unsupported_message(exc)})") from None


def _unsupported_message(exc: BaseException) -> str:
    msg = first_line(exc)
    if "Unknown layer" in msg or "Could not locate class" in msg or "could not be deserialized" in msg:
        return f"unsupported layer: {msg}"
    return msg


def _load_savedmodel(path: Path, unsafe: bool) -> LoadedModel:
    if not (path / "saved_model.pb").is_file():
        raise InputError(f"{path}: a folder given as model is not a SavedModel (no saved_model.pb)")
    meta = path / "keras_metadata.pb"
    if not meta.is_file():
        raise InputError(f"{path}: a SavedModel without Keras metadata (e.g. from Keras 3 model.export) cannot be "
                         "trained further; give the .keras file instead")
    raw = meta.read_bytes()
    if (b'"class_name": "Lambda"' in raw) and not unsafe:
        raise InputError(f"{path}: refused to load a Lambda layer: {UNSAFE_HINT}")
    model = as_functional(_tf_keras_load(path, unsafe))
    return LoadedModel(model, path, "savedmodel", True, [])


# ---------------------------------------------------------------- Keras 3 -> tf-keras


def foreign_layers(config: dict) -> list[str]:
    """Layers of a Keras 3 config whose class is not Keras's own (custom code, maybe not importable)."""
    out = []
    for entry in iter_layers(config):
        module = str(entry.get("module") or "")
        if module and not module.startswith(("keras", "keras_hub", "keras_nlp")) and entry["class_name"] != "__keras_tensor__":
            out.append(f"{entry['class_name']} (module {module})")
    return out


def _load_keras3_original(path: Path, unsafe: bool, config: dict | None = None):
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as exc:  # noqa: BLE001
        foreign = foreign_layers(config or {})
        if foreign:
            raise InputError(f"{path}: unsupported layer {', '.join(foreign)}: not a Keras layer, and its code is not "
                             "importable here") from None
        raise InputError(f"{path}: cannot load it with Keras 3 ({_unsupported_message(exc)})") from None


def _load_keras3(path: Path, config: dict, unsafe: bool, sample, log) -> LoadedModel:
    original = _load_keras3_original(path, unsafe, config)
    try:
        tfk_config, problems = keras3_config_to_tf_keras(config)
    except _NoTwin as exc:
        problems = [str(exc)]
    if problems:
        note = (f"Keras 3 model rebuilt only in part: {'; '.join(problems)}. Post-training path: pruning, QAT "
                "and distillation skipped (tfmot wraps tf-keras models only, model-optimization #1119)")
        log(f"model: {note}")
        return LoadedModel(original, path, "keras3", False, [note])
    model = _build_tf_keras(path, tfk_config)
    _copy_weights(path, original, model)
    diff = _max_output_diff(original, model, sample)
    scale = max(1.0, float(np.max(np.abs(np.asarray(original.predict(_sample_inputs(original, sample), verbose=0))))))
    if not diff <= 1e-4 * scale:
        note = (f"Keras 3 model rebuilt as tf-keras, but outputs differ by up to {diff:.3g} on sample inputs. "
                "Post-training path: pruning, QAT and distillation skipped")
        log(f"model: {note}")
        return LoadedModel(original, path, "keras3", False, [note], max_abs_diff=diff)
    note = f"Keras 3 model rebuilt as tf-keras ({len(model.layers)} layers, outputs equal to {diff:.1e})"
    log(f"model: {note}")
    return LoadedModel(model, path, "keras3", True, [note], rebuilt_from_keras3=True, max_abs_diff=diff)


class _NoTwin(Exception):
    pass


_BASE_LAYER_KWARGS = {"name", "dtype", "trainable", "input_shape", "batch_input_shape", "batch_size",
                      "input_dim", "dynamic", "autocast"}


def _accepted_kwargs(cls) -> tuple[set[str], bool]:
    names: set[str] = set()
    var_kw = False
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
        var_kw = True
    return names, var_kw


def _is_default(value) -> bool:
    return value is None or value is False or value == 0 or value == {} or value == [] or value == "" 


def _dtype_name(value):
    if isinstance(value, dict):
        return (value.get("config") or {}).get("name", "float32")
    return value


def _translate_object(value: Any, where: str):
    """A nested Keras 3 object (initializer, regularizer, constraint) as a tf-keras config."""
    from ._tf import keras

    if not (isinstance(value, dict) and "class_name" in value and "module" in value):
        return value
    module = str(value.get("module", ""))
    if module.startswith(("keras.layers", "keras.src.layers")):  # a wrapped layer (Bidirectional's LSTM)
        return _translate_layer(value)
    kind = module.rsplit(".", 1)[-1]
    target = {"initializers": keras.initializers, "regularizers": keras.regularizers,
              "constraints": keras.constraints}.get(kind)
    if target is None or value.get("registered_name") not in (None, value["class_name"]):
        raise _NoTwin(f"{where}: {module}.{value['class_name']} has no tf-keras twin")
    cls = getattr(target, value["class_name"], None)
    if cls is None:
        raise _NoTwin(f"{where}: {module}.{value['class_name']} has no tf-keras twin")
    accepted, _ = _accepted_kwargs(cls)
    cfg = {}
    for k, v in (value.get("config") or {}).items():
        if k in accepted:
            cfg[k] = v
        elif not _is_default(v):
            raise _NoTwin(f"{where}: {value['class_name']} option {k}={v!r} has no tf-keras twin")
    return {"class_name": value["class_name"], "config": cfg}


def _translate_layer(entry: dict) -> dict:
    from ._tf import keras

    cls_name = entry["class_name"]
    name = entry.get("name") or entry["config"].get("name", "?")
    module = str(entry.get("module", "keras.layers"))
    if cls_name in UNSAFE_CLASSES:
        raise _NoTwin(f"layer {name!r} ({cls_name}) holds Keras 3 Python code, which tf-keras cannot rebuild")
    if cls_name in ("Functional", "Sequential", "Model"):
        raise _NoTwin(f"layer {name!r} is a nested model (not rebuilt)")
    if not module.startswith(("keras.layers", "keras.src.layers")) or entry.get("registered_name") not in (None, cls_name):
        raise _NoTwin(f"layer {name!r} ({module}.{cls_name}) has no tf-keras twin")
    cls = getattr(keras.layers, cls_name, None)
    if cls is None:
        raise _NoTwin(f"layer {name!r} ({cls_name}) has no tf-keras twin")
    cfg = dict(entry["config"])
    if cls_name == "InputLayer":
        if "batch_shape" in cfg:
            cfg["batch_input_shape"] = cfg.pop("batch_shape")
        cfg.pop("optional", None)
    if "dtype" in cfg:
        cfg["dtype"] = _dtype_name(cfg["dtype"])
    accepted, var_kw = _accepted_kwargs(cls)
    if var_kw:
        accepted |= _BASE_LAYER_KWARGS
    out = {}
    for k, v in cfg.items():
        if k not in accepted:
            if _is_default(v):
                continue
            raise _NoTwin(f"layer {name!r} ({cls_name}): option {k}={v!r} has no tf-keras twin")
        out[k] = _translate_object(v, f"layer {name!r}")
    if cls_name == "MultiHeadAttention":
        # tf-keras's from_config pops the shapes it was built with (Keras 3 does not save them);
        # None builds the layer on its first call, as the rebuilt model makes it.
        for key in ("query_shape", "key_shape", "value_shape"):
            out.setdefault(key, None)
    return {"class_name": cls_name, "config": out}


def _history(obj) -> list:
    """keras_history [layer, node, tensor] of every Keras 3 tensor inside `obj`, in order."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return [list(obj["config"]["keras_history"])]
        out = []
        for v in obj.values():
            out += _history(v)
        return out
    if isinstance(obj, (list, tuple)):
        out = []
        for v in obj:
            out += _history(v)
        return out
    return []


def _translate_nodes(entry: dict) -> list:
    nodes = []
    for node in entry.get("inbound_nodes", []):
        if not isinstance(node, dict):
            raise _NoTwin(f"layer {entry.get('name')!r}: unknown node format")
        # A `mask` tensor is how Keras 3 records the mask of Embedding(mask_zero=True) or Masking:
        # tf-keras propagates that mask itself, so the argument is dropped (`_mask_only_layers`).
        # `training` is dropped too: Keras 3 records the value seen when the graph was built (False
        # for an LSTM/GRU) but its Functional model overrides it with the model's own `training` at
        # every call; kept in tf-keras it would pin the layer to inference, and tfmot's pruning
        # wrapper around it would never update its masks (the kernels would stay dense).
        given = {k: v for k, v in (node.get("kwargs") or {}).items() if k not in ("mask", "training")}
        kwargs = {k: v for k, v in given.items() if v is not None and not _history(v)}
        if any(_history(v) for v in given.values()):
            raise _NoTwin(f"layer {entry.get('name')!r}: tensor keyword arguments are not rebuilt")
        args = list(node.get("args", []))
        if len(args) > 1 and all(_is_tensor(a) for a in args):
            # Keras 3 records separate tensor arguments (MultiHeadAttention(query, value)); a tf-keras
            # node holds one input structure, the others go by name as [layer, node, tensor] kwargs.
            names = _call_arg_names(entry["class_name"])[1:]
            if len(args) - 1 > len(names):
                raise _NoTwin(f"layer {entry.get('name')!r}: {len(args)} tensor arguments, tf-keras takes fewer")
            kwargs.update({n: list(_history(a)[0]) for n, a in zip(names, args[1:])})
            args = args[:1]
        nodes.append([h + [kwargs] for h in _history(args)])
    return nodes


def _is_tensor(value) -> bool:
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _call_arg_names(cls_name: str) -> list[str]:
    """The tf-keras layer's `call` parameters, in order (without self)."""
    import inspect

    from ._tf import keras

    return [n for n in inspect.signature(getattr(keras.layers, cls_name).call).parameters if n != "self"]


def _mask_only_layers(entries: list) -> set[str]:
    """Layers whose outputs feed only `mask=` arguments (Keras 3's NotEqual(ids, 0) beside an
    Embedding with mask_zero=True): tf-keras computes those masks itself, so they are left out."""
    as_mask: set[str] = set()
    as_input: set[str] = set()
    for entry in entries:
        for node in entry.get("inbound_nodes", []) if isinstance(entry.get("inbound_nodes"), list) else []:
            if not isinstance(node, dict):
                continue
            for key, value in (node.get("kwargs") or {}).items():
                (as_mask if key == "mask" else as_input).update(h[0] for h in _history(value))
            as_input.update(h[0] for h in _history(node.get("args", [])))
    return {name for name in as_mask - as_input
            if any(e.get("name") == name and e["class_name"] in ("NotEqual", "Equal", "Masking") for e in entries)}


def keras3_config_to_tf_keras(config: dict) -> tuple[dict, list[str]]:
    """The tf-keras config of a Keras 3 Functional or Sequential config; problems found, if any."""
    cls_name = config.get("class_name")
    inner = config.get("config") or {}
    problems: list[str] = []
    layers = []
    mask_only = _mask_only_layers(inner.get("layers", []))
    for entry in inner.get("layers", []):
        if entry.get("name") in mask_only:
            continue
        try:
            translated = _translate_layer(entry)
        except _NoTwin as exc:
            problems.append(str(exc))
            continue
        if cls_name != "Sequential":
            translated["name"] = entry.get("name", translated["config"].get("name"))
            translated["inbound_nodes"] = _translate_nodes(entry)
        layers.append(translated)
    if cls_name == "Sequential":
        return {"class_name": "Sequential", "config": {"name": inner.get("name", "sequential"), "layers": layers}}, problems
    if cls_name not in ("Functional", "Model"):
        return {}, [f"model class {cls_name!r} (a subclassed model) has no config to rebuild from"]

    def refs(value):
        if value and isinstance(value[0], str):
            return [list(value)]
        return [list(v) for v in value]

    return {"class_name": "Functional", "config": {
        "name": inner.get("name", "model"), "layers": layers,
        "input_layers": refs(inner.get("input_layers", [])), "output_layers": refs(inner.get("output_layers", [])),
    }}, problems


def _build_tf_keras(path: Path, tfk_config: dict):
    from ._tf import keras

    try:
        if tfk_config["class_name"] == "Sequential":
            return as_functional(keras.Sequential.from_config(tfk_config["config"]))
        return keras.Model.from_config(tfk_config["config"])
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: cannot rebuild the Keras 3 model as tf-keras ({first_line(exc)})") from None


def as_functional(model):
    """A Sequential as a Functional model over the same layers: its InputLayer becomes visible in
    `model.layers`, which the QAT layout transform needs to leave integer (token-id) inputs alone."""
    from ._tf import keras

    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def _copy_weights(path: Path, original, model) -> None:
    by_name = {layer.name: layer for layer in model.layers}
    for layer in original.layers:
        weights = [np.asarray(w) for w in layer.get_weights()]
        if not weights:
            continue
        twin = by_name.get(layer.name)
        if twin is None:
            raise InputError(f"{path}: layer {layer.name!r} was lost in the rebuild")
        have = [tuple(w.shape) for w in twin.get_weights()]
        want = [tuple(w.shape) for w in weights]
        if have != want:
            raise InputError(f"{path}: layer {layer.name!r} weights {want} do not fit its tf-keras twin {have}")
        twin.set_weights(weights)


def _sample_inputs(model, sample: np.ndarray | None, n: int = 16) -> np.ndarray:
    want = tuple(None if d is None else int(d) for d in model.inputs[0].shape[1:])
    if sample is not None and len(np.shape(sample)[1:]) == len(want) and all(
            w is None or w == g for w, g in zip(want, np.shape(sample)[1:])):
        return np.asarray(sample)[:n]  # real rows when they fit; a misfit is reported by check_fits
    rng = np.random.default_rng(0)
    inp = model.inputs[0]
    shape = tuple(n if d is None else int(d) for d in inp.shape)
    dtype = getattr(inp.dtype, "name", str(inp.dtype))
    if "int" in dtype:
        high = 2
        for layer in model.layers:
            if type(layer).__name__ == "Embedding":
                high = int(layer.input_dim)
                break
        return rng.integers(0, high, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(np.float32)


def _max_output_diff(original, model, sample) -> float:
    x = _sample_inputs(original, sample)
    a = np.asarray(original.predict(x, verbose=0))
    b = np.asarray(model.predict(x, verbose=0))
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


# ---------------------------------------------------------------- fitting a model to the task


def strip_final_softmax(loaded: LoadedModel, log=print) -> LoadedModel:
    """A copy whose last layer outputs logits when it ended in softmax (argmax unchanged).

    Distillation and the int8 output scale both want logits; probabilities squeeze into a few
    int8 steps near 0 and 1.
    """
    if not loaded.trainable_by_tfmot:
        return loaded
    from ._tf import keras

    model = loaded.model
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    is_softmax_act = act is not None and getattr(act, "__name__", "") == "softmax"
    if isinstance(last, (keras.layers.Softmax,)) or (isinstance(last, keras.layers.Activation) and is_softmax_act):
        new = keras.Model(model.inputs, last.input, name=model.name)
    elif is_softmax_act and isinstance(last, keras.layers.Dense):
        def clone(layer):
            cfg = layer.get_config()
            if layer is last:
                cfg["activation"] = "linear"
            return layer.__class__.from_config(cfg)

        new = keras.models.clone_model(model, clone_function=clone)
        new.set_weights(model.get_weights())
    else:
        return loaded
    note = f"final softmax of layer {last.name!r} removed: the model outputs logits (same argmax)"
    log(f"model: {note}")
    return dataclasses.replace(loaded, model=new, notes=loaded.notes + [note], softmax_removed=True)


def check_fits(loaded: LoadedModel, kind: str, num_labels: int, row_shape: tuple | None = None,
               vocab_size: int | None = None) -> None:
    """Raise InputError when the model's input or output does not fit the data."""
    path = loaded.path
    if len(loaded.model.inputs) != 1 or len(loaded.model.outputs) != 1:
        raise InputError(f"{path}: the model has {len(loaded.model.inputs)} inputs and {len(loaded.model.outputs)} "
                         "outputs; one input and one output are supported")
    shape, dtype = loaded.input_shape, loaded.input_dtype
    out_shape = tuple(loaded.model.outputs[0].shape)
    if len(out_shape) != 2:
        raise InputError(f"{path}: the model outputs shape {out_shape}; a classifier outputs (batch, classes)")
    if kind == "text":
        if "int" not in dtype or len(shape) != 2:
            raise InputError(f"{path}: input {shape} {dtype} does not fit text data: a text model takes int token ids "
                             "of shape (batch, sequence_length)")
        emb = [lay for lay in loaded.model.layers if type(lay).__name__ == "Embedding"]
        if vocab_size is not None and emb and int(emb[0].input_dim) < vocab_size:
            raise InputError(f"{path}: its embedding has {emb[0].input_dim} rows, fewer than the {vocab_size} tokens of "
                             "the vocabulary: give the vocab.txt it was trained with (--vocab)")
    else:
        if tuple(shape[1:]) != tuple(row_shape):
            raise InputError(f"{path}: input shape {shape} does not fit the data rows of shape {tuple(row_shape)}")
    if out_shape[-1] != num_labels:
        raise InputError(f"{path}: the model outputs {out_shape[-1]} scores but the data has {num_labels} labels")
