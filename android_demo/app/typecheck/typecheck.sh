#!/usr/bin/env bash
# Type-check the Android app's Java sources (app/src/main/java + core/src/main/java) with javac
# against real jars from Maven Central. NOT an Android build: no resources, no dex, no APK.
#   android.jar stand-in: org.robolectric:android-all (the framework classes Robolectric runs)
#   TFLite Java API:      org.tensorflow:tensorflow-lite-api (an .aar; its classes.jar is used)
# Usage: android_demo/app/typecheck/typecheck.sh   (mvn downloads once, then works offline)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
app="$(dirname "$here")"
core="$(dirname "$app")/core"
out="$here/target"
ANDROID_ALL="${ANDROID_ALL:-org.robolectric:android-all:14-robolectric-10818077}"
TFLITE_API="${TFLITE_API:-org.tensorflow:tensorflow-lite-api:2.16.1:aar}"
mkdir -p "$out/jars" "$out/classes"
for artifact in "$ANDROID_ALL" "$TFLITE_API"; do
  mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
    -Dartifact="$artifact" -DoutputDirectory="$out/jars" -Dmdep.overWriteIfNewer=true
done
aar="$(ls "$out"/jars/tensorflow-lite-api-*.aar)"
(cd "$out/jars" && unzip -o -q "$aar" classes.jar && mv classes.jar "$(basename "$aar" .aar)-classes.jar")
cp="$(ls "$out"/jars/android-all-*.jar):$(ls "$out"/jars/tensorflow-lite-api-*-classes.jar)"
mapfile -t sources < <(find "$app/src/main/java" "$core/src/main/java" -name '*.java' | sort)
rm -rf "$out/classes" && mkdir -p "$out/classes"
javac --release 17 -Xlint:all,-classfile -Werror -encoding UTF-8 -cp "$cp" -d "$out/classes" "${sources[@]}"
echo "typecheck OK: ${#sources[@]} Java files (app + core) compiled against:"
echo "  $(basename "$(ls "$out"/jars/android-all-*.jar)")  ($ANDROID_ALL)"
echo "  $(basename "$aar") classes.jar  ($TFLITE_API)"
