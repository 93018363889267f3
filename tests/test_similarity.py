"""Similarity of criteria: rank correlations (cross-checked against scipy and against their definitions),
Jaccard overlaps, the Figure 1 table, global widths; and the CWDA statistics."""
from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np
import pytest
import torch
from scipy import stats

from rethink import cwda
from rethink.models import default_widths, get_model
from rethink.prune.criteria import model_scores
from rethink.similarity import (correlation_matrix, correlation_range, global_widths, jaccard, layer_correlations,
                                mean_correlation_matrix, overlap_table, paper_figure1, paper_figure1_source,
                                pruned_set, rank_correlation, top_pruned)


def rand(n, seed):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def spearman_by_definition(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))  # ranks (no ties in continuous data)
    d = ra - rb
    n = len(a)
    return 1 - 6 * (d ** 2).sum() / (n * (n ** 2 - 1))


def kendall_by_definition(a, b) -> float:
    pairs = list(combinations(range(len(a)), 2))
    s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs)
    return s / len(pairs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_correlations_equal_scipy_and_their_definitions(seed):
    a, b = rand(30, seed), rand(30, seed) + 0.7 * rand(30, seed + 10)
    assert rank_correlation(a, b, "spearman") == pytest.approx(stats.spearmanr(a.numpy(), b.numpy()).statistic)
    assert rank_correlation(a, b, "kendall") == pytest.approx(stats.kendalltau(a.numpy(), b.numpy()).statistic)
    assert rank_correlation(a, b, "spearman") == pytest.approx(spearman_by_definition(a.numpy(), b.numpy()))
    assert rank_correlation(a, b, "kendall") == pytest.approx(kendall_by_definition(a.numpy(), b.numpy()))
    with pytest.raises(ValueError, match="known: spearman, kendall"):
        rank_correlation(a, b, "pearson")


def test_correlation_matrix_properties():
    a = rand(20, 0)
    m = correlation_matrix({"l1": a, "l2": a ** 3, "gm": -a, "fermat": rand(20, 5)}, "kendall")
    assert np.allclose(m.values, m.values.T) and np.allclose(np.diag(m.values), 1)
    assert m.loc["l1", "l2"] == pytest.approx(1.0)  # a monotone transform keeps the ranks
    assert m.loc["l1", "gm"] == pytest.approx(-1.0)
    assert m.loc["l1", "fermat"] == pytest.approx(stats.kendalltau(a, rand(20, 5)).statistic)


def _scores():
    g = torch.Generator().manual_seed(0)
    base = {1: torch.rand(16, generator=g), 2: torch.rand(32, generator=g)}
    return {"l1": base, "l2": {k: v ** 2 for k, v in base.items()}, "gm": {k: 1 - v for k, v in base.items()}}


def test_layer_correlations_and_mean_matrix():
    s = _scores()
    df = layer_correlations(s, "spearman")
    assert list(df.index) == [1, 2] and list(df.columns) == ["L1–L2", "L1–GM", "L2–GM"]
    assert np.allclose(df["L1–L2"], 1) and np.allclose(df["L1–GM"], -1)
    m = mean_correlation_matrix(s, "spearman")
    assert m.loc["l1", "gm"] == pytest.approx(-1.0)
    assert correlation_range(s, "l1", "l2") == pytest.approx((1.0, 1.0, 1.0))


def test_jaccard_and_pruned_sets():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard(set(), set()) == 1.0 and jaccard({1}, {2}) == 0.0
    s = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7])
    assert pruned_set(s, 0.4) == {1, 3}  # keep int(5 * 0.6) = 3, remove the 2 lowest
    assert pruned_set(s, 0.0) == set()


def test_overlap_table():
    o = overlap_table(_scores(), [0.1, 0.3, 0.5])
    assert len(o) == 2 * 3 * 3
    assert np.allclose(o[o.pair == "L1–L2"].jaccard, 1)
    assert np.allclose(o[o.pair == "L1–GM"].jaccard, 0)  # opposite ranks prune disjoint sets up to half


def test_top_pruned_lists_lowest_first():
    s = {"l1": {3: torch.tensor([4.0, 0.5, 3.0, 0.1, 2.0])}, "l2": {3: torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])}}
    t = top_pruned(s, 3, k=3)
    assert t.loc["L1"].tolist() == [3, 1, 4] and t.loc["L2"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("arch,width", [("vgg16", 128), ("resnet18", 256)])
def test_paper_figure1_file(arch, width):
    t = paper_figure1(arch)
    assert list(t.index) == ["L1", "L2", "GM", "Fermat"] and t.shape == (4, 8)
    src = paper_figure1_source(arch)
    model = get_model(arch)
    w = dict(model.named_modules())[next(lay.conv for lay in model.conv_layers() if lay.id == src["layer"])].weight
    assert w.shape[0] == width and int(t.values.max()) < width  # the indices fit the layer they name
    assert all(len(set(row)) == 8 for row in t.values)
    assert "Huang" in src["source"]


def test_global_widths_counts():
    s = _scores()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = global_widths(s, 0.5, {1: 16, 2: 32})
    assert df.original.tolist() == [16, 32]
    assert set(df.columns) == {"original", "L1", "L2", "GM"}
    assert (df.drop(columns="original").sum() >= 24).all()  # int(48 * 0.5) kept, plus any clamped layer
    assert (df.drop(columns="original").le(df.original, axis=0)).all().all()
    # a layer whose scores are all below the other's is emptied by the threshold: it keeps one, reported
    lopsided = {"l1": {1: torch.tensor([0.1, 0.2, 0.3]), 12: torch.tensor([5.0, 6.0, 7.0, 8.0])}}
    df = global_widths(lopsided, 0.5, {1: 3, 12: 4})
    assert df.L1.tolist() == [1, 3] and df.attrs["clamped"] == {"L1": [1]}


def test_criteria_agree_on_gaussian_filters_as_the_paper_simulates():
    # Huang et al. 2021: for i.i.d. Gaussian filters Spearman(L2, GM) is ~0.98-0.998
    torch.manual_seed(0)
    # (at He initialisation; 64-128 filters per layer, as ranks of a handful of filters are too noisy)
    model = get_model("vgg16", 10, [64, 64, "M", 128, 128, "M", 128, 128, 128, "M", 128, 128, 128, "M", 128, 128, 128])
    s = model_scores(model, ["l1", "l2", "gm"])
    lo, _, _ = correlation_range(s, "l2", "gm")
    assert lo > 0.95
    # and L1 agrees with L2 less than GM does (~0.93 for strictly i.i.d. filters)
    assert correlation_range(s, "l1", "l2")[1] < correlation_range(s, "l2", "gm")[1]
    assert layer_correlations(s).shape == (13, 3)


# --- CWDA -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [9, 144, 1152])
def test_cv_predictions_match_gaussian_filters(d):
    sim = cwda.synthetic_cv([(4000, d)], seed=1).iloc[0]
    assert sim.cv_l2 == pytest.approx(cwda.cv_prediction("l2", d), rel=0.08)
    assert sim.cv_l1 == pytest.approx(cwda.cv_prediction("l1", d), rel=0.08)
    assert sim.cv_gm < sim.cv_l2  # sums of distances concentrate faster
    with pytest.raises(ValueError):
        cwda.cv_prediction("gm", d)


def test_normality_battery_separates_gaussian_from_laplace():
    g = torch.Generator().manual_seed(0)
    gauss = torch.randn(64, 16, 3, 3, generator=g)
    laplace = torch.distributions.Laplace(0.0, 1.0).sample((64, 16, 3, 3))
    a, b = cwda.normality_tests(gauss), cwda.normality_tests(laplace)
    assert a["k2_p"] > 0.01 and not a["ad_reject_5pct"]
    assert b["k2_p"] < 1e-6 and b["ad_reject_5pct"] and b["shapiro_p"] < 1e-6 and b["excess_kurtosis"] > 1
    assert cwda.normality_tests(gauss, shapiro_n=100)["shapiro_n"] == 100


def test_zero_mean_test_detects_a_shift():
    w = torch.randn(32, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    assert cwda.zero_mean_test(w)["t_p"] > 0.001
    shifted = cwda.zero_mean_test(w + 0.3)
    assert shifted["t_p"] < 1e-10 and shifted["mean_over_std"] == pytest.approx(0.3, abs=0.05)


def test_offdiag_ratio():
    assert cwda.offdiag_ratio(np.diag([1.0, 2.0, 3.0])) == 0.0
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(200, 1, generator=g)
    correlated = (shared + 0.1 * torch.randn(200, 16, generator=g)).view(200, 16, 1, 1)  # every coordinate alike
    assert cwda.offdiag_ratio(cwda.covariance(correlated)) > 10 * cwda.gaussian_offdiag_ratio(200, 16)
    assert cwda.covariance(correlated, max_dims=4).shape == (4, 4)


def test_layer_table_one_row_per_conv_layer():
    model = get_model("resnet18", 10, [4] + [w for s in (4, 8, 8, 8) for _ in range(2) for w in (s, s)], 1)
    t = cwda.layer_table(model)
    assert list(t.index) == list(range(1, 21))
    assert (t.d == t.n_filters * 0 + t.d).all() and t.loc[1, "d"] == 9 and t.loc[18, "d"] == 4  # a 1x1 shortcut
    assert t.loc[1, "cv_l2_pred"] == pytest.approx(1 / np.sqrt(18))
    assert len(default_widths("resnet18")) == 17


def test_cwda_parts_hold_for_gaussian_filters_and_fail_for_shifted_scaled_ones():
    model = get_model("resnet18", 10, [4] + [w for s in (4, 8, 8, 8) for _ in range(2) for w in (s, s)], 1)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
    iid = cwda.cwda_parts(cwda.layer_table(model))
    assert iid["layers"] == 20 and iid["zero_mean_holds"] and iid["concentration_holds"]
    with torch.no_grad():  # filters of very different scales, all shifted: neither part holds
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                scales = torch.logspace(-2, 1, m.weight.shape[0]).view(-1, 1, 1, 1)
                m.weight.copy_(m.weight.abs() * scales + 1.0)
    off = cwda.cwda_parts(cwda.layer_table(model))
    assert off["zero_mean"] == 0 and not off["zero_mean_holds"] and not off["concentration_holds"]
    assert off["cv_ratio_median"] > cwda.CONCENTRATION_FACTOR
