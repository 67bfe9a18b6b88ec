package com.tflitecompress.core;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Every code point that Java's Unicode tables know (Java 17: Unicode 13; the Python side says
 * its version in the file): normalize(ch) and the split class (whitespace, punctuation, CJK,
 * other) must equal tokenizer.py's. Code points unassigned in Java are skipped and counted.
 */
class UnicodeClassesTest {
    static char cls(int cp) {
        if (WordPieceTokenizer.isWhitespace(cp)) {
            return 'W';
        }
        if (WordPieceTokenizer.isPunctuation(cp)) {
            return 'P';
        }
        return WordPieceTokenizer.isCjk(cp) ? 'C' : 'O';
    }

    @Test
    @SuppressWarnings("unchecked")
    void everyCodePointNormalisesAndSplitsAsInPython() throws IOException {
        Map<String, Object> g = GoldenFiles.readObject(GoldenFiles.unicodeGolden());
        Map<Integer, String> changed = new HashMap<>();
        for (Object o : (List<Object>) g.get("normalize_changed")) {
            List<Object> e = (List<Object>) o;
            changed.put(((Long) e.get(0)).intValue(), (String) e.get(1));
        }
        List<Object> runs = (List<Object>) g.get("class_runs");
        List<String> failures = new ArrayList<>();
        int checked = 0;
        int skipped = 0;
        int run = 0;
        for (int cp = 0; cp <= 0x10FFFF; cp++) {
            if (cp >= 0xD800 && cp <= 0xDFFF) {
                continue;
            }
            while (run + 1 < runs.size() && ((Long) ((List<Object>) runs.get(run + 1)).get(0)) <= cp) {
                run++;
            }
            if (Character.getType(cp) == Character.UNASSIGNED) {
                skipped++;
                continue;
            }
            checked++;
            String ch = new String(Character.toChars(cp));
            String want = changed.getOrDefault(cp, ch);
            String got = WordPieceTokenizer.normalize(ch, true, true);
            char wantCls = ((String) ((List<Object>) runs.get(run)).get(1)).charAt(0);
            if (!want.equals(got)) {
                failures.add(String.format("U+%04X normalize %s != python %s", cp, Json.write(got), Json.write(want)));
            }
            if (cls(cp) != wantCls) {
                failures.add(String.format("U+%04X class %c != python %c", cp, cls(cp), wantCls));
            }
        }
        assertTrue(checked > 130_000, "checked only " + checked + " code points");
        if (!failures.isEmpty()) {
            fail(failures.size() + " differences over " + checked + " code points (" + skipped
                    + " unassigned in Java skipped; Python Unicode " + g.get("python_unicode_version") + "): "
                    + String.join("; ", failures.subList(0, Math.min(20, failures.size()))));
        }
    }
}
