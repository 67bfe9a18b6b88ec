"""Decode speed of a KV-cache LM file: tokens/s through the cache against re-running `score`
over a 64-token context, side by side in one run, batch 1; and the dialog session cache's saving.

    .venv/bin/python benchmarks/lm.py [MODEL ...] [--threads 1] [--dialogs 20] [--json FILE]

MODEL defaults to the files of `make demo-lm` (runs/chitchat-lm/*.tflite). Per file: prefill of
64 tokens (ms), decode tokens/s (64 steps after it, signature calls from Python, glue included),
score over 64 tokens (ms) and the ratio; XNNPACK on and off. Then, for the shipped model, 5-turn
test dialogs with the session cache (each turn prefills its new tokens) and without it (each turn
prefills the whole history): prefilled tokens and prefill time. No TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tflite_compress.runtime import RuntimeOptions  # noqa: E402
from tflite_compress.runtime.lm import LMFile, decode_speed, dialog_saving  # noqa: E402

RUN = ROOT / "runs" / "chitchat-lm"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dialogs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    models = args.models or sorted(p for p in RUN.glob("*.tflite"))
    if not models:
        print(f"no model files: run `make demo-lm` first (expected {RUN}/*.tflite)", file=sys.stderr)
        return 2
    rows = []
    print("wall time (best of --repeats), and CPU time of this process (the work itself on a loaded machine)")
    print(f"{'model':<24} {'xnnpack':>7} {'prefill64 ms':>12} {'decode tok/s':>12} {'score64 ms':>10} "
          f"{'speedup':>8} | {'cpu: decode tok/s':>17} {'score64 ms':>10} {'speedup':>8}")
    for path in models:
        for xnn in (True, False):
            m = LMFile(path, RuntimeOptions(threads=args.threads, xnnpack=xnn), vocab=path.parent / "vocab.txt")
            r = decode_speed(m, 64, 64, repeats=args.repeats)
            rows.append({"model": path.name, "xnnpack": xnn, "threads": args.threads, **r})
            print(f"{path.name:<24} {'on' if xnn else 'off':>7} {r['prefill_ms']:>12.3f} "
                  f"{r['decode_tokens_per_s']:>12,.0f} {r['score_ms']:>10.3f} {r['speedup_vs_score']:>7.1f}x | "
                  f"{r['decode_tokens_per_s_cpu']:>17,.0f} {r['score_ms_cpu']:>10.3f} {r['speedup_vs_score_cpu']:>7.1f}x")
    out = {"speed": rows}
    shipped = (models[0].parent / "model.tflite")
    if shipped.is_file() and args.dialogs:
        from tflite_compress.lm.corpus import load_eval

        convs = [c for c in load_eval("chitchat") if len(c) >= 5][: args.dialogs]
        d = dialog_saving(LMFile(shipped, RuntimeOptions(threads=args.threads)), convs, turns=5)
        out["dialog"] = d
        print(f"\ndialog session cache, {d['dialogs']} test dialogs x {d['turns']} turns ({shipped}):")
        print(f"  without the cache: {d['uncached']['prefilled_tokens']:,} tokens prefilled, "
              f"{1e3 * d['uncached']['prefill_s']:.1f} ms")
        print(f"  with the cache:    {d['cached']['prefilled_tokens']:,} tokens prefilled, "
              f"{1e3 * d['cached']['prefill_s']:.1f} ms ({d['cached']['resets']} context resets)")
        print(f"  saving: {d['token_ratio']:.2f}x fewer tokens, {d['time_ratio']:.2f}x less prefill time")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
