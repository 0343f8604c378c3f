"""bsr.study.methods: the baseline methods, checkpoints as methods, the method table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bsr.baselines import register_then_fuse
from bsr.datasets.readers import load_pairs
from bsr.datasets.simulate import shift
from bsr.study import methods
from bsr.warp import warp


def _pair():
    p = load_pairs("synthetic", synthetic={"n": 1, "size": [64, 80], "seed": 2})[0]
    mis, _ = shift(torch.from_numpy(p.ir)[None, None], 3.0)
    return mis[0, 0].numpy(), p.vis


@pytest.mark.parametrize("reg", ["phase", "ECC"])
def test_registration_method_is_register_then_fuse(reg):
    ir, vis = _pair()
    out = methods.baseline_registration_methods([(reg, "GFF")])[f"{reg} + GFF"](ir, vis)
    t, v = torch.from_numpy(ir)[None, None], torch.from_numpy(vis)[None, None]
    fused, flow = register_then_fuse(reg, "GFF", t, v)
    assert np.array_equal(out["fused"], fused[0, 0].numpy()) and np.array_equal(out["flow"], flow[0].numpy())
    assert np.array_equal(out["registered"], warp(t, flow)[0, 0].numpy())
    assert out["fused"].shape == ir.shape and out["flow"].shape == (2, *ir.shape)


def test_fusion_methods_and_build_methods():
    ir, vis = _pair()
    fus = methods.baseline_fusion_methods(["average"])
    assert set(fus) == {"average"} and "flow" not in fus["average"](ir, vis)
    assert np.allclose(fus["average"](ir, vis)["fused"], (ir + vis) / 2, atol=1e-6)
    built = methods.build_methods(["max"], [["phase", "average"]])
    assert list(built) == ["max", "phase + average"] and all(len(v) == 1 for v in built.values())


def test_describe_methods_kinds():
    table = methods.describe_methods({methods.BSR_LABEL: [1, 2], "ECC + GFF": [1], "GFF": [1]})
    assert list(table["kind"]) == ["learned (this package)", "classical registration + fusion (bsr.baselines)",
                                   "classical fusion, no registration (bsr.baselines)"]
    assert list(table["seeds"]) == [2, 1, 1]


def test_a_checkpoints_field_alone_equals_the_field_of_its_fusion(tmp_path):
    """The content check asks a checkpoint for its field only (bsr.fuse.register_pair,
    no fusion network): bit for bit the field that fuse_pair returns."""
    import torch

    from bsr.checkpoint import save_checkpoint
    from bsr.model import BSR, model_config
    from bsr.study.methods import checkpoint_method

    torch.manual_seed(0)
    model = BSR(model_config("quick", unet={"corr": {"descriptor": "edge_ncc", "radius": 2, "level": 1, "window": 5}}))
    for p in model.unet.parameters():          # a non-trivial field
        p.data.normal_(0, 0.05)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, {"model": {"size": "quick"}}, step=0, phase=2)
    method = checkpoint_method(path)
    rng = np.random.default_rng(0)
    ir, vis = rng.random((45, 61)).astype(np.float32), rng.random((45, 61)).astype(np.float32)
    full = method(ir, vis)["flow"]
    alone = method.register(ir, vis)["flow"]
    assert np.abs(full).max() > 0 and full.dtype == alone.dtype == np.float32
    assert np.array_equal(full, alone)
