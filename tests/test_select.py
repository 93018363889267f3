"""Selection: layer-wise and global, normalisation, never an empty layer; pruning by any criterion."""
from __future__ import annotations

import warnings

import pytest
import torch

from rethink.models import get_model
from rethink.prune.by_criterion import prune_by_criterion
from rethink.prune.criteria import list_criteria
from rethink.prune.select import (n_keep, normalise_scores, prune_lowest, select, select_global, select_layer,
                                  select_layerwise)
from rethink.prune.surgery import mask_filters


def t(*v):
    return torch.tensor(v, dtype=torch.float32)


def test_n_keep_unchanged():
    assert n_keep(64, 0.1) == (57, False)
    assert n_keep(3, 0.9) == (1, True)


def test_prune_lowest_orders_lowest_first_with_ties_by_index():
    assert prune_lowest(t(5, 1, 3, 1, 9), 3).tolist() == [1, 3, 2]


def test_select_layer_is_layerwise_with_one_ratio():
    scores = {1: t(3, 1, 2, 5), 2: t(0.1, 0.4, 0.2, 0.3, 0.0)}
    keep, clamped = select_layer(scores, 0.5)
    ref, _ = select_layerwise(scores, {1: 0.5, 2: 0.5})
    assert {k: v.tolist() for k, v in keep.items()} == {k: v.tolist() for k, v in ref.items()}
    assert keep[1].tolist() == [0, 3] and keep[2].tolist() == [1, 3] and not clamped


def test_global_one_threshold_over_raw_scores():
    scores = {1: t(1, 2, 3), 2: t(10, 20)}
    keep, clamped = select_global(scores, 0.4)  # 5 filters, keep int(5 * 0.6) = 3: 20, 10, 3
    assert keep[1].tolist() == [2] and keep[2].tolist() == [0, 1] and not clamped


def test_global_normalised_per_layer():
    scores = {1: t(1, 2, 3), 2: t(10, 20)}
    # by max: layer 1 -> 1/3, 2/3, 1; layer 2 -> 1/2, 1: keep the two 1s (layer order first) and 2/3
    keep, _ = select_global(scores, 0.4, normalise="max")
    assert keep[1].tolist() == [1, 2] and keep[2].tolist() == [1]
    assert normalise_scores(t(1, 3), "l1").tolist() == pytest.approx([0.25, 0.75])
    assert normalise_scores(t(3, 4), "l2").tolist() == pytest.approx([0.6, 0.8])
    with pytest.raises(ValueError, match="known: max, l1, l2"):
        normalise_scores(t(1, 2), "zscore")


def test_global_never_empties_a_layer_and_reports_it():
    scores = {1: t(0.1, 0.3, 0.2), 2: t(5, 6, 7, 8), 3: t(9, 10)}
    with pytest.warns(UserWarning, match="layer 1 .*kept the one with the highest score"):
        keep, clamped = select_global(scores, 0.5, names={1: "a", 2: "b", 3: "c"})
    assert keep[1].tolist() == [1]  # its best filter
    assert len(clamped) == 1 and "layer 1 (a)" in clamped[0]
    k, _ = n_keep(9, 0.5)
    assert sum(len(v) for v in keep.values()) == k + len(clamped)


@pytest.mark.parametrize("prune_ratio", [0.0, 0.2, 0.5, 0.8])
def test_global_keeps_the_highest_scores_overall(prune_ratio):
    g = torch.Generator().manual_seed(0)
    scores = {i: torch.rand(n, generator=g) + i for i, n in ((1, 16), (2, 32), (3, 64))}  # later layers score higher
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keep, clamped = select_global(scores, prune_ratio)
    kept = torch.cat([scores[i][keep[i]] for i in scores])
    dropped = torch.cat([scores[i][[j for j in range(len(scores[i])) if j not in set(keep[i].tolist())]]
                         for i in scores])
    if not clamped and len(dropped):
        assert kept.min() >= dropped.max()
    assert all(len(v) >= 1 for v in keep.values())


def test_select_dispatch_and_errors():
    scores = {1: t(1, 2, 3, 4)}
    assert select(scores, 0.5, "layer")[0][1].tolist() == [2, 3]
    assert select(scores, 0.5, "global")[0][1].tolist() == [2, 3]
    with pytest.raises(ValueError, match="known: global, layer"):
        select(scores, 0.5, "network")
    with pytest.raises(ValueError, match="prune_ratio"):
        select(scores, 1.0)


SMALL_VGG = [4, 4, "M", 8, 8, "M", 8, 8, 8, "M", 8, 8, 8, "M", 8, 8, 8]


def _batches():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 1, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g))]


@pytest.mark.parametrize("criterion", list_criteria())
def test_prune_by_criterion_layerwise(criterion):
    model = get_model("vgg16", 10, SMALL_VGG, in_channels=1).eval()
    r = prune_by_criterion(model, criterion, 0.5, loader=_batches())
    assert r.widths == [2, 2, "M", 4, 4, "M", 4, 4, 4, "M", 4, 4, 4, "M", 4, 4, 4]
    x = torch.randn(2, 1, 32, 32)
    masked = mask_filters(model, r.keep)  # the masked twin gives the same outputs as the pruned model
    assert torch.allclose(r.model.eval()(x), masked(x), atol=1e-5)


def test_prune_by_criterion_global_on_resnet18_touches_only_prunable_layers():
    widths = [8] + [w for s in (8, 16, 16, 16) for _ in range(2) for w in (s, s)]
    model = get_model("resnet18", 10, widths, in_channels=1).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a layer may be clamped at one filter: tested above
        r = prune_by_criterion(model, "l2", 0.5, scope="global")
    prunable = {layer.width_index for layer in model.conv_layers() if layer.prunable}
    for i, (a, b) in enumerate(zip(widths, r.widths)):
        assert a == b or i in prunable
    assert sum(r.widths) < sum(widths)
    assert r.model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
