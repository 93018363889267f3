"""Criteria of Huang et al. 2021 (l1, l2, gm, fermat, taylor, bn-gamma): known answers, invariances, the registry,
whole-model scoring, and a cross-check of the L1/L2 pruned sets against torch.nn.utils.prune.ln_structured."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as tprune

from rethink.config import ConfigError
from rethink.models import get_model
from rethink.prune.criteria import (bn_gamma, fermat, fermat_point, geometric_median, get_criterion, l1, l2,
                                    list_criteria, loss_grads, model_scores, taylor)
from rethink.prune.select import n_keep, prune_lowest

WEIGHT_CRITERIA = [l1, l2, geometric_median, fermat]


def filters_1d(values) -> torch.Tensor:
    """Filters of one weight each: shape (n, 1, 1, 1)."""
    return torch.tensor(values, dtype=torch.float64).view(-1, 1, 1, 1)


def test_l1_l2_known_answers():
    w = torch.tensor([[[[3.0, -4.0]]], [[[0.0, 1.0]]], [[[-1.0, -1.0]]]])  # (3, 1, 1, 2)
    assert l1(w).tolist() == [7.0, 1.0, 2.0]
    assert l2(w).tolist() == pytest.approx([5.0, 1.0, math.sqrt(2)])


def test_geometric_median_known_answer():
    # filters at 0, 1, 3 on a line: sums of distances 1+3, 1+2, 3+2
    assert geometric_median(filters_1d([0, 1, 3])).tolist() == pytest.approx([4, 3, 5])
    # 2-d filters at the corners of a unit square: every filter has distances 1, 1, sqrt(2)
    sq = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).view(4, 1, 1, 2)
    assert geometric_median(sq).tolist() == pytest.approx([2 + math.sqrt(2)] * 4)


def test_fermat_point_known_answers():
    # an odd set on a line: the median point, not the mean (4.0)
    assert fermat_point(torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])).item() == pytest.approx(3.0, abs=1e-5)
    # a triangle with one angle >= 120 degrees: the Fermat point is that vertex
    obtuse = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.1]])
    assert fermat_point(obtuse).tolist() == pytest.approx([0.0, 0.0], abs=1e-4)
    # an equilateral triangle (all angles < 120): its centre
    eq = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    assert fermat_point(eq).tolist() == pytest.approx([0.5, math.sqrt(3) / 6], abs=1e-5)


def test_fermat_point_minimises_the_sum_of_distances():
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) ** 3  # skewed cloud
    y = fermat_point(x, tol=1e-10)
    cost = lambda p: (x - p).norm(dim=1).sum().item()  # noqa: E731
    assert cost(y) < cost(x.mean(0))
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        assert cost(y) <= cost(y + 1e-3 * torch.randn(6, generator=g, dtype=torch.float64)) + 1e-9


def test_fermat_scores_are_distances_to_the_median_and_parameters_matter():
    w = filters_1d([0, 1, 3, 4, 10])
    assert fermat(w).tolist() == pytest.approx([3, 2, 0, 1, 7], abs=1e-5)
    # max_iter=0 stops at the start point, the centroid (3.6): different scores
    assert fermat(w, max_iter=0).tolist() == pytest.approx([3.6, 2.6, 0.6, 0.4, 6.4])
    # a loose tolerance stops earlier than a tight one
    far = filters_1d([0, 0.5, 1, 100, 200])
    assert not torch.allclose(fermat(far, tol=1e-1), fermat(far, tol=1e-12))


def test_taylor_known_answer_and_batches():
    w = torch.tensor([[[[1.0, -2.0]]], [[[0.5, 0.0]]]])  # (2, 1, 1, 2)
    g1 = torch.tensor([[[[3.0, 1.0]]], [[[4.0, 9.0]]]])
    assert taylor(w, g1).tolist() == [5.0, 2.0]  # |1*3| + |-2*1|, |0.5*4| + 0
    g2 = -2 * g1
    assert taylor(w, torch.stack([g1, g2])).tolist() == [7.5, 3.0]  # mean over batches of (5, 10) and (2, 4)
    with pytest.raises(ValueError, match="do not match"):
        taylor(w, torch.zeros(2, 1, 1, 3))


def test_bn_gamma_is_absolute_scale():
    assert bn_gamma(torch.tensor([-0.5, 0.2, 0.0])).tolist() == pytest.approx([0.5, 0.2, 0.0])


@pytest.mark.parametrize("fn", WEIGHT_CRITERIA, ids=lambda f: f.__name__)
def test_permuting_filters_permutes_scores(fn):
    w = torch.randn(12, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(fn(w[perm]), fn(w)[perm], rtol=1e-5, atol=1e-6)


def test_permutation_invariance_of_data_driven_criteria():
    g = torch.Generator().manual_seed(0)
    w, grads = torch.randn(6, 2, 3, 3, generator=g), torch.randn(3, 6, 2, 3, 3, generator=g)
    perm = torch.randperm(6, generator=g)
    assert torch.allclose(taylor(w[perm], grads[:, perm]), taylor(w, grads)[perm])
    gamma = torch.randn(6, generator=g)
    assert torch.equal(bn_gamma(gamma[perm]), bn_gamma(gamma)[perm])


@pytest.mark.parametrize("fn", WEIGHT_CRITERIA, ids=lambda f: f.__name__)
def test_weight_criteria_scale_with_the_weights(fn):
    # all four are norms or sums of distances: positively homogeneous of degree 1, so ranks do not change
    w = torch.randn(10, 4, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(fn(3.0 * w), 3.0 * fn(w), rtol=1e-6)


def test_gm_and_fermat_prune_the_central_filter():
    # four filters far apart and one in their middle: GM and Fermat prune the middle one first; L2 need not
    w = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0], [9.0, 9.0]]).view(5, 1, 1, 2)
    w = torch.cat([w, torch.tensor([[0.1, 0.0]]).view(1, 1, 1, 2)])
    assert geometric_median(w).argmin().item() == 5
    assert fermat(w).argmin().item() == 5


def test_registry_and_unknown_names():
    assert set(list_criteria()) == {"l1", "l2", "gm", "fermat", "taylor", "bn-gamma", "random"}
    assert get_criterion("gm").fn is geometric_median and get_criterion("taylor").needs == "grad"
    with pytest.raises(ConfigError, match="unknown criterion 'l3'.*fermat.*gm.*l1"):
        get_criterion("l3")


def _batches(n=3, c=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, c, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(n)]


def test_model_scores_cover_every_layer_and_leave_the_model_alone():
    model = get_model("vgg11", 10, [4, "M", 8, "M", 8, 8, "M", 8, 8, "M", 8, 8], in_channels=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    s = model_scores(model, list_criteria(), loader=_batches(), n_batches=2)
    ids = [layer.id for layer in model.conv_layers()]
    for name in list_criteria():
        assert list(s[name]) == ids
        assert [len(v) for v in s[name].values()] == [4, 8, 8, 8, 8, 8, 8, 8]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched
    assert all(p.grad is None for p in model.parameters()) and model.training
    with pytest.raises(ValueError, match="loader"):
        model_scores(model, ["taylor"])


def test_loss_grads_equal_autograd_per_batch():
    model = get_model("vgg11", 10, [4, "M", 4, "M", 4, 4, "M", 4, 4, "M", 4, 4], in_channels=1).eval()
    batches = _batches(2)
    g = loss_grads(model, batches, ["features.0"], n_batches=5)["features.0"]
    assert g.shape == (2, 4, 1, 3, 3)  # only two batches exist
    x, y = batches[1]
    ref = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), model.features[0].weight)[0]
    assert torch.allclose(g[1], ref)


@pytest.mark.parametrize("n,fn", [(1, l1), (2, l2)], ids=["l1", "l2"])
@pytest.mark.parametrize("prune_ratio", [0.1, 0.3, 0.5, 0.9])
def test_pruned_sets_match_torch_ln_structured(n, fn, prune_ratio):
    conv = nn.Conv2d(8, 32, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(32, 8, 3, 3, generator=torch.Generator().manual_seed(int(10 * prune_ratio))))
    k, _ = n_keep(32, prune_ratio)
    ours = set(prune_lowest(fn(conv.weight), 32 - k).tolist())
    tprune.ln_structured(conv, "weight", amount=32 - k, n=n, dim=0)  # an int amount: that many filters
    theirs = {i for i in range(32) if not conv.weight_mask[i].any()}
    assert ours == theirs


def test_random_control_is_reproducible_and_uncorrelated_with_norms():
    from scipy import stats

    from rethink.prune.criteria import get_criterion
    torch.manual_seed(0)
    w = torch.randn(256, 16, 3, 3) * torch.linspace(0.5, 2.0, 256)[:, None, None, None]
    r = get_criterion("random").fn(w)
    assert r.shape == (256,) and torch.equal(r, get_criterion("random").fn(w.clone()))  # same layer shape, same
    rho = stats.spearmanr(r.numpy(), get_criterion("l2").fn(w).numpy()).statistic
    assert abs(rho) < 0.2  # a floor: no relation to the filters' norms


def test_accuracy_over_seeds_and_the_paired_comparison_with_l1():
    import pandas as pd

    from rethink.criteria_study import accuracy_over_seeds, criteria_vs

    def table(l1, gm, rnd):  # accuracy_by_criterion's shape: one row per criterion, indexed by its label
        return pd.DataFrame(dict(criterion=["L1", "GM", "random"], params=[10, 10, 10], flops=[99, 99, 99],
                                 acc_pruned=[50.0, 51.0, 20.0], acc_finetuned=[l1, gm, rnd],
                                 best_finetuned=[l1, gm, rnd], clamped=[0, 1, 0])).set_index("criterion")

    # GM tracks L1 within 0.1 point on every seed while the seeds differ by 2 points; random is 3 points lower
    per_seed = {0: table(90.0, 90.1, 87.0), 1: table(92.0, 91.9, 89.1), 2: table(91.0, 91.0, 88.0)}
    t = accuracy_over_seeds(per_seed, "fashion-mnist")
    assert list(t.index) == ["L1", "GM", "random"] and t.loc["L1", "seeds"] == 3
    assert t.loc["L1", "acc_finetuned"] == pytest.approx(91.0) and t.loc["L1", "acc_finetuned_std"] == pytest.approx(1.0)
    assert t.loc["GM", "clamped"] == 1 and t.loc["GM", "params"] == 10
    v = criteria_vs(per_seed, "L1", "fashion-mnist")
    assert set(v) == {"GM", "random"} and v["GM"]["n"] == 3
    assert v["GM"]["verdict"] == "on par" and v["GM"]["diff"] == pytest.approx(0.0)
    assert v["random"]["verdict"] == "worse" and v["random"]["high"] < 0  # paired: the seed spread cancels out
    # one seed: a mean without a std, and no interval
    one = accuracy_over_seeds({0: per_seed[0]}, "fashion-mnist")
    assert one.loc["L1", "acc_finetuned"] == 90.0 and one.loc["L1", "acc_finetuned_std"] != one.loc["L1", "acc_finetuned_std"]
    assert criteria_vs({0: per_seed[0]}, "L1", "fashion-mnist")["GM"]["n"] == 1
    # a fine-tuning that ended at chance is named and left out of the pairs, not averaged into the difference
    failed = {**per_seed, 1: table(92.0, 10.4, 89.1)}
    gm = criteria_vs(failed, "L1", "fashion-mnist")["GM"]
    t = accuracy_over_seeds(failed, "fashion-mnist")
    assert t.loc["GM", "seeds"] == 3 and t.loc["GM", "acc_finetuned"] == pytest.approx(90.55)
    assert t.loc["GM", "left_out"] == "seed 1: near chance (10.4 %)" and t.loc["L1", "left_out"] == ""
    assert t.loc["GM", "acc_pruned"] == pytest.approx(51.0)  # right after pruning: every seed, never flagged
    assert gm["n"] == 2 and gm["diff"] == pytest.approx(0.05) and gm["left_out"] == ["GM seed 1: near chance (10.4 %)"]
