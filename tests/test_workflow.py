"""The Snakemake workflow end to end on the tiny `test` profile, in a copy of
the project's workflow files (nothing is written into the repository)."""

import shutil
import subprocess
import sys

import pytest

from bsr.paths import REPO_ROOT

pytestmark = pytest.mark.slow


def snakemake(cwd, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    dst = tmp_path_factory.mktemp("wf")
    for name in ("Snakefile", "workflow", "notebooks", "config"):
        src = REPO_ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)
    return dst


@pytest.mark.parametrize("profile", sorted(p.stem for p in (REPO_ROOT / "config").glob("*.yaml")))
def test_dry_run_every_profile(project, profile):
    r = snakemake(project, "--dry-run", "--config", f"profile={profile}")
    assert r.returncode == 0, r.stdout + r.stderr


def test_bad_profile_fails_fast(project, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: bad\ntest_sets: []\nthreadz: 1\n")
    r = snakemake(project, "--dry-run", "--config", f"profile_file={bad}")
    assert r.returncode != 0 and "threadz" in (r.stdout + r.stderr)


def test_end_to_end_then_nothing_to_do(project):
    r = snakemake(project, "--config", "profile=test")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = project / "results" / "test"
    assert (out / "figures" / "simulated_pairs.png").stat().st_size > 10_000
    assert (out / "notebooks" / "01_simulate_datasets.html").is_file()
    assert (out / "data" / "synthetic_shift5" / "manifest.json").is_file()
    again = snakemake(project, "--config", "profile=test")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


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
