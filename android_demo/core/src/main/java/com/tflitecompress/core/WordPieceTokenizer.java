package com.tflitecompress.core;

import java.text.Normalizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The student's WordPiece tokenizer, ported line by line from {@code tflite_compress/tokenizer.py}.
 *
 * <ol>
 *   <li>normalise: lowercase ({@code str.lower()} = {@code toLowerCase(Locale.ROOT)}), NFD and drop
 *       non-spacing marks (Mn), drop control/format characters (Cc, Cf; tab, LF, CR kept), U+FFFD and NUL;</li>
 *   <li>split on Python whitespace (dropped) and on punctuation / CJK ideographs (one token each);</li>
 *   <li>WordPiece: greedy longest match first, continuation pieces prefixed with the suffix
 *       indicator; no full split, or more than {@code max_chars_per_word} code points, gives the
 *       unknown id;</li>
 *   <li>keep the first {@code sequence_length} ids, pad with the pad id at the end.</li>
 * </ol>
 * Everything counts Unicode code points, as Python strings do, never UTF-16 chars.
 */
public final class WordPieceTokenizer {
    private final List<String> vocab;
    private final Map<String, Integer> tokenToId;
    private final TokenizerConfig config;

    public WordPieceTokenizer(List<String> vocab, TokenizerConfig config) {
        if (vocab.size() < 2 || !vocab.get(config.padId).equals(config.padToken)
                || !vocab.get(config.unkId).equals(config.unkToken)) {
            throw new IllegalArgumentException("vocabulary must start with " + config.padToken + ", "
                    + config.unkToken + "; got " + vocab.subList(0, Math.min(2, vocab.size())));
        }
        this.vocab = Collections.unmodifiableList(new ArrayList<>(vocab));
        this.config = config;
        this.tokenToId = new HashMap<>(vocab.size() * 2);
        for (int i = 0; i < vocab.size(); i++) {
            if (tokenToId.put(vocab.get(i), i) != null) {
                throw new IllegalArgumentException("vocabulary has duplicate tokens: " + vocab.get(i));
            }
        }
    }

    /** A tokenizer over the lines of a vocab.txt text (split as Python's {@code splitlines()}). */
    public static WordPieceTokenizer fromVocabText(String text, TokenizerConfig config) {
        return new WordPieceTokenizer(TextLines.splitLines(text), config);
    }

    public TokenizerConfig config() {
        return config;
    }

    public int vocabularySize() {
        return vocab.size();
    }

    public String token(int id) {
        return vocab.get(id);
    }

    // ---- character classes (tokenizer.py: _is_whitespace, _is_punctuation, _is_cjk, _is_control)

    /** Python's {@code ch.isspace() or category(ch) == "Zs"}: the exact code point set. */
    static boolean isWhitespace(int cp) {
        switch (cp) {
            case 0x09: case 0x0a: case 0x0b: case 0x0c: case 0x0d: case 0x1c: case 0x1d: case 0x1e:
            case 0x1f: case 0x20: case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029:
            case 0x202f: case 0x205f: case 0x3000:
                return true;
            default:
                return (cp >= 0x2000 && cp <= 0x200a) || Character.getType(cp) == Character.SPACE_SEPARATOR;
        }
    }

    static boolean isPunctuation(int cp) {
        if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) {
            return true;
        }
        switch (Character.getType(cp)) {
            case Character.CONNECTOR_PUNCTUATION: case Character.DASH_PUNCTUATION:
            case Character.START_PUNCTUATION: case Character.END_PUNCTUATION:
            case Character.INITIAL_QUOTE_PUNCTUATION: case Character.FINAL_QUOTE_PUNCTUATION:
            case Character.OTHER_PUNCTUATION:
                return true;
            default:
                return false;
        }
    }

    static boolean isCjk(int cp) {
        return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF)
                || (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F)
                || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF)
                || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
    }

    /**
     * Category Mn as Python 3.11 sees it (Unicode 14). Java 17 has Unicode 13, where U+1734
     * HANUNOO SIGN PAMUDPOD was still Mn; Unicode 14 made it Mc, so Python keeps it.
     * (UnicodeClassesTest checks every code point Java knows against tokenizer.py.)
     */
    static boolean isNonSpacingMark(int cp) {
        return cp != 0x1734 && Character.getType(cp) == Character.NON_SPACING_MARK;
    }

    static boolean isControl(int cp) {
        if (cp == '\t' || cp == '\n' || cp == '\r') {
            return false;
        }
        int t = Character.getType(cp);
        return t == Character.CONTROL || t == Character.FORMAT;
    }

    // ---- the pipeline

    /** tokenizer.py {@code normalize}: lowercase, NFD minus Mn, minus control chars, U+FFFD and NUL. */
    public static String normalize(String text, boolean lowercase, boolean stripAccents) {
        if (lowercase) {
            text = text.toLowerCase(Locale.ROOT);
        }
        if (stripAccents) {
            text = Normalizer.normalize(text, Normalizer.Form.NFD);
            StringBuilder sb = new StringBuilder(text.length());
            text.codePoints().filter(cp -> !isNonSpacingMark(cp)).forEach(sb::appendCodePoint);
            text = sb.toString();
        }
        StringBuilder sb = new StringBuilder(text.length());
        text.codePoints().filter(cp -> !isControl(cp) && cp != 0xFFFD && cp != 0)
                .forEach(sb::appendCodePoint);
        return sb.toString();
    }

    /** tokenizer.py {@code split_words}: whitespace separates; punctuation and CJK stand alone. */
    public static List<String> splitWords(String text) {
        List<String> words = new ArrayList<>();
        StringBuilder current = new StringBuilder();
        int i = 0;
        while (i < text.length()) {
            int cp = text.codePointAt(i);
            i += Character.charCount(cp);
            if (isWhitespace(cp)) {
                if (current.length() > 0) {
                    words.add(current.toString());
                    current.setLength(0);
                }
            } else if (isPunctuation(cp) || isCjk(cp)) {
                if (current.length() > 0) {
                    words.add(current.toString());
                    current.setLength(0);
                }
                words.add(new String(Character.toChars(cp)));
            } else {
                current.appendCodePoint(cp);
            }
        }
        if (current.length() > 0) {
            words.add(current.toString());
        }
        return words;
    }

    /** Greedy longest-match-first WordPiece ids of one word. */
    public List<Integer> wordpiece(String word) {
        int[] cps = word.codePoints().toArray();
        if (cps.length > config.maxCharsPerWord) {
            return Collections.singletonList(config.unkId);
        }
        List<Integer> ids = new ArrayList<>();
        int start = 0;
        while (start < cps.length) {
            int end = cps.length;
            Integer found = null;
            while (start < end) {
                String piece = new String(cps, start, end - start);
                if (start > 0) {
                    piece = config.suffixIndicator + piece;
                }
                found = tokenToId.get(piece);
                if (found != null) {
                    break;
                }
                end--;
            }
            if (found == null) {
                return Collections.singletonList(config.unkId);
            }
            ids.add(found);
            start = end;
        }
        return ids;
    }

    /** Token ids of one text, unpadded and untruncated. */
    public List<Integer> tokenize(String text) {
        List<Integer> ids = new ArrayList<>();
        for (String word : splitWords(normalize(text, config.lowercase, config.stripAccents))) {
            ids.addAll(wordpiece(word));
        }
        return ids;
    }

    /** Fixed-length ids: the first {@code sequence_length} ids, then the pad id. */
    public int[] encode(String text) {
        int[] out = new int[config.sequenceLength];
        Arrays.fill(out, config.padId);
        List<Integer> ids = tokenize(text);
        for (int i = 0; i < Math.min(ids.size(), out.length); i++) {
            out[i] = ids.get(i);
        }
        return out;
    }
}
