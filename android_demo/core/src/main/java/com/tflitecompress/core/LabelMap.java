package com.tflitecompress.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** Output index -> intent name (labels.txt, one a line), and which label means out-of-scope. */
public final class LabelMap {
    private final List<String> labels;
    private final String oosLabel;
    private final int oosIndex;

    public LabelMap(List<String> labels, String oosLabel) {
        if (labels.isEmpty()) {
            throw new IllegalArgumentException("no labels");
        }
        this.labels = Collections.unmodifiableList(new ArrayList<>(labels));
        this.oosLabel = oosLabel;
        this.oosIndex = oosLabel == null ? -1 : labels.indexOf(oosLabel);
        if (oosLabel != null && oosIndex < 0) {
            throw new IllegalArgumentException("oos_label \"" + oosLabel + "\" is not one of the labels");
        }
    }

    /** Labels from a labels.txt text (lines split as Python's {@code splitlines()}). */
    public static LabelMap fromText(String text, String oosLabel) {
        return new LabelMap(TextLines.splitLines(text), oosLabel);
    }

    public int size() {
        return labels.size();
    }

    public String name(int index) {
        return labels.get(index);
    }

    public int index(String name) {
        return labels.indexOf(name);
    }

    public String oosLabel() {
        return oosLabel;
    }

    public boolean isOutOfScope(int index) {
        return index == oosIndex;
    }
}
