package com.tflitecompress.core;

import java.util.ArrayList;
import java.util.List;

/** Line splitting exactly as Python's {@code str.splitlines()}, which reads vocab.txt and labels.txt. */
public final class TextLines {
    private TextLines() {
    }

    /** True for the characters {@code str.splitlines()} breaks on ("\r\n" counts once). */
    static boolean isLineBreak(char c) {
        switch (c) {
            case '\n': case '\r': case '\u000b': case '\u000c': case '\u001c': case '\u001d':
            case '\u001e': case '\u0085': case '\u2028': case '\u2029':
                return true;
            default:
                return false;
        }
    }

    /** The lines of {@code text} without their line breaks; no empty last line for a final break. */
    public static List<String> splitLines(String text) {
        List<String> out = new ArrayList<>();
        int start = 0;
        int i = 0;
        while (i < text.length()) {
            char c = text.charAt(i);
            if (isLineBreak(c)) {
                out.add(text.substring(start, i));
                i += (c == '\r' && i + 1 < text.length() && text.charAt(i + 1) == '\n') ? 2 : 1;
                start = i;
            } else {
                i++;
            }
        }
        if (start < text.length()) {
            out.add(text.substring(start));
        }
        return out;
    }
}
