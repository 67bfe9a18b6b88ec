package com.tflitecompress.demo;

import android.content.Context;
import android.content.res.AssetFileDescriptor;
import com.tflitecompress.core.IntentCore;
import com.tflitecompress.core.ModelInfo;
import java.io.Closeable;
import java.io.FileInputStream;
import java.io.IOException;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.util.Arrays;
import java.util.List;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.InterpreterApi;
import org.tensorflow.lite.Tensor;

/**
 * The INT8 intent model from the app's assets, run with the LiteRT/TFLite interpreter.
 * Tokenizing, labels, dequantization and ranking all come from {@code core/} ({@link IntentCore}).
 */
public final class IntentClassifier implements Closeable {
    /** How the interpreter runs. */
    public static final class Settings {
        public final int threads;
        public final boolean xnnpack;

        public Settings(int threads, boolean xnnpack) {
            this.threads = threads;
            this.xnnpack = xnnpack;
        }
    }

    /** One classification: ranked intents and where the time went. */
    public static final class Result {
        public final List<IntentCore.Prediction> top;
        public final long tokenizeMicros;
        public final long invokeMicros;
        public final int tokenCount;

        Result(List<IntentCore.Prediction> top, long tokenizeMicros, long invokeMicros, int tokenCount) {
            this.top = top;
            this.tokenizeMicros = tokenizeMicros;
            this.invokeMicros = invokeMicros;
            this.tokenCount = tokenCount;
        }
    }

    private final IntentCore core;
    private final InterpreterApi interpreter;
    private final byte[][] output;

    public IntentClassifier(Context context, Settings settings) throws IOException {
        core = IntentCore.load(context.getAssets()::open);
        InterpreterApi.Options options = new InterpreterApi.Options()
                .setNumThreads(settings.threads)
                .setUseXNNPACK(settings.xnnpack);
        interpreter = InterpreterApi.create(mapAsset(context, core.info.modelFile), options);
        checkTensors(core.info, interpreter);
        output = core.newOutput();
    }

    /** Memory-maps a model stored uncompressed in the APK (build.gradle.kts: noCompress "tflite"). */
    private static MappedByteBuffer mapAsset(Context context, String name) throws IOException {
        try (AssetFileDescriptor fd = context.getAssets().openFd(name);
             FileInputStream in = new FileInputStream(fd.getFileDescriptor());
             FileChannel channel = in.getChannel()) {
            return channel.map(FileChannel.MapMode.READ_ONLY, fd.getStartOffset(), fd.getDeclaredLength());
        }
    }

    /** The model file must agree with model_info.json: int32 ids in, int8 scores out, same quantization. */
    private static void checkTensors(ModelInfo info, InterpreterApi interpreter) {
        Tensor in = interpreter.getInputTensor(0);
        Tensor out = interpreter.getOutputTensor(0);
        if (in.dataType() != DataType.INT32 || !Arrays.equals(in.shape(), info.input.shape)) {
            throw new IllegalStateException(info.modelFile + ": input is " + in.dataType() + Arrays.toString(in.shape())
                    + ", model_info.json says int32" + Arrays.toString(info.input.shape));
        }
        Tensor.QuantizationParams q = out.quantizationParams();
        if (out.dataType() != DataType.INT8 || q.getScale() != (float) info.output.scale
                || q.getZeroPoint() != info.output.zeroPoint) {
            throw new IllegalStateException(info.modelFile + ": output is " + out.dataType() + " scale " + q.getScale()
                    + " zero point " + q.getZeroPoint() + ", model_info.json says int8 scale " + info.output.scale
                    + " zero point " + info.output.zeroPoint);
        }
    }

    public IntentCore core() {
        return core;
    }

    /** Tokenize, invoke, rank: the top {@code k} intents with the latency of each step. */
    public synchronized Result classify(String text, int k) {
        long t0 = System.nanoTime();
        int[][] ids = core.input(text);
        long t1 = System.nanoTime();
        // A fused LSTM keeps its state in variable tensors between runs: start each utterance
        // from zeros (a no-op for models without them).
        interpreter.resetVariableTensors();
        interpreter.run(ids, output);
        long t2 = System.nanoTime();
        int tokens = core.tokenizer.tokenize(text).size();
        return new Result(core.predictions(output[0], k), (t1 - t0) / 1000, (t2 - t1) / 1000, tokens);
    }

    @Override
    public synchronized void close() {
        interpreter.close();
    }
}
