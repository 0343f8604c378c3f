"""benchmarks/released_model.py: the flip helper, and a smoke run on tiny synthetic pairs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bsr.datasets import benchsets
from bsr.datasets.readers import load_pairs
from bsr.warp import warp

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "released_model.py"
M = 10  # margin, as the benchmark


@pytest.fixture(scope="module")
def rm():
    spec = importlib.util.spec_from_file_location("released_model_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def pairs():
    return load_pairs("synthetic", synthetic={"n": 2, "size": [64, 96], "seed": 3})


def _err(a, b):
    return float((a - b)[..., M:-M, M:-M].abs().mean())


@pytest.mark.parametrize("set_name", ["shift5_right", "shift5_down", "dilate10", "affine_elastic"])
@pytest.mark.parametrize("op", ["as_given", "flip_lr", "flip_ud", "rot180"])
def test_transform_pair_keeps_warp_consistency(rm, pairs, set_name, op):
    for item in benchsets.make_set(pairs, set_name):
        t = rm.transform_pair(item, op)
        assert t["op"] == op and t["name"] == item["name"]
        for k in ("mis", "vis", "ir_aligned", "gt"):
            assert t[k].shape == item[k].shape
        rec, rec_t = warp(item["mis"], item["gt"]), warp(t["mis"], t["gt"])
        # warp(mis_t, gt_t) is the transformed warp(mis, gt) (bilinear warping commutes with flips) ...
        assert torch.allclose(rec_t, rm.transform_pair({**item, "mis": rec}, op)["mis"], atol=1e-5)
        # ... so it matches the transformed aligned IR as well as the original does
        assert _err(rec_t, t["ir_aligned"]) <= _err(rec, item["ir_aligned"]) + 1e-5
        assert _err(rec_t, t["ir_aligned"]) < 0.02
        # the misalignment itself is unchanged in size
        assert torch.allclose(t["gt"].norm(dim=1).mean(), item["gt"].norm(dim=1).mean(), atol=1e-4)


def test_transform_pair_sign_matters(rm, pairs):
    """Control: flipping the field array without negating its x component breaks consistency."""
    item = benchsets.make_set(pairs, "shift5_right")[0]
    t = rm.transform_pair(item, "flip_lr")
    assert torch.allclose(t["gt"][:, 0], torch.full_like(t["gt"][:, 0], -5.0))
    wrong = torch.flip(item["gt"], (-1,))
    good, bad = _err(warp(t["mis"], t["gt"]), t["ir_aligned"]), _err(warp(t["mis"], wrong), t["ir_aligned"])
    assert bad > 5 * good


@pytest.mark.parametrize("op", ["flip_lr", "flip_ud", "rot180"])
def test_transform_pair_is_an_involution(rm, pairs, op):
    item = benchsets.make_set(pairs, "affine_elastic")[1]
    back = rm.transform_pair(rm.transform_pair(item, op), op)
    for k in ("mis", "vis", "ir_aligned", "gt"):
        assert torch.equal(back[k], item[k])


def test_transform_pair_rejects_unknown_op(rm, pairs):
    item = benchsets.make_set(pairs, "shift5_right")[0]
    with pytest.raises(ValueError, match="unknown op"):
        rm.transform_pair(item, "rot90")


def test_summaries_on_a_toy_table(rm):
    rows = []
    for s, epe in (("aligned", {"identity": 0.0, "phase": 0.1, "ECC translation": 0.2, "ECC": 0.3,
                                "TV-L1": 0.5, "B-SR": 0.2}),
                   ("shift5_right", {"identity": 5.0, "phase": 0.2, "ECC translation": 0.4, "ECC": 0.6,
                                     "TV-L1": 1.0, "B-SR": 0.1})):
        for m, e in epe.items():
            for pair in ("a", "b"):
                rows.append({"set": s, "pair": pair, "method": m, "seconds": 1.0, "EPE_mean": e,
                             "EPE_median": e, "EPE>1px": 0.0, "EPE>3px": float(e > 3), "edge_align": 1.0,
                             "EPE_own": float("nan") if s == "aligned" else e / 2})
    acc, floor, summary = rm.summarize_accuracy(pd.DataFrame(rows))
    assert set(acc["set"]) == {"shift5_right"} and len(floor) == 6
    assert acc.set_index("method").loc["ECC", "mean EPE from own alignment (px)"] == pytest.approx(0.3)
    assert "mean EPE from own alignment (px)" not in floor.columns
    assert floor.set_index("method").loc["TV-L1", "mean field norm (px)"] == pytest.approx(0.5)
    r = summary.iloc[0]
    assert r["lowest mean EPE"] == "B-SR" and r["best classical"] == "phase"
    assert r["B-SR beats every classical"] == "yes" and r["B-SR / best classical"] == pytest.approx(0.5)
    assert acc.set_index("method").loc["identity", "EPE>3px (%)"] == pytest.approx(100.0)


def test_smoke_run_on_synthetic_pairs(rm, tmp_path):
    res = rm.main(["--untrained", "--synthetic", "--pairs", "1", "--sets", "shift5_right,dilate10",
                   "--speed-size", "96x64", "--out", str(tmp_path), "--no-progress"])
    for stem in ("accuracy", "floor", "accuracy_summary", "content_check", "nogt_edge", "fusion", "speed"):
        assert (tmp_path / f"{stem}.csv").is_file() and (tmp_path / f"{stem}.md").is_file()
    for name in ("REPORT.md", "run_info.json", "accuracy_per_pair.csv", "accuracy_epe.png", "nogt_edge.png"):
        assert (tmp_path / name).is_file()
    acc = pd.read_csv(tmp_path / "accuracy.csv")
    assert set(acc["method"]) == set(rm.METHODS) and set(acc["set"]) == {"shift5_right", "dilate10"}
    ident = acc[(acc["method"] == "identity") & (acc["set"] == "shift5_right")]
    assert ident["mean EPE (px)"].iloc[0] == pytest.approx(5.0, abs=1e-4)
    content = pd.read_csv(tmp_path / "content_check.csv")
    assert len(content) == 8 and content["ratio to as given"].notna().all()
    fusion = pd.read_csv(tmp_path / "fusion.csv")
    assert {"Qabf", "VIFF", "SF", "AG", "MG", "EI", "SD", "EN"} <= set(fusion.columns)
    assert len(pd.read_csv(tmp_path / "speed.csv")) == 4
    assert set(res["info"]["section_seconds"]) == set(rm.SECTIONS)


def test_real_roadscene_pair(rm):
    """One real RoadScene test pair, one set: phase correlation recovers the 5 px shift."""
    from conftest import need_dataset

    root = need_dataset("roadscene")
    pairs = load_pairs("roadscene", root=root.parent, split="test", limit=1)
    methods = {k: v for k, v in rm.registration_methods(rm.BSR().eval()).items() if k in ("identity", "phase")}
    per = rm.run_accuracy(methods, pairs, ["shift5_right"], progress=False)
    e = per[per["set"] == "shift5_right"].set_index("method")["EPE_mean"]
    assert e["identity"] == pytest.approx(5.0, abs=1e-4)
    assert e["phase"] < 1.0


def test_epe_from_own_alignment_leaves_out_what_a_method_does_to_aligned_pairs(rm, pairs):
    """Identity: the same as the plain EPE. A constant offset c: its own field on the aligned pair is c
    as well, so the offset is left out and the 5 px shift it missed is all that is counted."""
    c = torch.tensor([1.5, -0.5]).view(1, 2, 1, 1)
    methods = {"identity": rm.registration_methods(rm.BSR().eval())["identity"],
               "offset": lambda ir, vis: c.expand(ir.shape[0], 2, *ir.shape[-2:]).clone()}
    per = rm.run_accuracy(methods, pairs, ["shift5_right"], progress=False)
    assert per.loc[per["set"] == rm.FLOOR, "EPE_own"].isna().all()
    s = per[per["set"] == "shift5_right"].set_index(["pair", "method"])
    for pair in s.index.get_level_values("pair").unique():
        ident, off = s.loc[(pair, "identity")], s.loc[(pair, "offset")]
        assert ident["EPE_own"] == pytest.approx(ident["EPE_mean"], abs=1e-5)
        assert off["EPE_own"] == pytest.approx(5.0, abs=1e-3)
        assert off["EPE_mean"] == pytest.approx(float(torch.tensor([-3.5, 0.5]).norm()), abs=1e-3)


def test_paired_interval_resolves_a_consistent_gain_and_not_a_noisy_one(rm):
    rng = np.random.default_rng(1)
    base = rng.uniform(1.0, 3.0, 40)

    def per_set(diff):
        return pd.DataFrame([{"pair": i, "method": m, "EPE_mean": v}
                             for i in range(40) for m, v in (("ECC", base[i]), ("B-SR", base[i] + diff[i]))])

    lo, hi = rm.paired_interval(per_set(-0.2 + 0.05 * rng.standard_normal(40)), "B-SR", "ECC")
    assert lo < -0.15 and hi < 0 and lo < hi
    lo, hi = rm.paired_interval(per_set(-0.02 + 1.0 * rng.standard_normal(40)), "B-SR", "ECC")
    assert lo < 0 < hi
    assert rm.paired_interval(per_set(np.full(40, 0.1)), "B-SR", "ECC") == pytest.approx((0.1, 0.1))


def test_fusion_against_the_classical_combination_pairs_the_same_images(rm):
    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.5, 30)
    rows = []
    for i in range(30):
        for m, q in (("ECC + GFF", base[i]), ("B-SR", base[i] + (0.05 if i < 20 else -0.01))):
            rows.append({"set": "shift5_right", "pair": f"p{i}", "method": m,
                         **{k: (q if k == "Qabf" else 1.0 + i) for k in rm.FUSION_METRICS}})
    t = rm.fusion_against(pd.DataFrame(rows)).set_index("metric")
    q = t.loc["Qabf"]
    assert q["difference"] == pytest.approx((20 * 0.05 - 10 * 0.01) / 30)
    assert q["pairs higher"] == "20 / 30"
    assert 0 < q["95 % low"] < q["difference"] < q["95 % high"]
    assert q["B-SR"] - q["ECC + GFF"] == pytest.approx(q["difference"])
    ties = t.loc["SF"]     # equal on every pair: no difference, none higher
    assert ties["difference"] == 0 and ties["pairs higher"] == "0 / 30" and ties["95 % low"] == 0


def test_a_tie_with_a_classical_method_is_no_win(rm):
    rows = [{"set": "dilate10", "pair": "a", "method": m, "seconds": 1.0, "EPE_mean": e, "EPE_median": e,
             "EPE>1px": 0.0, "EPE>3px": 0.0, "edge_align": 1.0, "EPE_own": e}
            for m, e in {"identity": 3.6, "phase": 3.8, "ECC translation": 3.7, "ECC": 1.36, "TV-L1": 2.4,
                         "B-SR": 1.359999}.items()]
    _, _, summary = rm.summarize_accuracy(pd.DataFrame(rows))
    r = summary.iloc[0]
    assert r["lowest mean EPE"] == "ECC = B-SR"
    assert r["B-SR beats every classical"] == "no"


def test_accuracy_runs_over_parts_of_the_sets_merge_into_one_report(rm, tmp_path):
    """benchmarks/merge_accuracy.py: two runs of the accuracy section (here with --refine, so the option's
    path runs too) merge into the tables one run over both sets gives."""
    spec = importlib.util.spec_from_file_location("merge_accuracy_bench", SCRIPT.with_name("merge_accuracy.py"))
    merge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merge)
    base = ["--untrained", "--refine", "--synthetic", "--pairs", "1", "--sections", "accuracy", "--no-progress"]
    rm.main([*base, "--sets", "shift5_right", "--out", str(tmp_path / "a")])
    rm.main([*base, "--sets", "dilate10", "--out", str(tmp_path / "b")])
    rm.main([*base, "--sets", "shift5_right,dilate10", "--out", str(tmp_path / "both")])
    merge.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")])
    for stem in ("accuracy", "floor", "accuracy_summary"):
        got, want = pd.read_csv(tmp_path / "m" / f"{stem}.csv"), pd.read_csv(tmp_path / "both" / f"{stem}.csv")
        cols = [c for c in want.columns if c != "s/pair"]          # timings differ from run to run
        pd.testing.assert_frame_equal(got[cols], want[cols])
    assert "refinement: {'grid'" in (tmp_path / "m" / "REPORT.md").read_text()
    with pytest.raises(SystemExit, match="no accuracy_per_pair"):
        merge.main([str(tmp_path / "a"), str(tmp_path / "nosuch"), "--out", str(tmp_path / "x")])
