"""Accuracy and gain against labeled fraction, one line per encoder and init (PNG)."""

from __future__ import annotations

from pathlib import Path

from pipelines.report.results_table import TableRow


def plot_results(rows: list[TableRow], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_gain) = plt.subplots(1, 2, figsize=(10, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, encoder in enumerate(sorted({r.encoder for r in rows})):
        color = colors[k % len(colors)]  # one colour per encoder in both panels
        mine = sorted((r for r in rows if r.encoder == encoder), key=lambda r: r.fraction)
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
                    label=f"{encoder} {init}",
                )
        gains = [(xi, r.delta) for xi, r in zip(x, mine, strict=True) if r.delta is not None]
        if gains:
            ax_gain.plot(
                [g[0] for g in gains], [100 * g[1] for g in gains], marker="o", label=encoder
            )
    for ax in (ax_acc, ax_gain):
        ax.set_xscale("log")
        ax.set_xlabel("labeled data (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_acc.set_ylabel("test accuracy (%)")
    ax_gain.set_ylabel("gain from Selfie pretraining (points)")
    ax_gain.axhline(0, color="grey", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
