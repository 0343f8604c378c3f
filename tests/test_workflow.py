"""The Snakemake workflow end to end on the tiny `test` profile, in a copy of
the project's workflow files (nothing is written into the repository)."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from bsr.paths import REPO_ROOT
from bsr.workflow import notebook_shell

pytestmark = pytest.mark.slow


def snakemake(cwd, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    dst = tmp_path_factory.mktemp("wf")
    for name in ("Snakefile", "workflow", "notebooks", "config", "profiles"):
        src = REPO_ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)
    return dst


@pytest.mark.parametrize("profile", sorted(p.stem for p in (REPO_ROOT / "config").glob("*.yaml")))
def test_dry_run_every_profile(project, profile):
    r = snakemake(project, "--dry-run", "--config", f"profile={profile}")
    assert r.returncode == 0, r.stdout + r.stderr


def test_override_on_the_command_line(project):
    """`--config override=...` reaches the jobs: one seed instead of three, and
    a bad override fails before anything runs, naming the key."""
    full = snakemake(project, "--dry-run", "--config", "profile=cpu")
    one = snakemake(project, "--dry-run", "--printshellcmds", "--config", "profile=cpu",
                    "override={seeds: [0], train: {phase1: {steps: 7}}}")
    assert full.returncode == 0 and one.returncode == 0, one.stdout + one.stderr
    assert "seed=1" in full.stdout and "seed=1" not in one.stdout
    assert '"steps": 7' in one.stdout and '"steps": 7' not in full.stdout   # the training params carry it
    bad = snakemake(project, "--dry-run", "--config", "profile=cpu", "override={train: {crop: big}}")
    assert bad.returncode != 0 and "run 'bsr_shift5'" in bad.stdout + bad.stderr and "crop" in bad.stdout + bad.stderr


def test_bad_profile_fails_fast(project, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: bad\ntest_sets: []\nthreadz: 1\n")
    r = snakemake(project, "--dry-run", "--config", f"profile_file={bad}")
    assert r.returncode != 0 and "threadz" in (r.stdout + r.stderr)


HOSTILE = "res dir;touch PWNED;$(touch PWNED2)"   # a space, a command separator, a substitution


def test_notebook_shell_quotes_every_value(tmp_path):
    """The rules' one shell line, formatted by Snakemake's own formatter and run
    by bash: each hostile value arrives as one argument and runs nothing."""
    from snakemake.utils import format as snakemake_format

    exe = tmp_path / "my python" / "args"   # stands in for the interpreter: prints one argument a line
    exe.parent.mkdir()
    exe.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    exe.chmod(0o755)
    bad = str(tmp_path / HOSTILE)
    params = json.dumps({"out_dir": bad, "braces": "{input.nb}", "quote": "it's"})
    ns = {"input": SimpleNamespace(nb="notebooks/01 simulate.ipynb"), "log": SimpleNamespace(nb=f"{bad}/nb.ipynb"),
          "output": SimpleNamespace(html=f"{bad}/nb.html"), "params": SimpleNamespace(nb=params)}
    line = snakemake_format(notebook_shell(str(exe), cwd="note books"), **ns)
    want = ["-m", "bsr.workflow", "notebooks/01 simulate.ipynb", f"{bad}/nb.ipynb", "--html", f"{bad}/nb.html",
            "--params", params, "--cwd", "note books"]
    assert shlex.split(line) == [str(exe), *want]
    r = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.splitlines() == want, r.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()


def test_unknown_config_key_fails_listing_the_known_ones(project):
    r = snakemake(project, "--dry-run", "--config", "profle=test")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "results/quick" not in out, out[-2000:]
    assert "unknown --config key 'profle' (did you mean 'profile'?); known keys: profile, profile_file, override" in out


def test_results_dir_with_a_space_and_a_semicolon(project, tmp_path):
    """Every planned shell line passes the hostile results path as single arguments."""
    cfg = yaml.safe_load((project / "config" / "test.yaml").read_text())
    results = tmp_path / HOSTILE
    cfg["results"] = str(results)
    prof = tmp_path / "hostile.yaml"
    prof.write_text(yaml.safe_dump(cfg))
    r = snakemake(project, "--dry-run", "--printshellcmds", "--config", f"profile_file={prof}")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    lines = [ln.strip().removeprefix("Shell command:").strip() for ln in r.stdout.splitlines()
             if " -m bsr.workflow " in ln]
    assert len(lines) >= 7, r.stdout[-2000:]   # one per rule kind at least (simulate, trainings, study stages)
    root = str(results / "test") + os.sep
    for ln in lines:
        args = shlex.split(ln)
        assert len(args) == 11 and args[1:3] == ["-m", "bsr.workflow"] and args[7] == "--params", ln
        assert args[4].startswith(root) and args[6].startswith(root), ln
        json.loads(args[8])
    assert not list(tmp_path.glob("PWNED*")) and not list(project.glob("PWNED*"))


def test_end_to_end_then_nothing_to_do(project):
    r = snakemake(project, "--config", "profile=test")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = project / "results" / "test"
    assert (out / "figures" / "simulated_pairs.png").stat().st_size > 10_000
    assert (out / "notebooks" / "01_simulate_datasets.html").is_file()
    assert (out / "data" / "synthetic_shift5" / "manifest.json").is_file()
    for t in ("table1", "table2", "table3", "table4", "table5", "table6", "registration_accuracy",
              "robustness_epe", "pdg_high_response", "ablation_all_metrics"):
        for suffix in (".csv", ".md", ".tex"):
            assert (out / "tables" / f"{t}{suffix}").is_file(), t + suffix
    for f in ("qualitative_compare", "robustness_epe", "robustness_levels", "pdg_high_response",
              "pdg_feature_maps", "ablation_qualitative"):
        assert (out / "figures" / f"{f}.png").stat().st_size > 5_000, f
    report = (out / "REPORT.md").read_text()
    assert "reported (Li et al. 2025)" in report and "measured (this package)" in report
    assert "DroneVehicle was not supplied" in report
    for nb in ("01_simulate_datasets", "03_compare", "04_robustness", "05_pdg_statistics", "06_ablation",
               "07_report"):
        assert (out / "notebooks" / f"{nb}.html").is_file()
    again = snakemake(project, "--config", "profile=test")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    html = project / "results" / "test" / "report.html"
    r = snakemake(project, "--config", "profile=test", "--report", str(html))
    assert r.returncode == 0 and html.stat().st_size > 100_000, r.stderr[-2000:]


def test_changed_config_reruns_only_what_it_affects(project, tmp_path):
    """After the end-to-end run: a changed ablation setting re-runs its training
    and the stages that read it, not the simulation or the other trainings."""
    prof = (project / "config" / "test.yaml").read_text().replace("tiny_v: {variant: V}",
                                                                   "tiny_v: {variant: V, batch_size: 1}")
    cfg = tmp_path / "test.yaml"
    cfg.write_text(prof)
    r = snakemake(project, "--dry-run", "--config", f"profile_file={cfg}")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    jobs = {line.split()[0]: int(line.split()[1]) for line in out.split("Job stats:")[1].splitlines()[3:]
            if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert jobs.get("train") == 1 and "simulate_datasets" not in jobs
    assert {"pdg_statistics", "ablation", "report"} <= set(jobs) and "compare" not in jobs


def test_failing_notebook_stops_with_its_error(project, tmp_path):
    prof = (project / "config" / "test.yaml").read_text().replace("profile: test", "profile: broken")
    prof = prof.replace("{dataset: synthetic, kind: shift, levels: [5]}", "{dataset: nosuchset, kind: shift, levels: [5]}")
    prof = prof.replace("data_root: null", f"data_root: {tmp_path}")
    cfg = tmp_path / "broken.yaml"
    cfg.write_text(prof)
    r = snakemake(project, "--config", f"profile_file={cfg}")
    log = r.stdout + r.stderr
    assert r.returncode != 0
    assert "DataError" in log and "dataset 'nosuchset' not found" in log
    out = project / "results" / "broken"
    assert not (out / "notebooks" / "01_simulate_datasets.html").exists()
    assert not (out / "data").exists()
    assert (out / "notebooks" / "01_simulate_datasets.ipynb").exists()  # the traceback survives


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_slurm_profile_dry_run(project, profile):
    """The Slurm executor profile plans every job without a cluster."""
    r = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--dry-run",
                        "--config", f"profile={profile}"], cwd=project, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "rule train:" in r.stdout, r.stdout[-2000:]
