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
# --no-compile: modules are byte-compiled when first imported, not all at install
# (measured here: the install took 28-40 s instead of 68-75 s).
$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
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
