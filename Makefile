# One-command setup: every target that needs Python builds .venv first (once; reused while
# pyproject.toml and constraints.txt are unchanged, keyed on their hash).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEPS_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.stamp-$(DEPS_HASH)
PYTEST_ARGS ?=

.PHONY: venv test figures bench clean-venv lab

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@echo ">> building $(VENV) (deps hash $(DEPS_HASH))"
	@rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[notebooks,test]'
	@touch $(STAMP)
	@echo ">> $(VENV) ready"

test: venv
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest $(PYTEST_ARGS)

figures: venv
	@echo "make figures: the notebook suite is coming (see issue 'The notebook suite'); nothing to regenerate yet"

bench: venv
	OMP_NUM_THREADS=2 $(BIN)/python benchmarks/bench_layers.py

clean-venv:
	rm -rf $(VENV)
