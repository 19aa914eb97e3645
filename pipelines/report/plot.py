"""Accuracy and paired gain against labeled fraction, one line per architecture and init (PNG).

The x axis is logarithmic but labelled with the fractions themselves (2%, 5%, ...); the gain
panel draws each point's 95% interval of the paired per-seed differences.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.report.results_table import TableRow


def fraction_label(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def plot_results(rows: list[TableRow], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    fig, (ax_acc, ax_gain) = plt.subplots(1, 2, figsize=(10, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, arch in enumerate(sorted({r.architecture for r in rows})):
        color = colors[k % len(colors)]  # one colour per architecture in both panels
        mine = sorted((r for r in rows if r.architecture == arch), key=lambda r: r.fraction)
        x = [100 * r.fraction for r in mine]
        for init, style in (("scratch", "--"), ("selfie", "-")):  # dashed: from scratch
            stats = [getattr(r, init) for r in mine]
            pts = [(xi, s) for xi, s in zip(x, stats, strict=True) if s.mean is not None]
            if pts:
                ax_acc.errorbar(
                    [p[0] for p in pts],
                    [100 * p[1].mean for p in pts],
                    yerr=[100 * (p[1].std or 0) for p in pts],
                    linestyle=style,
                    color=color,
                    marker="o",
                    capsize=3,
                    label=f"{arch} {init}",
                )
        gains = [(xi, r.paired) for xi, r in zip(x, mine, strict=True) if r.paired.n]
        if gains:
            means = [100 * g[1].mean for g in gains]
            below = [100 * (g[1].mean - g[1].interval[0]) if g[1].interval else 0 for g in gains]
            above = [100 * (g[1].interval[1] - g[1].mean) if g[1].interval else 0 for g in gains]
            ax_gain.errorbar(
                [g[0] for g in gains],
                means,
                yerr=[below, above],
                color=color,
                marker="o",
                capsize=3,
                label=f"{arch} (95% CI)",
            )
    fractions = sorted({r.fraction for r in rows})
    for ax in (ax_acc, ax_gain):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([100 * f for f in fractions]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([fraction_label(f) for f in fractions])
        ax.set_xlabel("labeled data")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if not ax_gain.get_legend_handles_labels()[0]:  # one init, or no seed with both
        ax_gain.text(0.5, 0.5, "no paired gain: no seed has both inits", ha="center",
                     va="center", transform=ax_gain.transAxes)  # fmt: skip
    ax_acc.set_ylabel("test accuracy (%)")
    ax_gain.set_ylabel("paired gain from Selfie (points)")
    ax_gain.axhline(0, color="grey", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
