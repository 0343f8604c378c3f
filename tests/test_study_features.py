"""bsr.study.features: the feature statistics of notebook 05 on a tiny input."""

from __future__ import annotations

import pytest
import torch

from bsr.checkpoint import save_checkpoint
from bsr.datasets.readers import load_pairs
from bsr.model import BSR, model_config
from bsr.study import features


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """``<dir>/<run>/seed<k>/final.pt`` for two untrained quick runs, seeds 0 and 1."""
    root = tmp_path_factory.mktemp("ck")
    for i, run in enumerate(("run_a", "run_b")):
        for seed in (0, 1):
            torch.manual_seed(10 * i + seed)
            save_checkpoint(root / run / f"seed{seed}" / "final.pt", BSR(model_config("quick")), {}, step=0, phase=1)
    return root


def test_grid_order_puts_no_pdg_first():
    assert features.grid_order({"2": 0, "x": 0, "10": 0, "0": 0}) == ["x", "0", "2", "10"]


def test_feature_statistics_rows_maps_and_summary(checkpoint_dir):
    pairs = load_pairs("synthetic", synthetic={"n": 2, "size": [64, 96], "seed": 0})
    runs = {"1": "run_b", "x": "run_a"}
    stats, maps = features.feature_statistics(pairs, runs, checkpoint_dir, [0, 1], threshold=0.5, n_panels=1)
    assert list(stats.columns) == ["N", "seed", "pair", "features", "high_response_pct"]
    assert len(stats) == 2 * 2 * 2 * 2          # grids x seeds x pairs x (shallow, deep)
    assert list(dict.fromkeys(stats["N"])) == ["x", "1"]
    assert stats["high_response_pct"].between(0, 100).all()
    assert set(maps) == {("x", 0), ("1", 0)}
    resp = maps[("x", 0)]
    assert set(resp) == {"shallow", "deep"} and resp["deep"].shape == (64, 96)
    # the maps are the first seed's: recomputing them from that checkpoint gives the same statistic
    row = stats[(stats["N"] == "x") & (stats["seed"] == 0) & (stats["pair"] == pairs[0].name)
                & (stats["features"] == "deep")]
    assert row["high_response_pct"].iloc[0] == pytest.approx(features.high_response_percent(resp["deep"], 0.5))
    summary = features.high_response_summary(stats)
    assert list(summary.columns) == ["features", "N", "mean", "std"] and len(summary) == 4
    one = stats[(stats["features"] == "shallow") & (stats["N"] == "1")]["high_response_pct"]
    got = summary[(summary["features"] == "shallow") & (summary["N"] == "1")]
    assert got["mean"].iloc[0] == pytest.approx(one.mean()) and got["std"].iloc[0] == pytest.approx(one.std())


def test_feature_statistics_needs_every_checkpoint(checkpoint_dir):
    pairs = load_pairs("synthetic", synthetic={"n": 1, "size": [64, 64], "seed": 0})
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        features.feature_statistics(pairs, {"0": "missing_run"}, checkpoint_dir, [0])


def test_figures_of_notebook_05(checkpoint_dir):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bsr import plots

    pairs = load_pairs("synthetic", synthetic={"n": 1, "size": [64, 64], "seed": 0})
    runs = {"x": "run_a", "0": "run_b"}
    stats, maps = features.feature_statistics(pairs, runs, checkpoint_dir, [0], n_panels=1)
    summary = features.high_response_summary(stats)
    order = features.grid_order(runs)
    bars = plots.high_response_bars(summary, order, 0.6)
    grid = plots.feature_map_grid(maps, order, 1)
    assert len(bars.axes[0].patches) == 2 * len(order)
    assert len(grid.axes) == 2 * len(order)
    plt.close(bars)
    plt.close(grid)
