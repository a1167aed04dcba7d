# One-command setup: every target that needs Python builds .venv first (once; reused while
# pyproject.toml and constraints.txt are unchanged, keyed on their hash).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEPS_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.stamp-$(DEPS_HASH)
PYTEST_ARGS ?=

.PHONY: venv browser test test-package test-nbval-native test-nbval-forced lab figures docs bench clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@echo ">> building $(VENV) (deps hash $(DEPS_HASH))"
	@rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[notebooks,test,docs,cluster]'
	@# SpikingJelly (notebook 04 compares OTTT and SLTT with it): without its declared torchvision,
	@# torchaudio, tensorboard and SciencePlots, which spikingjelly.activation_based never imports
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt spikingjelly
	@touch $(STAMP)
	@echo ">> $(VENV) ready"

# Chromium for the browser widget test (tests/test_browser_widgets.py): installed when missing
# (apt-get, as root or via sudo -n); STLLR_SKIP_BROWSER=1 skips the check and that test.
browser:
	@sh tools/ensure_chromium.sh

# make test runs three parts (side by side), each even when another one
# failed, and names the failed ones:
#   package       the package tests (tests/), once
#   nbval-native  every notebook under nbval (stored outputs compared), with the CPU kernels torch
#                 and MKL pick on this machine
#   nbval-forced  the same notebooks again with other kernels forced in the notebook kernel's
#                 environment (nbval starts the kernel as a subprocess, which inherits it): ATen's
#                 AVX2 code instead of the CPU's best (AVX-512 here) and MKL's reproducible
#                 COMPATIBLE code path, so a stored output that depends on the CPU fails here
#                 rather than on the next machine (on a CPU whose best is AVX2 the two coincide)
# One part alone: make test-package | test-nbval-native | test-nbval-forced. PYTEST_ARGS reaches
# every part (a part it selects nothing from passes); NOTEBOOKS=notebooks/01_lif_and_traces.ipynb
# narrows the nbval parts. Figures written by the tests go to build/test-figures/<part>/.
NOTEBOOKS ?= notebooks
NBVAL_FORCED_ENV ?= ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE
TEST_ENV := OMP_WAIT_POLICY=PASSIVE STLLR_CLUSTER=
# the notebooks' processes: torch threads and sweep workers (stllr.studies.sweeps.default_workers).
# make test runs its three parts side by side on the machine's cores and sets NBVAL_PROCS to
# OMP_NUM_THREADS=1 STLLR_WORKERS=1: one busy process per part instead of five (the stored outputs
# do not depend on either: sweeps are bit-identical for any number of workers, tests/test_sweeps.py)
NBVAL_PROCS ?= OMP_NUM_THREADS=2 STLLR_WORKERS=2
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg
TEST_DESC_package := package tests
TEST_DESC_nbval-native := notebooks under nbval, native CPU kernels
TEST_DESC_nbval-forced := notebooks under nbval, kernels forced: $(NBVAL_FORCED_ENV)
TEST_CMD_package = $(TEST_ENV) OMP_NUM_THREADS=2 STLLR_FIGURES_DIR=$(CURDIR)/build/test-figures/package \
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)
TEST_CMD_nbval-native = $(TEST_ENV) $(NBVAL_PROCS) STLLR_FIGURES_DIR=$(CURDIR)/build/test-figures/nbval-native \
	$(BIN)/python -m pytest $(NBVAL) $(NOTEBOOKS) $(PYTEST_ARGS)
TEST_CMD_nbval-forced = $(TEST_ENV) $(NBVAL_PROCS) $(NBVAL_FORCED_ENV) STLLR_FIGURES_DIR=$(CURDIR)/build/test-figures/nbval-forced \
	$(BIN)/python -m pytest $(NBVAL) $(NOTEBOOKS) $(PYTEST_ARGS)
# $(call test_part,NAME): run one part; on failure add NAME to $$failed and say which part it was
# (pytest's exit status 5, "no tests collected", is PYTEST_ARGS deselecting the whole part)
test_part = echo ">> [$(1)] $(TEST_DESC_$(1))"; echo '$(subst ','\'',$(strip $(TEST_CMD_$(1))))'; \
	$(TEST_CMD_$(1)); rc=$$?; \
	if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then failed="$$failed $(1)"; \
		echo ">> [$(1)] FAILED: $(TEST_DESC_$(1)) (again alone: make test-$(1))"; fi

# the three parts run side by side (TEST_PARALLEL=0: one after the other); see tools/run_test_parts.sh
test: venv browser
	@sh tools/run_test_parts.sh "$(MAKE)"

test-package: venv browser
	@failed=""; $(call test_part,package); [ -z "$$failed" ]

test-nbval-native test-nbval-forced: test-%: venv
	@failed=""; $(call test_part,$*); [ -z "$$failed" ]

# JupyterLab on this machine only, with the notebooks folder open (make lab PORT=8890 for another port).
PORT ?= 8888
lab: venv
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE $(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 \
		--ServerApp.port=$(PORT) --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# The stored notebooks and all figures from one run (defaults: embedded procedural data, minutes on
# 2 CPU cores): each executed notebook is written over notebooks/NN_*.ipynb, its figures into
# figures/, and figures/MANIFEST.json records the run id (also in each notebook's metadata) and every
# figure's sha256 (checked by tests/test_figures_provenance.py). ONLY="01_lif_and_traces 03_stdp_window"
# runs some notebooks; OUT=DIR writes DIR/notebooks and DIR/figures instead.
# Paper scale: make figures FULL=1 DATA=/path/to/datasets [DEVICE=cuda] (written to build/full/ unless OUT=...)
# Sweeps on a Dask cluster: make figures FULL=1 DATA=... CLUSTER=tcp://scheduler:8786 (or STLLR_CLUSTER)
FIGURES_ARGS = $(strip $(if $(FULL),--full) $(if $(DATA),--data-path $(DATA)) $(if $(DEVICE),--device $(DEVICE)) \
	$(if $(CLUSTER),--cluster $(CLUSTER)) $(if $(ONLY),--only $(ONLY)) $(if $(OUT),--out-dir $(OUT)))
figures: venv
	@echo ">> tools/make_figures.py $(FIGURES_ARGS)"
	@OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE $(BIN)/python tools/make_figures.py $(FIGURES_ARGS)

# The course site: static HTML in build/docs/ from the stored notebooks (not re-executed), docs/ and
# the API reference, offline, warnings as errors (tools/build_site.py; tests/test_site.py builds it
# and opens every page in Chromium). Open build/docs/index.html.
docs: venv
	@OMP_NUM_THREADS=1 $(BIN)/python tools/build_site.py

bench: venv
	OMP_NUM_THREADS=2 $(BIN)/python benchmarks/bench_layers.py

clean-venv:
	rm -rf $(VENV)
