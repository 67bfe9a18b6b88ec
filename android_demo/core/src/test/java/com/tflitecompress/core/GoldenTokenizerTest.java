package com.tflitecompress.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The cross-language golden file (written by tflite_compress.android.write_golden): the JVM
 * core must reproduce the Python normalisation, words and token ids of every case exactly,
 * and the int8 dequantization, ranking and quantization bit for bit. The ids it produces are
 * written to target/jvm_token_ids.json, which tests/test_android_jvm.py feeds to the real model.
 */
class GoldenTokenizerTest {
    static Map<String, Object> golden;
    static IntentCore core;

    @BeforeAll
    static void load() throws IOException {
        golden = GoldenFiles.readObject(GoldenFiles.golden());
        core = IntentCore.load(GoldenFiles.folder(GoldenFiles.assets()));
    }

    @Test
    @SuppressWarnings("unchecked")
    void goldenWasMadeFromTheseAssets() throws IOException {
        Map<String, Object> assets = (Map<String, Object>) golden.get("assets");
        for (Map.Entry<String, Object> e : assets.entrySet()) {
            String want = (String) ((Map<String, Object>) e.getValue()).get("sha256");
            assertEquals(want, GoldenFiles.sha256(GoldenFiles.assets().resolve(e.getKey())),
                    e.getKey() + " changed since the golden file was written: regenerate it (make android-golden)");
        }
        assertEquals(((Long) golden.get("sequence_length")).intValue(), core.info.sequenceLength);
    }

    @Test
    @SuppressWarnings("unchecked")
    void tokenIdsMatchPythonForEveryCase() throws IOException {
        List<Object> cases = (List<Object>) golden.get("cases");
        assertTrue(cases.size() >= 500, "golden file has only " + cases.size() + " cases");
        List<int[]> produced = new ArrayList<>();
        List<String> failures = new ArrayList<>();
        for (Object o : cases) {
            Map<String, Object> c = (Map<String, Object>) o;
            String text = (String) c.get("text");
            String norm = WordPieceTokenizer.normalize(text, core.tokenizer.config().lowercase,
                    core.tokenizer.config().stripAccents);
            int[] ids = core.input(text)[0];
            produced.add(ids);
            String where = "case " + c.get("id") + " (" + c.get("source") + ") " + Json.write(text) + ": ";
            if (!norm.equals(c.get("normalized"))) {
                failures.add(where + "normalized " + Json.write(norm) + " != " + Json.write(c.get("normalized")));
            } else if (!WordPieceTokenizer.splitWords(norm).equals(c.get("words"))) {
                failures.add(where + "words " + WordPieceTokenizer.splitWords(norm) + " != " + c.get("words"));
            } else if (!java.util.Arrays.equals(ids, GoldenFiles.ints(c.get("token_ids")))) {
                failures.add(where + "ids " + java.util.Arrays.toString(ids) + " != " + c.get("token_ids"));
            } else if (core.tokenizer.tokenize(text).size() != ((Long) c.get("n_tokens")).intValue()) {
                failures.add(where + "n_tokens " + core.tokenizer.tokenize(text).size() + " != " + c.get("n_tokens"));
            }
        }
        writeIds(produced, failures.size());
        if (!failures.isEmpty()) {
            fail(failures.size() + " of " + cases.size() + " cases differ from Python; first: "
                    + String.join("\n", failures.subList(0, Math.min(5, failures.size()))));
        }
    }

    private static void writeIds(List<int[]> ids, int mismatches) throws IOException {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("golden_file", GoldenFiles.golden().toString());
        out.put("golden_sha256", GoldenFiles.sha256(GoldenFiles.golden()));
        out.put("producer", "android_demo/core GoldenTokenizerTest (Java " + System.getProperty("java.version") + ")");
        out.put("cases", ids.size());
        out.put("mismatches", mismatches);
        out.put("token_ids", ids);
        Path p = GoldenFiles.idsOut();
        Files.createDirectories(p.getParent());
        Path tmp = p.resolveSibling(p.getFileName() + ".tmp");
        Files.write(tmp, (Json.write(out) + "\n").getBytes(StandardCharsets.UTF_8));
        Files.move(tmp, p, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    @Test
    @SuppressWarnings("unchecked")
    void outOfScopeRuleDecidesAsPythonOnEveryRuleRow() {
        Map<String, Object> rule = (Map<String, Object>) golden.get("oos_rule");
        if (rule == null) {
            assertEquals(null, core.info.oosRule, "model_info.json has an oos_rule but the golden file has none");
            return;
        }
        assertEquals(((Number) rule.get("threshold")).doubleValue(), core.info.oosRule.threshold);
        assertEquals(rule.get("score"), core.info.oosRule.score);
        assertEquals(rule.get("label"), core.info.oosRule.label);
        List<Object> rows = (List<Object>) golden.get("rule_outputs");
        List<Object> cases = (List<Object>) golden.get("cases");
        int outOfScope = 0;
        int rejected = 0;
        for (Object o : rows) {
            Map<String, Object> r = (Map<String, Object>) o;
            byte[] raw = GoldenFiles.int8s(r.get("int8"));
            IntentCore.Decision d = core.decide(raw);
            String where = "rule row " + r.get("id");
            assertEquals(((Number) r.get("max_softmax")).doubleValue(), d.maxProbability, 1e-12, where);
            if (r.containsKey("score")) {  // the rule's own score (golden files written since max_logit)
                float[] logits = core.outputQuantization.dequantize(raw);
                assertEquals(((Number) r.get("score")).doubleValue(), core.info.oosRule.score(logits), 1e-12, where);
            }
            assertEquals(r.get("label_rule"), d.label, where);
            Map<String, Object> c = (Map<String, Object>) cases.get(((Long) r.get("id")).intValue());
            assertEquals(c.get("label_rule"), d.label, where);
            outOfScope += core.info.oosRule.label.equals(c.get("true_label")) ? 1 : 0;
            rejected += d.rejected ? 1 : 0;
        }
        assertTrue(outOfScope >= 30, "only " + outOfScope + " out-of-scope cases among the rule rows");
        assertTrue(rejected > 0, "the rule rejected none of the rule rows");
    }

    @Test
    @SuppressWarnings("unchecked")
    void rawOutputsDequantizeAndRankBitForBit() {
        List<Object> rows = (List<Object>) golden.get("raw_outputs");
        assertTrue(rows.size() >= 3);
        List<Object> cases = (List<Object>) golden.get("cases");
        for (Object o : rows) {
            Map<String, Object> r = (Map<String, Object>) o;
            byte[] raw = GoldenFiles.int8s(r.get("int8"));
            float[] deq = core.outputQuantization.dequantize(raw);
            int[] bits = new int[deq.length];
            for (int i = 0; i < deq.length; i++) {
                bits[i] = Float.floatToRawIntBits(deq[i]);
            }
            assertArrayEquals(GoldenFiles.ints(r.get("dequantized_bits")), bits, "dequantized row " + r.get("id"));
            List<IntentCore.Prediction> top = core.predictions(raw, 3);
            int[] topIdx = top.stream().mapToInt(p -> p.index).toArray();
            assertArrayEquals(GoldenFiles.ints(r.get("top3")), topIdx, "top-3 of row " + r.get("id"));
            Map<String, Object> c = (Map<String, Object>) cases.get(((Long) r.get("id")).intValue());
            assertEquals(c.get("label"), top.get(0).label, "label of row " + r.get("id"));
            assertEquals(core.labels.isOutOfScope(top.get(0).index), top.get(0).label.equals(core.info.oosLabel));
        }
    }

    @Test
    @SuppressWarnings("unchecked")
    void quantizeAndDequantizeMatchNumpyBitForBit() {
        List<Object> sets = (List<Object>) golden.get("quantization_cases");
        assertTrue(sets.size() >= 2);
        for (Object o : sets) {
            Map<String, Object> s = (Map<String, Object>) o;
            Quantization qp = new Quantization((float) ((Number) s.get("scale")).doubleValue(),
                    ((Long) s.get("zero_point")).intValue());
            int[] xBits = GoldenFiles.ints(s.get("x_bits"));
            int[] want = GoldenFiles.ints(s.get("quantized"));
            for (int i = 0; i < xBits.length; i++) {
                float x = Float.intBitsToFloat(xBits[i]);
                assertEquals(want[i], qp.quantize(x), "quantize(" + x + ") with scale " + qp.scale + " zp " + qp.zeroPoint);
            }
            int[] q = GoldenFiles.ints(s.get("q"));
            int[] deqBits = GoldenFiles.ints(s.get("dequantized_bits"));
            for (int i = 0; i < q.length; i++) {
                assertEquals(deqBits[i], Float.floatToRawIntBits(qp.dequantize((byte) q[i])),
                        "dequantize(" + q[i] + ") with scale " + qp.scale + " zp " + qp.zeroPoint);
            }
        }
    }
}
