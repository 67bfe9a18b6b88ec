"""The JVM core's token ids, fed to the real INT8 model: every golden utterance gets its label.

`android_demo/core` (Java) tokenizes every golden utterance and writes the ids it produced to
android_demo/core/target/jvm_token_ids.json. This test runs `mvn -q -f android_demo/core test`
itself when that file is missing or stale (older than the Java sources, or made from another
golden file). Without Maven it skips, except under CI=true, where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from tflite_compress import android

CORE = android.ANDROID_DIR / "core"
IDS_FILE = CORE / "target" / "jvm_token_ids.json"
MAVEN_TIMEOUT_S = 900


def _sources_mtime() -> float:
    files = [CORE / "pom.xml", *(p for p in (CORE / "src").rglob("*") if p.is_file())]
    return max(p.stat().st_mtime for p in files)


def _stale_reason(golden_sha: str) -> str | None:
    if not IDS_FILE.is_file():
        return "missing"
    if IDS_FILE.stat().st_mtime < _sources_mtime():
        return "older than the Java sources"
    try:
        made_from = json.loads(IDS_FILE.read_text(encoding="utf-8")).get("golden_sha256")
    except json.JSONDecodeError:
        return "unreadable"
    return None if made_from == golden_sha else "made from another golden file"


def _run_maven() -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        message = "Maven (mvn) is not installed: cannot build android_demo/core"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: this check must run)")
        pytest.skip(message)
    proc = subprocess.run([mvn, "-q", "-B", "-f", str(CORE), "test"], capture_output=True, text=True,
                          timeout=MAVEN_TIMEOUT_S, cwd=android.REPO_ROOT)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        pytest.fail(f"mvn -q -f android_demo/core test failed (exit {proc.returncode}):\n{tail}")


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(android.DEFAULT_GOLDEN.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def jvm_ids(golden) -> dict:
    sha = android.sha256_file(android.DEFAULT_GOLDEN)
    reason = _stale_reason(sha)
    if reason is not None:
        _run_maven()
        reason = _stale_reason(sha)
        assert reason is None, f"{IDS_FILE} is still {reason} after the Maven run"
    return android.read_jvm_ids(IDS_FILE)


def test_jvm_ids_equal_python_ids(golden, jvm_ids):
    assert jvm_ids["cases"] == len(golden["cases"]) >= 500
    assert jvm_ids["mismatches"] == 0
    differ = [c["id"] for c, ids in zip(golden["cases"], jvm_ids["token_ids"]) if ids != c["token_ids"]]
    assert not differ, f"{len(differ)} cases where the JVM ids differ from Python's, e.g. {differ[:5]}"


def test_jvm_ids_give_the_golden_labels_on_the_int8_model(golden, jvm_ids):
    from tflite_compress.runtime import RuntimeOptions, TFLiteModel

    assets = android.DEFAULT_APP_DIR / android.ASSETS_SUBDIR
    checked = android.check_app_assets(assets)
    assert {k: v["sha256"] for k, v in checked.files.items()} == {k: v["sha256"] for k, v in golden["assets"].items()}
    labels = (assets / "labels.txt").read_text(encoding="utf-8").splitlines()
    model = TFLiteModel(assets / checked.info["model_file"], RuntimeOptions(xnnpack=False))
    ids = np.asarray(jvm_ids["token_ids"], dtype=np.int32)
    assert ids.shape == (len(golden["cases"]), golden["sequence_length"])
    rule = checked.info.get("oos_rule")
    if rule is not None:  # the golden file carries the shipped rule's answers, out-of-scope cases included
        from tflite_compress.runtime.oos_rule import OOSRule

        rule = OOSRule.from_info(rule)
        assert golden["oos_rule"] == rule.to_info() and golden["counts"]["clinc150_oos"] >= 30
    wrong = []
    for case, row in zip(golden["cases"], ids):
        out = model.predict(row[None, :])
        label = labels[int(np.argmax(out[0]))]
        if label != case["label"]:
            wrong.append((case["id"], case["text"][:40], label, case["label"]))
        if rule is not None and labels[int(rule.predict(out, labels)[0])] != case["label_rule"]:
            wrong.append((case["id"], case["text"][:40], "rule", case["label_rule"]))
    assert not wrong, f"{len(wrong)} of {len(ids)} labels differ from the golden file: {wrong[:5]}"
