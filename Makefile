# Two commands do all set-up on a fresh machine with Python >= 3.11:
#   make reproduce   # venv + install + the workflow on the embedded default (profile `quick`)
#   make test        # venv + install + the whole test suite
# Other targets: make lab (JupyterLab on the notebooks), make report, make clean-results.
#
# Variables: PYTHON (interpreter that makes the venv), PROFILE, CORES, VENV.

PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= quick
CORES   ?= 2
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.bsr-installed

.PHONY: all venv reproduce test lab report dry-run clean-results

all: reproduce

# The venv is rebuilt when the pinned requirements or the package metadata change.
# pip installs with --no-compile (28-40 s instead of 68-75 s), and compileall then
# byte-compiles the site-packages on all cores, test folders left out (36-43 s on
# 2 cores). Python would byte-compile on first import, but not where
# PYTHONDONTWRITEBYTECODE is set (as in some containers, this project's development machine among them): there
# every process compiled torch and Snakemake anew, 13-15 s per process against
# 5 s from the compiled files (docs/architecture.md, "Install").
SITE = $(VENV)/lib/python*/site-packages
$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m compileall -q -j 0 -x '/tests/|py312_intrinsics\.py$$' $(SITE) >/dev/null \
	  || echo "note: some modules could not be byte-compiled; Python compiles them on import"
	$(BIN)/python -m ipykernel install --sys-prefix --name bsr --display-name "Python (bsr)" >/dev/null
	@touch $@

venv: $(STAMP)

reproduce: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --config profile=$(PROFILE) --rerun-incomplete
	@echo "results: results/$(PROFILE)/"

dry-run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --config profile=$(PROFILE) --dry-run

test: $(STAMP)
	$(BIN)/python -m pytest

report: $(STAMP)
	$(BIN)/snakemake --cores 1 --config profile=$(PROFILE) --report results/$(PROFILE)/report.html
	@echo "report: results/$(PROFILE)/report.html"

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean-results:
	rm -rf results/$(PROFILE)
