package com.tflitecompress.core;

import java.util.Map;

/**
 * Settings of the student's WordPiece tokenizer: the {@code "tokenizer"} object of
 * model_info.json (Python: {@code TokenizerConfig.to_info()}).
 */
public final class TokenizerConfig {
    public final String vocabFile;
    public final boolean lowercase;
    public final boolean stripAccents;
    public final String suffixIndicator;
    public final int maxCharsPerWord;
    public final String padToken;
    public final String unkToken;
    public final int padId;
    public final int unkId;
    public final int sequenceLength;

    public TokenizerConfig(String vocabFile, boolean lowercase, boolean stripAccents, String suffixIndicator,
                           int maxCharsPerWord, String padToken, String unkToken, int padId, int unkId,
                           int sequenceLength) {
        if (sequenceLength <= 0) {
            throw new IllegalArgumentException("sequence_length must be > 0, got " + sequenceLength);
        }
        if (maxCharsPerWord <= 0) {
            throw new IllegalArgumentException("max_chars_per_word must be > 0, got " + maxCharsPerWord);
        }
        this.vocabFile = vocabFile;
        this.lowercase = lowercase;
        this.stripAccents = stripAccents;
        this.suffixIndicator = suffixIndicator;
        this.maxCharsPerWord = maxCharsPerWord;
        this.padToken = padToken;
        this.unkToken = unkToken;
        this.padId = padId;
        this.unkId = unkId;
        this.sequenceLength = sequenceLength;
    }

    /** The Python defaults ({@code TokenizerConfig()}) with the given sequence length. */
    public static TokenizerConfig defaults(int sequenceLength) {
        return new TokenizerConfig("vocab.txt", true, true, "##", 100, "[PAD]", "[UNK]", 0, 1, sequenceLength);
    }

    /** Reads the {@code "tokenizer"} object of model_info.json; missing keys take the Python defaults. */
    public static TokenizerConfig fromInfo(Map<String, Object> t) {
        String type = JsonValues.string(t, "type", "wordpiece");
        if (!"wordpiece".equals(type)) {
            throw new IllegalArgumentException("tokenizer.type must be \"wordpiece\", got \"" + type + "\"");
        }
        String truncation = JsonValues.string(t, "truncation", "keep_first");
        String padding = JsonValues.string(t, "padding", "end");
        if (!"keep_first".equals(truncation) || !"end".equals(padding)) {
            throw new IllegalArgumentException("tokenizer: only truncation keep_first and padding end are"
                    + " supported, got " + truncation + " / " + padding);
        }
        return new TokenizerConfig(
                JsonValues.string(t, "vocab_file", "vocab.txt"),
                JsonValues.bool(t, "lowercase", true),
                JsonValues.bool(t, "strip_accents", true),
                JsonValues.string(t, "suffix_indicator", "##"),
                JsonValues.integer(t, "max_chars_per_word", 100),
                JsonValues.string(t, "pad_token", "[PAD]"),
                JsonValues.string(t, "unk_token", "[UNK]"),
                JsonValues.integer(t, "pad_id", 0),
                JsonValues.integer(t, "unk_id", 1),
                JsonValues.requiredInteger(t, "sequence_length"));
    }
}
