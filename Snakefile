# B-SR study workflow. Every stage is a parameterised notebook run through
# papermill (bsr.workflow) into results/<profile>/notebooks/, with an HTML copy.
#
#   snakemake --cores 2                          # profile `quick` (default)
#   snakemake --cores 8 --config profile=paper   # another profile from config/
#   snakemake --cores 2 --config profile_file=my_profile.yaml
#   snakemake --cores 2 --config profile=cpu override='{seeds: [0], train: {phase1: {steps: 500}}}'
#
# `override` (YAML) is deep-merged into the profile; REPORT.md records it.
# The profile is validated against bsr/data_files/profile_schema.yaml first.
import json
import sys
from pathlib import Path

from bsr.config import check_config_keys, deep_merge, load_profile, parse_override
from bsr.workflow import notebook_shell

check_config_keys(config)   # a typo (profle=test) must not silently run the default profile
PROFILE_FILE = config.get("profile_file") or f"config/{config.get('profile', 'quick')}.yaml"
OVERRIDE = parse_override(config.get("override"))
P = load_profile(PROFILE_FILE, override=OVERRIDE)
PROFILE = P["profile"]
R = Path(P.get("results", "results")) / PROFILE
PY = sys.executable
SEEDS = P.get("seeds", [0])


def nb_params(**params):
    """Notebook parameters as one JSON string (NB_SHELL shell-quotes it)."""
    return json.dumps(params, sort_keys=True)


# The one shell line of every notebook rule: every value quoted (bsr.workflow.notebook_shell).
NB_SHELL = notebook_shell(PY, cwd="notebooks")


include: "workflow/rules/simulate.smk"
include: "workflow/rules/train.smk"


if "study" in P:   # profiles with a study: every stage; otherwise only the simulated sets
    include: "workflow/rules/study.smk"

    rule all:
        input:
            rules.report.output,

else:

    rule all:
        input:
            rules.simulate_datasets.output,
