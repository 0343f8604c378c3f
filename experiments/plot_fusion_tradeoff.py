"""Plot each fusion auto-encoder run's Qabf gain against its gradient metrics (NOTES.md, sections 19-26).

Every ``records/fusion_ae_*_pairs.csv`` that ``probe_fusion_ae.py --out`` wrote holds the
auto-encoder shipped when it was written (method ``shipped``) and GFF beside the runs it scored, on
the same aligned pairs. In all but one the shipped one is the auto-encoder released before section
24; in ``fusion_ae_phase2_long_pairs.csv`` (section 26) it is section 24's ``enc_qabf0.3``, named so
here (the same file; its scores agree with that record's to 1e-4). Per set and run,
the plot shows the mean per-pair difference of Qabf to that auto-encoder (y) and the lowest of the
mean relative differences of SF, AG, MG and EI (x, %): a run right of 0 is higher on all four
gradient metrics. GFF is plotted the same way; ``long6000`` is the released auto-encoder.

    python experiments/plot_fusion_tradeoff.py   # -> experiments/records/fusion_tradeoff.png
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).parent / "records"
GRADIENT = ["SF", "AG", "MG", "EI"]
RELEASED = "long6000"   # the released auto-encoder's run (section 26)
# records whose "shipped" is not the auto-encoder released before section 24: what it is there
SHIPPED_AS = {"fusion_ae_phase2_long_pairs.csv": "enc_qabf0.3"}
SETS = {"roadscene-val": "RoadScene val (16 pairs)", "tno": "TNO (25 pairs)"}


def tradeoff(df: pd.DataFrame) -> pd.DataFrame:
    """Per set and method (the shipped one left out): mean Qabf difference to the shipped
    auto-encoder and the lowest mean relative difference (%) of the gradient metrics."""
    rows = []
    for (set_name, method), g in df.groupby(["set", "method"], sort=False):
        if method == "shipped":
            continue
        ref = df[(df["set"] == set_name) & (df["method"] == "shipped")].set_index("pair")
        g = g.set_index("pair")
        rel = {k: 100 * ((g[k] - ref[k]) / ref[k]).mean() for k in GRADIENT}
        rows.append({"set": set_name, "method": method, "d_qabf": (g["Qabf"] - ref["Qabf"]).mean(),
                     "worst_gradient_pct": min(rel.values()), "worst": min(rel, key=rel.get)})
    return pd.DataFrame(rows)


def collect() -> pd.DataFrame:
    parts = []
    for p in sorted(HERE.glob("fusion_ae_*_pairs.csv")):
        df = pd.read_csv(p)
        if p.name in SHIPPED_AS:
            df["method"] = df["method"].replace({"shipped": SHIPPED_AS[p.name]})
        parts.append(df)
    # GFF and the shipped auto-encoder are in every record: each pair's first row of a method is kept
    return tradeoff(pd.concat(parts, ignore_index=True).drop_duplicates(["set", "pair", "method"]))


def plot(t: pd.DataFrame):
    fig, axes = plt.subplots(1, len(SETS), figsize=(12, 5), sharey=True)
    for ax, (key, title) in zip(axes, SETS.items()):
        s = t[t["set"] == key]
        runs, gff = s[~s["method"].isin(["GFF", RELEASED])], s[s["method"] == "GFF"]
        rel = s[s["method"] == RELEASED]
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(0, color="grey", lw=0.8)
        ax.scatter(runs["worst_gradient_pct"], runs["d_qabf"], s=22, color="tab:blue", label="auto-encoder runs")
        ax.scatter(rel["worst_gradient_pct"], rel["d_qabf"], s=50, marker="D", color="tab:green", label="released")
        ax.scatter(gff["worst_gradient_pct"], gff["d_qabf"], s=60, marker="*", color="tab:red", label="GFF")
        for _, r in s.iterrows():
            ax.annotate(r["method"], (r["worst_gradient_pct"], r["d_qabf"]), fontsize=6.5,
                        xytext=(3, 2), textcoords="offset points")
        ax.set_title(title)
        ax.set_xlabel("lowest relative change of SF, AG, MG, EI (%)")
    axes[0].set_ylabel("Qabf minus that of the auto-encoder released before section 24")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle("Fusion on aligned pairs: Qabf gained against gradient metrics kept (measured)")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    t = collect()
    with pd.option_context("display.width", 200):
        print(t.round(4).to_string(index=False))
    plot(t).savefig(HERE / "fusion_tradeoff.png", dpi=110)
    print(HERE / "fusion_tradeoff.png")
