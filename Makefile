# One-command setup: every target that needs Python builds .venv first (once; reused while
# pyproject.toml and constraints.txt are unchanged, keyed on their hash).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEPS_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.stamp-$(DEPS_HASH)
PYTEST_ARGS ?=

.PHONY: venv test figures bench clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@echo ">> building $(VENV) (deps hash $(DEPS_HASH))"
	@rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[notebooks,test]'
	@touch $(STAMP)
	@echo ">> $(VENV) ready"

# Package tests and every notebook under nbval (stored outputs compared; figures go to build/).
test: venv
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE STLLR_FIGURES_DIR=$(CURDIR)/build/test-figures $(BIN)/python -m pytest \
		--nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg \
		tests notebooks $(PYTEST_ARGS)

# All figures from the notebooks (defaults: embedded procedural data, minutes on 2 CPU cores).
# Paper scale: make figures FULL=1 DATA=/path/to/datasets [DEVICE=cuda]
figures: venv
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE $(BIN)/python tools/make_figures.py $(if $(FULL),--full) \
		$(if $(DATA),--data-path $(DATA)) $(if $(DEVICE),--device $(DEVICE))

bench: venv
	OMP_NUM_THREADS=2 $(BIN)/python benchmarks/bench_layers.py

clean-venv:
	rm -rf $(VENV)
