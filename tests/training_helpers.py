"""Shared by the training tests: a tiny training config and weight comparisons."""

from __future__ import annotations

import torch

from bsr.training import TrainConfig

TINY_DATA = {"name": "synthetic", "synthetic": {"n": 4, "size": [32, 32], "seed": 0},
             "misalignment": {"kind": "shift", "level": 2}}
FAST_LOSS = {"nda_radius": 3, "nda_window": 5, "nda_targets": "search"}


def tiny_cfg(out, **kw) -> TrainConfig:
    d = {"model": {"size": "quick"}, "data": TINY_DATA, "crop": 16, "batch_size": 2, "loss": dict(FAST_LOSS),
         "phase1": {"steps": 3}, "phase2": {"steps": 3}, "ckpt_every": 2, "threads": 1, "progress": False,
         "out_dir": str(out)}
    for k, v in kw.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    return TrainConfig.from_dict(d)


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
