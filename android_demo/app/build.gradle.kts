plugins {
    id("com.android.application")
}

android {
    namespace = "com.tflitecompress.demo"
    compileSdk = 34

    defaultConfig {
        applicationId = "com.tflitecompress.demo"
        minSdk = 24 // core/ uses String.codePoints() and Map.getOrDefault (API 24)
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    // The plain-Java core (tokenizer, labels, int8 (de)quantization, top-k, model_info.json) is
    // compiled into the app from its own folder: one source of truth, unit-tested by Maven in CI.
    sourceSets {
        getByName("main") {
            java.srcDir("../core/src/main/java")
        }
    }

    // Keep the model uncompressed in the APK so it can be memory-mapped from the assets.
    androidResources {
        noCompress += "tflite"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
}

dependencies {
    // LiteRT 1.x keeps the org.tensorflow.lite API (InterpreterApi, Interpreter); XNNPACK included.
    implementation("com.google.ai.edge.litert:litert:1.2.0")
}
