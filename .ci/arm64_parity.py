"""ARM64 parity: the harness on ARM64 kernels (emulated) against x86, per prediction.

Runs `tflite-compress eval --predictions` with the committed Android demo model on
  - the Android golden utterances (android_demo/golden/intent_golden.json), and
  - the CLINC150 test split (calibration_data/clinc150/data_full.json: test + oos_test),
under this machine's Python (x86_64, XNNPACK) and under the emulated aarch64 Python of
`.ci/arm64_env.sh` (ai-edge-litert 1.4.0, XNNPACK's ARM64 kernels), then `compare`s the files:

  - golden: top-1 must match x86 on every case (a gate: exit 1), and must match the
    `label_arm64_xnnpack` the golden file records (`--write-golden` rewrites those instead);
  - CLINC150 test: agreement reported, each disagreement listed with both logit margins.

Speed under emulation means nothing here: only predictions are compared.
Usage: python .ci/arm64_parity.py --arm64-python CACHE/bin/python [--out runs/arm64_parity] [--write-golden]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "android_demo" / "app" / "src" / "main" / "assets"
GOLDEN = ROOT / "android_demo" / "golden" / "intent_golden.json"
CLINC = ROOT / "calibration_data" / "clinc150" / "data_full.json"
ARM64_PROBE_TIMEOUT_S = "600"  # the probe's child imports numpy + LiteRT under qemu: tens of seconds on a busy box


def cli(python: str, *args: str) -> list[str]:
    return [python, "-m", "tflite_compress.cli", *args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm64-python", required=True, help="the emulated aarch64 Python (.ci/arm64_env.sh prints it)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "arm64_parity")
    parser.add_argument("--model", type=Path, default=ASSETS / "model_int8.tflite")
    parser.add_argument("--golden", type=Path, default=GOLDEN)
    parser.add_argument("--data", type=Path, default=CLINC)
    parser.add_argument("--write-golden", action="store_true",
                        help="record the ARM64 labels in the golden file instead of checking them")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from tflite_compress.android import add_arm64_labels, golden_eval_rows, read_golden
    from tflite_compress.runtime.predictions import read_predictions

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    golden = read_golden(args.golden)
    golden_data = out / "golden.jsonl"
    golden_data.write_text("".join(json.dumps(r) + "\n" for r in golden_eval_rows(golden)), encoding="utf-8")
    host = sys.executable
    env = {"PYTHONPATH": str(ROOT)}
    jobs = {  # name -> command; all start at once (the ARM64 ones spend most of their time in qemu)
        # The golden runs use batch 1, as the app does.
        "golden_arm64": cli(args.arm64_python, "eval", str(args.model), "--data", str(golden_data), "--json", "--batch-size", "1",
                            "--predictions", str(out / "golden_arm64.jsonl"), "--probe-timeout", ARM64_PROBE_TIMEOUT_S),
        # The golden run probes the file on ARM64; this one skips a second emulated probe child.
        "clinc_arm64": cli(args.arm64_python, "eval", str(args.model), "--data", str(args.data), "--json",
                           "--predictions", str(out / "clinc_arm64.jsonl"), "--trust-model"),
        "golden_x86": cli(host, "eval", str(args.model), "--data", str(golden_data), "--json", "--batch-size", "1",
                          "--predictions", str(out / "golden_x86.jsonl")),
        "golden_x86_builtin": cli(host, "eval", str(args.model), "--data", str(golden_data), "--json", "--no-xnnpack", "--batch-size", "1",
                                  "--predictions", str(out / "golden_x86_builtin.jsonl")),
        "clinc_x86": cli(host, "eval", str(args.model), "--data", str(args.data), "--json",
                         "--predictions", str(out / "clinc_x86.jsonl")),
    }
    procs = {name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env})
             for name, cmd in jobs.items()}
    evals, seconds = {}, {}
    for name, proc in procs.items():  # started together: each one's wall time is measured from the start
        stdout, stderr = proc.communicate()
        seconds[name] = round(time.perf_counter() - t0, 1)
        if proc.returncode != 0:
            print(f"{name}: eval failed (exit {proc.returncode}): {stderr.decode(errors='replace').strip()[-2000:]}",
                  file=sys.stderr)
            return proc.returncode or 3
        evals[name] = json.loads(stdout)
    runtime = evals["golden_arm64"]["runtime"]
    if not runtime["xnnpack_applied"]:
        print("ARM64 run: XNNPACK was not applied", file=sys.stderr)
        return 3

    def compare(a: str, b: str, *gate: str) -> dict:
        proc = subprocess.run(cli(host, "compare", str(out / f"{a}.jsonl"), str(out / f"{b}.jsonl"), "--json", *gate),
                              capture_output=True, env={**os.environ, **env}, check=False)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"compare {a} {b}: {proc.stderr.decode(errors='replace').strip()}")
        return json.loads(proc.stdout)

    golden_cmp = compare("golden_x86", "golden_arm64", "--min-agreement", "1")
    reference_cmp = compare("golden_x86_builtin", "golden_arm64")
    clinc_cmp = compare("clinc_x86", "clinc_arm64")
    arm64_rows = read_predictions(out / "golden_arm64.jsonl")
    runtime_desc = f"{runtime['backend']} {runtime['backend_version']} on {runtime['machine']}"
    recorded_mismatch = []
    if args.write_golden:
        add_arm64_labels(args.golden, arm64_rows, about=f"{runtime_desc} (qemu-user), XNNPACK applied, batch 1")
    else:
        for case, row in zip(golden["cases"], arm64_rows):
            if case.get("label_arm64_xnnpack") != row["predicted"]:
                recorded_mismatch.append({"id": case["id"], "recorded": case.get("label_arm64_xnnpack"),
                                          "arm64": row["predicted"], "margin": row["margin"]})
    summary = {"model": str(args.model), "arm64_runtime": runtime, "golden": golden_cmp,
               "golden_builtin_x86_vs_arm64": reference_cmp, "clinc150_test": clinc_cmp,
               "golden_recorded_mismatch": recorded_mismatch,
               "accuracy": {k: {m: v[m] for m in ("accuracy_in_scope", "recall_out_of_scope") if m in v}
                            for k, v in evals.items()},
               "job_seconds": seconds, "seconds": round(time.perf_counter() - t0, 1)}
    (out / "parity.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(format_summary(summary))
    failed = (not golden_cmp["gate"]["passed"]) or bool(recorded_mismatch)
    return 1 if failed else 0


def format_summary(s: dict) -> str:
    lines = [(f"ARM64 parity of {s['model']} (aarch64 under qemu-user, {s['arm64_runtime']['backend']}, "
              f"XNNPACK {'applied' if s['arm64_runtime']['xnnpack_applied'] else 'not applied'}) vs x86_64"),
             f"  {'data':<34}{'rows':>6}{'top-1 agree':>13}{'differ':>8}"]
    for name, r in (("golden (x86 XNNPACK)", s["golden"]), ("golden (x86 builtin, = `label`)", s["golden_builtin_x86_vs_arm64"]),
                    ("CLINC150 test (x86 XNNPACK)", s["clinc150_test"])):
        lines.append(f"  {name:<34}{r['samples']:>6}{r['top1_agreement']:>13.4f}{len(r['disagreements']):>8}")
    for k, v in s["accuracy"].items():
        lines.append(f"  {k:<20} " + "  ".join(f"{m} {x:.4f}" for m, x in v.items()))
    for name in ("golden", "golden_builtin_x86_vs_arm64", "clinc150_test"):
        for d in s[name]["disagreements"]:
            lines.append(f"  differs [{name}] id {d['id']}: x86 {d['a']['predicted']} (margin {d['a']['margin']:.4f}) "
                         f"vs arm64 {d['b']['predicted']} (margin {d['b']['margin']:.4f})  {d['text']!r}")
    for m in s["golden_recorded_mismatch"]:
        lines.append(f"  golden file records {m['recorded']!r} for id {m['id']}, ARM64 now says {m['arm64']!r} "
                     "(after a new model: make arm64-golden)")
    lines.append("  wall s since start: " + ", ".join(f"{k} {v}" for k, v in s["job_seconds"].items()))
    g = s["golden"]["gate"]["min_agreement"]
    lines.append(f"  gate  golden top-1 agreement == 1: {'PASS' if g['passed'] else 'FAIL'}; recorded ARM64 labels: "
                 f"{'FAIL' if s['golden_recorded_mismatch'] else 'PASS'}   ({s['seconds']} s)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
