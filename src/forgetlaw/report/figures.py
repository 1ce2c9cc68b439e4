"""The report's figures, analogues of the paper's, drawn with matplotlib's Agg canvas.

Every function takes tables and returns a `matplotlib.figure.Figure`; nothing uses pyplot, so
figures are drawn headless and never touch a display or global state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from forgetlaw.report.derive import format_p, nearest_injection
from forgetlaw.report.fits import GroupFit


def _size_label(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def _colors(n: int, name: str = "viridis") -> list:
    cmap = colormaps[name]
    return [cmap(x) for x in (np.linspace(0.0, 0.85, n) if n > 1 else [0.3])]


@dataclass(frozen=True)
class CurveChoice:
    """Which run family figure (a) shows; None picks a default (first domain, largest N, middle D)."""

    domain: str | None = None
    model_size: float | None = None
    unique_tokens: float | None = None
    seed: int | None = None


def resolve_curve_choice(curves: pd.DataFrame, choice: CurveChoice) -> CurveChoice:
    domain = choice.domain or sorted(curves["domain"].unique())[0]
    sub = curves[curves["domain"] == domain]
    size = choice.model_size if choice.model_size is not None else float(sub["model_size"].max())
    sub = sub[sub["model_size"] == size]
    d_values = sorted(sub["unique_tokens"].unique())
    tokens = choice.unique_tokens if choice.unique_tokens is not None else float(d_values[len(d_values) // 2])
    sub = sub[sub["unique_tokens"] == tokens]
    seed = choice.seed if choice.seed is not None else int(sub["seed"].min())
    return CurveChoice(domain, size, tokens, seed)


def curves_figure(curves: pd.DataFrame, choice: CurveChoice) -> Figure:
    """(a) Target val loss (U-curve), target training loss and pretraining val loss, one line per p."""
    sub = curves[(curves["domain"] == choice.domain) & (curves["model_size"] == choice.model_size)
                 & (curves["unique_tokens"] == choice.unique_tokens) & (curves["seed"] == choice.seed)]
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = (("finetune_val_loss", "target validation loss"),
              ("train_loss", "training loss (as logged)"),
              ("pretrain_val_loss", "pretraining validation loss"))
    injections = sorted(sub["injection"].unique())
    for color, p in zip(_colors(len(injections), "plasma"), injections, strict=True):
        run = sub[sub["injection"] == p].sort_values("step")
        best = run.loc[run["finetune_val_loss"].idxmin()] if run["finetune_val_loss"].notna().any() else None
        for ax, (column, _) in zip(axes, panels, strict=True):
            points = run[["epoch", column]].dropna()
            ax.plot(points["epoch"], points[column], color=color, lw=1.6, label=f"p = {format_p(p)}")
            if best is not None and column != "train_loss":
                at_best = run[run["step"] == best["step"]][column].dropna()
                if len(at_best):
                    ax.plot([best["epoch"]], [at_best.iloc[0]], "o", color=color, ms=5)
    for ax, (_, title) in zip(axes, panels, strict=True):
        ax.set_title(title)
        ax.set_xlabel("epochs over the D target tokens")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss (nats/token)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{choice.domain}, N = {_size_label(choice.model_size)}, D = {choice.unique_tokens:,.0f}, "
                 f"seed {choice.seed} (dots: best target step)")
    return fig


def forgetting_vs_d_figure(table: pd.DataFrame, second_injection: float) -> Figure:
    """(b) Forgetting against D, one line per model size; columns p = 0 and p = second_injection."""
    domains = sorted(table["domain"].unique())
    injections = [0.0, second_injection]
    fig = Figure(figsize=(10, 3.3 * len(domains)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(domains), 2, sharey="row", squeeze=False))
    sizes = sorted(table["model_size"].unique())
    colors = _colors(len(sizes))
    for row, domain in enumerate(domains):
        for col, p in enumerate(injections):
            ax = axes[row, col]
            sub = table[(table["domain"] == domain) & (table["injection"] == p)]
            for color, n in zip(colors, sizes, strict=True):
                stats = (sub[sub["model_size"] == n].groupby("unique_tokens")["forgetting"]
                         .agg(["mean", "std", "count"]).reset_index())
                if stats.empty:
                    continue
                err = np.where(stats["count"] > 1, stats["std"], 0.0)
                ax.errorbar(stats["unique_tokens"], stats["mean"], yerr=err, color=color, marker="o",
                            ms=4, lw=1.5, capsize=2, label=f"N = {_size_label(n)}")
            ax.axhline(0.0, color="grey", lw=0.8)
            ax.set_xscale("log")
            # ticks at the grid's D values, in plain numbers (log minor ticks read badly here)
            d_values = sorted(table["unique_tokens"].unique())
            ax.set_xticks(d_values, [f"{d:,.0f}" for d in d_values])
            ax.minorticks_off()
            ax.set_title(f"{domain}, p = {format_p(p)}")
            ax.set_xlabel("unique target tokens D")
            ax.grid(alpha=0.3)
        axes[row, 0].set_ylabel("forgetting L_pt − L0 (nats)")
    axes[0, 0].legend(fontsize=8)
    return fig


def share_lost_figure(table: pd.DataFrame) -> Figure:
    """(c) Share of pretraining progress lost, by model size (groups) and p (bars), mean over D and seeds."""
    domains = sorted(table["domain"].unique())
    fig = Figure(figsize=(max(6.0, 4.2 * len(domains)), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(domains), sharey=True, squeeze=False)[0])
    injections = sorted(table["injection"].unique())
    colors = _colors(len(injections), "plasma")
    for ax, domain in zip(axes, domains, strict=True):
        sub = table[table["domain"] == domain]
        sizes = sorted(sub["model_size"].unique())
        width = 0.8 / len(injections)
        for i, (color, p) in enumerate(zip(colors, injections, strict=True)):
            means = sub[sub["injection"] == p].groupby("model_size")["share_lost"].mean()
            heights = [100 * means.get(n, np.nan) for n in sizes]
            ax.bar(np.arange(len(sizes)) + (i - (len(injections) - 1) / 2) * width, heights, width,
                   color=color, label=f"p = {format_p(p)}")
        ax.set_xticks(np.arange(len(sizes)), [_size_label(n) for n in sizes])
        ax.set_xlabel("model size N (non-embedding parameters)")
        ax.set_title(domain)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("share of pretraining progress lost (%)")
    axes[0].legend(fontsize=8)
    return fig


def predicted_vs_observed_figure(fits: list[GroupFit]) -> Figure:
    """(d) Predicted against observed for each law; held-out largest-model runs marked apart."""
    laws = list(dict.fromkeys(f.law for f in fits))
    fig = Figure(figsize=(5.2 * len(laws), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(laws), squeeze=False)[0])
    for ax, law in zip(axes, laws, strict=True):
        group_fits = [f for f in fits if f.law == law]
        colors = _colors(len(group_fits), "tab10")
        lo, hi = np.inf, -np.inf
        for color, f in zip(colors, group_fits, strict=True):
            inside = ~f.heldout
            ax.scatter(f.observed[inside], f.predicted[inside], s=14, color=color, alpha=0.75,
                       label=f"{f.label}: MRE {100 * f.mre:.1f}%")
            if f.heldout.any():
                hold = "n/a" if f.holdout_mre is None else f"{100 * f.holdout_mre:.1f}%"
                ax.scatter(f.observed[f.heldout], f.predicted[f.heldout], s=34, marker="x",
                           color=color, label=f"{f.label} held out: MRE {hold}")
            both = np.concatenate([f.observed, f.predicted])
            lo, hi = min(lo, np.nanmin(both)), max(hi, np.nanmax(both))
        pad = 0.03 * (hi - lo if hi > lo else 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=1, ls="--")
        ax.set_xlabel(f"observed {group_fits[0].target}")
        ax.set_ylabel(f"predicted {group_fits[0].target}")
        ax.set_title(f"{law} law (x: held-out largest model)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return fig


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def second_injection_of(table: pd.DataFrame, wanted: float = 0.01) -> float | None:
    """The p shown beside p = 0 in figure (b): the paper's 1% if in the grid, else the smallest p > 0."""
    exact = nearest_injection(table["injection"], wanted)
    if exact is not None:
        return exact
    positive = sorted(p for p in table["injection"].unique() if p > 0)
    return float(positive[0]) if positive else None
