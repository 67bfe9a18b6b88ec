"""Out-of-scope scores of INT8 files, side by side: which score's val-chosen threshold rejects best.

    python benchmarks/oos_scores.py runs/clinc150 runs/base-s1 ...   # run folders (model_int8.tflite)

For each run the INT8 file's logits on CLINC150 val and test are computed once in the LiteRT
interpreter; for each score (higher = more in-scope) the threshold is the one maximising val
accuracy over all 151 classes with out-of-scope as its own class (Larson et al.'s
"oos-threshold", as `oos.calibrate_rule` does for `max_softmax`); test only reports. Scores:

- max_softmax: the maximum softmax probability (the shipped rule's score; what the app computes);
- not_oos: 1 - the softmax probability of the out-of-scope class (a trained class here);
- max_in_scope: the largest softmax probability among the in-scope classes;
- margin: top-1 minus top-2 softmax probability;
- max_logit: the largest dequantized logit;
- energy: logsumexp of the logits (Liu et al. 2020; the negative free energy at T=1).

The last line of each score is its mean over the runs given, val columns choosing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tflite_compress.data import load_clinc150  # noqa: E402
from tflite_compress.oos import candidate_thresholds  # noqa: E402
from tflite_compress.runtime.oos_rule import auroc, oos_metrics, reject_below, softmax  # noqa: E402


def scores(logits: np.ndarray, oos_index: int) -> dict[str, np.ndarray]:
    z = np.asarray(logits, np.float64)
    p = softmax(z)
    top2 = np.sort(p, axis=1)[:, -2:]
    zmax = z.max(axis=1)
    ins = np.delete(p, oos_index, axis=1)
    return {"max_softmax": p.max(axis=1), "not_oos": 1.0 - p[:, oos_index], "max_in_scope": ins.max(axis=1),
            "margin": top2[:, 1] - top2[:, 0],
            "max_logit": zmax, "energy": zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=1))}


def choose(score: np.ndarray, argmax: np.ndarray, y: np.ndarray, oos_index: int) -> float:
    """The lowest threshold reaching the best val accuracy (-inf: no rejection)."""
    cands = candidate_thresholds(score, floor=-np.inf)
    acc = [np.mean(reject_below(score, argmax, t, oos_index) == y) for t in cands]
    return float(cands[int(np.argmax(acc))])


def main(run_dirs: list[str]) -> None:
    from tflite_compress.runtime import load_bundle

    ds = load_clinc150()
    rows: dict[str, list[list[float]]] = {}
    print(f"{'run':<14} {'score':<12} {'val acc':>7} {'val oosR':>8} {'val AUROC':>9} | {'test in-sc':>10} {'oosR':>5} "
          f"{'oosP':>5} {'acc':>6} {'AUROC':>6}")
    for d in run_dirs:
        bundle = load_bundle(Path(d) / "model_int8.tflite")
        names = bundle.labels
        oos = names.index(ds.oos_label)
        split = {}
        for s in ("val", "test"):
            texts = getattr(ds, s).texts
            logits = bundle.model.predict(bundle.tokenizer.encode_batch(texts))
            split[s] = (logits, getattr(ds, s).label_ids(names), scores(logits, oos))
        for name in split["val"][2]:
            lv, yv, sv = split["val"]
            lt, yt, st = split["test"]
            t = choose(sv[name], lv.argmax(1), yv, oos)
            mv = oos_metrics(yv, reject_below(sv[name], lv.argmax(1), t, oos), oos)
            mt = oos_metrics(yt, reject_below(st[name], lt.argmax(1), t, oos), oos)
            row = [100 * mv["accuracy"], 100 * mv["recall_out_of_scope"], auroc(sv[name], yv == oos),
                   100 * mt["accuracy_in_scope"], 100 * mt["recall_out_of_scope"], 100 * mt["precision_out_of_scope"],
                   100 * mt["accuracy"], auroc(st[name], yt == oos)]
            rows.setdefault(name, []).append(row)
            print(f"{Path(d).name:<14} {name:<12} {row[0]:7.2f} {row[1]:8.1f} {row[2]:9.4f} | {row[3]:10.2f} "
                  f"{row[4]:5.1f} {row[5]:5.1f} {row[6]:6.2f} {row[7]:6.4f}", flush=True)
    if len(run_dirs) > 1:
        for name, r in rows.items():
            m = np.mean(r, axis=0)
            print(f"{'mean':<14} {name:<12} {m[0]:7.2f} {m[1]:8.1f} {m[2]:9.4f} | {m[3]:10.2f} {m[4]:5.1f} {m[5]:5.1f} "
                  f"{m[6]:6.2f} {m[7]:6.4f}")


if __name__ == "__main__":
    bad = [d for d in sys.argv[1:] if not (Path(d) / "model_int8.tflite").is_file()]
    if bad or len(sys.argv) < 2:
        print(f"oos_scores.py: expected run folders holding model_int8.tflite; got {', '.join(bad) or 'none'}",
              file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1:])
