# One-command setup: every target that needs Python builds .venv first (once; reused while
# pyproject.toml and constraints.txt are unchanged, keyed on their hash).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEPS_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.stamp-$(DEPS_HASH)
PYTEST_ARGS ?=

.PHONY: venv browser test lab figures bench clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@echo ">> building $(VENV) (deps hash $(DEPS_HASH))"
	@rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[notebooks,test]'
	@touch $(STAMP)
	@echo ">> $(VENV) ready"

# Chromium for the browser widget test (tests/test_browser_widgets.py): installed when missing
# (apt-get, as root or via sudo -n); STLLR_SKIP_BROWSER=1 skips the check and that test.
browser:
	@sh tools/ensure_chromium.sh

# Package tests and every notebook under nbval (stored outputs compared; figures go to build/).
test: venv browser
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE STLLR_FIGURES_DIR=$(CURDIR)/build/test-figures $(BIN)/python -m pytest \
		--nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg \
		tests notebooks $(PYTEST_ARGS)

# JupyterLab on this machine only, with the notebooks folder open (make lab PORT=8890 for another port).
PORT ?= 8888
lab: venv
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE $(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 \
		--ServerApp.port=$(PORT) --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# All figures from the notebooks (defaults: embedded procedural data, minutes on 2 CPU cores).
# Paper scale: make figures FULL=1 DATA=/path/to/datasets [DEVICE=cuda]
figures: venv
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE $(BIN)/python tools/make_figures.py $(if $(FULL),--full) \
		$(if $(DATA),--data-path $(DATA)) $(if $(DEVICE),--device $(DEVICE))

bench: venv
	OMP_NUM_THREADS=2 $(BIN)/python benchmarks/bench_layers.py

clean-venv:
	rm -rf $(VENV)
