# CloudAct Pipelines. Every target creates/uses .venv from this repo's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test bench bench-quick conformance clean help

help:
	@echo "make demo         run the local demo (creates .venv, installs, runs 'cloudact demo')"
	@echo "make test         run the whole test suite"
	@echo "make conformance  export the demo's FOCUS table and run the external focus-validator"
	@echo "make bench        benchmark ingest + conversion"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
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

clean:
	rm -rf $(VENV) .venv-validator .venv-focus-converter .azurite .zetasql .cloudact
