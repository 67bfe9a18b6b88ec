# android_demo targets, included by the main Makefile (`include android_demo/android.mk`).
#   android-test       build android_demo/core and run its JUnit 5 golden tests (offline after the
#                      first dependency download; about 5 s warm). `make test` runs this.
#   android-golden     export $(ANDROID_RUN) into the app's assets and rewrite the golden files
#                      from them, then re-run the JVM tests.
#   android-typecheck  javac the app's Java sources (+ core) against real jars from Maven Central
#                      (Robolectric android-all 14, tensorflow-lite-api 2.16.1 classes.jar). A type
#                      check only: no resources, no dex, no APK. Downloads ~140 MB the first time.
ANDROID_PY ?= .venv/bin/python
ANDROID_MVN ?= mvn
ANDROID_RUN ?= runs/clinc150

.PHONY: android-test android-golden android-typecheck

android-test:
	$(ANDROID_MVN) -q -B -f android_demo/core test

android-golden:
	$(ANDROID_PY) -m tflite_compress.commands_android $(ANDROID_RUN) --app android_demo/app \
		--golden android_demo/golden/intent_golden.json
	$(ANDROID_MVN) -q -B -f android_demo/core test

android-typecheck:
	android_demo/app/typecheck/typecheck.sh
