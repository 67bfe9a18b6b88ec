package com.tflitecompress.core;

import java.util.Map;

/**
 * The out-of-scope rule of model_info.json ({@code "oos_rule": {"score": S, "threshold": t,
 * "label": "oos"}}): when the score S of the dequantized logits is below {@code threshold}, the
 * answer is {@code label}. S is {@code max_softmax} (the maximum softmax probability, t in
 * [0, 1]) or {@code max_logit} (the largest logit, any finite t). Python applies the same rule
 * (tflite_compress/runtime/oos_rule.py).
 */
public final class OOSRule {
    public static final String MAX_SOFTMAX = "max_softmax";
    public static final String MAX_LOGIT = "max_logit";

    public final String score;
    public final double threshold;
    public final String label;

    public OOSRule(String score, double threshold, String label) {
        if (!MAX_SOFTMAX.equals(score) && !MAX_LOGIT.equals(score)) {
            throw new IllegalArgumentException("oos_rule.score must be " + MAX_SOFTMAX + " or " + MAX_LOGIT
                    + ", got " + score);
        }
        if (MAX_SOFTMAX.equals(score) && !(threshold >= 0.0 && threshold <= 1.0)) {
            throw new IllegalArgumentException("oos_rule.threshold must lie in [0, 1], got " + threshold);
        }
        if (!Double.isFinite(threshold)) {
            throw new IllegalArgumentException("oos_rule.threshold must be a finite number, got " + threshold);
        }
        if (label == null || label.isEmpty()) {
            throw new IllegalArgumentException("oos_rule.label must be a label name");
        }
        this.score = score;
        this.threshold = threshold;
        this.label = label;
    }

    static OOSRule fromInfo(Map<String, Object> m) {
        return new OOSRule(JsonValues.string(m, "score", null), JsonValues.number(m, "threshold"),
                JsonValues.string(m, "label", null));
    }

    /** 1 / sum(exp(z - max z)) in double, as numpy's max_softmax. */
    public static double maxSoftmax(float[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) {
            max = Math.max(max, v);
        }
        double sum = 0;
        for (float v : logits) {
            sum += Math.exp(v - max);
        }
        return 1.0 / sum;
    }

    /** The largest logit, as a double (numpy's max over the dequantized float32 logits). */
    public static double maxLogit(float[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) {
            max = Math.max(max, v);
        }
        return max;
    }

    /** This rule's score of the logits (higher: more in-scope). */
    public double score(float[] logits) {
        return MAX_LOGIT.equals(score) ? maxLogit(logits) : maxSoftmax(logits);
    }

    /** True when the rule answers out-of-scope for these logits. */
    public boolean rejects(float[] logits) {
        return score(logits) < threshold;
    }
}
