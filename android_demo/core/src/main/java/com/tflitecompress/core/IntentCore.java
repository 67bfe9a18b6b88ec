package com.tflitecompress.core;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Everything around the interpreter call: model_info.json, vocab.txt and labels.txt in, token
 * ids for the model's input, and ranked intents from its raw int8 output. No Android types: the
 * app passes its AssetManager as an {@link AssetSource}.
 */
public final class IntentCore {
    /** Opens an asset by file name (Android: {@code getAssets()::open}; tests: a folder). */
    @FunctionalInterface
    public interface AssetSource {
        InputStream open(String name) throws IOException;
    }

    /** One ranked intent. */
    public static final class Prediction {
        public final int index;
        public final String label;
        public final byte raw;
        public final float logit;
        public final double probability;
        public final boolean outOfScope;

        Prediction(int index, String label, byte raw, float logit, double probability, boolean outOfScope) {
            this.index = index;
            this.label = label;
            this.raw = raw;
            this.logit = logit;
            this.probability = probability;
            this.outOfScope = outOfScope;
        }

        @Override
        public String toString() {
            return String.format(java.util.Locale.ROOT, "%s %.3f%s", label, probability, outOfScope ? " (out of scope)" : "");
        }
    }

    public final ModelInfo info;
    public final WordPieceTokenizer tokenizer;
    public final LabelMap labels;
    public final Quantization outputQuantization;

    public IntentCore(ModelInfo info, WordPieceTokenizer tokenizer, LabelMap labels) {
        if (labels.size() != info.numLabels) {
            throw new IllegalArgumentException(info.labelsFile + ": " + labels.size() + " labels, but num_labels is "
                    + info.numLabels);
        }
        this.info = info;
        this.tokenizer = tokenizer;
        this.labels = labels;
        this.outputQuantization = info.output.quantization();
        if (info.oosRule != null && labels.index(info.oosRule.label) < 0) {
            throw new IllegalArgumentException("oos_rule.label " + info.oosRule.label + " is not one of the labels");
        }
    }

    /** Reads model_info.json, then the vocab and labels files it names; errors name the file. */
    public static IntentCore load(AssetSource assets) throws IOException {
        ModelInfo info = read(assets, "model_info.json", ModelInfo::parse);
        WordPieceTokenizer tok = read(assets, info.tokenizer.vocabFile,
                text -> WordPieceTokenizer.fromVocabText(text, info.tokenizer));
        LabelMap labels = read(assets, info.labelsFile, text -> LabelMap.fromText(text, info.oosLabel));
        return new IntentCore(info, tok, labels);
    }

    private interface Reader<T> {
        T apply(String text);
    }

    private static <T> T read(AssetSource assets, String name, Reader<T> reader) throws IOException {
        String text;
        try (InputStream in = assets.open(name)) {
            text = readUtf8(in);
        }
        try {
            return reader.apply(text);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(name + ": " + e.getMessage(), e);
        }
    }

    public static String readUtf8(InputStream in) throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        byte[] chunk = new byte[8192];
        int n;
        while ((n = in.read(chunk)) > 0) {
            buf.write(chunk, 0, n);
        }
        return new String(buf.toByteArray(), StandardCharsets.UTF_8);
    }

    /** The model's input for one text: shape [1, sequence_length], int32 ids. */
    public int[][] input(String text) {
        return new int[][] {tokenizer.encode(text)};
    }

    /** A buffer for the model's output: shape [1, num_labels], int8. */
    public byte[][] newOutput() {
        return new byte[1][info.numLabels];
    }

    /** The answer for one raw int8 output row: the top intent, or the rule's label when it rejects. */
    public static final class Decision {
        public final int index;
        public final String label;
        public final double maxProbability;
        /** True when the top intent was replaced by the out-of-scope rule's label. */
        public final boolean rejected;

        Decision(int index, String label, double maxProbability, boolean rejected) {
            this.index = index;
            this.label = label;
            this.maxProbability = maxProbability;
            this.rejected = rejected;
        }
    }

    /** Arg-max, then the model's out-of-scope rule (model_info.json "oos_rule") when it has one. */
    public Decision decide(byte[] raw) {
        float[] logits = outputQuantization.dequantize(raw);
        int top = TopK.indices(logits, 1)[0];
        double p = OOSRule.maxSoftmax(logits);
        if (info.oosRule != null && info.oosRule.rejects(logits)) {
            int oos = labels.index(info.oosRule.label);
            return new Decision(oos, info.oosRule.label, p, true);
        }
        return new Decision(top, labels.name(top), p, false);
    }

    /** The k best intents of one raw int8 output row, best first. */
    public List<Prediction> predictions(byte[] raw, int k) {
        float[] logits = outputQuantization.dequantize(raw);
        double[] probs = TopK.softmax(logits);
        List<Prediction> out = new ArrayList<>();
        for (int i : TopK.indices(logits, k)) {
            out.add(new Prediction(i, labels.name(i), raw[i], logits[i], probs[i], labels.isOutOfScope(i)));
        }
        return out;
    }
}
