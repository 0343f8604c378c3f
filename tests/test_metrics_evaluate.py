"""bsr.metrics.evaluate (folders of images, workers, summary) and `bsr evaluate`."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bsr.cli import main as bsr_main
from bsr.io import rgb_to_ycbcr
from bsr.metrics import evaluate_pairs, fusion_metrics, summarize
from bsr.metrics import cli as metrics_cli
from bsr.metrics.evaluate import load_grey, pair_files


def _img(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    return np.clip(120 + 60 * np.sin(x / 4.0 + seed) * np.cos(y / 6.0) + rng.normal(0, 10, (h, w)), 0, 255)


@pytest.fixture
def triples(tmp_path):
    """Four pairs: grey IR (.png), colour visible (.jpg-free: .png), fused in colour for one."""
    for d in ("fused", "ir", "vis"):
        (tmp_path / d).mkdir()
    for i in range(4):
        h, w = 48 + i, 56
        ir = _img(h, w, i).astype(np.uint8)
        vis = np.stack([_img(h, w, 10 + i), _img(h, w, 20 + i), _img(h, w, 30 + i)], -1).astype(np.uint8)
        Image.fromarray(ir).save(tmp_path / "ir" / f"p{i}.png")
        Image.fromarray(vis).save(tmp_path / "vis" / f"p{i}.png")
        vis_y = np.rint(rgb_to_ycbcr(vis / 255.0)[..., 0].astype(np.float64) * 255)
        fused = np.rint((ir + vis_y) / 2).astype(np.uint8)
        if i == 3:  # a colour fused image: scored on its Y channel
            fused = np.stack([fused, fused, np.roll(fused, 1, axis=1)], -1)
        Image.fromarray(fused).save(tmp_path / "fused" / f"p{i}.png")
    return tmp_path


def test_load_grey_colour_is_y(triples):
    rgb = np.asarray(Image.open(triples / "vis" / "p0.png"), dtype=np.float64)
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    assert np.abs(load_grey(triples / "vis" / "p0.png") - np.rint(y)).max() <= 1.0
    assert np.abs(load_grey(triples / "vis" / "p0.png", quantize=False) - y).max() < 1e-3


def test_evaluate_pairs_matches_fusion_metrics(triples):
    df = evaluate_pairs(triples / "fused", triples / "ir", triples / "vis", workers=1, progress=False)
    assert list(df.columns) == ["name", "Qabf", "VIFF", "SF", "AG", "MG", "EI", "SD", "EN"]
    assert list(df["name"]) == ["p0", "p1", "p2", "p3"]
    for i, row in df.iterrows():
        f, a, b = (load_grey(triples / d / f"p{i}.png") for d in ("fused", "ir", "vis"))
        ref = fusion_metrics(f, a, b)
        assert row.drop("name").to_dict() == pytest.approx(ref, rel=1e-12)
    # two processes give the same table
    df2 = evaluate_pairs(triples / "fused", triples / "ir", triples / "vis", workers=2, progress=False)
    pd.testing.assert_frame_equal(df, df2)


def test_lists_definitions_and_subsets(triples):
    files = sorted((triples / "fused").iterdir())
    irs = [triples / "ir" / p.name for p in files]
    vis = [triples / "vis" / p.name for p in files]
    df = evaluate_pairs(files[:2], irs[:2], vis[:2], workers=1, progress=False,
                        metrics=["MG", "EN"], mg="forward_diff")
    assert list(df.columns) == ["name", "MG", "EN"]
    f, a, b = (load_grey(p) for p in (files[0], irs[0], vis[0]))
    assert df.loc[0, "MG"] == pytest.approx(fusion_metrics(f, a, b, mg="forward_diff")["MG"])


def test_missing_and_mismatched_files(triples):
    (triples / "ir" / "p2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"ir: no image named p2\.\*"):
        pair_files(triples / "fused", triples / "ir", triples / "vis")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(triples / "ir" / "p2.png")
    with pytest.raises(ValueError, match=r"size mismatch for 'p2'.*p2\.png is 30x20"):
        evaluate_pairs(triples / "fused", triples / "ir", triples / "vis", workers=1, progress=False)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        pair_files(triples / "nope", triples / "ir", triples / "vis")
    with pytest.raises(ValueError, match="2 fused files but 1 ir"):
        pair_files([triples / "fused" / "p0.png", triples / "fused" / "p1.png"],
                   [triples / "ir" / "p0.png"], triples / "vis")
    with pytest.raises(FileNotFoundError, match="no such file"):
        pair_files([triples / "fused" / "zz.png"], [triples / "ir" / "p0.png"], [triples / "vis" / "p0.png"])


def test_summarize_values_and_bootstrap():
    df = pd.DataFrame({"name": list("abcde"), "X": [1.0, 2.0, 3.0, 4.0, 10.0], "Y": [5.0] * 5})
    s = summarize(df, n_boot=4000, seed=1)
    assert list(s.index) == ["X", "Y"]
    assert s.loc["X", "mean"] == pytest.approx(4.0)
    assert s.loc["X", "std"] == pytest.approx(np.std([1, 2, 3, 4, 10], ddof=1))
    assert s.loc["X", "ci_low"] < 4.0 < s.loc["X", "ci_high"]
    assert 1.0 <= s.loc["X", "ci_low"] and s.loc["X", "ci_high"] <= 10.0
    assert s.loc["Y", "ci_low"] == s.loc["Y", "ci_high"] == 5.0
    assert s.loc["X", "n"] == 5
    pd.testing.assert_frame_equal(s, summarize(df, n_boot=4000, seed=1))  # seeded
    # the percentile interval of a large sample approaches mean +- 1.96 sd / sqrt(n)
    rng = np.random.default_rng(0)
    big = pd.DataFrame({"Z": rng.normal(0, 1, 400)})
    z = summarize(big, n_boot=4000)
    assert summarize(big, n_boot=4000, seed=7).loc["Z", "ci_low"] != z.loc["Z", "ci_low"]
    half = 1.96 * big["Z"].std() / np.sqrt(400)
    assert z.loc["Z", "ci_high"] - z.loc["Z", "ci_low"] == pytest.approx(2 * half, rel=0.1)
    with pytest.raises(ValueError):
        summarize(df, ci=1.5)


def test_cli_writes_csv_and_prints_summary(triples, capsys):
    out = triples / "out" / "scores.csv"
    rc = metrics_cli.main(["--fused", str(triples / "fused"), "--ir", str(triples / "ir"),
                           "--vis", str(triples / "vis"), "-o", str(out), "--workers", "1",
                           "--no-progress", "--boot", "500"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "4 images" in text and "Qabf" in text and "ci_low" in text
    rows = list(csv.DictReader(out.open()))
    assert [r["name"] for r in rows] == ["p0", "p1", "p2", "p3"]
    assert float(rows[0]["EN"]) == pytest.approx(
        fusion_metrics(*(load_grey(triples / d / "p0.png") for d in ("fused", "ir", "vis")))["EN"])
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_bsr_evaluate_dispatch_and_errors(triples, capsys):
    rc = bsr_main(["evaluate", "--fused", str(triples / "fused"), "--ir", str(triples / "ir"),
                   "--vis", str(triples / "vis"), "--workers", "1", "--no-progress", "--metrics", "SF", "EN"])
    assert rc == 0
    assert "SF" in capsys.readouterr().out
    rc = bsr_main(["evaluate", "--fused", str(triples / "missing"), "--ir", str(triples / "ir"),
                   "--vis", str(triples / "vis"), "--no-progress"])
    assert rc == 1
    assert "not a directory" in capsys.readouterr().err
