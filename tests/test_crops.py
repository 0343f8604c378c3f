"""Training crops (bsr.datasets.crops): repeatable random windows of misaligned pairs, with L_nda targets."""

import pytest
import torch

from bsr.datasets import crops
from bsr.datasets.readers import DataError, load_pairs


def test_misaligned_crops_and_loader():
    loader = crops.make_loader({"name": "synthetic", "synthetic": {"n": 3, "size": [64, 80]},
                               "misalignment": {"kind": "shift", "level": 4}}, crop=(32, 32), batch_size=2, seed=0)
    batch = next(iter(loader))
    assert batch["ir"].shape == (2, 1, 32, 32) and batch["flow_gt"].shape == (2, 2, 32, 32)
    assert torch.all(batch["flow_gt"][:, 0] == 4)
    again = next(iter(crops.make_loader({"name": "synthetic", "synthetic": {"n": 3, "size": [64, 80]},
                                        "misalignment": {"kind": "shift", "level": 4}}, (32, 32), 2, 0)))
    assert torch.equal(batch["ir"], again["ir"])
    with pytest.raises(DataError, match="larger than"):
        crops.make_loader({"name": "synthetic", "synthetic": {"n": 1, "size": [64, 80]}}, (96, 96), 1, 0)
    with pytest.raises(DataError, match="unknown data option"):
        crops.make_loader({"name": "synthetic", "colour": True}, (32, 32), 1, 0)


def test_precomputed_nda_targets_point_at_the_truth():
    pairs = load_pairs("synthetic", synthetic={"n": 2, "size": [96, 128]})
    ds = crops.MisalignedCrops(pairs, (64, 64), "shift", 5, seed=0, nda={"radius": 8, "window": 15})
    item = ds[0]
    for key in ("nda_p", "nda_n"):
        assert item[f"{key}_delta"].shape == (2, 64, 64) and item[f"{key}_valid"].dtype == torch.bool
    v = item["nda_p_valid"][0]
    assert v.float().mean() > 0.02
    err = (item["nda_p_delta"] - item["flow_gt"]).norm(dim=0)[v]
    # most kept targets are right (cross-modal matching is noisy, hence the LR check)
    assert (err < 1.5).float().mean() > 0.3
    # the reverse direction points the other way
    vn = item["nda_n_valid"][0]
    assert item["nda_n_delta"][0][vn].median() < -2


def test_consensus_filter_keeps_a_more_accurate_subset():
    """loss.nda_consensus reaches the precomputed targets: a subset of the
    unfiltered ones, with a smaller error against the truth."""
    from bsr.objective import LossConfig

    pairs = load_pairs("synthetic", synthetic={"n": 2, "size": [96, 128]})
    plain, filt = [crops.MisalignedCrops(pairs, (96, 128), "shift", 5, seed=0,
                                        nda=LossConfig(nda_consensus=c).precompute_options())[0]
                   for c in (None, 1.5)]
    v0, v1 = plain["nda_p_valid"][0], filt["nda_p_valid"][0]
    assert not (v1 & ~v0).any() and v1.sum() > 0.3 * v0.sum()
    err = (plain["nda_p_delta"] - plain["flow_gt"]).norm(dim=0)
    assert err[v1].mean() < err[v0].mean()
    dense = crops.MisalignedCrops(pairs, (96, 128), "shift", 5, seed=0, nda=LossConfig(
        nda_consensus=1.5, nda_consensus_dense=True).precompute_options())[0]
    vd = dense["nda_p_valid"][0]
    assert vd.sum() > 2 * v0.sum()                                   # flat pixels get targets too
    assert (dense["nda_p_delta"] - dense["flow_gt"]).norm(dim=0)[vd].median() < 1.0
    assert "consensus" not in LossConfig().precompute_options()      # off by default: the paper
    with pytest.raises(ValueError, match="precomputed targets only"):
        LossConfig(nda_consensus=1.5, nda_targets="search")
    with pytest.raises(ValueError, match="needs loss.nda_consensus"):
        LossConfig(nda_consensus_dense=True)
    with pytest.raises(ValueError, match="a number > 0"):
        LossConfig(nda_consensus=True)                  # YAML `true` is not a threshold
    with pytest.raises(ValueError, match="true or false"):
        LossConfig(nda_consensus=1.5, nda_consensus_dense="false")
