"""Labelled text data: CLINC150 (bundled under `calibration_data/`) and user files.

No TensorFlow here: the runtime harness reads data with this module too.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError

TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")

OOS_LABEL = "oos"
REPO_ROOT = Path(__file__).resolve().parent.parent
# Shipped inside the package (so an installed wheel has it); the checkout's `calibration_data/`
# is a link to this folder.
CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration_data"
CLINC150_FILE = CALIBRATION_DIR / "clinc150" / "data_full.json"


@dataclasses.dataclass(frozen=True)
class TextSplit:
    """Texts and their string labels."""

    texts: tuple[str, ...]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def label_ids(self, label_names: Sequence[str], source: str = "data") -> np.ndarray:
        index = {name: i for i, name in enumerate(label_names)}
        unknown = sorted({lab for lab in self.labels if lab not in index})
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5])
            more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
            raise InputError(
                f"{source}: labels not in the model's label set: {shown}{more}"
            )
        return np.array([index[lab] for lab in self.labels], dtype=np.int32)

    def take(self, indices: Sequence[int]) -> "TextSplit":
        return TextSplit(
            tuple(self.texts[i] for i in indices), tuple(self.labels[i] for i in indices)
        )


@dataclasses.dataclass(frozen=True)
class TextDataset:
    train: TextSplit
    val: TextSplit
    test: TextSplit
    label_names: tuple[str, ...]
    oos_label: str | None = OOS_LABEL
    name: str = "clinc150"


def _pairs(obj, key: str, path: Path) -> TextSplit:
    rows = obj.get(key)
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a list under key {key!r} of [text, intent] pairs")
    texts, labels = [], []
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 2 and all(isinstance(v, str) for v in row)):
            raise InputError(f"{path}: {key}[{i}] is not a [text, intent] pair of strings")
        texts.append(row[0])
        labels.append(row[1])
    return TextSplit(tuple(texts), tuple(labels))


def _read_json(path: Path):
    if not path.is_file():
        raise InputError(f"{path}: data file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def jsonl_rows(path, lines: Sequence[str]):
    """(line number, decoded value) of every non-blank JSON line; `InputError` naming the first bad line."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {n} is not JSON ({exc.msg})") from None


def load_clinc150(path: str | os.PathLike = CLINC150_FILE) -> TextDataset:
    """CLINC150 "full", oos-train scheme: out-of-scope is class `oos` in every split."""
    path = Path(path)
    obj = _read_json(path)
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a CLINC150 JSON object with train/val/test lists")
    splits = {}
    for split in ("train", "val", "test"):
        ins = _pairs(obj, split, path)
        oos = _pairs(obj, f"oos_{split}", path) if f"oos_{split}" in obj else TextSplit((), ())
        splits[split] = TextSplit(ins.texts + oos.texts, ins.labels + oos.labels)
    intents = sorted({lab for lab in splits["train"].labels if lab != OOS_LABEL})
    label_names = tuple(intents + ([OOS_LABEL] if OOS_LABEL in splits["train"].labels else []))
    return TextDataset(
        splits["train"], splits["val"], splits["test"], label_names,
        oos_label=OOS_LABEL if OOS_LABEL in label_names else None, name="clinc150",
    )


TEXT_COLUMNS = ("text", "utterance", "sentence", "query")
LABEL_COLUMNS = ("label", "intent", "category", "class")


def _pick(columns: Sequence[str], wanted: str | None, defaults: Sequence[str], what: str, path: Path) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise InputError(
                f"{path}: no {what} column {wanted!r}; columns found: {', '.join(columns)}"
            )
        return wanted
    for name in defaults:
        if name in columns:
            return name
    raise InputError(
        f"{path}: no {what} column (looked for {', '.join(defaults)}); "
        f"columns found: {', '.join(columns)}; name it with --{what}-column"
    )


def load_text_file(
    path: str | os.PathLike, text_column: str | None = None, label_column: str | None = None,
    clinc_split: str = "test",
) -> TextSplit:
    """Labelled texts from CSV, TSV, JSONL or a CLINC-style JSON (its `test` + `oos_test`, or
    another `clinc_split`: `val` + `oos_val`, ...)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: data file not found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        obj = _read_json(path)
        if isinstance(obj, dict) and clinc_split in obj:
            ins = _pairs(obj, clinc_split, path)
            oos = _pairs(obj, f"oos_{clinc_split}", path) if f"oos_{clinc_split}" in obj else TextSplit((), ())
            return TextSplit(ins.texts + oos.texts, ins.labels + oos.labels)
        raise InputError(f"{path}: JSON data must be CLINC-style (keys {clinc_split}/oos_{clinc_split}); use JSONL for rows")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    rows: list[dict] = []
    if suffix in (".jsonl", ".ndjson"):
        for n, row in jsonl_rows(path, raw.splitlines()):
            if not isinstance(row, dict):
                raise InputError(f"{path}: line {n} is not a JSON object")
            rows.append(row)
        columns = sorted({k for r in rows for k in r})
    elif suffix in (".csv", ".tsv", ".txt"):
        delimiter = "\t" if suffix == ".tsv" else ","
        reader = csv.DictReader(raw.splitlines(), delimiter=delimiter)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    else:
        raise InputError(f"{path}: unsupported data format {suffix!r} (expected .csv, .tsv, .jsonl or .json)")
    if not rows:
        raise InputError(f"{path}: no rows")
    tcol = _pick(columns, text_column, TEXT_COLUMNS, "text", path)
    lcol = _pick(columns, label_column, LABEL_COLUMNS, "label", path)
    texts, labels = [], []
    for n, row in enumerate(rows, 1):
        t, lab = row.get(tcol), row.get(lcol)
        if t is None or lab is None:
            raise InputError(f"{path}: row {n} lacks {tcol!r} or {lcol!r}")
        texts.append(str(t))
        labels.append(str(lab))
    return TextSplit(tuple(texts), tuple(labels))


def stratified_sample(labels: Sequence[str], n: int, seed: int = 0) -> np.ndarray:
    """Indices of up to `n` rows, spread over labels in proportion (round-robin per label)."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_label.setdefault(lab, []).append(i)
    queues = [list(rng.permutation(v)) for _, v in sorted(by_label.items())]
    out: list[int] = []
    while len(out) < min(n, len(labels)):
        for q in queues:
            if q and len(out) < n:
                out.append(int(q.pop()))
    return np.array(sorted(out), dtype=np.int64)


# ---------------------------------------------------------------- arrays (.npz) and unlabelled texts


@dataclasses.dataclass(frozen=True)
class ArraySplit:
    """Model input rows `x`, integer class ids `y` (None when unlabelled), optional class names."""

    x: np.ndarray
    y: np.ndarray | None
    label_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.x)

    def take(self, indices: Sequence[int]) -> "ArraySplit":
        idx = np.asarray(indices, dtype=np.int64)
        return ArraySplit(self.x[idx], None if self.y is None else self.y[idx], self.label_names)


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """Array rows (e.g. images) with integer class ids, split like `TextDataset`."""

    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    label_names: tuple[str, ...]
    oos_label: str | None = None
    name: str = "arrays"


def load_array_file(path: str | os.PathLike, need_labels: bool = True, allow_pickle: bool = False,
                    min_x_dims: int = 2) -> ArraySplit:
    """`x` (inputs, one row per sample) and `y` (integer class ids) from an `.npz`.

    An optional `labels` array of strings names the classes (`labels[i]` is class `i`). Object
    (pickled) arrays are refused unless `allow_pickle`: loading them runs stored code.
    `min_x_dims`: 2 for training data (samples, features...); the runtime harness takes 1 too,
    for models whose input is one scalar per sample.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: data file not found")
    if path.suffix.lower() != ".npz":
        raise InputError(f"{path}: array data must be an .npz with arrays x and y")
    try:
        with np.load(path, allow_pickle=allow_pickle) as f:
            keys = set(f.files)
            if "x" not in keys or (need_labels and "y" not in keys):
                raise InputError(f"{path}: an .npz needs arrays 'x' (inputs) and 'y' (class ids); found {', '.join(sorted(keys)) or 'none'}")
            x = f["x"]
            y = f["y"] if "y" in keys else None
            names = f["labels"] if "labels" in keys else None
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(f"{path}: holds pickled (object) arrays, which run code when loaded; "
                             "save numeric arrays, or pass --unsafe if you trust the file") from None
        raise InputError(f"{path}: not a readable .npz ({str(exc).splitlines()[0]})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npz ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if x.ndim < min_x_dims or x.dtype.kind not in "biuf":
        raise InputError(f"{path}: 'x' must be a numeric array of shape (samples, ...); got {x.dtype} {x.shape}")
    if len(x) == 0:
        raise InputError(f"{path}: no rows")
    if y is not None:
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise InputError(f"{path}: 'y' must be a 1-D array of integer class ids; got {y.dtype} {y.shape}")
        if len(y) != len(x):
            raise InputError(f"{path}: 'x' has {len(x)} rows but 'y' has {len(y)} labels")
        if y.min() < 0:
            raise InputError(f"{path}: class ids in 'y' must be >= 0; found {int(y.min())}")
        y = y.astype(np.int32)
    label_names = None
    if names is not None:
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise InputError(f"{path}: 'labels' must be a 1-D array of class names (strings)")
        label_names = tuple(str(n) for n in names)
        if y is not None and int(y.max()) >= len(label_names):
            raise InputError(f"{path}: 'y' has class id {int(y.max())} but 'labels' names only {len(label_names)} classes")
    if x.dtype.kind == "f" or x.dtype == np.float64:
        x = x.astype(np.float32)
    return ArraySplit(x, y, label_names)


def load_texts(path: str | os.PathLike, text_column: str | None = None) -> tuple[str, ...]:
    """Texts of a CSV/TSV/JSONL file (labels not needed), e.g. calibration samples; a .txt is one text a line."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise InputError(f"{path}: data file not found")
        texts = tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        if not texts:
            raise InputError(f"{path}: no rows")
        return texts
    try:
        return load_text_file(path, text_column, None).texts
    except InputError as exc:
        if "no label column" not in str(exc):
            raise
    # No label column: read the text column alone, with a dummy label column name.
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        columns = sorted({k for r in rows if isinstance(r, dict) for k in r})
    else:
        reader = csv.DictReader(path.read_text(encoding="utf-8").splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    tcol = _pick(columns, text_column, TEXT_COLUMNS, "text", path)
    return tuple(str(r.get(tcol, "")) for r in rows if isinstance(r, dict))


def holdout_split(labels: Sequence, share: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, eval indices): a stratified holdout of `share` of each label's rows."""
    rng = np.random.default_rng(seed)
    by_label: dict = {}
    for i, lab in enumerate(labels):
        by_label.setdefault(lab, []).append(i)
    train, held = [], []
    for _, rows in sorted(by_label.items(), key=lambda kv: str(kv[0])):
        rows = list(rng.permutation(rows))
        k = int(round(len(rows) * share)) if len(rows) > 1 else 0
        held += rows[:k]
        train += rows[k:]
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(held), dtype=np.int64)


def calibration_texts(path: str | os.PathLike, n: int, seed: int = 0) -> tuple[str, ...]:
    """Up to `n` calibration texts from a calibration folder or a file.

    A folder is read as `calibration_data/` is laid out (`clinc150/data_full.json` or
    `data_full.json`: its train split, sampled stratified by label); a file is any text
    file `load_texts` reads (sampled at random).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: calibration folder not found")
    if path.is_dir():
        found = next((c for c in (path / "clinc150" / "data_full.json", path / "data_full.json") if c.is_file()), None)
        if found is None:
            raise InputError(f"{path}: calibration folder holds no clinc150/data_full.json or data_full.json")
        train = load_clinc150(found).train
        idx = stratified_sample(train.labels, n, seed)
        return tuple(train.texts[i] for i in idx)
    texts = load_texts(path)
    rng = np.random.default_rng(seed)
    idx = sorted(rng.permutation(len(texts))[:n])
    return tuple(texts[i] for i in idx)


CHITCHAT_PACKAGE = "chitchat_dataset"
CHITCHAT_INSTALL = "pip install chitchat-dataset==0.9.0"


def chitchat_texts(count: int, seed: int = 0, min_words: int = 3, max_words: int = 20,
                   exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """`count` open-domain utterances of the Chit-Chat dataset (PyPI `chitchat-dataset`, MIT),
    for use as extra out-of-scope examples: one message each, `min_words`..`max_words` words,
    deduplicated (case-insensitively, and against `exclude`), sampled with `seed`."""
    import importlib.util
    import re

    spec = importlib.util.find_spec(CHITCHAT_PACKAGE)
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset.json" if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise InputError(f"out-of-scope negatives from Chit-Chat need the package chitchat-dataset; "
                         f"install it with: {CHITCHAT_INSTALL}")
    obj = json.loads(path.read_text(encoding="utf-8"))
    seen = {t.lower().strip() for t in exclude}
    pool = []
    for conv_id in sorted(obj):
        for turn in obj[conv_id].get("messages", []):
            for msg in turn:
                text = re.sub(r"\s+", " ", str(msg.get("text", ""))).strip()
                key = text.lower()
                if min_words <= len(text.split()) <= max_words and key not in seen:
                    seen.add(key)
                    pool.append(text)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
    return tuple(pool[i] for i in sorted(pick))


def mix_texts(texts: Sequence[str], labels: Sequence[str], count: int, seed: int = 0,
              skip_label: str | None = None) -> tuple[str, ...]:
    """`count` synthetic outliers: the first half of one text joined to the second half of a
    text from a different label (Zhan et al. 2021 mix texts of different intents and label them
    out-of-scope). Texts labelled `skip_label` are not used."""
    idx = [i for i, lab in enumerate(labels) if lab != skip_label]
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count and len(idx) > 1:
        a, b = (idx[int(j)] for j in rng.integers(0, len(idx), 2))
        if labels[a] == labels[b]:
            continue
        wa, wb = texts[a].split(), texts[b].split()
        out.append(" ".join(wa[: max(1, len(wa) // 2)] + wb[len(wb) // 2:]))
    return tuple(out)


def add_oos_negatives(dataset: TextDataset, config, seed: int = 0) -> tuple[TextDataset, dict]:
    """The dataset with extra out-of-scope train examples (`config`: an `OOSConfig`), labelled
    `dataset.oos_label`: Chit-Chat utterances and synthetic mixes of train texts. Unchanged (and
    an empty dict) when the data has no out-of-scope label or the config asks for none."""
    oos = dataset.oos_label
    if oos is None or oos not in dataset.label_names or not (config.chitchat_negatives or config.mix_negatives):
        return dataset, {}
    tr = dataset.train
    extra: tuple[str, ...] = ()
    counts = {}
    if config.chitchat_negatives:
        chat = chitchat_texts(config.chitchat_negatives, seed=seed,
                              exclude=tr.texts + dataset.val.texts + dataset.test.texts)
        extra += chat
        counts["chitchat"] = len(chat)
    if config.mix_negatives:
        mixes = mix_texts(tr.texts, tr.labels, config.mix_negatives, seed=seed, skip_label=oos)
        extra += mixes
        counts["mix"] = len(mixes)
    train = TextSplit(tr.texts + extra, tr.labels + (oos,) * len(extra))
    return dataclasses.replace(dataset, train=train), counts
