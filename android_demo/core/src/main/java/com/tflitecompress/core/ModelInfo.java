package com.tflitecompress.core;

import java.util.List;
import java.util.Map;

/**
 * model_info.json as written by {@code tflite_compress.pipeline.model_info} (schema version 1),
 * checked for what this app can run: int32 token ids in, int8 scores out with their
 * quantization parameters, one sequence length everywhere.
 */
public final class ModelInfo {
    public static final int SCHEMA_VERSION = 1;

    /** One tensor of the model: name, shape, dtype and (for int8) its quantization. */
    public static final class Tensor {
        public final String name;
        public final int[] shape;
        public final String dtype;
        public final double scale;
        public final int zeroPoint;

        Tensor(Map<String, Object> t) {
            name = JsonValues.string(t, "name", "");
            List<Object> dims = JsonValues.list(t, "shape");
            shape = new int[dims.size()];
            for (int i = 0; i < shape.length; i++) {
                if (!(dims.get(i) instanceof Long)) {
                    throw new IllegalArgumentException("shape must hold integers, got " + dims);
                }
                shape[i] = (int) (long) (Long) dims.get(i);
            }
            dtype = JsonValues.string(t, "dtype", null);
            Map<String, Object> q = JsonValues.object(t, "quantization");
            scale = JsonValues.number(q, "scale");
            zeroPoint = JsonValues.requiredInteger(q, "zero_point");
        }

        public int lastDim() {
            return shape.length == 0 ? -1 : shape[shape.length - 1];
        }

        /** The quantization as float32 parameters (the file holds the float32 value in decimal). */
        public Quantization quantization() {
            return new Quantization((float) scale, zeroPoint);
        }
    }

    public final int schemaVersion;
    public final String task;
    public final String modelFile;
    public final String labelsFile;
    public final int numLabels;
    public final String oosLabel;
    public final int sequenceLength;
    public final Tensor input;
    public final Tensor output;
    public final TokenizerConfig tokenizer;
    /** The shipped out-of-scope rule, or null when model_info.json has none. */
    public final OOSRule oosRule;

    private ModelInfo(Map<String, Object> m) {
        schemaVersion = JsonValues.requiredInteger(m, "schema_version");
        if (schemaVersion != SCHEMA_VERSION) {
            throw new IllegalArgumentException("schema_version " + schemaVersion + " is not supported (this app reads "
                    + SCHEMA_VERSION + ")");
        }
        task = JsonValues.string(m, "task", "text_classification");
        if (!"text_classification".equals(task)) {
            throw new IllegalArgumentException("task must be text_classification, got " + task);
        }
        modelFile = JsonValues.string(m, "model_file", "model_int8.tflite");
        labelsFile = JsonValues.string(m, "labels_file", "labels.txt");
        numLabels = JsonValues.requiredInteger(m, "num_labels");
        Object oos = m.get("oos_label");
        if (oos != null && !(oos instanceof String)) {
            throw new IllegalArgumentException("\"oos_label\" must be a string or null, got " + oos);
        }
        oosLabel = (String) oos;
        sequenceLength = JsonValues.requiredInteger(m, "sequence_length");
        input = new Tensor(JsonValues.object(m, "input"));
        output = new Tensor(JsonValues.object(m, "output"));
        tokenizer = TokenizerConfig.fromInfo(JsonValues.object(m, "tokenizer"));
        if (!"int32".equals(input.dtype)) {
            throw new IllegalArgumentException("input dtype must be int32 token ids, got " + input.dtype);
        }
        if (!"int8".equals(output.dtype)) {
            throw new IllegalArgumentException("output dtype must be int8, got " + output.dtype);
        }
        output.quantization(); // checks scale > 0 and the zero point's range
        oosRule = m.get("oos_rule") == null ? null : OOSRule.fromInfo(JsonValues.object(m, "oos_rule"));
        if (input.lastDim() != sequenceLength || tokenizer.sequenceLength != sequenceLength) {
            throw new IllegalArgumentException("sequence_length " + sequenceLength + " disagrees with the input shape "
                    + java.util.Arrays.toString(input.shape) + " or tokenizer.sequence_length " + tokenizer.sequenceLength);
        }
        if (output.lastDim() != numLabels) {
            throw new IllegalArgumentException("num_labels " + numLabels + " disagrees with the output shape "
                    + java.util.Arrays.toString(output.shape));
        }
    }

    @SuppressWarnings("unchecked")
    public static ModelInfo parse(String json) {
        Object v = Json.parse(json);
        if (!(v instanceof Map)) {
            throw new IllegalArgumentException("model_info.json must hold a JSON object");
        }
        return new ModelInfo((Map<String, Object>) v);
    }
}
