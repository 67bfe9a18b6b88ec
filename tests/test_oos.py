"""The out-of-scope rule: calibration on val, applying it, AUROC, config checks (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_compress.errors import InputError
from tflite_compress.oos import calibrate_rule, candidate_thresholds
from tflite_compress.runtime.oos_rule import OOSRule, auroc, max_softmax, oos_metrics, rule_report

NAMES = ["a", "b", "oos"]


def _logits(confidences, pred):
    """Rows whose max softmax equals `confidences` (3 classes), arg-max at `pred`."""
    rows = []
    for c, p in zip(confidences, pred):
        # softmax over [z, 0, 0]: max prob c  <=>  z = log(2c / (1 - c))
        z = np.zeros(3)
        z[p] = np.log(2 * c / (1 - c))
        rows.append(z)
    return np.array(rows)


def test_max_softmax_and_rule_predict():
    logits = _logits([0.9, 0.5, 0.4], [0, 1, 0])
    np.testing.assert_allclose(max_softmax(logits), [0.9, 0.5, 0.4], atol=1e-9)
    rule = OOSRule(threshold=0.45, label="oos")
    assert rule.predict(logits, NAMES).tolist() == [0, 1, 2]
    assert OOSRule.from_info(rule.to_info()) == rule


def test_calibration_maximises_accuracy_with_oos_as_a_class():
    # in-scope rows confident (>= 0.7) except one at 0.45; oos rows at 0.4..0.6, arg-max "a"
    conf = [0.9, 0.8, 0.7, 0.45, 0.4, 0.5, 0.6]
    y = np.array([0, 1, 0, 1, 2, 2, 2])
    logits = _logits(conf, [0, 1, 0, 1, 0, 0, 0])
    rule, details = calibrate_rule(logits, y, NAMES, "oos")
    # Any threshold in (0.6, 0.7) rejects the 3 oos rows and keeps the 3 confident in-scope ones: 6/7.
    assert 0.6 < rule.threshold < 0.7
    assert details["val"]["accuracy"] == pytest.approx(6 / 7)
    assert details["val"]["recall_out_of_scope"] == 1.0
    assert details["val_argmax"]["recall_out_of_scope"] == 0.0
    # A target recall takes the lowest threshold reaching it: 1 of 3 oos rows -> just above 0.4.
    low, d = calibrate_rule(logits, y, NAMES, "oos", target_recall=0.3)
    assert 0.4 < low.threshold < 0.45 and d["val"]["recall_out_of_scope"] == pytest.approx(1 / 3)


def test_calibration_is_the_rule_applied_at_every_candidate():
    """calibrate_rule's fast path (scores computed once) chooses what applying the rule at each
    candidate threshold chooses, on int8-like logits with many tied scores."""
    rng = np.random.default_rng(3)
    names = [f"c{i}" for i in range(9)] + ["oos"]
    y = rng.integers(0, 10, 400)
    logits = rng.normal(size=(400, 10)) * 2
    logits[np.arange(400), y] += np.where(y == 9, 0.0, 2.5)
    logits = np.round(logits * 4) / 4
    for target in (None, 0.5):
        rule, details = calibrate_rule(logits, y, names, "oos", target_recall=target)
        figures = [oos_metrics(y, OOSRule(float(t), "oos").predict(logits, names), 9)
                   for t in candidate_thresholds(max_softmax(logits))]
        if target is None:
            best = figures[int(np.argmax([f["accuracy"] for f in figures]))]
        else:
            best = next(f for f in figures if f["recall_out_of_scope"] >= target)
        assert details["val"] == best
        assert details["val"] == oos_metrics(y, rule.predict(logits, names), 9)
    assert 0.0 < rule.threshold < 1.0


def test_max_logit_rule_is_calibrated_and_applied_on_the_largest_logit():
    """The same calibration on the largest logit: its candidates start at the lowest score (nothing
    rejected), a threshold outside [0, 1] is valid, and the chosen rule predicts what was measured."""
    from tflite_compress.runtime.oos_rule import SCORES, max_logit, rule_score

    from tflite_compress.config import OOS_SCORES

    assert OOS_SCORES == SCORES  # the recipe's choices are the runtime's
    # in-scope rows with a large top logit, out-of-scope rows with a small one; max softmax ties them
    logits = np.array([[6.0, 0, 0], [7.0, 1.0, 1.0], [2.0, 8.0, 2.0], [1.0, -5.0, -5.0], [2.0, 1.0, 1.0], [0, 3.0, 2.0]])
    y = np.array([0, 0, 1, 2, 2, 2])
    np.testing.assert_allclose(max_logit(logits), [6, 7, 8, 1, 2, 3])
    np.testing.assert_array_equal(rule_score(logits, "max_logit"), max_logit(logits))
    np.testing.assert_array_equal(rule_score(logits, "max_softmax"), max_softmax(logits))
    rule, details = calibrate_rule(logits, y, NAMES, "oos", score="max_logit")
    assert rule.score == "max_logit" and 3.0 < rule.threshold < 6.0
    assert details["val"]["accuracy"] == 1.0 and details["val_argmax"]["recall_out_of_scope"] == 0.0
    assert rule.predict(logits, NAMES).tolist() == [0, 0, 1, 2, 2, 2]
    assert OOSRule.from_info(rule.to_info()) == rule
    np.testing.assert_allclose(candidate_thresholds(np.array([4.0, -2.0]), floor=None), [-2.0, 1.0])
    # max softmax cannot separate rows 0 and 3 (the same softmax), so it is below max_logit here
    _, soft = calibrate_rule(logits, y, NAMES, "oos", score="max_softmax")
    assert soft["val"]["accuracy"] < 1.0
    assert OOSRule(threshold=-3.5, label="oos", score="max_logit").predict(logits, NAMES).tolist() == [0, 0, 1, 0, 0, 1]
    with pytest.raises(InputError, match="finite"):
        OOSRule.from_info({"score": "max_logit", "threshold": float("inf"), "label": "oos"})
    with pytest.raises(InputError, match="oos score 'energy'"):
        calibrate_rule(logits, y, NAMES, "oos", score="energy")
    from tflite_compress.config import Recipe

    with pytest.raises(InputError, match="oos.score: expected one of max_softmax, max_logit; got 'energy'"):
        Recipe.from_dict({"oos": {"score": "energy"}})
    r = rule_report(logits, y, NAMES, "oos", rule)
    assert r["auroc_max_logit"] == 1.0 and r["auroc_max_softmax"] < 1.0 and r["rule"]["score"] == "max_logit"


def test_candidates_start_at_no_rejection():
    assert candidate_thresholds(np.array([0.5, 0.5, 0.9]))[0] == 0.0
    np.testing.assert_allclose(candidate_thresholds(np.array([0.5, 0.9])), [0.0, 0.7])


def test_metrics_and_auroc():
    m = oos_metrics(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 0]), 2)
    assert m == {"accuracy": 0.5, "accuracy_in_scope": 0.5, "recall_out_of_scope": 0.5, "precision_out_of_scope": 0.5}
    assert auroc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([False, False, True, True])) == 1.0
    assert auroc(np.array([0.5, 0.5]), np.array([False, True])) == 0.5
    # against a brute-force pair count
    rng = np.random.default_rng(0)
    s, neg = rng.integers(0, 5, 200).astype(float), rng.random(200) < 0.3
    pairs = [(a > b) + 0.5 * (a == b) for a in s[~neg] for b in s[neg]]
    assert auroc(s, neg) == pytest.approx(np.mean(pairs))


def test_rule_report_has_both_schemes():
    logits = _logits([0.9, 0.4], [0, 0])
    r = rule_report(logits, np.array([0, 2]), NAMES, "oos", OOSRule(0.5, "oos"))
    assert r["argmax"]["recall_out_of_scope"] == 0.0 and r["rule"]["recall_out_of_scope"] == 1.0
    assert r["rule"]["threshold"] == 0.5 and r["auroc_max_softmax"] == 1.0


def test_bad_rules_and_configs_are_input_errors():
    with pytest.raises(InputError, match="threshold"):
        OOSRule.from_info({"score": "max_softmax", "threshold": 1.5, "label": "oos"})
    with pytest.raises(InputError, match="score"):
        OOSRule.from_info({"score": "energy", "threshold": 0.5, "label": "oos"})
    with pytest.raises(InputError, match="no 'oos' rows"):
        calibrate_rule(_logits([0.9], [0]), np.array([0]), NAMES, "oos")
    from tflite_compress.config import Recipe

    with pytest.raises(InputError, match="oos.target_recall"):
        Recipe.from_dict({"oos": {"target_recall": 0}})
    with pytest.raises(InputError, match="distill.augment_style"):
        Recipe.from_dict({"distill": {"augment_style": "shuffle"}})


def test_extra_negatives_and_tang_augmentation():
    from tflite_compress.data import TextDataset, TextSplit, add_oos_negatives, chitchat_texts, mix_texts
    from tflite_compress.config import OOSConfig

    chat = chitchat_texts(50, seed=1)
    assert len(chat) == len(set(chat)) == 50 and all(3 <= len(t.split()) <= 20 for t in chat)
    assert chitchat_texts(50, seed=1) == chat
    texts, labels = ("play some jazz now", "what is my balance", "book a table for two"), ("a", "b", "c")
    mixes = mix_texts(texts, labels, 10, seed=0)
    assert len(mixes) == 10 and all(m not in texts for m in mixes)
    split = TextSplit(texts + ("meaning of life",), labels + ("oos",))
    ds = TextDataset(split, split, split, ("a", "b", "c", "oos"))
    more, counts = add_oos_negatives(ds, OOSConfig(chitchat_negatives=5, mix_negatives=3))
    assert counts == {"chitchat": 5, "mix": 3} and len(more.train) == 12
    assert more.train.labels[4:] == ("oos",) * 8
    assert add_oos_negatives(ds, OOSConfig()) == (ds, {})


def test_tang_augmentation_is_deterministic_and_keeps_words_of_the_same_kind():
    from tflite_compress import distill
    from tflite_compress.config import DistillConfig

    texts = ["set an alarm for 7 am", "what is the weather in paris today", "play jazz"]
    a = distill.tang_augment_texts(texts, 3, seed=0)
    assert a == distill.tang_augment_texts(texts, 3, seed=0) and len(a) == 9
    vocab = {w for t in texts for w in t.split()}
    assert all(t and set(t.split()) <= vocab for t in a)  # drops, same-corpus replacements, n-grams
    assert distill.augmented_copies(texts, DistillConfig(augment_copies=2, augment_style="tang")) == \
        distill.tang_augment_texts(texts, 2)
