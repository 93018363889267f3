"""Scores + prune_ratio -> kept filter indices, never leaving a layer empty."""
from __future__ import annotations

import warnings

import torch


def n_keep(n_filters: int, prune_ratio: float) -> tuple[int, bool]:
    """Filters kept when ``prune_ratio`` of ``n_filters`` are removed: int(C * (1 - p)) as in Li et al.'s code.
    Returns (kept, clamped): a layer that would keep none keeps one, and ``clamped`` says so."""
    if not 0.0 <= prune_ratio < 1.0:
        raise ValueError(f"prune_ratio must be in [0, 1): it is the fraction of filters removed; got {prune_ratio}")
    k = int(n_filters * (1.0 - prune_ratio) + 1e-9)  # 1e-9: 64 * (1 - 0.1) must give 57, not 57.599.. -> 57
    return (k, False) if k >= 1 else (1, True)


def keep_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest scores, in ascending index order (so surgery keeps the filters' order)."""
    return torch.topk(scores, k, sorted=False).indices.sort().values


def select_layerwise(scores: dict, ratios: dict, names: dict | None = None) -> tuple[dict, list]:
    """Per layer id: keep the top int(C(1-p)) filters.  Returns (keep, clamped messages)."""
    keep, clamped = {}, []
    for lid, s in scores.items():
        k, was_clamped = n_keep(len(s), ratios[lid])
        if was_clamped:
            msg = (f"layer {lid}{' (' + names[lid] + ')' if names else ''}: prune_ratio {ratios[lid]} would remove "
                   f"all {len(s)} filters; kept the one with the highest score")
            warnings.warn(msg, stacklevel=2)
            clamped.append(msg)
        keep[lid] = keep_top(s, k)
    return keep, clamped
