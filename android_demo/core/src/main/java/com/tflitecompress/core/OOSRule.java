package com.tflitecompress.core;

import java.util.Map;

/**
 * The out-of-scope rule of model_info.json ({@code "oos_rule": {"score": "max_softmax",
 * "threshold": t, "label": "oos"}}): when the maximum softmax probability of the dequantized
 * logits is below {@code threshold}, the answer is {@code label}. Python applies the same rule
 * (tflite_compress/runtime/oos_rule.py).
 */
public final class OOSRule {
    public static final String MAX_SOFTMAX = "max_softmax";

    public final String score;
    public final double threshold;
    public final String label;

    public OOSRule(String score, double threshold, String label) {
        if (!MAX_SOFTMAX.equals(score)) {
            throw new IllegalArgumentException("oos_rule.score must be " + MAX_SOFTMAX + ", got " + score);
        }
        if (!(threshold >= 0.0 && threshold <= 1.0)) {
            throw new IllegalArgumentException("oos_rule.threshold must lie in [0, 1], got " + threshold);
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

    /** True when the rule answers out-of-scope for these logits. */
    public boolean rejects(float[] logits) {
        return maxSoftmax(logits) < threshold;
    }
}
