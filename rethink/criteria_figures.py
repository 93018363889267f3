"""Figures of the criteria chapters (Huang et al. 2021): correlation heat maps, per-layer lines, pruned-set
overlaps, global-pruning widths, Q-Q plots, covariance heat maps and score CV against filter size.  Each takes
the tables of :mod:`rethink.similarity` / :mod:`rethink.cwda` and a title that names profile, dataset, device."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy import stats

from .cwda import cv_prediction


def plot_matrices(mats: dict, title: str = "", vmin: float = -1.0, vmax: float = 1.0):
    """Heat maps side by side, one per {panel title: square DataFrame}, values written in the cells."""
    fig, axes = plt.subplots(1, len(mats), figsize=(3.6 * len(mats) + 0.8, 3.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], mats.items()):
        im = ax.imshow(m.values, vmin=vmin, vmax=vmax, cmap="RdBu_r")
        ax.set_xticks(range(len(m.columns)), m.columns, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(m.index)), m.index, fontsize=8)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                v = m.values[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(v) > 0.6 * max(abs(vmin), abs(vmax)) else "black")
        ax.set_title(name, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(title, fontsize=9)
    return fig


def plot_layer_lines(df: pd.DataFrame, title: str = "", ylabel: str = "Spearman", ylim=(-1.05, 1.05)):
    """One line per column of ``df`` over its index (conv layer id); ``ylim=None``: automatic."""
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for col in df.columns:
        ax.plot(df.index, df[col], marker="o", ms=3, label=col)
    ax.set(xlabel="conv layer id", ylabel=ylabel, title=title)
    if ylim is not None:
        ax.set_ylim(*ylim)
        ax.axhline(0, color="grey", lw=0.5)
    ax.title.set_fontsize(9)
    ax.set_xticks(list(df.index))
    ax.legend(frameon=False, fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    return fig


def plot_overlap(overlap: pd.DataFrame, title: str = "", pairs=None):
    """Jaccard overlap of pruned sets per layer, one panel per prune_ratio, one line per criterion pair."""
    ratios = sorted(overlap.prune_ratio.unique())
    pairs = pairs or list(dict.fromkeys(overlap.pair))
    fig, axes = plt.subplots(1, len(ratios), figsize=(3.6 * len(ratios), 3.0), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], ratios):
        o = overlap[overlap.prune_ratio == r]
        for p in pairs:
            q = o[o.pair == p]
            ax.plot(q.layer, q.jaccard, marker="o", ms=3, label=p)
        ax.set(title=f"prune_ratio {r:g}", xlabel="conv layer id", ylim=(-0.05, 1.05))
    axes[0][0].set_ylabel("Jaccard of pruned sets")
    axes[0][-1].legend(frameon=False, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_global_widths(df: pd.DataFrame, title: str = ""):
    """Filters left per layer by each criterion under one global threshold (bars: the original widths)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    ax.bar(df.index, df["original"], color="#dde3ea", label="original")
    for col in df.columns.drop("original"):
        ax.plot(df.index, df[col], marker="o", ms=3, label=col)
    ax.set(xlabel="conv layer id", ylabel="filters kept", title=title)
    ax.title.set_fontsize(9)
    ax.set_xticks(list(df.index))
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def plot_qq(weights: dict, title: str = ""):
    """Normal Q-Q plots of the pooled weights of a few layers ({panel title: weight tensor})."""
    fig, axes = plt.subplots(1, len(weights), figsize=(3.0 * len(weights), 3.0), squeeze=False)
    for ax, (name, w) in zip(axes[0], weights.items()):
        x = w.detach().double().cpu().numpy().ravel()
        (osm, osr), (slope, intercept, _) = stats.probplot(x, dist="norm")
        step = max(1, len(osm) // 4000)  # plot at most ~4000 points; the fit uses all
        ax.plot(osm[::step], osr[::step], ".", ms=2)
        ax.plot(osm[[0, -1]], slope * osm[[0, -1]] + intercept, "r-", lw=1)
        ax.set(title=name, xlabel="normal quantiles")
        ax.title.set_fontsize(8)
    axes[0][0].set_ylabel("weight quantiles")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_covariance(covs: dict, title: str = ""):
    """Heat maps of filter covariances ({panel title: (d, d) array}), colour range symmetric per panel."""
    fig, axes = plt.subplots(1, len(covs), figsize=(3.4 * len(covs), 3.2), squeeze=False)
    for ax, (name, c) in zip(axes[0], covs.items()):
        v = np.abs(c).max()
        im = ax.imshow(c, cmap="RdBu_r", vmin=-v, vmax=v)
        ax.set_title(name, fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.75)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_cv(table: pd.DataFrame, synthetic: pd.DataFrame, title: str = ""):
    """CV of L1/L2/GM scores per layer against filter size d (left) and layer width (right); filled: the
    model's layers, hollow squares: i.i.d. Gaussian filters of the same shapes (the control); lines: the
    i.i.d.-Gaussian predictions for L1 and L2."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    d = np.geomspace(max(1, table.d.min() * 0.8), table.d.max() * 1.25, 100)
    colors = {"l1": "C0", "l2": "C1", "gm": "C2"}
    names = {"l1": "L1", "l2": "L2", "gm": "GM"}
    for ax, x in zip(axes, ("d", "n_filters")):
        for c, col in colors.items():
            ax.scatter(table[x], table[f"cv_{c}"], color=col, s=16, label=f"{names[c]}: model")
            ax.scatter(synthetic[x], synthetic[f"cv_{c}"], facecolors="none", edgecolors=col, s=34, marker="s",
                       label=f"{names[c]}: Gaussian control")
        ax.set(xscale="log", yscale="log", ylabel="CV of scores (std/mean)" if x == "d" else None,
               xlabel="filter size d = in·kh·kw" if x == "d" else "layer width (filters)")
    axes[0].plot(d, cv_prediction("l1", d), "C0--", lw=1, label="0.756/√d (L1, i.i.d. Gaussian)")
    axes[0].plot(d, cv_prediction("l2", d), "C1:", lw=1.2, label="1/√(2d) (L2, i.i.d. Gaussian)")
    axes[0].legend(frameon=False, fontsize=6.5, ncol=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def weight_of(model: torch.nn.Module, layer_id: int) -> torch.Tensor:
    """The conv weight of ``model``'s conv layer ``layer_id``."""
    layer = next(lay for lay in model.conv_layers() if lay.id == layer_id)
    return dict(model.named_modules())[layer.conv].weight
