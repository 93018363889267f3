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


def check_ratios(model, ratios: dict, variant=None, prune_ratio=None) -> dict:
    """``ratios`` ({conv layer id: prune_ratio}) checked against ``model``: prunable layers only, ratios in [0, 1),
    and no ``variant`` or ``prune_ratio`` beside them."""
    from ..config import ConfigError
    if variant is not None or prune_ratio is not None:
        raise ConfigError("give per-layer ratios or variant or prune_ratio, not several")
    prunable = {layer.id for layer in model.conv_layers() if layer.prunable}
    for lid, r in ratios.items():
        if lid not in prunable:
            raise ConfigError(f"conv layer {lid} of {model.arch} is not prunable; prunable: {sorted(prunable)}")
        if not 0.0 <= r < 1.0:
            raise ConfigError(f"prune_ratio of layer {lid} must be in [0, 1), got {r}")
    return dict(ratios)


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


def prune_lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k lowest scores, lowest first (the filters a criterion prunes first; ties by index)."""
    order = torch.sort(torch.as_tensor(scores), stable=True).indices
    return order[:k]


def select_layer(scores: dict, prune_ratio: float, names: dict | None = None) -> tuple[dict, list]:
    """Layer-wise selection for any criterion: the same ``prune_ratio`` in every layer of ``scores``
    ({layer id: scores}).  Returns (keep, clamped messages) as ``select_layerwise``."""
    return select_layerwise(scores, {lid: prune_ratio for lid in scores}, names)


NORMALISATIONS = ("max", "l1", "l2")


def normalise_scores(scores: torch.Tensor, how: str | None) -> torch.Tensor:
    """Scores of one layer divided by their max, sum (l1) or Euclidean norm (l2); ``None`` leaves them.

    Global pruning compares scores across layers; criteria such as L1 and L2 grow with the filter size d, so
    without normalisation the layers with large d keep more filters (Huang et al. 2021)."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    if how is None:
        return s
    if how not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {how!r}; known: {', '.join(NORMALISATIONS)} or None")
    d = {"max": s.abs().max(), "l1": s.abs().sum(), "l2": s.norm()}[how]
    return s / d if d > 0 else s


def select_global(scores: dict, prune_ratio: float, normalise: str | None = None,
                  names: dict | None = None) -> tuple[dict, list]:
    """One threshold over the scores of all layers: keep the int(N(1-p)) highest of all N filters together
    (ties broken by layer order, then index), optionally after ``normalise_scores`` per layer.  A layer left
    without a filter keeps its highest-scored one, reported in the clamped messages (so the model keeps that many
    filters more than int(N(1-p))).  Returns (keep: {layer id: sorted kept indices}, clamped messages)."""
    lids = list(scores)
    if not lids:
        return {}, []
    flat = torch.cat([normalise_scores(scores[lid], normalise) for lid in lids])
    owner = torch.cat([torch.full((len(scores[lid]),), i) for i, lid in enumerate(lids)])
    local = torch.cat([torch.arange(len(scores[lid])) for lid in lids])
    k, _ = n_keep(len(flat), prune_ratio)
    top = torch.sort(flat, descending=True, stable=True).indices[:k]
    keep, clamped = {}, []
    for i, lid in enumerate(lids):
        kept = local[top[owner[top] == i]]
        if len(kept) == 0:
            msg = (f"layer {lid}{' (' + names[lid] + ')' if names else ''}: the global threshold at prune_ratio "
                   f"{prune_ratio} removes all {len(scores[lid])} filters; kept the one with the highest score")
            warnings.warn(msg, stacklevel=2)
            clamped.append(msg)
            kept = torch.as_tensor(scores[lid]).argmax().reshape(1)
        keep[lid] = kept.sort().values
    return keep, clamped


def select(scores: dict, prune_ratio: float, scope: str = "layer", normalise: str | None = None,
           names: dict | None = None) -> tuple[dict, list]:
    """Scores ({layer id: scores}) + ``prune_ratio`` -> (keep, clamped) with ``scope`` "layer" (the ratio in every
    layer) or "global" (one threshold over all layers, see ``select_global``)."""
    if scope == "layer":
        return select_layer(scores, prune_ratio, names)
    if scope == "global":
        return select_global(scores, prune_ratio, normalise, names)
    raise ValueError(f"unknown scope {scope!r}; known: global, layer")
