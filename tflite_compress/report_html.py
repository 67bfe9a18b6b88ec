"""One self-contained HTML page from one or more run folders: the figures a person looks at.

    load_run(run_dir) -> Run          (report.json, model_info.json, recipe.json; checked)
    render_html(runs, data=None)      -> str (every image an inline SVG data: URI; no network)
    write_report(run_dirs, out_path)  -> what was written
    write_report_html(run_dir)        -> run_dir/report.html (what the pipelines call)

Everything comes from the run's own measured data: report.json, and the `.tflite` file read
through the TF-free harness (sparsity per weight tensor, a fresh latency distribution, the
XNNPACK delegation summary). With `data` (labelled texts), the page also shows the most
confused intents and out-of-scope recall/precision against the rejection threshold, measured
in the interpreter on those rows. Stages this module does not know (a language-model run, a
future stage) are shown as tables of their figures, not dropped and not a crash.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import os
import shlex
from html import escape
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from . import svg_charts as charts
from .errors import InputError
from .files import atomic_write_text
from .runtime.interpreter import op_details

REPORT_FILE = "report.html"
# report.json carries no schema_version yet: one without is version 1.
REPORT_SCHEMA_VERSIONS = (1,)
STAGE_ORDER = ("teacher", "input", "float", "pruned", "qat", "int8")
STAGE_NAMES = {"teacher": "teacher", "input": "input model", "float": "float student", "pruned": "pruned",
               "qat": "QAT", "int8": "INT8 .tflite"}
LOWER_IS_BETTER = ("perplexity", "loss", "error")
LATENCY_RUNS = 300


@dataclasses.dataclass(frozen=True)
class Run:
    """A run folder's files, read and checked."""

    path: Path
    report: dict
    info: dict
    recipe: dict | None
    shown_path: Path | None = None  # where the folder will live (a staged run is still in a temp folder)

    @property
    def where(self) -> Path:
        return self.shown_path or self.path

    @property
    def name(self) -> str:
        return self.where.name

    @property
    def model_path(self) -> Path | None:
        p = self.path / str(self.info.get("model_file", "model_int8.tflite"))
        return p if p.is_file() else None

    @property
    def metric(self) -> str | None:
        return self.report["summary"].get("metric")


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from None


def load_run(run_dir: str | os.PathLike, shown_path: str | os.PathLike | None = None) -> Run:
    """Read a run folder (report.json required; model_info.json and recipe.json when present).

    Raises:
        InputError: not a folder, no report.json, or a report.json of another schema.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(f"{path}: not a folder (expected a run folder holding report.json)")
    report_path = path / "report.json"
    if not report_path.is_file():
        raise InputError(f"{path}: no report.json in it: not a tflite-compress run folder")
    report = _read_json(report_path)
    if not isinstance(report, dict):
        raise InputError(f"{report_path}: expected a JSON object, got {type(report).__name__}")
    version = report.get("schema_version", 1)
    if version not in REPORT_SCHEMA_VERSIONS:
        raise InputError(f"{report_path}: schema_version {version!r}; this tflite-compress ({__version__}) reads "
                         f"{', '.join(map(str, REPORT_SCHEMA_VERSIONS))}")
    for key in ("summary", "stages"):
        if not isinstance(report.get(key), dict):
            raise InputError(f"{report_path}: no {key!r} object: not a report.json of tflite-compress "
                             f"(or of another version; expected 'summary' and 'stages')")
    info: dict = {}
    if (path / "model_info.json").is_file():
        raw = _read_json(path / "model_info.json")
        if not isinstance(raw, dict):
            raise InputError(f"{path / 'model_info.json'}: expected a JSON object")
        info = raw
    recipe = None
    if (path / "recipe.json").is_file():
        raw = _read_json(path / "recipe.json")
        recipe = raw if isinstance(raw, dict) else None
    return Run(path, report, info, recipe, Path(shown_path) if shown_path is not None else None)


# ---------------------------------------------------------------- figures read from report.json

def _is_rate(metric: str | None) -> bool:
    return bool(metric) and not any(w in metric for w in LOWER_IS_BETTER)


def _fmt_metric(metric: str | None):
    if _is_rate(metric):
        return lambda v: f"{100 * v:.1f}%"
    return lambda v: f"{v:.3g}"


def _stage_metric(stage: dict, metric: str | None) -> float | None:
    """The stage's test figure for `metric` (test split first, then train, then the stage itself)."""
    if not metric or not isinstance(stage, dict):
        return None
    for split in ("test", "eval", "val", "train"):
        m = stage.get(split)
        if isinstance(m, dict) and isinstance(m.get(metric), (int, float)):
            return float(m[metric])
    v = stage.get(metric)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _stage_size(name: str, stage: dict) -> float | None:
    if isinstance(stage.get("size_bytes"), (int, float)):
        return float(stage["size_bytes"])
    if isinstance(stage.get("parameters"), (int, float)):
        return 4.0 * stage["parameters"]  # float32 weights
    return None


def _ordered_stages(report: dict) -> list[tuple[str, dict]]:
    stages = report["stages"]
    known = [(k, stages[k]) for k in STAGE_ORDER if isinstance(stages.get(k), dict)]
    rest = [(k, v) for k, v in stages.items() if k not in STAGE_ORDER and isinstance(v, dict)]
    # Unknown stages with a figure for the metric join the chart in report order, before the file.
    metric = report["summary"].get("metric")
    charted = [(k, v) for k, v in rest if _stage_metric(v, metric) is not None]
    if known and known[-1][0] == "int8":
        return known[:-1] + charted + known[-1:]
    return known + charted


def _scalars(d: dict, prefix: str = "", depth: int = 0) -> list[tuple[str, object]]:
    """Flat (key, value) rows of numbers, strings and booleans, one level of nesting deep."""
    rows: list[tuple[str, object]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, (int, float, str, bool)) or v is None:
            rows.append((key, v))
        elif isinstance(v, dict) and depth < 1 and len(v) <= 40:
            rows += _scalars(v, key + ".", depth + 1)
        elif isinstance(v, (list, dict)):
            rows.append((key, f"({len(v)} {'items' if isinstance(v, list) else 'keys'})"))
    return rows


def _fmt_value(v: object) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


# ---------------------------------------------------------------- figures measured from the file

def _file_sparsity(model_path: Path) -> list[tuple[str, float]]:
    """Sparsity of each constant weight tensor (2-D or more) in the file, read from the flatbuffer."""
    from .runtime.flatbuffer import parse_model
    from .runtime.inspection import describe

    content = model_path.read_bytes()
    desc = describe(parse_model(content, str(model_path)), content)
    rows = [(t["name"].split(";")[0], t["sparsity"]) for t in desc["tensors_by_size"]
            if t["sparsity"] is not None and len(t["shape"]) >= 2 and int(np.prod(t["shape"])) >= 64]
    return rows


def _interpreter_error(run: Run, trust_model: bool) -> str | None:
    """None when the file loads in this process safely; else why the interpreter sections are left out.

    An untrusted file is verified and loaded + invoked once in a child process first (as `bench` and
    `eval` do): a child that crashes or hangs is an `InputError`; a Python-level load error (a file of
    several signatures, Flex ops) only leaves the sections that need the interpreter out.
    """
    from .runtime._probe import probe_model
    from .runtime.flatbuffer import parse_model

    if run.model_path is None:
        return "no model file in the run folder"
    if trust_model:
        return None
    content = run.model_path.read_bytes()
    parse_model(content, str(run.model_path))
    probe = probe_model(content, str(run.model_path), threads=1, xnnpack=True)
    return None if probe.ok else f"{run.model_path}: the interpreter cannot load it ({probe.error})"


def _load_single(model_path: Path, xnnpack: bool = True):
    from .runtime import RuntimeOptions, TFLiteModel

    return TFLiteModel(model_path, RuntimeOptions(threads=1, xnnpack=xnnpack))


def _latency_samples(model, runs: int) -> np.ndarray:
    from .runtime import random_inputs
    from .runtime.interpreter import time_invokes_us

    # Random valid rows (token ids below the embedding's row count): an invoke's cost does not depend on them.
    batch = [model.quantize_input(random_inputs(model, 1, seed=k)) for k in range(8)]
    model.invoke_raw(batch[0])
    return time_invokes_us(model, batch, runs, max(10, runs // 10))


def _delegation(model_path: Path) -> dict:
    """Ops XNNPACK took and ops left to the builtin kernels, read from the node list.

    With a delegate applied the interpreter still lists every original node, plus one DELEGATE
    node per partition; a partition's nodes are those that produce its outputs, walked back to
    its inputs.
    """
    ops = op_details(_load_single(model_path, xnnpack=True).interpreter)
    producer = {int(t): op for op in ops if "DELEGATE" not in str(op["op_name"]) for t in op["outputs"]}
    delegated: set[int] = set()
    partitions = [op for op in ops if "DELEGATE" in str(op["op_name"])]
    for part in partitions:
        boundary = {int(t) for t in part["inputs"]}
        todo = [int(t) for t in part["outputs"]]
        while todo:
            op = producer.get(todo.pop())
            if op is None or op["index"] in delegated:
                continue
            delegated.add(op["index"])
            todo += [int(t) for t in op["inputs"] if int(t) >= 0 and int(t) not in boundary]
    original = [op for op in ops if "DELEGATE" not in str(op["op_name"])]
    counts: dict[str, int] = {}
    for op in original:
        if op["index"] not in delegated:
            counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return {"ops": len(original), "partitions": len(partitions), "delegated": len(delegated),
            "left_out": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}


def _data_scores(run: Run, data: Path) -> dict:
    """Run the file on labelled texts: true ids, predictions and (dequantized) logits."""
    from .data import TextSplit, load_text_file
    from .runtime import load_bundle

    bundle = load_bundle(run.model_path)
    if bundle.tokenizer is None or not bundle.labels:
        raise InputError(f"--data {data}: {run.path} is not a text classifier run (no tokenizer or labels.txt)")
    split = load_text_file(data)
    y = TextSplit(split.texts, split.labels).label_ids(bundle.labels, str(data))
    logits = bundle.model.predict(bundle.tokenizer.encode_batch(split.texts), batch_size=256).astype(np.float64)
    return {"y": y, "pred": logits.argmax(axis=1), "logits": logits, "labels": bundle.labels,
            "oos": bundle.labels.index(bundle.oos_label) if bundle.oos_label in bundle.labels else None}


def threshold_sweep(y: np.ndarray, pred: np.ndarray, score: np.ndarray, oos: int,
                    thresholds: Sequence[float]) -> dict:
    """Out-of-scope recall and precision, and in-scope accuracy, when score < t answers oos."""
    rows = {"threshold": [], "recall_out_of_scope": [], "precision_out_of_scope": [], "accuracy_in_scope": []}
    is_oos = y == oos
    for t in thresholds:
        answer = np.where(score < t, oos, pred)
        said_oos = answer == oos
        rows["threshold"].append(float(t))
        rows["recall_out_of_scope"].append(float(np.mean(said_oos[is_oos])) if is_oos.any() else 0.0)
        rows["precision_out_of_scope"].append(float(np.mean(is_oos[said_oos])) if said_oos.any() else 1.0)
        rows["accuracy_in_scope"].append(float(np.mean(answer[~is_oos] == y[~is_oos])) if (~is_oos).any() else 0.0)
    return rows


# ---------------------------------------------------------------- HTML

def _img(svg: str, alt: str) -> str:
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f"<img alt='{escape(alt, quote=True)}' src='data:image/svg+xml;base64,{data}'>"


def _table(head: Sequence[str] | None, rows: Sequence[Sequence[object]]) -> str:
    """A table of `rows` (escaped); `head=None` for a key/value table without a header."""
    if head is None:
        h = ""
    else:
        h = "<thead><tr>" + "".join(f"<th>{escape(str(c))}</th>" for c in head) + "</tr></thead>"
    b = "".join("<tr>" + "".join(f"<td>{escape(_fmt_value(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{h}<tbody>{b}</tbody></table>"


def _note(text: str) -> str:
    return f"<p class='note'>{escape(text)}</p>"


def _reproduce(run: Run) -> str:
    r = run.report
    if isinstance(r.get("command"), str):
        return r["command"]
    recipe = shlex.quote(str(run.where / "recipe.json")) if run.recipe is not None else shlex.quote(str(r.get("recipe")))
    c = r.get("compress")
    if isinstance(c, dict):
        data = c.get("data", {}) if isinstance(c.get("data"), dict) else {}
        parts = ["tflite-compress compress"]
        if c.get("model") and "built-in" not in str(c["model"]):
            parts.append(shlex.quote(str(c["model"])))
        parts.append(f"--train {shlex.quote(str(data.get('train', 'TRAIN')))}")
        if data.get("eval") and "holdout" not in str(data["eval"]):
            parts.append(f"--eval {shlex.quote(str(data['eval']))}")
        parts += [f"--recipe {recipe}", f"-o {shlex.quote(str(run.where))}"]
        return " ".join(parts)
    if r["summary"].get("dataset") == "clinc150":
        return (f"tflite-compress demo --name {shlex.quote(run.name)} --runs-dir {shlex.quote(str(run.where.parent))} "
                f"--recipe {recipe}")
    return f"(this report.json does not record its command; recipe: {r.get('recipe')})"


def _gates(run: Run) -> list[tuple[str, bool, str]]:
    """(gate, passed, detail) for every gate the report records, and the integer-only check."""
    out = []
    s = run.report["summary"]
    if "integer_only" in s:
        int8 = run.report["stages"].get("int8", {})
        n = len(int8.get("float_ops", [])) if isinstance(int8, dict) else 0
        out.append(("integer-only INT8 file", bool(s["integer_only"]), "no float op" if s["integer_only"] else f"{n} float ops"))
    for where in (run.report, s):
        for key in ("gate", "gates"):
            g = where.get(key)
            if isinstance(g, dict):
                for name, v in g.items():
                    if isinstance(v, dict) and "passed" in v:
                        detail = ", ".join(f"{k} {_fmt_value(x)}" for k, x in v.items() if k != "passed")
                        out.append((name, bool(v["passed"]), detail))
    return out


def _header(run: Run) -> str:
    r, s, info = run.report, run.report["summary"], run.info
    metric = run.metric
    fmt = _fmt_metric(metric)
    stages = r["stages"]
    student = stages.get("float", {}) if isinstance(stages.get("float"), dict) else {}
    teacher = stages.get("teacher", {}) if isinstance(stages.get("teacher"), dict) else {}
    int8 = stages.get("int8", {}) if isinstance(stages.get("int8"), dict) else {}
    test = int8.get("test", {}) if isinstance(int8.get("test"), dict) else {}
    what = [("task", info.get("task", "-")), ("model file", info.get("model_file", "-")),
            ("recipe", r.get("recipe", "-"))]
    if student.get("parameters"):
        what.append(("student", f"{student['parameters']:,} parameters"))
    if teacher:
        what.append(("teacher", f"{teacher.get('description', '-')}, {teacher.get('parameters', 0):,} parameters"))
    if info.get("num_labels"):
        what.append(("labels", f"{info['num_labels']}" + (f" (out-of-scope label '{info['oos_label']}')"
                                                          if info.get("oos_label") else "")))
    what.append(("data", f"{s.get('dataset', '-')}" + (f", {test['samples']:,} test rows" if "samples" in test else "")))
    rule = info.get("oos_rule")
    if isinstance(rule, dict):
        what.append(("out-of-scope rule", f"{rule.get('score', '?')} < {rule.get('threshold', '?')} -> "
                                          f"'{rule.get('label', info.get('oos_label', 'oos'))}'"))
    heads = []
    if metric and isinstance(s.get(f"int8_{metric}"), (int, float)):
        heads.append((f"INT8 {metric}", fmt(s[f"int8_{metric}"])))
    if metric and isinstance(s.get(f"float_{metric}"), (int, float)):
        heads.append((f"float {metric}", fmt(s[f"float_{metric}"])))
    if isinstance(s.get("drop_points"), (int, float)):
        heads.append(("drop vs float", f"{s['drop_points']:.2f} points"))
    if "recall_out_of_scope" in test:
        heads.append(("out-of-scope recall", f"{100 * test['recall_out_of_scope']:.1f}%"))
    if isinstance(s.get("size_bytes"), (int, float)):
        heads.append(("file size", f"{s['size_bytes'] / 1024:,.0f} KB" + (
            f" ({s['gzip_bytes'] / 1024:,.0f} KB gzip)" if isinstance(s.get("gzip_bytes"), (int, float)) else "")))
    lat = int8.get("latency") if isinstance(int8.get("latency"), dict) else {}
    if "invoke_us_p50" in lat:
        heads.append(("invoke p50 (batch 1)", f"{lat['invoke_us_p50']:,.0f} us"))
    if isinstance(s.get("size_ratio_teacher_to_student"), (int, float)):
        heads.append(("teacher / student size", f"{s['size_ratio_teacher_to_student']:,.0f}x"))
    for k, v in s.items():  # figures of other run kinds (perplexity, tokens/s, ...)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and any(w in k for w in ("perplexity", "tokens_per_s", "bleu", "rouge")):
            heads.append((k, _fmt_value(v)))
    cards = "".join(f"<div class='card'><div class='v'>{escape(v)}</div><div class='k'>{escape(k)}</div></div>"
                    for k, v in heads)
    gates = _gates(run)
    gate_html = "".join(f"<li class='{'pass' if ok else 'fail'}'>{'PASSED' if ok else 'MISSED'}: {escape(name)}"
                        f"{' (' + escape(detail) + ')' if detail else ''}</li>" for name, ok, detail in gates)
    return (f"<div class='cards'>{cards}</div>"
            + _table(None, what)
            + (f"<h3>Gates</h3><ul class='gates'>{gate_html}</ul>" if gates else _note("No gates were set for this run."))
            + f"<h3>Reproduce</h3><pre>{escape(_reproduce(run))}</pre>")


def _stage_section(run: Run) -> str:
    metric = run.metric
    fmt = _fmt_metric(metric)
    staged = _ordered_stages(run.report)
    points = [(STAGE_NAMES.get(k, k), _stage_metric(v, metric), _stage_size(k, v)) for k, v in staged]
    out = []
    if any(m is not None for _, m, _ in points):
        better = "higher is better" if _is_rate(metric) else "lower is better"
        out.append(_img(charts.stage_chart(f"{metric} by stage ({better}), size on the right", points, metric, fmt),
                        f"{metric} by stage"))
    else:
        out.append(_note(f"No stage reports a figure for the metric {metric!r}; the stages' figures are in the tables below."))
    rows = []
    for k, v in run.report["stages"].items():
        if not isinstance(v, dict):
            continue
        if _stage_metric(v, metric) is not None or _stage_size(k, v) is not None:
            rows.append((k, _stage_metric(v, metric), _stage_size(k, v)))
    out.append(_table(("stage", metric or "metric", "size bytes (file, or 4 x parameters)"),
                      [(k, "-" if m is None else fmt(m), "-" if s is None else f"{s:,.0f}") for k, m, s in rows]))
    return "".join(out)


def _sparsity_section(run: Run) -> str:
    int8 = run.report["stages"].get("int8", {})
    by_layer = int8.get("weight_sparsity_by_layer") if isinstance(int8, dict) else None
    items: list[tuple[str, float]]
    if isinstance(by_layer, dict) and by_layer:
        items = [(str(k), float(v)) for k, v in by_layer.items()]
        source = "zeros after quantization per Keras layer, measured in the .tflite by the harness (report.json)"
    elif run.model_path is not None:
        items = _file_sparsity(run.model_path)[:40]
        source = f"zeros per weight tensor of {run.model_path.name}, read from the flatbuffer now"
    else:
        return _note("No weight sparsity recorded and no model file in the run folder.")
    if not items:
        return _note("The file has no weight tensor of 64 or more elements.")
    return _img(charts.hbar_chart("Weight sparsity per layer", items, lambda v: f"{100 * v:.0f}%", vmax=1.0,
                                  note=source), "weight sparsity per layer")


def _quant_error_section(run: Run) -> str:
    int8 = run.report["stages"].get("int8", {})
    rows = int8.get("quantization_error_by_layer") if isinstance(int8, dict) else None
    if not isinstance(rows, list) or not rows:
        return _note("Not recorded in this run's report.json (stages.int8.quantization_error_by_layer, rows of "
                     "tflite_compress.debug.layer_errors: it needs the Keras model, which a run folder does not keep).")
    items = [(str(r.get("layer")), float(r.get("rmse_over_scale") or 0.0)) for r in rows if isinstance(r, dict)]
    return _img(charts.hbar_chart("Quantization error per layer (RMSE in quantization steps)", items,
                                  lambda v: f"{v:.2f}", color=charts.ORANGE), "quantization error per layer")


def _confusion_section(run: Run, scored: dict | None) -> str:
    metric = run.metric
    if scored is not None:
        y, pred, labels = scored["y"], scored["pred"], scored["labels"]
        pairs: dict[tuple[int, int], int] = {}
        for t, p in zip(y[y != pred], pred[y != pred]):
            pairs[(int(t), int(p))] = pairs.get((int(t), int(p)), 0) + 1
        worst = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
        items = [(f"{labels[t]} -> {labels[p]}", float(c)) for (t, p), c in worst]
        source = "the --data rows, in the interpreter now"
    else:
        int8 = run.report["stages"].get("int8", {})
        test = int8.get("test", {}) if isinstance(int8, dict) else {}
        mc = test.get("most_confused") if isinstance(test, dict) else None
        if not isinstance(mc, list) or not mc or not metric:
            return _note("No confusions recorded (not a classifier run, or no mistakes).")
        items = [(f"{c['true']} -> {c['predicted']}", float(c["count"])) for c in mc if isinstance(c, dict)]
        source = "the test split (report.json)"
    if not items:
        return _note("No mistakes on these rows.")
    return _img(charts.hbar_chart("Most confused pairs (true -> predicted)", items, lambda v: f"{v:.0f}",
                                  color=charts.RED, note=f"counts on {source}"), "most confused pairs")


def _oos_section(run: Run, scored: dict | None) -> str:
    rule = run.info.get("oos_rule") if isinstance(run.info.get("oos_rule"), dict) else None
    threshold = rule.get("threshold") if rule else None
    if scored is None or scored["oos"] is None:
        if rule:
            return _note(f"The run ships the rule {rule.get('score', '?')} < {threshold} -> out-of-scope; "
                         "pass --data (labelled texts with out-of-scope rows) to draw recall and precision against it.")
        if run.info.get("oos_label"):
            return _note("Pass --data (labelled texts with out-of-scope rows) to draw out-of-scope recall and "
                         "precision against a threshold on the rule's score.")
        return ""
    if not np.any(scored["y"] == scored["oos"]):
        return _note("The --data rows hold no out-of-scope example.")
    from .runtime.oos_rule import SCORES, rule_score

    kind = rule.get("score") if rule and rule.get("score") in SCORES else "max_softmax"
    score = rule_score(scored["logits"], kind)
    if kind == "max_softmax":
        ts = np.linspace(0.0, 1.0, 101)
    else:  # the score's own range, the shipped threshold inside it
        lo, hi = float(score.min()), float(score.max())
        if isinstance(threshold, (int, float)):
            lo, hi = min(lo, float(threshold)), max(hi, float(threshold))
        ts = np.linspace(lo, hi + 1e-9, 101)
    sweep = threshold_sweep(scored["y"], scored["pred"], score, scored["oos"], ts)
    vline = (f"shipped threshold {float(threshold):.3f}", float(threshold)) if isinstance(threshold, (int, float)) else None
    what = kind.replace("_", " ")
    img = _img(charts.line_chart(f"Out-of-scope rule: {what} < threshold answers out-of-scope", sweep["threshold"],
                                 [("out-of-scope recall", sweep["recall_out_of_scope"]),
                                  ("out-of-scope precision", sweep["precision_out_of_scope"]),
                                  ("in-scope accuracy", sweep["accuracy_in_scope"])],
                                 f"threshold on the {what} of the INT8 logits", "share", vline),
               "out-of-scope threshold sweep")
    if vline is None:
        img += _note("This run ships no rejection rule (model_info.json has no oos_rule): the curve shows what a threshold would trade.")
    return img


def _latency_section(run: Run, runs: int, error: str | None) -> str:
    out = []
    model = None
    if error is not None:
        out.append(_note(f"No latency distribution: {error} (files of several signatures: `tflite-compress bench`)."))
    else:
        try:
            model = _load_single(run.model_path)
        except InputError as exc:
            out.append(_note(f"No latency distribution: {str(exc).splitlines()[0]} "
                             "(files of several signatures: `tflite-compress bench`)."))
    if model is not None:
        times = _latency_samples(model, runs)
        p = {q: float(np.percentile(times, q)) for q in (50, 90, 99)}
        out.append(_img(charts.histogram_chart(
            f"invoke() latency, batch 1, 1 thread, XNNPACK {'on' if model.xnnpack_applied else 'off'} "
            f"({runs} runs on this machine)", times.tolist(), "microseconds",
            [("p50", p[50]), ("p90", p[90]), ("p99", p[99])]), "latency distribution"))
    int8 = run.report["stages"].get("int8", {})
    recorded = [(k, v) for k, v in (int8.get("latency", {}) if isinstance(int8, dict) else {}).items()]
    for k, v in run.report["summary"].items():
        if "tokens_per_s" in k or "latency" in k or k.endswith("_us"):
            recorded.append((k, v))
    if recorded:
        out.append("<p>Recorded in report.json when the run validated the file:</p>" + _table(("figure", "value"), recorded))
    return "".join(out)


def _delegation_section(run: Run, error: str | None) -> str:
    if error is not None:
        return _note(f"No delegation summary: {error}")
    try:
        d = _delegation(run.model_path)
    except InputError as exc:
        return _note(f"No delegation summary: {str(exc).splitlines()[0]}")
    img = _img(charts.hbar_chart("XNNPACK delegation (ops of the graph)",
                                 [("in the delegate", float(d["delegated"])),
                                  ("left to builtin kernels", float(sum(d["left_out"].values())))],
                                 lambda v: f"{v:.0f}", vmax=float(max(1, d["ops"])), color=charts.GREEN,
                                 note=f"{d['ops']} ops, {d['partitions']} delegate partitions"), "delegation summary")
    rows = [(k, v) for k, v in d["left_out"].items()]
    return img + (_table(("op left out of the delegate", "count"), rows) if rows else _note("Every op runs in the delegate."))


def _stage_tables(run: Run) -> str:
    out = []
    for name, stage in run.report["stages"].items():
        if not isinstance(stage, dict):
            out.append(f"<h4>{escape(str(name))}</h4>" + _note(_fmt_value(stage)))
            continue
        out.append(f"<details><summary>{escape(str(name))}</summary>{_table(('figure', 'value'), _scalars(stage))}</details>")
    timings = run.report.get("timings_s")
    if isinstance(timings, dict):
        out.append(f"<details><summary>timings (seconds)</summary>{_table(('stage', 's'), _scalars(timings))}</details>")
    return "".join(out)


def _pareto_section(runs: Sequence[Run]) -> str:
    pts = []
    metrics = {r.metric for r in runs}
    if len(metrics) != 1:
        return _note(f"The runs report different metrics ({', '.join(sorted(map(str, metrics)))}): no common chart.")
    metric = metrics.pop()
    for r in runs:
        s = r.report["summary"]
        v, size = s.get(f"int8_{metric}"), s.get("size_bytes")
        if isinstance(v, (int, float)) and isinstance(size, (int, float)):
            pts.append((r.name, float(size) / 1024, float(v)))
    if len(pts) < 2:
        return _note("Fewer than two runs report an INT8 figure and a size.")
    higher = _is_rate(metric)
    front = [i for i, (_, x, y) in enumerate(pts)
             if not any((x2 <= x and (y2 >= y if higher else y2 <= y)) and (x2, y2) != (x, y) for _, x2, y2 in pts)]
    fmt = _fmt_metric(metric)
    return _img(charts.scatter_chart(f"Size vs INT8 {metric} across runs (green: Pareto front)", pts,
                                     ".tflite size (KB)", metric, lambda v: f"{v:,.0f}", fmt, front), "size vs accuracy")


CSS = """
body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{margin-bottom:4px}h2{border-bottom:2px solid #3b6fb6;padding-bottom:4px;margin-top:36px}
.meta{color:#666}.note{color:#666;font-style:italic}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{border:1px solid #ccd;border-radius:6px;padding:8px 14px;min-width:140px;background:#f6f8fc}
.card .v{font-size:22px;font-weight:bold}.card .k{color:#555;font-size:12px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}
th{background:#f0f0f0}pre{background:#f4f4f4;padding:8px;white-space:pre-wrap;word-break:break-all}
.gates .pass{color:#2a7a3a}.gates .fail{color:#b02a1a;font-weight:bold}
.grid{display:flex;flex-wrap:wrap;gap:12px}img{max-width:100%;height:auto;border:1px solid #eee}
details{margin:4px 0}summary{cursor:pointer}
"""


def render_html(runs: Sequence[Run], data: str | os.PathLike | None = None, latency_runs: int = LATENCY_RUNS,
                trust_model: bool = False) -> str:
    """The page for `runs` (one section each, and a comparison when there are several).

    `trust_model=False` probes each run's `.tflite` in a child process before loading it here.
    """
    if not runs:
        raise InputError("report: no run folder given")
    data_path = Path(data) if data is not None else None
    parts = []
    title = runs[0].name if len(runs) == 1 else f"{len(runs)} runs: " + ", ".join(r.name for r in runs)
    if len(runs) > 1:
        parts.append("<h2>Size and accuracy across runs</h2>" + _pareto_section(runs))
        parts.append(_table(("run", "data", "recipe", runs[0].metric or "metric", "size KB", "integer-only"),
                            [(r.name, r.report["summary"].get("dataset", "-"), r.report.get("recipe", "-"),
                              _fmt_metric(r.metric)(r.report["summary"][f"int8_{r.metric}"])
                              if isinstance(r.report["summary"].get(f"int8_{r.metric}"), (int, float)) else "-",
                              f"{r.report['summary'].get('size_bytes', 0) / 1024:,.0f}",
                              r.report["summary"].get("integer_only", "-")) for r in runs]))
    for run in runs:
        error = _interpreter_error(run, trust_model)
        scored = None
        if data_path is not None:
            if error is not None:
                raise InputError(f"--data {data_path}: cannot run {error}")
            scored = _data_scores(run, data_path)
        h = "h1" if len(runs) == 1 else "h2"
        parts.append(f"<{h}>{escape(run.name)}</{h}><p class='meta'>{escape(str(run.where))}</p>")
        parts.append(_header(run))
        sections = [
            ("Where the accuracy went, stage by stage", _stage_section(run)),
            ("Weight sparsity per layer", _sparsity_section(run)),
            ("Quantization error per layer", _quant_error_section(run)),
            ("Most confused pairs", _confusion_section(run, scored)),
            ("Out-of-scope rejection", _oos_section(run, scored)),
            ("Latency", _latency_section(run, latency_runs, error)),
            ("Delegation", _delegation_section(run, error)),
            ("Every stage's figures", _stage_tables(run)),
        ]
        for head, body in sections:
            if body:
                parts.append(f"<h3>{escape(head)}</h3>{body}")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>tflite-compress report: {escape(title)}</title><style>{CSS}</style></head><body>"
            + "".join(parts)
            + f"<p class='meta'>Written by tflite-compress {escape(__version__)} on {stamp}"
            + (f"; --data {escape(str(data_path))}" if data_path else "") + ". No network: every image is inline.</p>"
            + "</body></html>\n")


def write_report(run_dirs: Sequence[str | os.PathLike], out_path: str | os.PathLike,
                 data: str | os.PathLike | None = None, latency_runs: int = LATENCY_RUNS,
                 shown_paths: Sequence[str | os.PathLike | None] | None = None, trust_model: bool = False) -> dict:
    """Render the runs into `out_path` (written whole or not at all); returns what was written."""
    shown = list(shown_paths) if shown_paths is not None else [None] * len(run_dirs)
    runs = [load_run(d, s) for d, s in zip(run_dirs, shown)]
    if data is not None and not Path(data).is_file():
        raise InputError(f"--data {data}: no such file")
    page = render_html(runs, data, latency_runs, trust_model)
    atomic_write_text(out_path, page)
    return {"out": str(out_path), "runs": [str(r.where) for r in runs], "bytes": len(page.encode("utf-8")),
            "images": page.count("<img "), "data": str(data) if data is not None else None}


def write_report_html(run_dir: str | os.PathLike, final_dir: str | os.PathLike | None = None) -> Path:
    """Write `run_dir/report.html` from the run folder's own files (what demo and compress call).

    `final_dir`: where a staged run folder will be renamed to (named on the page instead of the temp folder).
    """
    out = Path(run_dir) / REPORT_FILE
    write_report([run_dir], out, shown_paths=[final_dir], trust_model=True)  # the pipeline's own file
    return out
