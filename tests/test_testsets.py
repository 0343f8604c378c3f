"""bsr.testsets and `bsr simulate`: sets on disk, checksums, no half-written output."""

import json

import numpy as np
import pytest
import torch

from bsr import testsets
from bsr.cli import main as cli
from bsr.data import DataError, load_pairs, load_simulated
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
    from bsr.testsets import synthetic_test_options

    assert synthetic_test_options({}) is None and synthetic_test_options(None) is None   # real-data profiles
    assert synthetic_test_options({"n_train": 4, "n_test": 2, "size": [96, 128], "seed": 3}) == \
        {"n": 2, "size": [96, 128], "seed": 3}
    assert synthetic_test_options({"n_train": 4}) is None
