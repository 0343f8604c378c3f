"""Checkpoints: plain values only, hostile files refused, format 1 still read,
and loadable without the training code."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bsr.checkpoint import load_checkpoint
from bsr.objective import Objective
from bsr.paths import REPO_ROOT
from bsr.training import train
from training_helpers import assert_same_weights, tiny_cfg, weights


class _Hostile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoints_are_plain_and_hostile_ones_are_refused(tmp_path):
    """Checkpoints hold tensors and plain values only (they load with
    weights_only=True); a file whose unpickling would run code is refused by
    every reader, and the code does not run."""
    ck_path = train(tiny_cfg(tmp_path / "p", phase1={"steps": 1}, phase2={"steps": 1}))
    ck = torch.load(ck_path, weights_only=True)
    assert type(ck["torch_version"]) is str and isinstance(ck["rng"]["numpy"]["key"], torch.Tensor)
    marker = tmp_path / "written_by_unpickling"
    out = tmp_path / "h"
    out.mkdir()
    torch.save({"format": "bsr-checkpoint/2", "model_config": _Hostile(marker), "model": {}}, out / "last.pt")
    with pytest.raises(ValueError, match=r"refused: the file holds pickled Python objects \(io\.open\)"):
        load_checkpoint(out / "last.pt")
    for resume in (None, True, "same"):
        with pytest.raises(ValueError, match=r"last\.pt: refused: .*use --fresh"):
            train(tiny_cfg(out), resume=resume)
    assert not marker.exists()
    train(tiny_cfg(out), resume="if_same")        # the workflow's mode replaces it
    assert not marker.exists()
    assert torch.load(out / "last.pt", weights_only=True)["format"] == "bsr-checkpoint/2"


def _as_format_1(path):
    """Rewrite a checkpoint as bsr wrote it before checkpoints became plain: numpy's
    RNG state tuple (a numpy array inside) and torch's TorchVersion object."""
    import numpy as np
    from torch.torch_version import TorchVersion

    ck = torch.load(path, weights_only=True)
    r = ck["rng"]["numpy"]
    ck["rng"]["numpy"] = (r["kind"], r["key"].numpy().astype(np.uint32), r["pos"], r["has_gauss"],
                          r["cached_gaussian"])
    ck["format"], ck["torch_version"] = "bsr-checkpoint/1", TorchVersion(torch.__version__)
    torch.save(ck, path)
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(path)


def test_format_1_checkpoints_still_load_and_resume(tmp_path, monkeypatch):
    """A checkpoint of the earlier format (numpy arrays in its RNG state) is read
    without unpickling anything else: its model loads, and a run resumed from it
    ends with the weights of an uninterrupted run."""
    kw = dict(phase1={"steps": 2}, phase2={"steps": 2}, ckpt_every=2)
    ref = train(tiny_cfg(tmp_path / "ref", **kw))
    calls = {"n": 0}
    orig = Objective.phase2

    def killed(self, d, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        return orig(self, d, **k)

    monkeypatch.setattr(Objective, "phase2", killed)
    out = tmp_path / "old"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(out, **kw))
    monkeypatch.setattr(Objective, "phase2", orig)
    _as_format_1(out / "last.pt")
    assert load_checkpoint(out / "last.pt").config["size"] == "quick"
    got = train(tiny_cfg(out, **kw), resume="same")
    assert_same_weights(weights(ref), weights(got))


def test_checkpoint_loads_without_trainer(tmp_path):
    ck = train(tiny_cfg(tmp_path / "r", phase1={"steps": 1}, phase2={"steps": 1}))
    code = ("import sys, torch; from bsr.checkpoint import load_checkpoint; "
            f"m = load_checkpoint(r'{ck}'); "
            "f, r, p = m.fuse(torch.rand(1, 1, 21, 30), torch.rand(1, 1, 21, 30)); "
            "assert f.shape == (1, 1, 21, 30); assert 'bsr.training' not in sys.modules; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
    m = load_checkpoint(ck)
    assert not m.training and m.config["size"] == "quick"
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt or not a checkpoint"):
        load_checkpoint(bad)
    bad.write_bytes(ck.read_bytes()[:2000])           # truncated
    with pytest.raises(ValueError, match="corrupt or not a checkpoint"):
        load_checkpoint(bad)
    torch.save({"format": "something-else/1"}, bad)
    with pytest.raises(ValueError, match="not a B-SR checkpoint"):
        load_checkpoint(bad)
