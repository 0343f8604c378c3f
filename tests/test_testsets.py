"""bsr.datasets.testsets and `bsr simulate`: sets on disk, checksums, no half-written output."""

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from bsr.datasets import testsets
from bsr.cli import main as cli
from bsr.datasets.readers import DataError, load_pairs, load_simulated
from bsr.warp import warp


@pytest.fixture(scope="module")
def pairs():
    return load_pairs("synthetic", split="test", synthetic={"n": 2, "size": [64, 96]})


def test_write_and_read_back(tmp_path, pairs):
    folder = testsets.write_test_set(pairs, "dilate_crop", 10, tmp_path, "synthetic", progress=False)
    assert folder.name == "synthetic_dilate_crop10"
    man = json.loads((folder / "manifest.json").read_text())
    assert man["n_pairs"] == 2 and man["kind"] == "dilate_crop" and man["level"] == 10
    back = load_simulated(folder, verify=True)
    assert [p.name for p in back] == [p.name for p in pairs]
    p = back[0]
    rec = warp(torch.from_numpy(p.ir)[None, None], torch.from_numpy(p.flow_gt)[None])[0, 0].numpy()
    m = 12
    assert np.abs(rec - p.ir_aligned)[m:-m, m:-m].mean() < 0.5 * np.abs(p.ir - p.ir_aligned)[m:-m, m:-m].mean()
    assert np.abs(p.ir_aligned - pairs[0].ir).max() <= 0.5 / 255 + 1e-6   # 8-bit storage
    table = testsets.summarize_sets([folder])
    assert table.loc[0, "pairs"] == 2 and 0 < table.loc[0, "mean |flow_gt| px"] < 10


def test_checksum_detects_tampering(tmp_path, pairs):
    folder = testsets.write_test_set(pairs, "shift", 5, tmp_path, "synthetic", progress=False)
    (folder / "flow" / f"{pairs[0].name}.npz").write_bytes(b"tampered")
    with pytest.raises(DataError, match="checksum"):
        load_simulated(folder, verify=True)


def test_refuses_overwrite_and_interrupted_write_leaves_nothing(tmp_path, pairs, monkeypatch):
    testsets.write_test_set(pairs, "shift", 5, tmp_path, "synthetic", progress=False)
    with pytest.raises(FileExistsError):
        testsets.write_test_set(pairs, "shift", 5, tmp_path, "synthetic", progress=False)
    calls = {"n": 0}
    real = testsets.save_npz

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(testsets, "save_npz", flaky)
    with pytest.raises(KeyboardInterrupt):
        testsets.write_test_set(pairs, "shift", 7, tmp_path, "synthetic", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_shift5"]


def test_not_a_set(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        load_simulated(tmp_path)


def test_cli_simulate(tmp_path, capsys):
    rc = cli(["simulate", "--kind", "shift", "--levels", "3,6", "--synthetic-n", "1",
              "--synthetic-size", "48,64", "-o", str(tmp_path)])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_shift3", "synthetic_shift6"]
    assert cli(["simulate", "--kind", "shift", "--levels", "3", "--synthetic-n", "1",
                "--synthetic-size", "48,64", "-o", str(tmp_path)]) == 1
    assert "exists" in capsys.readouterr().err
    assert cli(["simulate", "--levels", "x", "-o", str(tmp_path)]) == 1


def test_cli_datasets_missing_root(monkeypatch, capsys):
    monkeypatch.delenv("BSR_DATA", raising=False)
    assert cli(["datasets"]) == 1
    assert "BSR_DATA" in capsys.readouterr().err
    assert cli(["nonsense"]) == 2
    assert cli(["--help"]) == 0


def test_real_misalignment_set_has_no_ground_truth(tmp_path, pairs):
    folder = testsets.write_test_set(pairs, "none", 0, tmp_path, "synthetic", progress=False)
    assert not (folder / "flow").exists()
    back = load_simulated(folder, verify=True)
    assert back[0].flow_gt is None and back[0].ir_aligned is None
    assert np.isnan(testsets.summarize_sets([folder]).loc[0, "mean |flow_gt| px"])


def test_synthetic_test_options_of_a_profile():
    from bsr.datasets.testsets import synthetic_test_options

    assert synthetic_test_options({}) is None and synthetic_test_options(None) is None   # real-data profiles
    assert synthetic_test_options({"n_train": 4, "n_test": 2, "size": [96, 128], "seed": 3}) == \
        {"n": 2, "size": [96, 128], "seed": 3}
    assert synthetic_test_options({"n_train": 4}) is None


@pytest.mark.parametrize("args,msg", [
    (["--levels", "nan"], "shift level must be a finite number of pixels; got nan"),
    (["--levels", "inf"], "shift level must be a finite number of pixels; got inf"),
    (["--levels", ""], "--levels is empty"),
    (["--levels", " , "], "--levels is empty"),
    (["--kind", "dilate_crop", "--levels", "2.5"], "dilate_crop level must be a whole number of pixels; got 2.5"),
    (["--kind", "dilate_crop", "--levels", "5,48"], "dilate_crop level 48 px is not smaller than the 64x48 px image"),
    (["--levels", "3,64"], "shift level 64 px moves the content out of the 64 px wide image"),
    (["--kind", "random_smooth", "--levels", "-1"], "must be >= 0"),
])
def test_cli_refuses_impossible_levels(tmp_path, capsys, args, msg):
    """Every level is checked before anything is written: one error line, rc 1, no folder."""
    out = tmp_path / "out"
    rc = cli(["simulate", *args, "--synthetic-n", "1", "--synthetic-size", "48,64", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and msg in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir())


def test_all_levels_and_outputs_are_checked_before_writing(tmp_path):
    """A multi-level run refuses up front (was: wrote shift2, then failed on shift3)."""
    synth = {"n": 1, "size": [48, 64]}

    def run(levels, **kw):
        return testsets.simulate_dataset("synthetic", "shift", levels, tmp_path, split="test", synthetic=synth,
                                         progress=False, **kw)

    run([3])
    with pytest.raises(FileExistsError, match="synthetic_shift3 exists; pass overwrite=True"):
        run([2, 3])
    with pytest.raises(ValueError, match="out of the 64 px wide image"):
        run([2, 64])
    with pytest.raises(ValueError, match="level 2 is given twice"):
        run([2, 2.0])
    with pytest.raises(ValueError, match="finite"):
        run([2, float("nan")])
    with pytest.raises(ValueError, match="no levels given"):
        run([])
    with pytest.raises(ValueError, match="list of numbers"):
        run("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_shift3"]
    man = json.loads((tmp_path / "synthetic_shift3" / "manifest.json").read_text(),
                     parse_constant=lambda c: pytest.fail(f"manifest holds {c}, not JSON"))
    assert man["level"] == 3
    assert [p.name for p in run([2, 3], overwrite=True)] == ["synthetic_shift2", "synthetic_shift3"]


def test_leftovers_of_a_killed_run_are_removed(tmp_path, pairs):
    """SIGKILL leaves the hidden temporary folder; the next run removes it, and
    only it: another live process's, another host's and foreign hidden folders stay."""
    out = tmp_path / "sets"
    code = ("import time\nfrom bsr.datasets import testsets\nfrom bsr.datasets.readers import load_pairs\n"
            "testsets.save_npz = lambda *a, **k: time.sleep(600)\n"
            "pairs = load_pairs('synthetic', split='test', synthetic={'n': 1, 'size': [32, 32]})\n"
            f"testsets.write_test_set(pairs, 'shift', 5, {str(out)!r}, 'synthetic', progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 300
        while not (out.is_dir() and any(p.name.startswith(".synthetic_shift5.") for p in out.iterdir())):
            assert proc.poll() is None and time.time() < deadline, "the writer did not get to its temporary folder"
            time.sleep(0.2)
    finally:
        proc.kill()   # SIGKILL: no clean-up code runs
        proc.wait()
    left = [p for p in out.iterdir() if p.name.startswith(".")]
    assert len(left) == 1 and not (out / "synthetic_shift5").exists()
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())   # as the temporary names spell it
    keep = [out / ".synthetic_shift5.abcdefgh",                                   # not the package's pattern
            out / ".synthetic_shift5.bsrtmp-otherhost-1-abcdefgh",              # another host's
            out / f".synthetic_shift5.bsrtmp-{host}-{os.getppid()}-abcdefgh",   # a live process's
            out / f".synthetic_shift5.bsrtmp-{host}-{os.getpid()}-abcdefgh"]    # this process's own
    for k in keep:
        k.mkdir()
    testsets.write_test_set(pairs, "shift", 6, out, "synthetic", progress=False)
    assert not left[0].exists()
    assert all(k.is_dir() for k in keep)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["synthetic_shift6"]


@pytest.mark.parametrize("mask,fmode,dmode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_outputs_follow_the_umask(tmp_path, pairs, mask, fmode, dmode):
    """Atomic writes give ordinary permissions (was: files 0600, set folders 0700)."""
    from bsr.io import atomic_path, save_npz, write_image

    old = os.umask(mask)
    try:
        folder = testsets.write_test_set(pairs, "shift", 5, tmp_path, "synthetic", progress=False)
        extra = [write_image(tmp_path / "one.png", np.zeros((4, 4))), save_npz(tmp_path / "a.npz", x=np.zeros(2))]
        with atomic_path(tmp_path / "t.txt") as tmp:
            tmp.write_text("x")
        extra.append(tmp_path / "t.txt")
    finally:
        os.umask(old)
    files = [p for p in folder.rglob("*") if p.is_file()] + extra
    dirs = [folder] + [p for p in folder.rglob("*") if p.is_dir()]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(fmode)}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in dirs} == {oct(dmode)}
