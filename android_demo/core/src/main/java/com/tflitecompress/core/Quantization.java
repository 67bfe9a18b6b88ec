package com.tflitecompress.core;

/**
 * Affine int8 quantization parameters of one tensor, with numpy-exact conversions.
 *
 * <p>Both directions compute in float32, as the Python harness does under numpy 2 (NEP 50):
 * <pre>
 *   quantize:   np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)   (x float32)
 *   dequantize: (q.astype(np.float32) - zero_point) * np.float32(scale)
 * </pre>
 * {@code np.round} rounds half to even, which is {@link Math#rint}. Java float arithmetic is
 * IEEE 754 binary32 with round-to-nearest-even (strict since Java 17), so results match bit for bit.
 */
public final class Quantization {
    public final float scale;
    public final int zeroPoint;

    public Quantization(float scale, int zeroPoint) {
        if (!(scale > 0f) || Float.isInfinite(scale)) {
            throw new IllegalArgumentException("quantization scale must be a finite number > 0, got " + scale);
        }
        if (zeroPoint < -128 || zeroPoint > 127) {
            throw new IllegalArgumentException("int8 zero_point must be in [-128, 127], got " + zeroPoint);
        }
        this.scale = scale;
        this.zeroPoint = zeroPoint;
    }

    /** float32 -> int8; NaN has no int8 value (numpy's result is platform-defined) and is rejected. */
    public byte quantize(float x) {
        if (Float.isNaN(x)) {
            throw new IllegalArgumentException("cannot quantize NaN");
        }
        float v = x / scale + (float) zeroPoint;
        double r = Math.rint(v);
        if (r < -128) {
            r = -128;
        } else if (r > 127) {
            r = 127;
        }
        return (byte) r;
    }

    public byte[] quantize(float[] xs) {
        byte[] out = new byte[xs.length];
        for (int i = 0; i < xs.length; i++) {
            out[i] = quantize(xs[i]);
        }
        return out;
    }

    public float dequantize(byte q) {
        return ((float) q - (float) zeroPoint) * scale;
    }

    public float[] dequantize(byte[] qs) {
        float[] out = new float[qs.length];
        for (int i = 0; i < qs.length; i++) {
            out[i] = dequantize(qs[i]);
        }
        return out;
    }
}
