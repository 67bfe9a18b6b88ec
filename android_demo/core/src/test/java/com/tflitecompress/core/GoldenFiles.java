package com.tflitecompress.core;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/** Locations passed by the pom (golden.file, assets.dir, jvm.ids.file) and small readers. */
final class GoldenFiles {
    private GoldenFiles() {
    }

    static Path path(String property, String fallback) {
        return Paths.get(System.getProperty(property, fallback)).toAbsolutePath().normalize();
    }

    static Path golden() {
        return path("golden.file", "../golden/intent_golden.json");
    }

    static Path unicodeGolden() {
        return path("unicode.golden.file", "../golden/unicode_classes.json");
    }

    static Path assets() {
        return path("assets.dir", "../app/src/main/assets");
    }

    static Path idsOut() {
        return path("jvm.ids.file", "target/jvm_token_ids.json");
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> readObject(Path p) throws IOException {
        return (Map<String, Object>) Json.parse(Files.readString(p));
    }

    static String sha256(Path p) throws IOException {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    static int[] ints(Object list) {
        List<?> l = (List<?>) list;
        int[] out = new int[l.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (int) (long) (Long) l.get(i);
        }
        return out;
    }

    /** A JSON list of int8 values as the raw output bytes the interpreter returns. */
    static byte[] int8s(Object list) {
        int[] q = ints(list);
        byte[] out = new byte[q.length];
        for (int i = 0; i < q.length; i++) {
            out[i] = (byte) q[i];
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    static List<String> strings(Object list) {
        return (List<String>) list;
    }

    static IntentCore.AssetSource folder(Path dir) {
        return name -> Files.newInputStream(dir.resolve(name));
    }
}
