# CloudAct Pipelines. Every target creates/uses .venv from this repo's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Pinned, hashed dependency sets (pip-tools, `make lock`): requirements.lock is the runtime + `gcp`
# extra (the job image and the functions archive), requirements-test.lock adds the `test` extra on
# exactly the same pins (CI, demo).
LOCK := requirements.lock
TEST_LOCK := requirements-test.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(TEST_LOCK) | cksum | cut -d' ' -f1)
LOCK_VENV := .venv-lock
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	--unsafe-package cloudact-pipelines $(if $(UPGRADE),--upgrade)

.PHONY: demo test bench bench-quick conformance docs lock clean help

help:
	@echo "make demo         run the local demo (creates .venv, installs, runs 'cloudact demo')"
	@echo "make test         run the whole test suite"
	@echo "make conformance  export the demo's FOCUS table and run the external focus-validator"
	@echo "make bench        benchmark ingest + conversion, and a 1M-row export"
	@echo "make docs         regenerate the documents made from code (FOCUS schema, docs/focus-rules.md, docs/focus-mapping.md)"
	@echo "make lock         re-pin requirements*.lock after a pyproject.toml change (UPGRADE=1: newest allowed versions)"

# Exactly the locked versions, then the project itself without resolving anything again.
$(STAMP): pyproject.toml $(TEST_LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(TEST_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	CLOUDACT_HOME=.cloudact $(BIN)/cloudact demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

conformance: $(STAMP)
	CLOUDACT_HOME=.cloudact $(BIN)/cloudact demo
	CLOUDACT_HOME=.cloudact/demo $(BIN)/cloudact export acme --out .cloudact/demo/focus.parquet
	$(BIN)/python -m tools.conformance --parquet .cloudact/demo/focus.parquet

bench: $(STAMP)
	$(BIN)/python -m tools.bench

bench-quick: $(STAMP)
	$(BIN)/python -m tools.bench --quick

# Documents generated from the code; tests fail when a committed one is stale.
docs: $(STAMP)
	$(BIN)/python -m shared.focus --write-schema --rules-doc
	$(BIN)/python -m shared.focus_mapping --write

# Resolved on Python 3.11 (the image's and CI's) for Linux; the second lock is constrained by the first.
lock:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "make lock needs Python 3.11 (PYTHON=python3.11)")'
	@test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet pip-tools; }
	$(LOCK_VENV)/bin/pip-compile $(LOCK_FLAGS) --extra gcp -o $(LOCK) pyproject.toml
	$(LOCK_VENV)/bin/pip-compile $(LOCK_FLAGS) --extra gcp --extra test --constraint $(LOCK) -o $(TEST_LOCK) pyproject.toml

clean:
	rm -rf $(VENV) .venv-validator .venv-focus-converter .azurite .zetasql .cloudact
