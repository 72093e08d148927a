"""Line plots saved as PNG for the report (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

from rlhf.rundir import atomic_write

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_lines(
    path: Path,
    series: dict[str, tuple[list[float], list[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    hlines: dict[str, float] | None = None,
) -> Path:
    """One axis, one line per series, optional labelled horizontal reference lines."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label, marker="o" if len(x) < 30 else None, markersize=3)
    for label, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", color="grey", linewidth=1)
        ax.annotate(label, (0.01, y), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def figure_png(fig: plt.Figure) -> bytes:
    """A figure as PNG bytes; the figure is closed."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Write a figure as PNG through a temporary name, and close it."""
    png = figure_png(fig)
    return atomic_write(Path(path), lambda tmp: tmp.write_bytes(png))
