package com.tflitecompress.core;

/** The k best scores, best first; ties go to the lower index (as {@code np.argmax} and a stable sort). */
public final class TopK {
    private TopK() {
    }

    public static int[] indices(float[] scores, int k) {
        int n = Math.min(Math.max(k, 0), scores.length);
        int[] out = new int[n];
        boolean[] taken = new boolean[scores.length];
        for (int j = 0; j < n; j++) {
            int best = -1;
            for (int i = 0; i < scores.length; i++) {
                if (!taken[i] && (best < 0 || scores[i] > scores[best])) {
                    best = i;
                }
            }
            taken[best] = true;
            out[j] = best;
        }
        return out;
    }

    /** Same on raw int8 scores: with a positive scale the order equals that of the dequantized values. */
    public static int[] indices(byte[] scores, int k) {
        float[] f = new float[scores.length];
        for (int i = 0; i < scores.length; i++) {
            f[i] = scores[i];
        }
        return indices(f, k);
    }

    /** Softmax in double (for display), shifted by the max for stability. */
    public static double[] softmax(float[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) {
            max = Math.max(max, v);
        }
        double sum = 0;
        double[] out = new double[logits.length];
        for (int i = 0; i < logits.length; i++) {
            out[i] = Math.exp(logits[i] - max);
            sum += out[i];
        }
        for (int i = 0; i < out.length; i++) {
            out[i] /= sum;
        }
        return out;
    }
}
