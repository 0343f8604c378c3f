"""The `bsr` command on hostile and careless input: every failure is one line on
stderr naming the file or key, a non-zero exit and no traceback; a checkpoint
cannot run code; a run is resumed only with the config it was started with."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import yaml

from bsr import cli
from bsr.checkpoint import load_checkpoint
from bsr.io import write_image
from bsr.training import cli as training_cli
from bsr.training import config as training_config

TINY = {"model": {"size": "quick"},
        "data": {"name": "synthetic", "synthetic": {"n": 4, "size": [32, 32], "seed": 0},
                 "misalignment": {"kind": "shift", "level": 2}},
        "crop": 16, "batch_size": 2, "loss": {"nda_radius": 3, "nda_window": 5, "nda_targets": "search"},
        "phase1": {"steps": 2}, "phase2": {"steps": 2}, "ckpt_every": 2, "threads": 1, "progress": False}


class _OpenFile:
    """Unpickling this creates (truncates) a file: what a hostile checkpoint could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _System:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


def hostile_checkpoint(path, marker, kind=_OpenFile):
    """A .pt whose loading with weights_only=False would create ``marker``."""
    torch.save({"format": "bsr-checkpoint/2", "model_config": kind(marker), "model": {}}, path)
    assert not marker.exists()
    return path


def run(capsys, *argv):
    """``bsr argv...``: (return code, stderr); stderr must be one line without a traceback."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if "UserWarning" not in line and line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, config):
    """A finished run of ``config`` (copy it before changing it)."""
    out = tmp_path_factory.mktemp("run") / "out"
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 0
    return out


@pytest.fixture
def run_dir(tmp_path, finished):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    return out


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    ir, vi = tmp_path / "ir.png", tmp_path / "vi.png"
    write_image(ir, rng.random((24, 28)).astype(np.float32))
    write_image(vi, rng.random((24, 28)).astype(np.float32))
    return ir, vi


# ----------------------------------------------------------------------------- hostile checkpoints

@pytest.mark.parametrize("kind", [_OpenFile, _System])
def test_hostile_checkpoint_is_refused_everywhere(tmp_path, config, images, capsys, kind):
    marker = tmp_path / "created_by_the_checkpoint"
    evil = hostile_checkpoint(tmp_path / "evil.pt", marker, kind)
    with pytest.raises(ValueError, match="refused: the file holds pickled Python objects"):
        load_checkpoint(evil)
    rc, err = run(capsys, "fuse", "--checkpoint", evil, *images, "-o", tmp_path / "f.png")
    assert rc == 1 and str(evil) in one_line(err) and "refused" in err
    out = tmp_path / "out"
    out.mkdir()
    shutil.copyfile(evil, out / "last.pt")
    for flags in ([], ["--resume"]):
        rc, err = run(capsys, "train", "--config", config, "--out", out, *flags)
        line = one_line(err)
        assert rc == 1 and str(out / "last.pt") in line and "refused" in line and "--fresh" in line
    assert not marker.exists()
    assert not (tmp_path / "f.png").exists()


# ----------------------------------------------------------------------------- resume only the same config

def test_train_resumes_only_the_same_config(run_dir, config, capsys):
    final = run_dir / "final.pt"
    mtime = final.stat().st_mtime_ns
    # the same config (run-control keys may differ): the finished run is kept
    rc, err = run(capsys, "train", "--config", config, "--out", run_dir, "--set", "threads=2")
    assert rc == 0 and final.stat().st_mtime_ns == mtime and err == ""
    for override, named in (("phase1.lr=1e-3", "phase1.lr 0.0001 -> 0.001"), ("seed=5", "seed 0 -> 5"),
                            ("variant=IV", "variant 'full' -> 'IV'"), ("phase2.steps=3", "phase2.steps 2 -> 3")):
        rc, err = run(capsys, "train", "--config", config, "--out", run_dir, "--set", override)
        line = one_line(err)
        assert rc == 1 and named in line and "--fresh" in line and str(run_dir / "last.pt") in line, line
        assert final.stat().st_mtime_ns == mtime
    # --resume continues a changed run (with a warning), but never hands back a finished run's model
    # as one of another config
    rc, err = run(capsys, "train", "--config", config, "--out", run_dir, "--set", "phase1.lr=1e-3", "--resume")
    assert rc == 1 and "finished" in one_line(err) and "phase1.lr" in err and "--fresh" in err
    with pytest.warns(UserWarning, match=r"phase1\.lr 0\.0001 -> 0\.001"):
        rc, _ = run(capsys, "train", "--config", config, "--out", run_dir, "--set", "phase1.lr=1e-3",
                    "--set", "phase2.steps=3", "--resume")
    assert rc == 0
    rc, err = run(capsys, "train", "--config", config, "--out", run_dir, "--set", "phase1.lr=1e-3", "--fresh")
    assert rc == 0 and final.stat().st_mtime_ns != mtime
    assert torch.load(final, weights_only=True)["train_config"]["phase1"]["lr"] == 1e-3


# ----------------------------------------------------------------------------- one clear line per failure

def test_corrupt_last_checkpoint(run_dir, config, capsys):
    last = run_dir / "last.pt"
    good = last.read_bytes()
    for bad in (b"garbage\n", good[: len(good) // 3]):      # not a checkpoint; a truncated one
        last.write_bytes(bad)
        rc, err = run(capsys, "train", "--config", config, "--out", run_dir)
        line = one_line(err)
        assert rc == 1 and str(last) in line and "corrupt" in line and "--fresh" in line, line
    rc, _ = run(capsys, "train", "--config", config, "--out", run_dir, "--fresh")
    assert rc == 0


def _edited(src, dst, edit):
    ck = torch.load(src, weights_only=True)
    edit(ck)
    torch.save(ck, dst)
    return dst


def test_checkpoint_with_a_wrong_or_no_model_config(run_dir, config, images, tmp_path, capsys):
    final = run_dir / "final.pt"
    cases = {
        "no model config": (lambda ck: ck.pop("model_config"), "holds no model config"),
        "unknown key": (lambda ck: ck["model_config"]["unet"].update(widths=[4]), "cannot be built"),
        "other size": (lambda ck: ck.update(model_config={"size": "paper"}), "weights do not fit"),
        "no weights": (lambda ck: ck.pop("model"), "no model weights"),
    }
    for name, (edit, expected) in cases.items():
        ck = _edited(final, tmp_path / f"{name}.pt", edit)
        rc, err = run(capsys, "fuse", "--checkpoint", ck, *images, "-o", tmp_path / "f.png")
        line = one_line(err)
        assert rc == 1 and str(ck) in line and expected in line, (name, line)
    # as a run's last.pt: named, with the way out
    for edit, expected in ((lambda ck: ck.pop("model_config"), "holds no model config"),
                           (lambda ck: ck["model_config"]["ae"].update(dim=16), "another model config")):
        _edited(final, run_dir / "last.pt", edit)
        for flags in ([], ["--resume"]):
            rc, err = run(capsys, "train", "--config", config, "--out", run_dir, *flags)
            line = one_line(err)
            assert rc == 1 and str(run_dir / "last.pt") in line and expected in line and "--fresh" in line, line


@pytest.mark.parametrize("override,key", [("batch_size=abc", "'batch_size'"), ("seed=abc", "'seed'"),
                                          ("pdg_n=1.5", "'pdg_n'"), ("ckpt_every=[1]", "'ckpt_every'"),
                                          ("progress=maybe", "'progress'"), ("loss.smooth=abc", "'loss.smooth'"),
                                          ("model.size=[1]", "'model.size'"), ("phase1.lr=fast", "'phase1': phase lr"),
                                          ("nosuch=1", "'nosuch'"), ("a=[", "--set a")])
def test_bad_values_name_their_key(tmp_path, config, capsys, override, key):
    rc, err = run(capsys, "train", "--config", config, "--out", tmp_path / "o", "--set", override)
    line = one_line(err)
    assert rc == 1 and line.startswith("bsr train: error:") and key in line, line
    assert not (tmp_path / "o").exists()


def test_unknown_dataset_names_the_training_config_keys(tmp_path, config, capsys, monkeypatch):
    monkeypatch.delenv("BSR_DATA", raising=False)
    rc, err = run(capsys, "train", "--config", config, "--out", tmp_path / "o", "--set", "data.name=nosuch")
    line = one_line(err)
    assert rc == 1 and "data.root" in line and "BSR_DATA" in line and "data_root" not in line, line
    rc, err = run(capsys, "train", "--config", config, "--out", tmp_path / "o", "--set", "data.name=nosuch",
                  "--set", f"data.root={tmp_path / 'nope'}")
    assert rc == 1 and "(from data.root) is not a folder" in one_line(err)
    (tmp_path / "root" / "roadscene").mkdir(parents=True)
    monkeypatch.setenv("BSR_DATA", str(tmp_path / "root"))
    rc, err = run(capsys, "train", "--config", config, "--out", tmp_path / "o", "--set", "data.name=nosuch")
    line = one_line(err)
    assert rc == 1 and "'nosuch' not found" in line and "roadscene" in line and "data_root" not in line, line


def test_permission_error_names_the_file(tmp_path, config, capsys, monkeypatch):
    """(Simulated: the tests may run as root, who may read anything.)"""
    def denied(self, *a, **kw):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(training_config.Path, "read_text", denied)
    rc, err = run(capsys, "train", "--config", config, "--out", tmp_path / "o")
    assert rc == 1 and one_line(err) == f"bsr train: error: {config}: Permission denied"


def test_ctrl_c_says_interrupted(tmp_path, config, capsys, monkeypatch):
    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(training_cli, "train", interrupted)
    rc, err = run(capsys, "train", "--config", config, "--out", tmp_path / "o")
    assert rc == 130 and one_line(err) == "bsr train: interrupted"


def test_unexpected_errors_are_one_line_too(tmp_path, config, capsys, monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("something deep went wrong\nwith more lines")

    monkeypatch.setattr(training_cli, "train", broken)
    rc, err = run(capsys, "train", "--config", config, "--out", tmp_path / "o")
    assert rc == 1 and one_line(err) == "bsr train: error: RuntimeError: something deep went wrong"
    monkeypatch.setenv("BSR_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        cli.main(["train", "--config", str(config), "--out", str(tmp_path / "o")])
    monkeypatch.delenv("BSR_TRACEBACK")
    # a missing or binary config file is named
    rc, err = run(capsys, "train", "--config", tmp_path / "none.yaml")
    assert rc == 1 and str(tmp_path / "none.yaml") in one_line(err)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    rc, err = run(capsys, "train", "--config", tmp_path / "bin.yaml")
    assert rc == 1 and str(tmp_path / "bin.yaml") in one_line(err)
