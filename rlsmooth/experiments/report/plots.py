"""The report's figures: learning curves, sigma curves, and a heat map of a sweep axis x variant.

Bands and intervals are the same 95% Student-t intervals of the mean over seeds as in the tables.
The x-axis is agent steps (thousands separated), with emulator frames on a second axis where a
frame skip applies.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rlsmooth.experiments.report.runs import Run
from rlsmooth.experiments.report.stats import curve_band


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _steps_axis(ax, frames_per_step: int | None) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.set_xlabel("agent steps")
    if frames_per_step:
        top = ax.secondary_xaxis("top", functions=(lambda s: s * frames_per_step, lambda f: f / frames_per_step))
        top.xaxis.set_major_locator(MaxNLocator(5))
        top.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
        top.set_xlabel(f"frames (frame skip {frames_per_step})", fontsize=8)
        top.tick_params(labelsize=7)
    ax.tick_params(labelsize=8)


def plot_curves(runs: list[Run], rows: list[str], variants: list[str], out: Path, frames_per_step: int | None,
                sigma: bool) -> Path | None:
    panels = []
    for g in rows:
        if sigma:
            layers = sorted({layer for r in runs if r.row == g for layer in r.sigma_curves})
            panels.extend((g, layer) for layer in layers)
        else:
            panels.append((g, None))
    if not panels:
        return None
    plt = _pyplot()
    cols = min(3, len(panels))
    fig, axes = plt.subplots(math.ceil(len(panels) / cols), cols, figsize=(5.2 * cols, 4.0 * math.ceil(len(panels) / cols)),
                             squeeze=False)
    for ax, (game, layer) in zip(axes.flat, panels):
        for v in variants:
            members = [r for r in runs if r.row == game and r.variant == v
                       and (r.sigma_curves.get(layer) if sigma else r.eval_curve)]
            curves = [r.sigma_curves[layer] if sigma else r.eval_curve for r in members]
            if not curves:
                continue
            steps, mean, lo, hi = curve_band(curves)
            diverged = sum(r.diverged for r in members)
            label = f"{v} (n={len(curves)}" + (f", {diverged} diverged: their curves end there" if diverged else "") + ")"
            line, = ax.plot(steps, mean, label=label, color=f"C{variants.index(v) % 10}")
            if len(curves) > 1:
                ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
            counts = [sum(s in dict(c) for c in curves) for s in steps]
            for i in range(1, len(steps)):   # where runs end (diverged, stopped, shorter), the mean is of fewer
                if counts[i] != counts[i - 1]:
                    ax.annotate(f"n={counts[i]}", (steps[i], mean[i]), fontsize=7, color=line.get_color())
            for r in members:
                if r.diverged:
                    end = r.sigma_curves[layer][-1] if sigma else r.eval_curve[-1]
                    ax.plot([end[0]], [end[1]], marker="x", color=line.get_color(), markersize=7)
        ax.set_title(f"{game}: sigma({layer})" if sigma else game, fontsize=10)
        _steps_axis(ax, frames_per_step)
        ax.set_ylabel("sigma of raw weight" if sigma else "evaluation return", fontsize=9)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(("spectral norms" if sigma else "learning curves")
                 + ": mean over seeds, band = 95% t-interval of the mean", fontsize=10)
    fig.tight_layout()
    path = out / ("sigma_curves.png" if sigma else "learning_curves.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _axis_order(values: list[str]) -> list[str]:
    def key(v: str):
        try:
            return (0, float(v.split("=", 1)[-1]), v)
        except ValueError:
            return (1, 0.0, v)
    return sorted(values, key=key)


def plot_heatmap(table: dict, rows: list[str], cores: list[str], extras: list[str], metric: str,
                 out: Path, label: str, default: str | None = None) -> Path | None:
    """Mean ``metric`` per (variant, sweep-axis value), one panel per game, as the paper draws its grids;
    the column of ``default`` (the preset's own value of the axis) is labelled so."""
    if len(extras) < 2:
        return None
    plt = _pyplot()
    extras = _axis_order(extras)
    fig, axes = plt.subplots(1, len(rows), figsize=(1.3 * len(extras) + 2.5, 0.6 * len(cores) + 1.8) if len(rows) == 1
                             else (len(rows) * (1.1 * len(extras) + 2.2), 0.6 * len(cores) + 1.8), squeeze=False)
    for ax, game in zip(axes.flat, rows):
        grid = np.full((len(cores), len(extras)), np.nan)
        for i, c in enumerate(cores):
            for j, e in enumerate(extras):
                cell = table.get((game, " ".join(p for p in (c, e) if p)))
                if cell is not None:
                    grid[i, j] = cell.means[metric][0]
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        for i in range(len(cores)):
            for j in range(len(extras)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7, color="white")
                else:
                    ax.text(j, i, "no runs", ha="center", va="center", fontsize=6, color="grey")
        ax.set_xticks(range(len(extras)), [e.split("=", 1)[-1] + ("\n(default)" if e == default else "") for e in extras],
                      fontsize=7, rotation=30)
        ax.set_yticks(range(len(cores)), cores, fontsize=7)
        ax.set_xlabel(extras[0].split("=", 1)[0] if "=" in extras[0] else "sweep axis", fontsize=8)
        ax.set_title(game, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"{label} evaluation return, mean over seeds", fontsize=9)
    fig.tight_layout()
    path = out / "heatmap.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
