package com.tflitecompress.core;

import java.util.List;
import java.util.Map;

/** Typed access to parsed JSON, with messages that name the key and what was found. */
final class JsonValues {
    private JsonValues() {
    }

    static Object required(Map<String, Object> m, String key) {
        if (!m.containsKey(key) || m.get(key) == null) {
            throw new IllegalArgumentException("missing key \"" + key + "\"");
        }
        return m.get(key);
    }

    static String string(Map<String, Object> m, String key, String dflt) {
        Object v = m.get(key);
        if (v == null) {
            return dflt;
        }
        if (!(v instanceof String)) {
            throw new IllegalArgumentException("\"" + key + "\" must be a string, got " + v);
        }
        return (String) v;
    }

    static boolean bool(Map<String, Object> m, String key, boolean dflt) {
        Object v = m.get(key);
        if (v == null) {
            return dflt;
        }
        if (!(v instanceof Boolean)) {
            throw new IllegalArgumentException("\"" + key + "\" must be true or false, got " + v);
        }
        return (Boolean) v;
    }

    static int integer(Map<String, Object> m, String key, int dflt) {
        return m.get(key) == null ? dflt : requiredInteger(m, key);
    }

    static int requiredInteger(Map<String, Object> m, String key) {
        Object v = required(m, key);
        if (!(v instanceof Long) || (Long) v > Integer.MAX_VALUE || (Long) v < Integer.MIN_VALUE) {
            throw new IllegalArgumentException("\"" + key + "\" must be an integer, got " + v);
        }
        return (int) (long) (Long) v;
    }

    static double number(Map<String, Object> m, String key) {
        Object v = required(m, key);
        if (!(v instanceof Number)) {
            throw new IllegalArgumentException("\"" + key + "\" must be a number, got " + v);
        }
        return ((Number) v).doubleValue();
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> object(Map<String, Object> m, String key) {
        Object v = required(m, key);
        if (!(v instanceof Map)) {
            throw new IllegalArgumentException("\"" + key + "\" must be an object");
        }
        return (Map<String, Object>) v;
    }

    @SuppressWarnings("unchecked")
    static List<Object> list(Map<String, Object> m, String key) {
        Object v = required(m, key);
        if (!(v instanceof List)) {
            throw new IllegalArgumentException("\"" + key + "\" must be an array");
        }
        return (List<Object>) v;
    }
}
