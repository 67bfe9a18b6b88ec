"""`tflite-compress report` and the report.html the pipelines write: rendered in headless Chromium.

The run folder is a real one (tiny data, no teacher, pruned, post-training INT8). Chromium is
Debian's `chromium` package (`make test` installs it when missing).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tflite_compress.cli import main

DECODE_CHECK = """<script>window.addEventListener('load', () => {
  for (const img of document.images) img.setAttribute('data-decoded', String(img.complete && img.naturalWidth > 0));
  document.body.setAttribute('data-images', String(document.images.length));
});</script>"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_clinc_file, tiny_recipe) -> Path:
    from tflite_compress.config import DistillConfig, PruneConfig, Stages
    from tflite_compress.data import load_clinc150
    from tflite_compress.pipeline import run_text_pipeline

    recipe = dataclasses.replace(tiny_recipe, name="tiny-no-teacher", stages=Stages(distill=False, qat=False),
                                 distill=DistillConfig(epochs=6, batch_size=32, learning_rate=5e-3),
                                 prune=PruneConfig(epochs=2, learning_rate=1e-3))
    runs = tmp_path_factory.mktemp("runs")
    result = run_text_pipeline(load_clinc150(tiny_clinc_file), recipe, runs / "tiny", runs / "cache",
                               log=lambda _: None, verbose=0)
    return result.out_dir


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Debian's chromium is needed to render the report (apt-get install chromium; `make test` does it)")
    return exe


def _browser(*args: str) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def _png_pixels(path: Path) -> np.ndarray:
    """RGB(A) pixels of an 8-bit, non-interlaced PNG (what Chromium writes), with zlib alone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and interlace == 0 and color in (2, 6), header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = np.zeros((height, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1).astype(np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 0xFF
        else:  # 1 (sub), 3 (average), 4 (Paeth) depend on the pixel to the left: go pixel by pixel
            cur = np.zeros(stride, dtype=np.int32)
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (line[i] + pred) & 0xFF
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)[:, :, :3]


def test_pipeline_writes_report_html_beside_report_json(run_dir):
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    report = json.loads((run_dir / "report.json").read_text())
    # Named after the final folder, not the temp folder it was written in.
    assert "<h1>tiny</h1>" in page and f"--name tiny --runs-dir {run_dir.parent}" in page
    assert ".tiny." not in page
    # Self-contained: nothing fetched (no script, stylesheet or image from elsewhere).
    assert not re.search(r"""(src|href)\s*=\s*['"](?!data:)""", page)
    assert "<script" not in page
    # The headline figure is the report's own.
    assert f"{100 * report['summary']['int8_accuracy_in_scope']:.1f}%" in page
    assert page.count("<img ") >= 6  # stages, sparsity, quantization error, confusions, latency, delegation
    rows = report["stages"]["int8"]["quantization_error_by_layer"]
    assert {"embedding", "hidden", "logits"} <= {r["layer"] for r in rows}
    assert "Quantization error per layer" in _svg_texts(page)


def test_report_renders_in_chromium_with_every_image_decoded(run_dir, tmp_path, tiny_clinc_file):
    # Two runs (the second with a shipped out-of-scope rule) and the test rows: every section draws.
    second = tmp_path / "tiny-rule"
    shutil.copytree(run_dir, second)
    info = json.loads((second / "model_info.json").read_text())
    info["oos_rule"] = {"score": "max_softmax", "threshold": 0.42, "label": "oos"}
    (second / "model_info.json").write_text(json.dumps(info))
    out = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["report", str(run_dir), str(second), "-o", str(out), "--data", str(tiny_clinc_file),
                                    "--latency-runs", "50", "--json"])
    assert res.exit_code == 0, res.output
    written = json.loads(res.output)
    page = out.read_text(encoding="utf-8")
    assert written["images"] == page.count("<img ") >= 12
    # the first run ships the default rule (max_logit), the second a max_softmax one: each sweep is on its own score
    first_rule = json.loads((run_dir / "model_info.json").read_text())["oos_rule"]
    assert first_rule["score"] == "max_logit"
    for title in ("Size vs INT8 accuracy_in_scope across runs", "Out-of-scope rule: max logit",
                  "Out-of-scope rule: max softmax", "shipped threshold 0.420",
                  f"shipped threshold {first_rule['threshold']:.3f}",
                  "Most confused pairs", "invoke() latency", "XNNPACK delegation"):
        assert title in page or title in _svg_texts(page), title

    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", DECODE_CHECK + "</body>"), encoding="utf-8")
    dom = _browser("--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    assert f'data-images="{written["images"]}"' in dom
    assert dom.count('data-decoded="true"') == written["images"], re.findall(r'alt="([^"]*)" [^>]*data-decoded="false"', dom)

    shot = tmp_path / "report.png"
    _browser("--window-size=1200,2400", f"--screenshot={shot}", out.as_uri())
    px = _png_pixels(shot)
    assert px.shape[:2] == (2400, 1200)
    not_white = np.any(px < 235, axis=2)
    assert not_white.mean() > 0.03, "the screenshot is (nearly) blank"
    # The blue of the bars is there: the charts were painted, not only text.
    blue = (np.abs(px[:, :, 0] - 0x3B) < 30) & (np.abs(px[:, :, 1] - 0x6F) < 30) & (np.abs(px[:, :, 2] - 0xB6) < 30)
    assert blue.sum() > 2000


def _svg_texts(page: str) -> str:
    import base64

    return " ".join(base64.b64decode(m).decode("utf-8") for m in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", page))


def test_unknown_stages_and_another_metric_render_as_tables(run_dir, tmp_path):
    """A language-model run (or any stage added later) renders: its stages as tables, its metric charted."""
    lm = tmp_path / "lm-run"
    shutil.copytree(run_dir, lm)
    report = json.loads((lm / "report.json").read_text())
    report["summary"] = {"dataset": "chitchat", "metric": "perplexity", "int8_perplexity": 41.5, "size_bytes": 900_000,
                         "decode_tokens_per_s": 1850.0}
    report["stages"]["bigram_reference"] = {"test": {"perplexity": 160.0}}
    report["stages"]["int8"]["test"]["perplexity"] = 41.5
    report["stages"]["generation"] = {"bleu": 1.9, "rouge_l": 0.08, "samples": ["hi there", "ok"]}
    report["stages"]["odd"] = "not an object"
    (lm / "report.json").write_text(json.dumps(report))
    out = tmp_path / "lm.html"
    res = CliRunner().invoke(main, ["report", str(lm), "-o", str(out), "--latency-runs", "10"])
    assert res.exit_code == 0, res.output
    page = out.read_text(encoding="utf-8")
    assert "<summary>generation</summary>" in page and "rouge_l" in page and "not an object" in page
    assert "perplexity by stage (lower is better)" in _svg_texts(page)
    assert "bigram_reference" in _svg_texts(page)  # an unknown stage with the metric joins the chart
    assert "decode_tokens_per_s" in page


@pytest.mark.parametrize("breakage, expected", [
    ("no_report", "no report.json in it"),
    ("not_json", "report.json: not valid JSON"),
    ("other_schema", "report.json: schema_version 2; this tflite-compress"),
    ("no_stages", "no 'stages' object"),
    ("bad_info", "model_info.json: not valid JSON"),
    ("corrupt_model", "model_int8.tflite"),
])
def test_bad_run_folders_exit_2_with_one_line(run_dir, tmp_path, breakage, expected):
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    report = json.loads((bad / "report.json").read_text())
    if breakage == "no_report":
        (bad / "report.json").unlink()
    elif breakage == "not_json":
        (bad / "report.json").write_text("{ not json")
    elif breakage == "other_schema":
        (bad / "report.json").write_text(json.dumps({**report, "schema_version": 2}))
    elif breakage == "no_stages":
        (bad / "report.json").write_text(json.dumps({"summary": report["summary"]}))
    elif breakage == "bad_info":
        (bad / "model_info.json").write_text("[")
    else:
        (bad / "model_int8.tflite").write_bytes(b"TFL3" + bytes(range(256)) * 4)
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", str(run_dir), str(bad), "-o", str(out)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(bad) in lines[0], lines
    assert not out.exists() and not list(tmp_path.glob(".r.html*"))


def test_a_folder_that_is_no_run_and_bad_data_exit_2(run_dir, tmp_path):
    res = CliRunner().invoke(main, ["report", str(tmp_path / "missing"), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "not a folder" in res.output
    res = CliRunner().invoke(main, ["report", str(run_dir), "--data", str(tmp_path / "none.csv"), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "--data" in res.output and "no such file" in res.output
    assert not (tmp_path / "r.html").exists()


def test_threshold_sweep_counts():
    from tflite_compress.report_html import threshold_sweep

    oos = 2
    y = np.array([0, 1, 2, 2])
    pred = np.array([0, 0, 1, 2])
    score = np.array([0.9, 0.4, 0.3, 0.8])
    s = threshold_sweep(y, pred, score, oos, [0.0, 0.5, 1.0])
    # t=0: nothing rejected; oos recall 1/2 (row 3), precision 1/1, in-scope accuracy 1/2.
    # t=0.5: rows 1 and 2 become oos: recall 2/2, precision 2/3, in-scope accuracy 1/2.
    # t=1: every row says oos: recall 1, precision 2/4, in-scope accuracy 0.
    assert s["recall_out_of_scope"] == [0.5, 1.0, 1.0]
    assert s["precision_out_of_scope"] == pytest.approx([1.0, 2 / 3, 0.5])
    assert s["accuracy_in_scope"] == [0.5, 0.5, 0.0]


def test_delegation_summary_accounts_for_every_op(run_dir):
    from tflite_compress.report_html import _delegation

    d = _delegation(run_dir / "model_int8.tflite")
    report = json.loads((run_dir / "report.json").read_text())
    assert d["ops"] == len(report["stages"]["int8"]["ops"])
    assert d["delegated"] + sum(d["left_out"].values()) == d["ops"]
    assert d["partitions"] >= 1 and d["delegated"] >= 1
    assert "GATHER" in d["left_out"]  # XNNPACK never takes the embedding lookup
    assert "FULLY_CONNECTED" not in d["left_out"]


def test_the_report_needs_no_tensorflow(run_dir, tmp_path):
    code = ("import sys; from tflite_compress.report_html import write_report; "
            f"write_report([{str(run_dir)!r}], {str(tmp_path / 'r.html')!r}, latency_runs=10); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "r.html").is_file()
