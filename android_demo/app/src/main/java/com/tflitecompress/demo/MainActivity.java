package com.tflitecompress.demo;

import android.app.Activity;
import android.graphics.Typeface;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.text.Editable;
import android.text.TextWatcher;
import android.view.ViewGroup;
import android.widget.AdapterView;
import android.widget.ArrayAdapter;
import android.widget.CheckBox;
import android.widget.EditText;
import android.widget.LinearLayout;
import android.widget.ScrollView;
import android.widget.Spinner;
import android.widget.TextView;
import com.tflitecompress.core.IntentCore;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * A text box; as you type, the top-3 intents with their probabilities, "out of scope" when the
 * model says so, and the latency of each run (tokenize and invoke, in microseconds). Threads and
 * XNNPACK can be switched at run time. The UI is built in code, so the sources need no R class.
 */
public final class MainActivity extends Activity {
    private static final int TOP_K = 3;
    private static final Integer[] THREAD_CHOICES = {1, 2, 4};

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final Handler main = new Handler(Looper.getMainLooper());
    private IntentClassifier classifier;
    private EditText input;
    private TextView results;
    private TextView status;
    private Spinner threads;
    private CheckBox xnnpack;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        int pad = (int) (16 * getResources().getDisplayMetrics().density);
        LinearLayout root = new LinearLayout(this);
        root.setOrientation(LinearLayout.VERTICAL);
        root.setPadding(pad, pad, pad, pad);

        input = new EditText(this);
        input.setHint("Type a request, e.g. \"what's my checking balance\"");
        input.setSingleLine(false);
        root.addView(input, new LinearLayout.LayoutParams(ViewGroup.LayoutParams.MATCH_PARENT,
                ViewGroup.LayoutParams.WRAP_CONTENT));

        LinearLayout options = new LinearLayout(this);
        options.setOrientation(LinearLayout.HORIZONTAL);
        TextView threadsLabel = new TextView(this);
        threadsLabel.setText("Threads ");
        options.addView(threadsLabel);
        threads = new Spinner(this);
        threads.setAdapter(new ArrayAdapter<>(this, android.R.layout.simple_spinner_dropdown_item, THREAD_CHOICES));
        options.addView(threads);
        xnnpack = new CheckBox(this);
        xnnpack.setText("XNNPACK");
        xnnpack.setChecked(true);
        options.addView(xnnpack);
        root.addView(options);

        results = new TextView(this);
        results.setTypeface(Typeface.MONOSPACE);
        results.setTextSize(18);
        root.addView(results);
        status = new TextView(this);
        root.addView(status);

        ScrollView scroll = new ScrollView(this);
        scroll.addView(root);
        setContentView(scroll);

        input.addTextChangedListener(new TextWatcher() {
            @Override
            public void beforeTextChanged(CharSequence s, int start, int count, int after) {
            }

            @Override
            public void onTextChanged(CharSequence s, int start, int before, int count) {
            }

            @Override
            public void afterTextChanged(Editable s) {
                classify(s.toString());
            }
        });
        threads.setOnItemSelectedListener(new AdapterView.OnItemSelectedListener() {
            @Override
            public void onItemSelected(AdapterView<?> parent, android.view.View view, int position, long id) {
                reload();
            }

            @Override
            public void onNothingSelected(AdapterView<?> parent) {
            }
        });
        xnnpack.setOnCheckedChangeListener((button, checked) -> reload());
        reload();
    }

    /** (Re)creates the interpreter with the chosen threads and XNNPACK setting, off the UI thread. */
    private void reload() {
        IntentClassifier.Settings settings = new IntentClassifier.Settings(
                (Integer) threads.getSelectedItem(), xnnpack.isChecked());
        status.setText("Loading model…");
        worker.execute(() -> {
            try {
                if (classifier != null) {
                    classifier.close();
                }
                classifier = new IntentClassifier(this, settings);
                IntentCore core = classifier.core();
                String about = String.format(Locale.ROOT, "%d intents, %d-piece vocabulary, %d tokens max; %d thread(s), XNNPACK %s",
                        core.info.numLabels, core.tokenizer.vocabularySize(), core.info.sequenceLength,
                        settings.threads, settings.xnnpack ? "on" : "off");
                main.post(() -> {
                    status.setText(about);
                    classify(input.getText().toString());
                });
            } catch (Exception e) {
                classifier = null;
                main.post(() -> status.setText("Cannot load the model: " + e.getMessage()));
            }
        });
    }

    private void classify(String text) {
        worker.execute(() -> {
            if (classifier == null) {
                return;
            }
            IntentClassifier.Result r = classifier.classify(text, TOP_K);
            StringBuilder sb = new StringBuilder();
            if (!r.top.isEmpty() && r.top.get(0).outOfScope) {
                sb.append("Out of scope: this is not one of the intents the model knows.\n\n");
            }
            for (IntentCore.Prediction p : r.top) {
                String name = p.outOfScope ? "out of scope (" + p.label + ")" : p.label;
                sb.append(String.format(Locale.ROOT, "%-28s %5.1f%%%n", name, 100 * p.probability));
            }
            sb.append(String.format(Locale.ROOT, "%ntokenize %d µs, invoke %d µs (%d tokens)",
                    r.tokenizeMicros, r.invokeMicros, r.tokenCount));
            String shown = sb.toString();
            main.post(() -> results.setText(shown));
        });
    }

    @Override
    protected void onDestroy() {
        worker.execute(() -> {
            if (classifier != null) {
                classifier.close();
            }
        });
        worker.shutdown();
        super.onDestroy();
    }
}
