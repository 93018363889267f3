"""How alike are pruning criteria?  Rank correlations (Spearman, Kendall) of their per-filter scores, the overlap
(Jaccard) of the filters they prune, the top pruned indices of one layer (Huang et al. 2021, Figure 1), and the
per-layer widths each leaves under one global threshold.

Inputs are the ``{criterion: {conv layer id: scores}}`` dicts of :func:`rethink.prune.criteria.model_scores`;
outputs are pandas tables, which :mod:`rethink.criteria_figures` draws.
"""
from __future__ import annotations

import warnings
from itertools import combinations
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .prune.criteria import get_criterion
from .prune.select import n_keep, prune_lowest, select_global

PAPER_FIGURE1 = Path(__file__).with_name("paper_figure1.csv")
METHODS = ("spearman", "kendall")


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def label(name: str) -> str:
    """A criterion's name as the papers write it (L1, GM, ...)."""
    return get_criterion(name).label


def rank_correlation(a, b, method: str = "spearman") -> float:
    """Spearman's rho or Kendall's tau-b (scipy.stats) between two score vectors of one layer."""
    if method == "spearman":
        return float(stats.spearmanr(_np(a), _np(b)).statistic)
    if method == "kendall":
        return float(stats.kendalltau(_np(a), _np(b)).statistic)
    raise ValueError(f"unknown rank correlation {method!r}; known: {', '.join(METHODS)}")


def correlation_matrix(layer_scores: dict, method: str = "spearman") -> pd.DataFrame:
    """Criteria x criteria rank correlations of one layer's scores ``{criterion: scores}``."""
    names = list(layer_scores)
    m = np.eye(len(names))
    for i, j in combinations(range(len(names)), 2):
        m[i, j] = m[j, i] = rank_correlation(layer_scores[names[i]], layer_scores[names[j]], method)
    return pd.DataFrame(m, index=names, columns=names)


def layer_ids(scores: dict) -> list:
    """The layer ids common to every criterion of ``scores``, in order."""
    ids = [set(v) for v in scores.values()]
    return sorted(set.intersection(*ids)) if ids else []


def mean_correlation_matrix(scores: dict, method: str = "spearman", layers: Optional[Iterable] = None) -> pd.DataFrame:
    """The criteria x criteria matrix averaged over layers (``layers``: ids, default all)."""
    lids = list(layers) if layers is not None else layer_ids(scores)
    mats = [correlation_matrix({c: scores[c][lid] for c in scores}, method) for lid in lids]
    return sum(mats) / len(mats)


def pair_name(a: str, b: str) -> str:
    return f"{label(a)}–{label(b)}"


def layer_correlations(scores: dict, method: str = "spearman", pairs: Optional[Iterable] = None) -> pd.DataFrame:
    """One row per conv layer id, one column per criterion pair: the rank correlation of their scores.
    ``pairs`` defaults to every pair of criteria in ``scores``."""
    pairs = list(pairs) if pairs is not None else list(combinations(scores, 2))
    rows = {lid: {pair_name(a, b): rank_correlation(scores[a][lid], scores[b][lid], method) for a, b in pairs}
            for lid in layer_ids(scores)}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "conv layer id"
    return df


def pruned_set(scores, prune_ratio: float) -> set:
    """The filters a criterion removes from a layer at ``prune_ratio``: the C - int(C(1-p)) lowest scores."""
    k, _ = n_keep(len(scores), prune_ratio)
    return set(prune_lowest(scores, len(scores) - k).tolist())


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b|; 1.0 for two empty sets (nothing pruned by either: they agree)."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def overlap_table(scores: dict, ratios: Iterable[float], pairs: Optional[Iterable] = None) -> pd.DataFrame:
    """Long table (conv layer id, prune_ratio, pair, jaccard) of the pruned sets' overlap per layer."""
    pairs = list(pairs) if pairs is not None else list(combinations(scores, 2))
    rows = []
    for lid in layer_ids(scores):
        for r in ratios:
            sets = {c: pruned_set(scores[c][lid], r) for c in {x for p in pairs for x in p}}
            rows += [dict(layer=lid, prune_ratio=r, pair=pair_name(a, b), jaccard=jaccard(sets[a], sets[b]))
                     for a, b in pairs]
    return pd.DataFrame(rows)


def top_pruned(scores: dict, layer: int, k: int = 8) -> pd.DataFrame:
    """Huang et al.'s Figure 1 for our weights: per criterion the k filter indices it prunes first (lowest score
    first, 0-based) in conv layer ``layer``."""
    return pd.DataFrame({label(c): prune_lowest(scores[c][layer], k).tolist() for c in scores},
                        index=range(1, k + 1)).T.rename_axis("criterion").rename(columns=lambda i: f"#{i}")


def paper_figure1(arch: str) -> pd.DataFrame:
    """The paper's Figure 1 indices for ``arch`` (from ``paper_figure1.csv``): criterion x rank, with the layer
    and the source."""
    p = pd.read_csv(PAPER_FIGURE1)
    p = p[p.arch == arch]
    if p.empty:
        return pd.DataFrame()
    t = p.pivot(index="criterion", columns="rank", values="filter_index").rename(columns=lambda i: f"#{i}")
    t = t.loc[list(dict.fromkeys(p.criterion))]  # the file's order of criteria
    return t.rename(index=label).rename_axis("criterion")


def paper_figure1_source(arch: str) -> dict:
    """{layer, source, verified} of the paper's Figure 1 entry for ``arch``."""
    p = pd.read_csv(PAPER_FIGURE1)
    p = p[p.arch == arch].iloc[0]
    return dict(layer=int(p.layer), source=p.source, verified=bool(p.verified))


def global_widths(scores: dict, prune_ratio: float, widths: dict, normalise: Optional[str] = None) -> pd.DataFrame:
    """Filters each criterion keeps per layer under ONE global threshold at ``prune_ratio`` (no normalisation
    by default: the raw scores are compared across layers).  ``widths``: {layer id: original filters}.
    Layers the threshold would empty keep their best filter; ``df.attrs["clamped"]`` lists them per criterion."""
    out, clamped = {"original": pd.Series(widths)}, {}
    for c in scores:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reported in attrs instead, once per criterion
            keep, msgs = select_global(scores[c], prune_ratio, normalise)
        out[label(c)] = pd.Series({lid: len(k) for lid, k in keep.items()})
        clamped[label(c)] = [lid for lid in keep if any(m.startswith(f"layer {lid}:") for m in msgs)]
    df = pd.DataFrame(out)
    df.index.name = "conv layer id"
    df.attrs["clamped"] = clamped
    return df


def drop_constant(scores: dict) -> tuple[dict, list]:
    """(``scores`` without the criteria whose scores are constant in some layer, their names).  A constant score
    ranks nothing (BN |gamma| is 1 everywhere at initialisation) and its rank correlations are undefined."""
    const = [c for c, by_layer in scores.items() if any(float(_np(s).std()) == 0.0 for s in by_layer.values())]
    return {c: v for c, v in scores.items() if c not in const}, const


def restrict(scores: dict, layers: Iterable[int], criteria: Optional[Iterable[str]] = None) -> dict:
    """``scores`` limited to the conv layer ids ``layers`` (and to ``criteria``, default all)."""
    layers = list(layers)
    names = [c for c in (criteria if criteria is not None else scores) if c in scores]
    return {c: {lid: scores[c][lid] for lid in layers} for c in names}


def layer_widths(model, prunable_only: bool = False) -> dict:
    """{conv layer id: output channels} of ``model`` (only its prunable layers with ``prunable_only``)."""
    modules = dict(model.named_modules())
    return {lay.id: modules[lay.conv].out_channels for lay in model.conv_layers() if lay.prunable or not prunable_only}


def row_agreement(table: pd.DataFrame) -> float:
    """Mean pairwise Jaccard overlap of the index sets in the rows of a ``top_pruned``-style table (1.0: every
    criterion names the same filters, in any order)."""
    rows = [set(r) for r in table.values.tolist()]
    pairs = list(combinations(rows, 2))
    return float(np.mean([jaccard(a, b) for a, b in pairs])) if pairs else 1.0


def correlation_range(scores: dict, a: str, b: str, method: str = "spearman") -> tuple[float, float, float]:
    """(min, median, max) over layers of the rank correlation between criteria ``a`` and ``b``."""
    v = np.array([rank_correlation(scores[a][lid], scores[b][lid], method) for lid in layer_ids(scores)])
    return float(v.min()), float(np.median(v)), float(v.max())


NORM_CRITERIA = ("L1", "L2", "GM", "Fermat")  # the criteria whose similarity Huang et al. claim
NEAR_IDENTICAL = 0.9  # a pair "ranks almost identically" when its median Spearman over the conv layers reaches it


def norm_pair_agreement(layer_spearman: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of :data:`NORM_CRITERIA` among the columns ("L1–L2", ...) of a per-layer Spearman table:
    the median, lowest and highest correlation over the layers, and whether the median reaches
    :data:`NEAR_IDENTICAL`.  Pairs with a data-driven criterion (Taylor, BN |γ|) are not part of the claim."""
    rows = []
    for col in layer_spearman.columns:
        a, _, b = str(col).partition("–")
        if a in NORM_CRITERIA and b in NORM_CRITERIA:
            s = layer_spearman[col].dropna()
            if s.empty:  # no layer with a correlation (e.g. constant scores): no evidence either way
                continue
            rows.append(dict(pair=col, median=float(s.median()), lowest=float(s.min()), highest=float(s.max()),
                             lowest_layer=s.idxmin(), near_identical=bool(s.median() >= NEAR_IDENTICAL)))
    return pd.DataFrame(rows, columns=["pair", "median", "lowest", "highest", "lowest_layer", "near_identical"])
