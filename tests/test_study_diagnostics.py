"""bsr.study.diagnostics: telling registration from content apart from a learned offset."""

from __future__ import annotations

import numpy as np
import pytest

import torch

from bsr.datasets.readers import Pair, load_pairs
from bsr.datasets.simulate import shift
from bsr.study.diagnostics import summarize_transformed, transformed_epe
from bsr.study.methods import baseline_registration_methods


def _shift_pairs(n=2, dx=5.0):
    pairs = []
    for p in load_pairs("synthetic", synthetic={"n": n, "size": [96, 128], "seed": 3}):
        mis, flow = shift(torch.from_numpy(p.ir)[None, None], dx)
        pairs.append(Pair(p.name, mis[0, 0].numpy(), p.vis, ir_aligned=p.ir, flow_gt=flow[0].numpy()))
    return pairs


def constant(dx, dy=0.0):
    def run(ir, vis):
        f = np.zeros((2, *ir.shape), np.float32)
        f[0], f[1] = dx, dy
        return {"flow": f}
    return run


def test_a_constant_offset_fails_under_the_ops_that_move_it():
    t = transformed_epe(constant(5.0), _shift_pairs())
    s = summarize_transformed(t)["EPE_mean"]
    assert s["identity"] == pytest.approx(0, abs=1e-4)      # looks perfect as given
    assert s["flip_y"] == pytest.approx(0, abs=1e-4)        # control: flip_y keeps a horizontal shift
    assert s["flip_x"] == pytest.approx(10, abs=1e-4)       # truth becomes -5, the offset stays +5
    assert s["rot180"] == pytest.approx(10, abs=1e-4)
    assert set(t["pair"]) == {p.name for p in _shift_pairs()} and len(t) == 2 * 4


def test_content_based_registration_is_unchanged_by_the_ops():
    """Phase correlation looks at the images: the same error under every op."""
    method = baseline_registration_methods([("phase", "average")])["phase + average"]
    t = transformed_epe(method, _shift_pairs())
    s = summarize_transformed(t)
    assert s.loc["identity", "EPE_mean"] < 1.5
    assert (s["EPE_mean"] < 1.5).all() and (s["ratio_to_as_given"] < 1.6).all()


def test_ninety_degree_ops_need_square_images_and_bad_input():
    sq = []
    for p in load_pairs("synthetic", synthetic={"n": 1, "size": [96, 96], "seed": 1}):
        mis, flow = shift(torch.from_numpy(p.ir)[None, None], 0.0, 5.0)
        sq.append(Pair(p.name, mis[0, 0].numpy(), p.vis, ir_aligned=p.ir, flow_gt=flow[0].numpy()))
    t = transformed_epe(constant(0.0, 5.0), sq, codes=range(8))
    s = summarize_transformed(t)["EPE_mean"]
    # a vertical +5 offset: right under identity and flip_x, 5*sqrt(2) off under the quarter turns
    assert s["identity"] == pytest.approx(0, abs=1e-4) and s["flip_x"] == pytest.approx(0, abs=1e-4)
    assert s["rot90"] == pytest.approx(5 * np.sqrt(2), abs=1e-3) and s["flip_y"] == pytest.approx(10, abs=1e-4)
    assert len(transformed_epe(constant(5.0), _shift_pairs(1), codes=range(8))) == 4   # non-square: 4 ops
    with pytest.raises(ValueError, match="ground-truth"):
        transformed_epe(constant(5.0), [Pair("x", np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32))])
    with pytest.raises(ValueError, match="no field"):
        transformed_epe(lambda ir, vis: {"fused": ir}, _shift_pairs(1))


def test_study_content_check_averages_seeds_and_skips_sets_without_a_field():
    from bsr.study import scoring

    pairs = _shift_pairs(1)
    still = [Pair("z", p.ir_aligned, p.vis, ir_aligned=p.ir_aligned, flow_gt=np.zeros_like(p.flow_gt)) for p in pairs]
    t = scoring.content_check({"s5": pairs, "none": still}, {"offset": [constant(5.0), constant(3.0)]})
    assert set(t["set"]) == {"s5"} and len(t) == 4
    row = t.set_index("op").loc["flip_x"]
    assert row["EPE_mean"] == pytest.approx((10 + 8) / 2, abs=1e-4)       # mean over the two "seeds"
    assert row["ratio_to_as_given"] == pytest.approx(9 / 1, abs=1e-3)       # as given: (0 + 2) / 2 = 1


def test_nda_target_accuracy_control_is_exact_and_visible_is_scored():
    from bsr.study.diagnostics import nda_target_accuracy

    pairs = _shift_pairs(n=1, dx=4.0)
    t = nda_target_accuracy(pairs).set_index("reference")
    assert set(t.index) == {"visible", "ir_aligned"}
    ctrl = t.loc["ir_aligned"]
    # mono-modal: the search finds the 4 px shift almost everywhere
    assert ctrl.valid > 0.8 and ctrl.within_1px > 0.95 and ctrl.err_median < 0.3
    assert ctrl.gt_mean == pytest.approx(4.0, abs=1e-4)
    vis = t.loc["visible"]
    assert 0 < vis.valid < ctrl.valid and 0 <= vis.within_1px <= vis.within_3px <= 1
    # an option reaches the search: a 1 px radius cannot find a 4 px shift
    t1 = nda_target_accuracy(pairs, options={"radius": 1, "window": 15, "lr_check": None}).set_index("reference")
    assert t1.loc["ir_aligned"].within_1px < 0.5


def test_nda_target_accuracy_needs_ground_truth():
    from bsr.study.diagnostics import nda_target_accuracy

    p = load_pairs("synthetic", synthetic={"n": 1, "size": [64, 64]})[0]
    with pytest.raises(ValueError, match="ground truth"):
        nda_target_accuracy([p])


def test_study_nda_target_table_means_over_pairs_and_skips_sets_without_a_field():
    from bsr.study import scoring
    from bsr.study.diagnostics import nda_target_accuracy

    pairs = _shift_pairs(n=2, dx=3.0)
    still = [Pair("z", p.ir_aligned, p.vis, ir_aligned=p.ir_aligned, flow_gt=np.zeros_like(p.flow_gt)) for p in pairs]
    t = scoring.nda_target_table({"s3": pairs, "none": still}, n_pairs=1)
    assert list(t["set"]) == ["s3", "s3"] and list(t["pairs"]) == [1, 1]
    one = nda_target_accuracy(pairs[:1]).set_index("reference")
    row = t.set_index("reference").loc["visible"]
    assert row["within_3px"] == pytest.approx(one.loc["visible", "within_3px"])
    assert scoring.nda_target_table({"none": still}).empty


def test_windowed_epe_exposes_a_centre_radial_guess():
    """On a centred zoom, 'outward from the centre of what I see' is exact on the full pair
    and wrong on off-centre windows; the identity is scored on the same windows."""
    from bsr.study.diagnostics import windowed_epe
    from bsr.datasets.simulate import dilate_crop

    p = load_pairs("synthetic", synthetic={"n": 1, "size": [96, 128], "seed": 3})[0]
    mis, flow = dilate_crop(torch.from_numpy(p.ir)[None, None], 8)
    pair = Pair(p.name, mis[0, 0].numpy(), p.vis, ir_aligned=p.ir, flow_gt=flow[0].numpy())
    full = flow[0].numpy()

    def centre_radial(ir, vis):
        # the full pair's field, rescaled about the centre of whatever window it is shown
        h, w = ir.shape
        sy, sx = (full.shape[1] - 1) / 2, (full.shape[2] - 1) / 2
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        ky, kx = full[1, -1, 0] / ((full.shape[1] - 1) - sy), full[0, 0, -1] / ((full.shape[2] - 1) - sx)
        return {"flow": np.stack([kx * (gx - (w - 1) / 2), ky * (gy - (h - 1) / 2)])}

    t = windowed_epe(centre_radial, [pair]).set_index("window")
    assert t.loc["full", "EPE_mean"] < 0.1 * t.loc["full", "identity"]
    assert t.loc["top-left 3/4", "EPE_mean"] > 0.5 * t.loc["top-left 3/4", "identity"]
    z = windowed_epe(constant(0.0), [pair]).set_index("window")
    assert np.allclose(z["EPE_mean"], z["identity"])
    with pytest.raises(ValueError, match="too small"):
        windowed_epe(constant(0.0), [pair], windows={"tiny": (0, 0.1, 0, 0.1)})


def test_field_gain_is_the_share_of_the_displacement_predicted():
    from bsr.study.diagnostics import field_gain

    g = np.random.default_rng(0).normal(size=(2, 40, 50)).astype(np.float32)
    assert field_gain(g, g) == pytest.approx(1.0)
    assert field_gain(0.2 * g, g) == pytest.approx(0.2)
    assert field_gain(np.zeros_like(g), g) == 0.0
    mask = np.zeros((40, 50), bool)
    mask[:, :25] = True
    half = np.where(mask, g, 0.5 * g)
    assert field_gain(half, g, mask) == pytest.approx(1.0)
    assert field_gain(half, g, ~mask) == pytest.approx(0.5)
    assert np.isnan(field_gain(g, np.zeros_like(g)))
    with pytest.raises(ValueError, match="two \\(2, H, W\\) fields"):
        field_gain(g[:1], g[:1])
