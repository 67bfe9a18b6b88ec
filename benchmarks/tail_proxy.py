"""Pruning and QAT schedules from one float student: the INT8 file's figures, val beside test.

    .venv/bin/python benchmarks/tail_proxy.py [VARIANT ...] [--recipe=NAME] [--seeds=0,1,2]

VARIANT: `base` (the recipe as is) or `section.key=JSON[;section.key=JSON...]` changes of the
prune, qat or convert sections, e.g. `prune.epochs=2;qat.epochs=2`. The demo's data, tokenizer and
(cached) teacher run once, as the pipeline runs them (with the recipe's seed: the augmented copies
and the teacher stay); for each student seed the float student is trained once; then each variant runs the pipeline's own prune, QAT, convert and validate stages from that same
float student, in a scratch folder under /tmp. Printed per variant and seed: the INT8 file's
in-scope accuracy by arg-max and the accuracy over all classes under its val-chosen rule on val
(which choose), in-scope accuracy and out-of-scope recall under the rule on test (which report),
and the seconds of the four stages. With several seeds, the means follow.

A whole `make demo` draws a new float student for each change; this keeps it fixed, so a
difference between variants is the schedule's (and the draw of its own training).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tflite_compress import _tf  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from student_proxy import parse_seeds  # noqa: E402  (its sibling script: benchmarks/ is on sys.path)

SECTIONS = ("prune", "qat", "convert")


def quiet(*_) -> None:  # the stages' log lines
    pass


def usage(message: str) -> None:  # one line, exit 2, nothing run
    print(f"tail_proxy.py: {message}", file=sys.stderr)
    sys.exit(2)


def parse_variant(text: str, base: dict) -> dict:
    recipe = json.loads(json.dumps(base))
    if text == "base":
        return recipe
    for change in text.split(";"):
        key, sep, value = change.partition("=")
        section, _, field = key.partition(".")
        if not sep or section not in SECTIONS or not field:
            usage(f"{change}: expected section.key=JSON with a section of {', '.join(SECTIONS)}")
        try:
            recipe[section][field] = json.loads(value)
        except json.JSONDecodeError:
            usage(f"{change}: the value is not JSON")
    return recipe


def main() -> None:
    from tflite_compress import pipeline as P
    from tflite_compress.config import Recipe
    from tflite_compress.data import load_clinc150
    from tflite_compress.errors import InputError
    from tflite_compress.recipes import load_recipe
    from tflite_compress.stages import run_stages

    seeds, name, texts = None, None, []
    for a in sys.argv[1:]:
        if a.startswith("--seeds="):
            seeds = parse_seeds(a, usage)
        elif a.startswith("--recipe="):
            name = a.removeprefix("--recipe=")
        elif a.startswith("--"):
            usage(f"{a}: unknown option; expected --recipe=NAME or --seeds=N[,N...]")
        else:
            texts.append(a)
    try:
        base = load_recipe(name)
        variants = {t: Recipe.from_dict(parse_variant(t, base.to_dict())) for t in texts or ["base"]}
    except InputError as exc:
        usage(str(exc))
    ds = load_clinc150()
    rows: dict[str, list[tuple[float, ...]]] = {t: [] for t in variants}
    print(f"{'variant':<34} {'seed':>4} {'val in-sc':>9} {'val acc':>7} | {'test in-sc':>10} {'oosR':>5} {'s':>5}"
          "   (INT8; val: arg-max, acc under the rule; test: under the rule)", flush=True)
    scratch = Path("/tmp/tail_proxy")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    first = P.ClassifierState(dataset=ds, recipe=base, inputs=P.RunInputs(cache_dir=ROOT / "runs" / "cache", verbose=0),
                              out_dir=scratch, work_dir=scratch)
    first = run_stages(P.CLASSIFIER_STAGES[:3], first, quiet)  # data, tokenizer, teacher: the recipe's seed
    for seed in seeds or [base.seed]:
        state = run_stages(P.CLASSIFIER_STAGES[3:4], first.replace(recipe=dataclasses.replace(base, seed=seed)),
                           quiet)  # the float student of this seed
        for text, variant in variants.items():
            work = scratch / f"seed{seed}-v{list(variants).index(text)}"
            work.mkdir()
            t0 = time.perf_counter()
            done = run_stages(P.CLASSIFIER_STAGES[4:8], state.replace(recipe=dataclasses.replace(variant, seed=seed),
                                                                       out_dir=work, work_dir=work), quiet)
            seconds = time.perf_counter() - t0
            o = done.records["int8"]["oos"]
            cal = o["calibration"]
            got = (100 * cal["val_argmax"]["accuracy_in_scope"], 100 * cal["val"]["accuracy"],
                   100 * o["rule"]["accuracy_in_scope"], 100 * o["rule"]["recall_out_of_scope"], seconds)
            rows[text].append(got)
            print(f"{text:<34} {seed:>4} {got[0]:9.2f} {got[1]:7.2f} | {got[2]:10.2f} {got[3]:5.1f} {got[4]:5.0f}",
                  flush=True)
    if seeds is not None and len(seeds) > 1:
        for text, got in rows.items():
            m = np.mean(got, axis=0)
            print(f"{text:<34} {'mean':>4} {m[0]:9.2f} {m[1]:7.2f} | {m[2]:10.2f} {m[3]:5.1f} {m[4]:5.0f}", flush=True)


if __name__ == "__main__":
    main()
