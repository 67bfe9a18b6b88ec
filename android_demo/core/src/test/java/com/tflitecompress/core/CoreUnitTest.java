package com.tflitecompress.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.FileNotFoundException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The pieces the golden files do not pin down: JSON, line splitting, model_info checks, top-k. */
class CoreUnitTest {
    static final String INFO = "{\"schema_version\": 1, \"task\": \"text_classification\", \"model_file\": \"m.tflite\","
            + " \"labels_file\": \"labels.txt\", \"num_labels\": 3, \"oos_label\": \"oos\", \"sequence_length\": 4,"
            + " \"input\": {\"name\": \"ids\", \"shape\": [1, 4], \"dtype\": \"int32\", \"quantization\": {\"scale\": 0.0, \"zero_point\": 0}},"
            + " \"output\": {\"name\": \"out\", \"shape\": [1, 3], \"dtype\": \"int8\", \"quantization\": {\"scale\": 0.5, \"zero_point\": -2}},"
            + " \"tokenizer\": {\"type\": \"wordpiece\", \"vocab_file\": \"vocab.txt\", \"sequence_length\": 4}}";

    @Test
    void jsonParsesNestedValuesAndEscapes() {
        Object v = Json.parse(" {\"a\": [1, -2.5e1, true, null, \"x\\u00e9\\ud83d\\ude00\\n\"], \"b\": {}} ");
        Map<?, ?> m = (Map<?, ?>) v;
        List<?> a = (List<?>) m.get("a");
        assertEquals(1L, a.get(0));
        assertEquals(-25.0, a.get(1));
        assertEquals(Boolean.TRUE, a.get(2));
        assertNull(a.get(3));
        assertEquals("x\u00e9\ud83d\ude00\n", a.get(4));
        assertEquals(Map.of(), m.get("b"));
        for (String bad : new String[] {"", "{", "[1,]", "{\"a\" 1}", "\"abc", "tru", "[1] x", "01x"}) {
            assertThrows(IllegalArgumentException.class, () -> Json.parse(bad), bad);
        }
        assertEquals("{\"k\": [1,2]}", Json.write(Map.of("k", new int[] {1, 2})));
        assertEquals("\"\\u00e9\\\"\"", Json.write("\u00e9\""));
    }

    @Test
    void linesSplitAsPythonSplitlines() {
        assertEquals(List.of("a", "b", "", "c", "d", "e"), TextLines.splitLines("a\r\nb\n\nc\u2028d\u000be\n"));
        assertEquals(List.of(), TextLines.splitLines(""));
        assertEquals(List.of("x", ""), TextLines.splitLines("x\r\r"));
    }

    @Test
    void modelInfoReadsTheSchemaAndRejectsWhatTheAppCannotRun() {
        ModelInfo info = ModelInfo.parse(INFO);
        assertEquals(4, info.sequenceLength);
        assertEquals(0.5f, info.output.quantization().scale);
        assertEquals(-2, info.output.zeroPoint);
        assertEquals("oos", info.oosLabel);
        assertEquals("##", info.tokenizer.suffixIndicator);
        String[][] breakages = {
            {"\"schema_version\": 1", "\"schema_version\": 2", "schema_version 2"},
            {"\"dtype\": \"int8\"", "\"dtype\": \"float32\"", "output dtype must be int8"},
            {"\"dtype\": \"int32\"", "\"dtype\": \"float32\"", "input dtype must be int32"},
            {"\"scale\": 0.5", "\"scale\": 0.0", "scale must be"},
            {"\"sequence_length\": 4}", "\"sequence_length\": 5}", "sequence_length"},
            {"\"num_labels\": 3", "\"num_labels\": 4", "num_labels"},
            {", \"quantization\": {\"scale\": 0.5, \"zero_point\": -2}", "", "quantization"},
            {"\"zero_point\": -2", "\"zero_point\": 200", "zero_point"},
        };
        for (String[] b : breakages) {
            String broken = INFO.replace(b[0], b[1]);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ModelInfo.parse(broken), b[1]);
            assertTrue(e.getMessage().contains(b[2]), e.getMessage());
        }
    }

    @Test
    void coreLoadsFromAnAssetSourceAndNamesTheFileOnErrors() throws Exception {
        Map<String, String> files = new HashMap<>();
        files.put("model_info.json", INFO);
        files.put("vocab.txt", "[PAD]\n[UNK]\nset\nalarm\n##s\n");
        files.put("labels.txt", "alarm\nweather\noos\n");
        IntentCore.AssetSource src = name -> {
            if (!files.containsKey(name)) {
                throw new FileNotFoundException(name);
            }
            return new ByteArrayInputStream(files.get(name).getBytes(StandardCharsets.UTF_8));
        };
        IntentCore core = IntentCore.load(src);
        assertArrayEquals(new int[] {2, 3, 4, 1}, core.input("Set ALARMs now!")[0]);
        assertArrayEquals(new int[] {0, 0, 0, 0}, core.input("")[0]);
        List<IntentCore.Prediction> top = core.predictions(new byte[] {-2, 10, 10}, 3);
        assertEquals(List.of(1, 2, 0), top.stream().map(p -> p.index).collect(java.util.stream.Collectors.toList()));
        assertTrue(top.get(1).outOfScope);
        assertFalse(top.get(0).outOfScope);
        assertEquals(6.0f, top.get(0).logit);
        assertEquals(1.0, top.stream().mapToDouble(p -> p.probability).sum(), 1e-9);
        files.put("labels.txt", "a\nb\n");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> IntentCore.load(src));
        assertTrue(e.getMessage().startsWith("labels.txt: "), e.getMessage());
        files.put("vocab.txt", "[UNK]\n[PAD]\n");
        e = assertThrows(IllegalArgumentException.class, () -> IntentCore.load(src));
        assertTrue(e.getMessage().startsWith("vocab.txt: vocabulary must start"), e.getMessage());
        files.put("vocab.txt", "[PAD]\n[UNK]\nx\nx\n");
        assertThrows(IllegalArgumentException.class, () -> IntentCore.load(src));
    }

    @Test
    void outOfScopeRuleScoresMaxLogitOrMaxSoftmax() {
        float[] logits = {2.5f, -1f, 0.5f};
        double p = 1.0 / (1.0 + Math.exp(-3.5) + Math.exp(-2.0));
        assertEquals(p, OOSRule.maxSoftmax(logits), 1e-15);
        assertEquals(2.5, OOSRule.maxLogit(logits));
        OOSRule logit = new OOSRule("max_logit", 3.0, "oos");  // a logit threshold may lie outside [0, 1]
        assertEquals(2.5, logit.score(logits));
        assertTrue(logit.rejects(logits));
        assertFalse(new OOSRule("max_logit", 2.5, "oos").rejects(logits));  // below, not at, the threshold
        assertFalse(new OOSRule("max_logit", -7.25, "oos").rejects(logits));
        OOSRule softmax = new OOSRule("max_softmax", 0.8, "oos");
        assertEquals(p, softmax.score(logits));
        assertEquals(p < 0.8, softmax.rejects(logits));
        assertThrows(IllegalArgumentException.class, () -> new OOSRule("max_softmax", 3.0, "oos"));
        assertThrows(IllegalArgumentException.class, () -> new OOSRule("max_logit", Double.NaN, "oos"));
        assertThrows(IllegalArgumentException.class, () -> new OOSRule("max_logit", Double.POSITIVE_INFINITY, "oos"));
        assertThrows(IllegalArgumentException.class, () -> new OOSRule("energy", 0.5, "oos"));
    }

    @Test
    void topKBreaksTiesTowardTheLowerIndexAndQuantizeRejectsNan() {
        assertArrayEquals(new int[] {1, 3, 0}, TopK.indices(new float[] {1f, 5f, -1f, 5f}, 3));
        assertArrayEquals(new int[] {3, 1}, TopK.indices(new byte[] {0, 7, -8, 9}, 2));
        assertArrayEquals(new int[] {0}, TopK.indices(new float[] {2f}, 5));
        Quantization q = new Quantization(0.5f, 0);
        assertThrows(IllegalArgumentException.class, () -> q.quantize(Float.NaN));
        assertEquals(127, q.quantize(Float.POSITIVE_INFINITY));
        assertEquals(0, q.quantize(0.25f)); // 0.5 rounds half to even
        assertEquals(2, q.quantize(0.75f)); // 1.5 -> 2
        assertThrows(IllegalArgumentException.class, () -> new Quantization(0f, 0));
        assertEquals(Arrays.asList("cafe", "!", "ok", "\u4eca", "\u5929"),
                WordPieceTokenizer.splitWords(WordPieceTokenizer.normalize("CAF\u00c9! ok\u4eca\u5929", true, true)));
    }
}
