"""bsr.study.tables: the reported-values file against the paper's tables, and table writing."""

import numpy as np
import pandas as pd
import pytest

from bsr.study import tables


def test_row_and_column_counts():
    df = tables.reported()
    assert list(df.columns) == ["table", "dataset", "setting", "method", "metric", "value"]
    counts = df.groupby("table").size().to_dict()
    assert counts == {1: 54, 2: 54, 3: 54, 4: 24, 5: 54, 6: 90}
    for t in (1, 2, 3, 5):
        assert tables.reported(t)["method"].nunique() == 9
    assert set(tables.reported(4)["metric"]) == {"SD", "AG", "MG", "EI"}
    assert sorted(tables.reported(6)["setting"].unique()) == sorted(
        f"dilate_crop {d} px" for d in (5, 10, 20, 30, 50))


@pytest.mark.parametrize("table,method,metric,value", [
    (1, "B-SR", "MG", 47.74), (1, "ReCoNet", "EI", 14.63), (2, "DIDFuse", "SF", 21.86),
    (3, "UMF-CMGR", "SF", 3.48), (4, "Exp. II", "SD", 29.65), (5, "MURF", "Qabf", 0.55),
])
def test_spot_values(table, method, metric, value):
    df = tables.reported(table)
    got = df[(df["method"] == method) & (df["metric"] == metric)]["value"]
    assert len(got) == 1 and got.iloc[0] == pytest.approx(value)


def test_table6_spot_and_internal_consistency():
    t6 = tables.reported(6)
    v = t6[(t6.setting == "dilate_crop 50 px") & (t6.method == "B-SR") & (t6.metric == "VIFF")]["value"].iloc[0]
    assert v == pytest.approx(0.80)
    # the paper's 5 px rows of Table 6 repeat Table 5's rows for the same methods
    t5 = tables.reported(5).set_index(["method", "metric"])["value"]
    five = t6[t6.setting == "dilate_crop 5 px"].set_index(["method", "metric"])["value"]
    assert np.allclose(five.values, t5.loc[five.index].values)


def test_side_by_side_labels_every_row():
    meas = pd.DataFrame({"method": ["average"], "Qabf": ["0.40"], "VIFF": ["0.50"]})
    t = tables.side_by_side(meas, 1, metrics=["Qabf", "VIFF"])
    assert t.loc[0, "source"] == tables.MEASURED_LABEL and t.loc[0, "method"] == "average"
    assert (t.loc[1:, "source"] == tables.REPORTED_LABEL).all() and len(t) == 10
    empty = tables.side_by_side(None, 2, note_if_empty="DroneVehicle not supplied")
    assert empty.loc[0, "method"] == "DroneVehicle not supplied" and empty.loc[0, "Qabf"] == "n/a"


def test_measured_wide_mean_std_over_seeds():
    long = pd.DataFrame({"method": ["m"] * 4, "metric": ["AG"] * 4, "seed": [0, 0, 1, 1],
                         "value": [1.0, 3.0, 5.0, 7.0]})
    w = tables.measured_wide(long, ["AG"])
    # per-seed means 2 and 6 -> mean 4, sample std 2.83
    assert w.loc[0, "AG"] == "4.00 ± 2.83"


def test_write_table(tmp_path):
    df = pd.DataFrame({"source": ["measured (this package)"], "method": ["a_b"], "AG": ["1.00 ± 0.10"]})
    paths = tables.write_table(df, tmp_path / "t1", caption="Table 1 & co")
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
    assert "| a_b | 1.00 ± 0.10 |" in (tmp_path / "t1.md").read_text()
    tex = (tmp_path / "t1.tex").read_text()
    assert "a\\_b" in tex and "$\\pm$" in tex and "Table 1 \\& co" in tex


def test_table6_keeps_each_level():
    """Table 6 is reported at five levels: every row, measured or reported, names its level."""
    meas = pd.DataFrame({"setting": ["dilate_crop 5 px", "dilate_crop 10 px"], "method": ["B-SR (this package)"] * 2,
                         "Qabf": ["0.40", "0.30"]})
    t = tables.side_by_side(meas, 6, metrics=["Qabf"])
    assert list(t.columns) == ["source", "setting", "method", "Qabf"]
    rep = t[t["source"] == tables.REPORTED_LABEL]
    assert len(rep) == 15 and rep["setting"].nunique() == 5
    row = rep[(rep["setting"] == "dilate_crop 50 px") & (rep["method"] == "B-SR")]
    assert len(row) == 1
    assert t.loc[1, "setting"] == "dilate_crop 10 px" and t.loc[1, "Qabf"] == "0.30"
    # one-setting tables stay as they were (no setting column)
    assert "setting" not in tables.side_by_side(None, 1, metrics=["Qabf"]).columns
