"""bsr.study.report: REPORT.md and the git commit it records."""

import pytest

from bsr.study import report


def test_write_report_lists_tables_figures_and_override(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "figures").mkdir()
    (tmp_path / "tables" / "table1.md").write_text("| a |\n|---|\n| 1 |\n")
    (tmp_path / "figures" / "f.png").write_bytes(b"")
    prof = {"profile": "cpu", "description": "d", "seeds": [0]}
    text = report.write_report(tmp_path, prof).read_text()
    assert "### table1" in text and "figures/f.png" in text and "command-line override" not in text
    text = report.write_report(tmp_path, dict(prof, command_line_override={"seeds": [0]})).read_text()
    assert "run with a command-line override** of the profile" in text and "{seeds: [0]}" in text


def test_git_commit_ignores_the_workflow_outputs(tmp_path):
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git not installed")
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "REPORT.md").write_text("old\n")
    run("add", "-A")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    clean = report.git_commit(tmp_path)
    assert len(clean) == 40
    (tmp_path / "results" / "REPORT.md").write_text("being rewritten\n")
    assert report.git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert report.git_commit(tmp_path) == clean + "-dirty"


def test_cost_of_the_run_from_benchmark_files(tmp_path):
    """REPORT.md's cost table reads Snakemake's benchmark files: one row per job,
    the most expensive first, totals, and the wall time from the first start."""
    import os

    from bsr.study.report import cost_lines, run_cost

    assert cost_lines(tmp_path) == [] and run_cost(tmp_path).empty     # a notebook run by hand
    b = tmp_path / "benchmarks"
    b.mkdir()
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (b / "compare.tsv").write_text(head + "30.0\t0:00:30\t400.0\t500\t300\t350\t1\t2\t90\t29.0\n")
    (b / "train_a_seed0.tsv").write_text(head + "120.0\t0:02:00\t812.3\t900\t700\t750\t1\t2\t95\t118.0\n")
    os.utime(b / "train_a_seed0.tsv", (1000, 1000))     # started at 880
    os.utime(b / "compare.tsv", (1100, 1100))           # started at 1070
    cost = run_cost(tmp_path)
    assert cost.job.tolist() == ["train_a_seed0", "compare"]
    assert cost.wall_s.tolist() == [120.0, 30.0] and cost.max_rss_mb.tolist() == [812.3, 400.0]
    text = "\n".join(cost_lines(tmp_path, now=1200.0))
    assert "| train_a_seed0 | 120.0 | 812 |" in text and "| compare | 30.0 | 400 |" in text
    assert "CPU" not in text          # Snakemake's sampled CPU time is not shown (run_cost's docstring)
    assert "150 s of wall time in all" in text and "320 s (5.3 min) from the first job's start" in text
    assert "| **all jobs** | **150.0** | **812** (largest) |" in text
    (b / "report.tsv").write_text(head + "5.0\t0:00:05\t300.0\t1\t1\t1\t1\t2\t90\t4.0\n")   # an earlier report's
    assert "report" not in run_cost(tmp_path).job.tolist()
