"""The Android demo's side of the suite: export a run's INT8 model into the app, and write the
cross-language golden files that the JVM core (`android_demo/core`) is tested against.

numpy only (the interpreter comes from `tflite_compress.runtime`): no TensorFlow import.

    export_android(run_dir, app_dir)      run folder -> app/src/main/assets, checked as the app reads it
    write_golden(assets_dir, path)        texts -> token ids -> expected INT8 label (+ raw int8 rows,
                                          quantize/dequantize cases), for the JVM tests
    write_unicode_golden(path)            the tokenizer's per-code-point normalisation and classes
"""

from __future__ import annotations

import dataclasses
import json
import os
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import CLINC150_FILE, REPO_ROOT, load_clinc150, stratified_sample
from .errors import InputError
from .files import atomic_write_bytes, sha256_file
from .tokenizer import (
    TokenizerConfig, WordPieceTokenizer, _is_cjk, _is_punctuation, _is_whitespace, normalize, split_words,
)

SUPPORTED_SCHEMA_VERSIONS = (1,)
INFO_FILE = "model_info.json"
ANDROID_DIR = REPO_ROOT / "android_demo"
DEFAULT_APP_DIR = ANDROID_DIR / "app"
ASSETS_SUBDIR = Path("src") / "main" / "assets"
DEFAULT_GOLDEN = ANDROID_DIR / "golden" / "intent_golden.json"
UNICODE_GOLDEN_NAME = "unicode_classes.json"
GOLDEN_SCHEMA_VERSION = 1
DEFAULT_CLINC_CASES = 600
RAW_OUTPUT_CASES = 12
DEFAULT_OOS_CASES = 60  # CLINC150 oos_test utterances added for the out-of-scope rule
RULE_BOUNDARY_CASES = 20  # cases whose max softmax lies nearest the rule's threshold


# --------------------------------------------------------------------------------------------
# What the app reads, checked the way android_demo/core/ModelInfo.java checks it


@dataclasses.dataclass(frozen=True)
class AppAssets:
    """A checked set of app assets: the folder, model_info.json, and each file's size and sha256."""

    folder: Path
    info: dict
    files: dict[str, dict]

    @property
    def file_names(self) -> tuple[str, ...]:
        return tuple(self.files)

    def to_dict(self) -> dict:
        return {"folder": str(self.folder), "files": self.files,
                "sequence_length": self.info["sequence_length"], "num_labels": self.info["num_labels"],
                "output_quantization": self.info["output"]["quantization"]}


def _need(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise InputError(f"{path}: {msg}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_tensor(info_path: Path, info: dict, key: str, dtype: str) -> dict:
    t = info.get(key)
    _need(isinstance(t, dict), info_path, f"{key!r} must be an object with name, shape, dtype, quantization")
    _need(t.get("dtype") == dtype, info_path, f"{key}.dtype must be {dtype!r}, got {t.get('dtype')!r}")
    shape = t.get("shape")
    _need(isinstance(shape, list) and len(shape) >= 1 and all(_is_int(d) for d in shape), info_path,
          f"{key}.shape must be a list of integers, got {shape!r}")
    q = t.get("quantization")
    _need(isinstance(q, dict) and "scale" in q and "zero_point" in q, info_path,
          f"{key}.quantization must hold scale and zero_point, got {q!r}")
    _need(isinstance(q["scale"], (int, float)) and not isinstance(q["scale"], bool), info_path,
          f"{key}.quantization.scale must be a number, got {q['scale']!r}")
    _need(_is_int(q["zero_point"]), info_path, f"{key}.quantization.zero_point must be an integer, got {q['zero_point']!r}")
    return t


def read_model_info(info_path: Path) -> dict:
    """model_info.json, checked for what the app needs; InputError naming the file otherwise."""
    _need(info_path.is_file(), info_path, "not found (every run folder holds a model_info.json)")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{info_path}: not valid JSON ({exc})") from None
    _need(isinstance(info, dict), info_path, "expected a JSON object")
    version = info.get("schema_version")
    _need(version in SUPPORTED_SCHEMA_VERSIONS, info_path,
          f"schema_version {version!r} is not one the app reads ({', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))})")
    _need(info.get("task", "text_classification") == "text_classification", info_path,
          f"task must be 'text_classification', got {info.get('task')!r}")
    seq = info.get("sequence_length")
    _need(_is_int(seq) and seq > 0, info_path, f"sequence_length must be a positive integer, got {seq!r}")
    n = info.get("num_labels")
    _need(_is_int(n) and n > 0, info_path, f"num_labels must be a positive integer, got {n!r}")
    inp = _check_tensor(info_path, info, "input", "int32")
    out = _check_tensor(info_path, info, "output", "int8")
    scale, zp = out["quantization"]["scale"], out["quantization"]["zero_point"]
    _need(np.isfinite(scale) and scale > 0, info_path, f"output.quantization.scale must be > 0, got {scale!r}")
    _need(-128 <= zp <= 127, info_path, f"output.quantization.zero_point must be in [-128, 127], got {zp!r}")
    _need(inp["shape"][-1] == seq, info_path, f"input.shape {inp['shape']} does not end in sequence_length {seq}")
    _need(out["shape"][-1] == n, info_path, f"output.shape {out['shape']} does not end in num_labels {n}")
    tok = info.get("tokenizer")
    _need(isinstance(tok, dict), info_path, "'tokenizer' must be an object (TokenizerConfig.to_info())")
    _need(tok.get("type", "wordpiece") == "wordpiece", info_path, f"tokenizer.type must be 'wordpiece', got {tok.get('type')!r}")
    _need(tok.get("sequence_length") == seq, info_path,
          f"tokenizer.sequence_length {tok.get('sequence_length')!r} differs from sequence_length {seq}")
    _need(tok.get("truncation", "keep_first") == "keep_first" and tok.get("padding", "end") == "end", info_path,
          "the app supports truncation 'keep_first' and padding 'end' only")
    _need(tok.get("pad_id", 0) == 0 and tok.get("unk_id", 1) == 1, info_path, "tokenizer pad_id/unk_id must be 0/1")
    for key in ("model_file", "labels_file"):
        name = info.get(key, "")
        _need(isinstance(name, str) and name and "/" not in name and "\\" not in name, info_path,
              f"{key} must be a plain file name, got {name!r}")
    vocab_file = tok.get("vocab_file", "vocab.txt")
    _need(isinstance(vocab_file, str) and vocab_file and "/" not in vocab_file, info_path,
          f"tokenizer.vocab_file must be a plain file name, got {vocab_file!r}")
    if info.get("oos_rule") is not None:
        from .runtime.oos_rule import OOSRule

        OOSRule.from_info(info["oos_rule"], str(info_path))
    return info


def tokenizer_config(info: dict) -> TokenizerConfig:
    tok = info["tokenizer"]
    return TokenizerConfig(
        sequence_length=int(tok["sequence_length"]),
        lowercase=bool(tok.get("lowercase", True)),
        strip_accents=bool(tok.get("strip_accents", True)),
        suffix_indicator=str(tok.get("suffix_indicator", "##")),
        max_chars_per_word=int(tok.get("max_chars_per_word", 100)),
    )


def asset_names(info: dict) -> tuple[str, str, str, str]:
    """(model, vocab, labels, model_info) file names, as model_info.json names them."""
    return (info.get("model_file", "model_int8.tflite"), info["tokenizer"].get("vocab_file", "vocab.txt"),
            info.get("labels_file", "labels.txt"), INFO_FILE)


def check_app_assets(folder: str | os.PathLike, load_model: bool = True) -> AppAssets:
    """Check a folder of model files as the app reads them (see ModelInfo.java, IntentCore.java).

    model_info.json (schema version, sequence length, int32 input, int8 output with quantization
    parameters), vocab.txt ([PAD], [UNK] first, no duplicates), labels.txt (num_labels lines, the
    oos label among them) and the .tflite file, whose real tensors must agree with model_info.json.
    """
    folder = Path(folder)
    _need(folder.is_dir(), folder, "not a folder")
    info_path = folder / INFO_FILE
    info = read_model_info(info_path)
    model_name, vocab_name, labels_name, _ = asset_names(info)
    WordPieceTokenizer.from_file(folder / vocab_name, tokenizer_config(info))
    labels_path = folder / labels_name
    _need(labels_path.is_file(), labels_path, "labels file not found")
    try:
        labels = labels_path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{labels_path}: not UTF-8 text ({exc.reason})") from None
    _need(len(labels) == info["num_labels"], labels_path, f"{len(labels)} labels, but num_labels is {info['num_labels']}")
    _need(len(set(labels)) == len(labels), labels_path, "duplicate labels")
    oos = info.get("oos_label")
    _need(oos is None or oos in labels, labels_path, f"oos_label {oos!r} is not one of the labels")
    rule_label = (info.get("oos_rule") or {}).get("label")
    _need(rule_label is None or rule_label in labels, labels_path, f"oos_rule.label {rule_label!r} is not one of the labels")
    model_path = folder / model_name
    from .runtime.interpreter import RuntimeOptions, TFLiteModel, read_model_bytes, tensor_type_name

    read_model_bytes(model_path)  # exists and is a TFLite flatbuffer
    if load_model:
        model = TFLiteModel(model_path, RuntimeOptions(xnnpack=False))
        for key, t in (("input", model.input), ("output", model.output)):
            want = info[key]
            got_shape = [int(d) for d in t["shape"]]
            got_q = {"scale": float(t["quantization"][0]), "zero_point": int(t["quantization"][1])}
            _need(tensor_type_name(t["dtype"]) == want["dtype"] and got_shape == want["shape"], info_path,
                  f"{key} says {want['dtype']}{want['shape']}, but {model_name} has {tensor_type_name(t['dtype'])}{got_shape}")
            _need(got_q == want["quantization"], info_path,
                  f"{key}.quantization {want['quantization']} differs from {model_name}'s {got_q}")
    files = {}
    for name in asset_names(info):
        p = folder / name
        files[name] = {"size_bytes": p.stat().st_size, "sha256": sha256_file(p)}
    return AppAssets(folder, info, files)


def export_android(run_dir: str | os.PathLike, app_dir: str | os.PathLike = DEFAULT_APP_DIR) -> AppAssets:
    """Copy a run's INT8 model, vocab, labels and model_info.json into `app_dir/src/main/assets`.

    The run folder is checked first; each file is written to a temp file beside its target and
    renamed into place (model_info.json last), and the copies are checked again as the app
    will read them. Returns the checked assets.
    """
    run_dir = Path(run_dir)
    app_dir = Path(app_dir)
    _need(run_dir.is_dir(), run_dir, "run folder not found")
    source = check_app_assets(run_dir)
    _need(app_dir.is_dir(), app_dir, "app folder not found (expected android_demo/app or --app)")
    assets = app_dir / ASSETS_SUBDIR
    for name in asset_names(source.info):  # model_info.json comes last
        atomic_write_bytes(assets / name, (run_dir / name).read_bytes())
        os.chmod(assets / name, 0o644)
    copied = check_app_assets(assets)
    for name, meta in source.files.items():
        _need(copied.files[name]["sha256"] == meta["sha256"], assets / name, "copy differs from its source")
    return copied


# --------------------------------------------------------------------------------------------
# Golden files


def crafted_texts() -> list[str]:
    """Edge cases beyond CLINC150: casing, punctuation, digits, unknown words, accents, scripts,
    control and invisible characters, and inputs longer than the sequence length."""
    long_words = " ".join(["please", "transfer", "money", "from", "checking", "to", "savings"] * 12)
    return [
        "",
        "   ",
        "\t\n\r",
        "WHAT IS MY BALANCE",
        "What Is My BaLaNcE?!",
        "what's the weather like in paris, france?",
        "set an alarm for 7:30am!!!",
        "transfer $1,250.75 to account #12345-678",
        "call 555-0199 at 10pm",
        "i need 3 tickets for 2/14/2025...",
        "what's 15% of 250?",
        "book a table for 4 @ 8pm (please)",
        "\u201csmart quotes\u201d and \u2018apostrophes\u2019 \u2014 dashes\u2026",
        "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e na\u00efve r\u00e9sum\u00e9",
        "CAF\u00c9 \u00c0 LA CR\u00c8ME",
        "cafe\u0301 with a combining acute",
        "\u00c5ngstr\u00f6m \u212b \u00f1and\u00fa pi\u00f1a jalape\u00f1o",
        "stra\u00dfe gro\u00df \u1e9e",
        "\u0130stanbul D\u0130YARBAKIR \u0131\u0131",
        "\u039f\u0394\u039f\u03a3 \u039f\u0394\u039f\u03a3. \u03a3\u039f\u03a6\u0399\u0391",
        "\u00bd \u00b2 \u2460 \ufb01 \u2167 \uff21\uff22\uff23",
        "\u4eca\u5929\u5929\u6c14\u600e\u4e48\u6837",
        "what does \u6f22\u5b57 mean in english",
        "\u3053\u3093\u306b\u3061\u306f \u30ab\u30bf\u30ab\u30ca \ud55c\uad6d\uc5b4",
        "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u0928\u092e\u0938\u094d\u0924\u0947",
        "emoji \U0001f600 test \U0001f44d\U0001f3fd ok \u2764\ufe0f",
        "zero\u200bwidth\u200cjoiner\u200d and \ufeffbom",
        "soft\u00adhyphen and nbsp\u00a0here and\u2009thin\u3000ideographic",
        "tab\tnew\nline\r\nvertical\x0bform\x0cfeed",
        "control\x00nul\x07bell\x1bescape\x7fdel\x85nel",
        "replacement \ufffd char",
        "qwzxv blorptastic frobnicate xyzzy",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "a" * 99,
        "a" * 100,
        "b" * 101,
        "x" * 300,
        "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
        "!!!???...,,,;;;:::",
        "$^`~|\\<>{}[]_=+*&",
        "\u00bfd\u00f3nde est\u00e1 el ba\u00f1o?",
        "#hashtag @mention http://example.com/path?q=1&x=2",
        "e-mail: someone@example.org",
        "don't won't can't shouldn't",
        "1234567890 3.14159 -42 1e10 0x1f",
        "MiXeD123CaSe456",
        long_words,
        ("how do i " * 40).strip(),
        "what is the weather " + "very " * 50 + "today",
        "\U00020000\U0002a700 cjk ext b/c",
        "math \U0001d400\U0001d401 bold",
    ]


def golden_cases(data_path: str | os.PathLike = CLINC150_FILE, n_clinc: int = DEFAULT_CLINC_CASES,
                 seed: int = 0) -> list[dict]:
    """CLINC150 test utterances (stratified over intents and oos), a few of them varied
    (upper case, accents, punctuation, digits), then the crafted edge cases."""
    ds = load_clinc150(data_path)
    idx = stratified_sample(ds.test.labels, n_clinc, seed)
    cases = [{"source": "clinc150_test", "text": ds.test.texts[i], "true_label": ds.test.labels[i]} for i in idx]
    # Out-of-scope utterances, for the shipped oos rule: CLINC150 oos_test rows not picked above.
    picked = {ds.test.texts[i] for i in idx}
    oos_rows = [i for i, lab in enumerate(ds.test.labels) if lab == ds.oos_label and ds.test.texts[i] not in picked]
    rng = np.random.default_rng(seed)
    cases_oos = [{"source": "clinc150_oos", "text": ds.test.texts[i], "true_label": ds.test.labels[i]}
                 for i in sorted(rng.choice(oos_rows, min(DEFAULT_OOS_CASES, len(oos_rows)), replace=False))]
    accents = str.maketrans({"a": "\u00e1", "e": "\u00e9", "o": "\u00f6", "u": "\u00fc", "n": "\u00f1"})
    variants = [
        ("upper", str.upper), ("title", str.title), ("accented", lambda t: t.translate(accents)),
        ("punctuated", lambda t: f"\u00bf{t}?!... (ok)"), ("digits", lambda t: f"{t} 42 times at 9:15"),
        ("nbsp", lambda t: t.replace(" ", "\u00a0")), ("repeated", lambda t: " ".join([t] * 6)),
    ]
    for k, (name, fn) in enumerate(variants):
        for j in range(6):
            base = cases[(k * 37 + j * 11) % len(cases)]
            cases.append({"source": f"clinc150_test/{name}", "text": fn(base["text"]), "true_label": base["true_label"]})
    cases += cases_oos
    cases += [{"source": "crafted", "text": t, "true_label": None} for t in crafted_texts()]
    return cases


def quantize_int8(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """numpy's int8 quantization, the expression of `TFLiteModel.quantize_input` (float32 in)."""
    info = np.iinfo(np.int8)
    with np.errstate(over="ignore"):  # x / scale may overflow to inf, which clips to 127 / -128
        return np.clip(np.round(np.asarray(x, np.float32) / scale + zero_point), info.min, info.max).astype(np.int8)


def dequantize_int8(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """numpy's int8 dequantization, the expression of `TFLiteModel.dequantize_output`."""
    return (np.asarray(q, np.int8).astype(np.float32) - zero_point) * np.float32(scale)


def _bits(a: np.ndarray) -> list[int]:
    return [int(b) for b in np.asarray(a, np.float32).view(np.int32)]


def quantization_cases(output_scale: float, output_zero_point: int, seed: int = 0) -> list[dict]:
    """float32 inputs (as bit patterns) -> expected int8, and every int8 -> expected float32 bits,
    for the model's output parameters and a few others chosen to hit exact .5 ties."""
    rng = np.random.default_rng(seed)
    params = [(float(np.float32(output_scale)), int(output_zero_point)), (0.5, 0), (0.25, -3), (0.1, 7),
              (float(np.float32(1 / 3)), -128), (float(np.float32(0.0078125)), 127)]
    out = []
    for scale, zp in params:
        grid = (np.arange(-140, 141, dtype=np.float32) - zp) * np.float32(scale)
        ties = grid + np.float32(scale) / np.float32(2)
        xs = np.concatenate([
            grid, ties, -ties,
            rng.normal(0, 40 * scale, 300).astype(np.float32),
            np.array([0.0, -0.0, 1e-30, -1e-30, 1e6, -1e6, np.inf, -np.inf, 3.4e38, -3.4e38], np.float32),
        ]).astype(np.float32)
        q = np.arange(-128, 128, dtype=np.int8)
        out.append({
            "scale": scale, "zero_point": zp,
            "x_bits": _bits(xs), "quantized": [int(v) for v in quantize_int8(xs, scale, zp)],
            "q": [int(v) for v in q], "dequantized_bits": _bits(dequantize_int8(q, scale, zp)),
        })
    return out


def make_golden(assets_dir: str | os.PathLike, cases: Sequence[dict] | None = None, data_path=CLINC150_FILE) -> dict:
    """Run each case through the Python tokenizer and the INT8 model in `assets_dir`."""
    from .runtime.interpreter import RuntimeOptions, TFLiteModel
    from .runtime.oos_rule import OOSRule, max_softmax, rule_score

    assets = check_app_assets(assets_dir)
    folder = assets.folder
    info = assets.info
    model_name, vocab_name, labels_name, _ = asset_names(info)
    tok = WordPieceTokenizer.from_file(folder / vocab_name, tokenizer_config(info))
    labels = (folder / labels_name).read_text(encoding="utf-8").splitlines()
    model = TFLiteModel(folder / model_name, RuntimeOptions(xnnpack=False))
    cases = list(cases) if cases is not None else golden_cases(data_path)
    ids = tok.encode_batch([c["text"] for c in cases])
    raw = np.concatenate([model.invoke_raw(ids[i:i + 1]) for i in range(len(ids))]) if len(ids) else np.zeros((0, 0))
    scale, zp = info["output"]["quantization"]["scale"], info["output"]["quantization"]["zero_point"]
    rows = []
    rule = OOSRule.from_info(info["oos_rule"]) if info.get("oos_rule") else None
    deq_all = dequantize_int8(raw, scale, zp) if len(ids) else np.zeros((0, len(labels)), np.float32)
    msp = max_softmax(deq_all) if len(ids) else np.zeros(0)
    scores = rule_score(deq_all, rule.score) if rule is not None and len(ids) else msp  # what the rule thresholds
    for i, c in enumerate(cases):
        norm = normalize(c["text"], tok.config.lowercase, tok.config.strip_accents)
        pred = int(np.argmax(raw[i]))
        rows.append({
            "id": i, "source": c["source"], "text": c["text"], "normalized": norm, "words": split_words(norm),
            "n_tokens": len(tok.tokenize(c["text"])), "token_ids": [int(v) for v in ids[i]],
            "label": labels[pred], "label_index": pred, "true_label": c.get("true_label"),
        })
        if rule is not None:
            rows[-1]["label_rule"] = labels[int(rule.predict(deq_all[i:i + 1], labels)[0])]
            rows[-1]["max_softmax"] = float(msp[i])
    third = RAW_OUTPUT_CASES // 3  # a few from the start, the middle and the end (crafted cases)
    picks = sorted({i for i in [*range(third), *range(len(rows) // 2, len(rows) // 2 + third),
                                *range(len(rows) - third, len(rows))] if 0 <= i < len(rows)})
    raw_rows = []
    for i in picks:
        deq = dequantize_int8(raw[i], scale, zp)
        np.testing.assert_array_equal(deq, model.dequantize_output(raw[i:i + 1])[0])  # the harness's own formula
        raw_rows.append({"id": i, "int8": [int(v) for v in raw[i]], "dequantized_bits": _bits(deq),
                         "top3": [int(v) for v in np.argsort(-deq, kind="stable")[:3]]})
    rule_rows = []
    if rule is not None:
        # Every out-of-scope case, every case the rule changes, and the ones nearest the threshold.
        near = np.argsort(np.abs(scores - rule.threshold), kind="stable")[:RULE_BOUNDARY_CASES]
        chosen = sorted({i for i, r in enumerate(rows) if r["true_label"] == rule.label or r["label_rule"] != r["label"]}
                        | {int(i) for i in near})
        for i in chosen:
            rule_rows.append({"id": i, "int8": [int(v) for v in raw[i]], "max_softmax": float(msp[i]),
                              "score": float(scores[i]), "label_rule": rows[i]["label_rule"], "label": rows[i]["label"]})
    return {
        "schema_version": GOLDEN_SCHEMA_VERSION,
        "generated_by": "tflite_compress.android.write_golden",
        "about": "text -> token ids (Python tokenizer) -> label of the INT8 model (LiteRT builtin kernels "
                 "without XNNPACK, batch 1). JVM tests must reproduce normalized/words/token_ids exactly; a "
                 "Python test feeds the JVM ids back to the model and expects `label`.",
        "python_unicode_version": unicodedata.unidata_version,
        "assets": assets.files,
        "sequence_length": info["sequence_length"],
        "output_quantization": info["output"]["quantization"],
        "counts": {"cases": len(rows), "clinc150_test": sum(r["source"] == "clinc150_test" for r in rows),
                   "varied": sum(r["source"].startswith("clinc150_test/") for r in rows),
                   "clinc150_oos": sum(r["source"] == "clinc150_oos" for r in rows),
                   "crafted": sum(r["source"] == "crafted" for r in rows)},
        "cases": rows,
        "raw_outputs": raw_rows,
        **({"oos_rule": rule.to_info(), "rule_outputs": rule_rows} if rule is not None else {}),
        "quantization_cases": quantization_cases(scale, zp),
    }


def _cp_class(ch: str) -> str:
    if _is_whitespace(ch):
        return "W"
    if _is_punctuation(ch):
        return "P"
    if _is_cjk(ch):
        return "C"
    return "O"


def unicode_golden() -> dict:
    """Per code point (surrogates aside): normalize(ch) where it differs from ch, and the
    split class (W whitespace, P punctuation, C CJK, O other) as runs [start, class]."""
    changed = []
    runs: list[list] = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        n = normalize(ch)
        if n != ch:
            changed.append([cp, n])
        cls = _cp_class(ch)
        if not runs or runs[-1][1] != cls:
            runs.append([cp, cls])
    return {"schema_version": 1, "python_unicode_version": unicodedata.unidata_version,
            "about": "tokenizer.normalize(chr(cp)) where it differs from chr(cp), and split_words classes as runs",
            "normalize_changed": changed, "class_runs": runs}


def write_unicode_golden(path: str | os.PathLike) -> dict:
    g = unicode_golden()
    atomic_write_bytes(Path(path), (json.dumps(g, separators=(",", ":")) + "\n").encode("ascii"))
    os.chmod(path, 0o644)
    return g


def write_golden(assets_dir: str | os.PathLike, path: str | os.PathLike = DEFAULT_GOLDEN,
                 data_path=CLINC150_FILE, with_unicode: bool = True) -> dict:
    """Write the golden file (and, with `with_unicode`, unicode_classes.json beside it)."""
    golden = make_golden(assets_dir, data_path=data_path)
    path = Path(path)
    atomic_write_bytes(path, dump_golden(golden).encode("ascii"))
    os.chmod(path, 0o644)
    if with_unicode:
        write_unicode_golden(path.parent / UNICODE_GOLDEN_NAME)
    return golden


def dump_golden(golden: dict) -> str:
    """JSON with one top-level key a line and one list element (a case, a raw row) a line: diffable."""
    parts = []
    for key, value in golden.items():
        if isinstance(value, list):
            body = ",\n".join("  " + json.dumps(v, separators=(",", ":")) for v in value)
            parts.append(f"{json.dumps(key)}: [\n{body}\n]")
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value, separators=(',', ':'))}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _json_file(path: Path, missing: str):
    _need(path.is_file(), path, missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def read_jvm_ids(path: str | os.PathLike) -> dict:
    """The ids file the JVM tests write (android_demo/core/target/jvm_token_ids.json)."""
    path = Path(path)
    obj = _json_file(path, "JVM ids file not found (run: mvn -q -f android_demo/core test)")
    _need(isinstance(obj, dict) and isinstance(obj.get("token_ids"), list), path, "expected an object with token_ids")
    return obj


ARM64_LABEL_KEY = "label_arm64_xnnpack"


def read_golden(path: str | os.PathLike = DEFAULT_GOLDEN) -> dict:
    """The golden file, checked: a JSON object with a list of cases, each with text and label."""
    path = Path(path)
    golden = _json_file(path, "golden file not found")
    _need(isinstance(golden, dict) and isinstance(golden.get("cases"), list), path, "expected an object with cases")
    for c in golden["cases"]:
        _need(isinstance(c, dict) and isinstance(c.get("text"), str) and isinstance(c.get("label"), str), path,
              f"case {c.get('id') if isinstance(c, dict) else c!r}: expected text and label strings")
    return golden


def golden_eval_rows(golden: dict) -> list[dict]:
    """The golden cases as `eval --data` rows (JSONL): text, and the recorded label as the gold one."""
    return [{"text": c["text"], "label": c["label"]} for c in golden["cases"]]


def add_arm64_labels(path: str | os.PathLike, predictions: Sequence[dict], about: str) -> dict:
    """Record what ARM64 XNNPACK predicts for each golden case (`label_arm64_xnnpack`) and where it differs.

    `predictions` are the rows of `eval --predictions` on `golden_eval_rows` (same order). The file
    keeps `label` (x86 builtin kernels, what the Python and JVM tests check) and gains a top-level
    `arm64_xnnpack` block listing the case ids whose `label` differs from the phone's kernels.
    """
    path = Path(path)
    golden = read_golden(path)
    cases = golden["cases"]
    _need(len(predictions) == len(cases), path, f"{len(predictions)} ARM64 predictions for {len(cases)} cases")
    differs = []
    for c, p in zip(cases, predictions):
        _need(p.get("text") == c["text"], path, f"case {c['id']}: the ARM64 prediction is for another text")
        c[ARM64_LABEL_KEY] = p["predicted"]
        if p["predicted"] != c["label"]:
            differs.append(c["id"])
    block = {"about": f"{ARM64_LABEL_KEY}: top-1 of the same INT8 model on ARM64 kernels ({about}), as a phone's "
                      "CPU runs it; written by .ci/arm64_parity.py --write-golden (make arm64-golden).",
             "cases_where_label_differs": differs}
    out = {}
    for key, value in golden.items():
        if key == "cases":
            out["arm64_xnnpack"] = block
        if key != "arm64_xnnpack":
            out[key] = value
    atomic_write_bytes(path, dump_golden(out).encode("ascii"))
    os.chmod(path, 0o644)
    return out
