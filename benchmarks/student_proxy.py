"""A cheap proxy for student changes on CLINC150: the float student alone, val beside test.

    .venv/bin/python benchmarks/student_proxy.py VARIANT[,VARIANT...] [RECIPE] [section.key=JSON ...] [--seeds=0,1,2]

The demo's data, tokenizer and (cached) teacher stages of RECIPE (default: the built-in default),
then for each VARIANT a float student distilled as the pipeline's student stage does (no
pruning, QAT or conversion: those follow the float student within a few tenths of a point),
printing its in-scope accuracy by arg-max on val (which chooses) and test (which reports).
`section.key=JSON` overrides a recipe setting, e.g. `distill.batch_size=256`.

Variants (the student's embedding table at initialisation):
- random:  Keras' default (uniform +-0.05), as the pipeline builds it;
- feat:    each vocabulary piece ("##" stripped) encoded by all-MiniLM-L6-v2 as a one-word text
           (its pooled, normalised sentence feature), projected to the embedding width by PCA;
- input:   MiniLM's own input embedding of the piece (the mean of its MiniLM pieces when the
           piece is not in MiniLM's vocabulary), projected by PCA.
PCA outputs are scaled to a standard deviation of 0.05; [PAD] is zero.
A variant trains as the pipeline's student stage does (an XLA-compiled step; cut batches when the
recipe says `distill.cut_batches`); `VARIANT@cut` with cut batches (short rows cut after their last
token, in batches of their own), `VARIANT@full` without; `VARIANT@keras` trains it as Keras runs it
by default (no XLA, full length; every batch, the last partial one included).
`--seeds=0,1,2` repeats each variant with these student seeds (initialisation, dropout and
shuffling; the teacher and its data stay as the recipe's seed made them) and prints the mean.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tflite_compress import _tf  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)


def piece_tables(recipe, vocab) -> dict[str, np.ndarray]:
    from tflite_compress.teacher import MiniLMTeacher

    teacher = MiniLMTeacher(recipe.teacher)
    words = [p.removeprefix("##") for p in vocab]
    feats = teacher.features(words, verbose=0)
    emb = np.asarray(teacher.backbone.token_embedding.embeddings)
    index = {w: i for i, w in enumerate(teacher.tokenizer.get_vocabulary())}
    inp = np.zeros((len(vocab), emb.shape[1]), np.float32)
    missing = 0
    for i, piece in enumerate(vocab):
        if piece in index:
            inp[i] = emb[index[piece]]
            continue
        missing += 1
        got = teacher.tokenizer([words[i]])
        ids = [int(t) for t in (got.to_list()[0] if hasattr(got, "to_list") else np.ravel(got)) if int(t)]
        inp[i] = emb[ids].mean(0) if ids else 0.0
    print(f"{missing} of {len(vocab)} pieces not in MiniLM's vocabulary (their MiniLM pieces averaged)", flush=True)
    return {"feat": feats, "input": inp}


VARIANTS = ("random", "feat", "input")
HOW = ("", "cut", "full", "keras")


def pca(table: np.ndarray, dim: int, std: float = 0.05) -> np.ndarray:
    rows = table[2:]  # not [PAD], [UNK]
    mean = rows.mean(0)
    _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)
    out = (table - mean) @ vt[:dim].T
    out = out / out[2:].std() * std
    out[0] = 0.0
    return out.astype(np.float32)


def parse_seeds(arg: str, usage) -> list[int]:
    """`--seeds=0,1,2` -> [0, 1, 2]; anything else goes to `usage` (one line, exit 2)."""
    try:
        return [int(v) for v in arg.removeprefix("--seeds=").split(",")]
    except ValueError:
        usage(f"{arg}: expected --seeds=N[,N...] (integers)")


def main() -> None:
    from tflite_compress import pipeline as P
    from tflite_compress.config import Recipe
    from tflite_compress.data import load_clinc150
    from tflite_compress.errors import InputError
    from tflite_compress.recipes import load_recipe
    from tflite_compress.runtime import classification_metrics
    from tflite_compress.stages import run_stages
    from tflite_compress.students import build_student, length_margin

    def usage(message: str) -> None:  # one line, exit 2, nothing run
        print(f"student_proxy.py: {message}", file=sys.stderr)
        sys.exit(2)

    argv = [a for a in sys.argv[1:] if not a.startswith("--seeds=")]
    seeds = None
    for a in sys.argv[1:]:
        if a.startswith("--seeds="):
            seeds = parse_seeds(a, usage)
    if len(argv) < 1:
        usage("expected VARIANT[,VARIANT...] [RECIPE] [section.key=JSON ...] [--seeds=0,1,2]")
    variants = argv[0].split(",")
    unknown = [v for v in variants if v.split("@")[0] not in VARIANTS or v.partition("@")[2] not in HOW]
    if unknown:
        usage(f"unknown variant(s) {', '.join(unknown)}; expected some of {', '.join(VARIANTS)} "
              "(each may end in @cut, @full or @keras)")
    args = argv[1:]
    name = args.pop(0) if args and "=" not in args[0] else None
    try:
        base = load_recipe(name).to_dict()
        for kv in args:
            key, value = kv.split("=", 1)
            section, field = key.split(".", 1) if "." in key else ("", key)
            if not isinstance(base.get(section), dict):
                usage(f"{kv}: expected section.key=JSON with a section of {', '.join(k for k, v in base.items() if isinstance(v, dict))}")
            try:
                base[section][field] = json.loads(value)
            except json.JSONDecodeError:
                usage(f"{kv}: the value is not JSON (strings need quotes: 'distill.augment_style=\"tang\"')")
        recipe = Recipe.from_dict(base)
    except InputError as exc:
        usage(str(exc))
    ds = load_clinc150()
    scratch = Path("/tmp/student_proxy")
    state = P.ClassifierState(dataset=ds, recipe=recipe, inputs=P.RunInputs(cache_dir=ROOT / "runs" / "cache", verbose=0),
                              out_dir=scratch, work_dir=scratch)
    state = run_stages(P.CLASSIFIER_STAGES[:3], state, print)  # data, tokenizer, teacher
    vocab = state.tokenizer.vocab
    tables = piece_tables(recipe, vocab) if {v.split("@")[0] for v in variants} - {"random"} else {}
    print(f"{'variant':<8} {'val in-sc':>9} {'test in-sc':>10}  (float student, arg-max; {' '.join(args) or 'recipe as is'})")
    scores: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for seed in seeds or [recipe.seed]:
        student_recipe = dataclasses.replace(recipe, seed=seed)
        for variant in variants:
            t0 = time.perf_counter()
            init, _, how = variant.partition("@")
            cut = how == "cut" or (not how and recipe.distill.cut_batches)
            student = build_student(recipe.student, len(vocab), recipe.tokenizer.sequence_length,
                                    len(state.label_names), seed=seed)
            if variant == variants[0] and seed == (seeds or [recipe.seed])[0]:
                print(f"student: {student.count_params():,} parameters ({recipe.student.family}, embedding "
                      f"{recipe.student.embedding_dim}, filters {recipe.student.filters}, kernels "
                      f"{list(recipe.student.kernel_sizes)}, hidden {recipe.student.hidden_units})", flush=True)
            if init != "random":
                student.get_layer("embedding").set_weights([pca(tables[init], recipe.student.embedding_dim)])
            P.distill_fit(student, student_recipe, state.x, state.targets, state.alpha, state.teacher_features, print, 0,
                          xla=how != "keras", length_margin=length_margin(recipe.student) if cut else None)
            acc = {}
            for split in ("val", "test"):
                pred = student.predict(state.x[split], batch_size=512, verbose=0).argmax(1)
                acc[split] = classification_metrics(state.y[split], pred, state.label_names,
                                                    ds.oos_label)["accuracy_in_scope"]
            scores[variant].append((100 * acc["val"], 100 * acc["test"]))
            label = variant if seeds is None else f"{variant} s{seed}"
            print(f"{label:<8} {100 * acc['val']:9.2f} {100 * acc['test']:10.2f}  ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    if seeds is not None and len(seeds) > 1:
        for variant, rows in scores.items():
            val, test = np.array(rows).T
            print(f"{variant + ' mean':<8} {val.mean():9.2f} {test.mean():10.2f}  (sd {val.std(ddof=1):.2f} / "
                  f"{test.std(ddof=1):.2f} over seeds {','.join(map(str, seeds))})", flush=True)


if __name__ == "__main__":
    main()
