"""Resuming: ``resume="if_same"`` starts over and ``resume="same"`` stops on a changed config."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from bsr.training import train
from training_helpers import assert_same_weights, tiny_cfg, weights


def test_resume_if_same_restarts_on_a_changed_config(tmp_path, capsys):
    """The workflow's mode: a finished run of the same config is kept (threads may
    differ); a changed loss weight, step budget or model starts over, so the new
    checkpoint equals a fresh run of the new config."""
    out = tmp_path / "w"
    first = train(tiny_cfg(out))
    mtime = first.stat().st_mtime_ns
    assert train(tiny_cfg(out, threads=2), resume="if_same") == first
    assert first.stat().st_mtime_ns == mtime and "starting over" not in capsys.readouterr().out
    # checkpoints written before the U-Net's optional `corr` key existed still match
    ck = torch.load(out / "last.pt", weights_only=True)
    del ck["model_config"]["unet"]["corr"]
    torch.save(ck, out / "last.pt")
    assert train(tiny_cfg(out), resume="if_same") == first
    assert first.stat().st_mtime_ns == mtime and "starting over" not in capsys.readouterr().out
    for change in ({"loss": {"smooth": 0.5}}, {"phase1": {"steps": 4}},
                   {"model": {"size": "quick", "unet": {"corr": {"radius": 1, "level": 1, "window": 3}}}}):
        ref = train(tiny_cfg(tmp_path / f"ref{len(change)}_{next(iter(change))}", **change))
        got = train(tiny_cfg(out, **change), resume="if_same")
        assert "starting over" in capsys.readouterr().out
        assert_same_weights(weights(ref), weights(got))
        assert list(pd.read_csv(out / "log.csv").step) == list(range(len(pd.read_csv(ref.parent / "log.csv"))))
    with pytest.raises(ValueError, match="resume"):
        train(tiny_cfg(out), resume="maybe")


def test_resume_same_stops_on_a_changed_config(tmp_path):
    """``bsr train``'s default: the same config resumes (here: is kept, finished);
    another one stops with the changed keys named, and nothing is overwritten."""
    out = tmp_path / "s"
    first = train(tiny_cfg(out), resume="same")
    mtime = first.stat().st_mtime_ns
    assert train(tiny_cfg(out, threads=2, ckpt_every=5), resume="same") == first
    for change, named in (({"phase1": {"steps": 3, "lr": 1e-3}}, r"phase1\.lr 0\.0001 -> 0\.001"),
                          ({"seed": 3}, "seed 0 -> 3"), ({"variant": "II"}, "variant 'full' -> 'II'"),
                          ({"loss": {"smooth": 0.5}}, r"loss\.smooth \(none\) -> 0\.5")):
        with pytest.raises(ValueError, match=rf"last\.pt: a run of another config \(changed: {named}\); "
                                             r"use --fresh"):
            train(tiny_cfg(out, **change), resume="same")
    with pytest.raises(ValueError, match=r"another model config \(model\.ae\.dim differ\)"):
        train(tiny_cfg(out, model={"size": "quick", "ae": {"dim": 16}}), resume="same")
    assert first.stat().st_mtime_ns == mtime
    # a finished run is never handed back as the model of another config, even by a plain resume
    with pytest.raises(ValueError, match=r"finished .*phase1\.lr.*--fresh"):
        train(tiny_cfg(out, phase1={"steps": 3, "lr": 1e-3}))
