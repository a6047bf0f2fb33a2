# Two commands set up a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster
export RAG_WORK_DIR ?= $(CURDIR)/.rag
export RAG_INDEX_URI ?= $(CURDIR)/.rag/index
export HF_HUB_OFFLINE := 1

.PHONY: demo dev test lint bench bench-stores bench-search bench-sensors bench-convergence bench-catchup bench-bookkeeping bench-remote bench-scans bench-notify bench-ui bench-quality bench-runtime bench-anchor bench-csv install install-test postgres clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: pip takes the local CPU wheel and no CUDA packages ever come in.
$(VENV)/.installed: $(BIN)/python setup.py
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed setup.py
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

postgres:
	bash scripts/install-postgres.sh

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/rag-assets ingest samples/inbox
	@echo
	$(BIN)/rag-assets query "how many vacation days do I get" --tenant acme -k 3
	@echo
	$(BIN)/rag-assets query "what to do when my laptop is stolen" --tenant globex -k 2
	@echo
	@echo "A scanned page (no text layer: read by OCR), a Word file, and a photo (its thumbnail in samples/inbox/.rag-thumbnails):"
	$(BIN)/rag-assets query "where do visitors sign in" --tenant globex -k 1
	$(BIN)/rag-assets query "hotel budget in Rotterdam" --tenant acme -k 1
	$(BIN)/rag-assets query "when does the parking garage close" --tenant acme -k 1
	@echo
	@echo "A catchup source of catchup.yaml: the product export of 2025-01-02 (samples/catchup/exports)"
	$(BIN)/dagster asset materialize -m rag_assets.definitions --select 'group:catchup_exports' --partition 2025-01-02 2>&1 \
		| grep -E "row\(s\), |vectors written|RUN_FAILURE" | sed 's/.* - //'
	$(BIN)/rag-assets query "pills that make an earthquake" --tenant acme -k 1
	@echo
	@echo "Lineage and runs are in $(DAGSTER_HOME). Open the UI with 'make dev' (http://127.0.0.1:3000)."

EMBED_SERVICE_PORT ?= 8766

# dagster dev, and beside it the local model loaded once (rag_assets.frontends.embed_service) for the
# runs the daemon launches; both stop together.
dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m rag_assets.frontends.embed_service --port $(EMBED_SERVICE_PORT) & service=$$!; hub=; \
	case "$$RAG_NOTIFY" in ws://*) $(BIN)/python -m rag_assets.frontends.notify_hub --url "$$RAG_NOTIFY" & hub=$$!;; esac; \
	trap 'kill $$service $$hub 2>/dev/null' EXIT INT TERM; \
	RAG_EMBED_SERVICE_URL=http://127.0.0.1:$(EMBED_SERVICE_PORT) $(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

# ruff with pyproject.toml's rules and line length (ruff pinned in setup.py's test extra), the
# layer contract of docs/architecture.md (Layout) with import-linter, and the defs folder as
# `dg` loads it (component YAML validated, every definition built).
lint: install-test $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs

test: install-test postgres lint
	$(BIN)/python -m pytest

bench: install-test
	$(BIN)/python benchmarks/ingest.py

bench-stores: install-test postgres
	$(BIN)/python benchmarks/stores.py

bench-search: install-test postgres
	$(BIN)/python benchmarks/search_modes.py
	$(BIN)/python benchmarks/keyword_index.py

bench-sensors: install-test
	$(BIN)/python benchmarks/sensors.py

bench-convergence: install-test
	$(BIN)/python benchmarks/convergence.py

bench-catchup: install-test
	$(BIN)/python benchmarks/catchup.py

bench-bookkeeping: install-test
	$(BIN)/python benchmarks/bookkeeping.py

bench-remote: install-test postgres
	$(BIN)/python benchmarks/remote_embed.py

bench-scans: install-test
	$(BIN)/python benchmarks/scans.py

bench-notify: install-test
	$(BIN)/python benchmarks/notify.py

# Three vector_index pages (the asset, its partitions, a document's record) in headless Chromium (Debian's), driven by playwright-core.
bench-ui: install-test
	bash scripts/install-chromium.sh
	$(BIN)/python benchmarks/ui.py

bench-csv: install-test
	$(BIN)/python benchmarks/csv_reading.py

bench-quality: install-test
	$(BIN)/python benchmarks/quality.py --embedders local:all-MiniLM-L6-v2,local:all-MiniLM-L6-v2+int8

bench-runtime: install-test
	$(BIN)/python benchmarks/runtime.py

# rag_assets beside the LangChain Indexing API script (in its own venv, made on first use).
bench-anchor: install-test
	$(BIN)/python benchmarks/anchor.py

clean:
	rm -rf .dagster .rag
