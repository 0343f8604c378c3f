"""Training-curve figures (matplotlib imported lazily; the figure is returned)."""

from __future__ import annotations

__all__ = ["plot_losses", "plot_validation"]

_META = {"step", "phase", "phase_step", "epoch", "lr", "time_s"}


def plot_losses(df, smooth: int = 5, log_y: bool = True):
    """Loss curves of a training log (:func:`bsr.training.loop.read_log`): one panel per
    phase, every logged term (unweighted) and the weighted total, with a
    centred rolling mean over ``smooth`` steps; the registration endpoint error
    (``epe``, px, against the simulated ground truth) in its own panel when logged."""
    import matplotlib.pyplot as plt

    phases = sorted(int(p) for p in df["phase"].dropna().unique())
    has_epe = "epe" in df.columns and df["epe"].notna().any()
    n = len(phases) + int(has_epe)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(5.2 * max(n, 1), 3.8), squeeze=False)
    axes = axes[0]
    for ax, ph in zip(axes, phases):
        sub = df[df["phase"] == ph]
        cols = [c for c in sub.columns if c not in _META | {"epe"} and sub[c].notna().any()]
        for c in cols:
            y = sub[c].rolling(smooth, center=True, min_periods=1).mean() if smooth > 1 else sub[c]
            ax.plot(sub["step"], y, label=c, lw=2.2 if c == "total" else 1.2,
                    color="k" if c == "total" else None)
        if log_y and (sub[cols] > 0).all().all():
            ax.set_yscale("log")
        ax.set_title(f"phase {ph}" + (" (registration + reconstruction)" if ph == 1 else " (fusion)"))
        ax.set_xlabel("step")
        ax.set_ylabel("loss (unweighted terms)")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    if has_epe:
        ax = axes[len(phases)]
        sub = df[df["epe"].notna()]
        ax.plot(sub["step"], sub["epe"], color="tab:red", lw=1)
        ax.set_title("registration endpoint error")
        ax.set_xlabel("step")
        ax.set_ylabel("EPE of phi_p vs. ground truth (px)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_validation(runs: dict):
    """Validation EPE curves of :mod:`bsr.training.pretrain` and :mod:`bsr.training.after_global` runs:
    ``runs`` maps a label to a ``val.csv`` table (pandas DataFrame with ``step``, ``epe`` and ``epe_<kind>``
    columns, and ``identity`` or, after the global stage, ``global`` and ``global_<set>``). One panel per
    run: the mean EPE, each kind or set, and the reference (dashed): no registration, or the global stage
    alone per set."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(len(runs), 1), figsize=(5.2 * max(len(runs), 1), 3.8), squeeze=False)
    for ax, (label, df) in zip(axes[0], runs.items()):
        ax.plot(df["step"], df["epe"], color="k", lw=2.2, label="all")
        for c in [c for c in df.columns if c.startswith("epe_")]:
            line, = ax.plot(df["step"], df[c], lw=1.2, label=c[4:])
            ref = f"global_{c[4:]}"
            if ref in df.columns:
                ax.axhline(float(df[ref].iloc[0]), color=line.get_color(), ls="--", lw=0.9)
        if "identity" in df.columns:
            ax.axhline(float(df["identity"].iloc[0]), color="grey", ls="--", lw=1, label="no registration (all)")
        elif "global" in df.columns:
            ax.axhline(float(df["global"].iloc[0]), color="k", ls="--", lw=1, label="global stage alone (dashed)")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("validation EPE (px)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
