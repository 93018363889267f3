"""Unstructured magnitude pruning: one global |w| threshold over conv weights (or per layer), masks that stay zero
through training, the scratch re-initialisation for a mask, and the protocol with sparsity and FLOPs of the
non-zero weights."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from conftest import smoke_config
from rethink.config import ConfigError, PruneConfig
from rethink.experiment import run_experiment
from rethink.metrics import count_flops, layer_sparsity, sparsity
from rethink.models import default_widths, get_model, scale_widths
from rethink.prune import baseline_training, get_method, method_kwargs
from rethink.prune.masks import conv_weights, mask_hooks, reinit_masked
from rethink.train import Schedule, train


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small models run faster on one thread


def small(name="vgg11", mult=0.25):
    torch.manual_seed(0)
    return get_model(name, widths=scale_widths(default_widths(name), mult, name))


@pytest.mark.parametrize("ratio", [0.3, 0.9])
def test_global_threshold_over_all_conv_weights(ratio):
    model = small()
    result = get_method("magnitude")(model, prune_ratio=ratio)
    weights = conv_weights(model)
    n = sum(w.numel() for w in weights.values())
    kept = torch.cat([w[result.masks[k]].abs().flatten() for k, w in weights.items()])
    removed = torch.cat([w[~result.masks[k]].abs().flatten() for k, w in weights.items()])
    assert len(removed) == int(n * ratio)
    assert removed.max() <= kept.min()  # one threshold for all layers
    per_layer = [(~m).float().mean().item() for m in result.masks.values()]
    assert max(per_layer) - min(per_layer) > 0.05  # ... so layers end up with different sparsity
    assert sparsity(result.model) == pytest.approx(int(n * ratio) / n)
    assert result.widths == model.widths and not result.keep
    # the original model is left alone; linear layers and BN are never masked
    assert sparsity(model) == 0.0
    assert set(result.masks) == {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def test_layer_scope_prunes_every_layer_by_the_ratio():
    model = small()
    result = get_method("magnitude")(model, prune_ratio=0.5, scope="layer")
    for name, w in conv_weights(result.model).items():
        assert (w == 0).sum().item() == int(w.numel() * 0.5), name
    with pytest.raises(ConfigError, match="scope"):
        get_method("magnitude")(model, prune_ratio=0.5, scope="filter")
    cfg = PruneConfig(method="magnitude", prune_ratio=0.5, scope="layer")
    assert method_kwargs("magnitude", cfg)["scope"] == "layer"
    assert baseline_training("magnitude", "vgg11", PruneConfig(method="magnitude", prune_ratio=0.5)) is None


def batches(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("name", ["vgg11", "resnet20", "preresnet56"])
def test_masked_weights_stay_zero_through_sgd_with_momentum_and_weight_decay(name):
    result = get_method("magnitude")(small(name), prune_ratio=0.7)
    model = result.model
    start = {k: w.detach().clone() for k, w in conv_weights(model).items()}
    hooks = result.hooks()
    data = batches()
    checks = []

    def after_step_check(m, epoch):
        checks.append(all(torch.all(w[~result.masks[k]] == 0) for k, w in conv_weights(m).items()))

    train(model, data, data[:1], Schedule(3, 0.1, (), 0.9, 5e-4), after_backward=hooks.after_backward,
          on_epoch_end=(after_step_check,), progress=False)  # our check runs without the mask's re-application
    assert checks == [True] * 3
    moved = sum((w[result.masks[k]] != start[k][result.masks[k]]).sum().item() for k, w in conv_weights(model).items())
    assert moved > 0.5 * sum(m.sum().item() for m in result.masks.values())  # the kept weights do train


def test_without_the_gradient_mask_the_zeros_would_not_hold():
    # the counterpart of the test above: it can fail, so it tests the hooks
    result = get_method("magnitude")(small(), prune_ratio=0.7)
    data = batches()
    train(result.model, data, data[:1], Schedule(1, 0.1), progress=False)
    assert sparsity(result.model) < 0.7


def test_scratch_reinit_uses_the_fan_of_kept_weights():
    torch.manual_seed(0)
    model = get_model("vgg11")
    result = get_method("magnitude")(model, prune_ratio=0.9)
    torch.manual_seed(1)
    fresh = reinit_masked(get_model("vgg11"), result.masks)
    mods = dict(fresh.named_modules())
    for name, w in conv_weights(fresh).items():
        mask = result.masks[name]
        assert torch.all(w[~mask] == 0)
        if mask.sum() > 5000:  # enough weights for a tight std estimate
            n = mask.sum().item() / mods[name].in_channels
            assert w[mask].std().item() == pytest.approx(math.sqrt(2.0 / n), rel=0.05), name
            # i.e. sqrt(1 / density) times the dense He std (fan_out = k * k * out_channels)
            dense = math.sqrt(2.0 / (w[0].numel() / mods[name].in_channels * w.shape[0]))
            density = mask.float().mean().item()
            assert density < 0.9 and w[mask].std().item() == pytest.approx(dense / math.sqrt(density), rel=0.05)


def test_nonzero_flops_and_mask_hooks_without_masks():
    model = small()
    result = get_method("magnitude")(model, prune_ratio=0.8)
    assert count_flops(result.model, nonzero=True) < 0.5 * count_flops(result.model)
    assert count_flops(result.model) == count_flops(model)
    empty = mask_hooks({})
    assert empty.after_backward == () and empty.on_epoch_end == ()


def test_layer_sparsity_counts_the_zeros_of_each_conv():
    model = small()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        convs[0].weight.zero_()
        convs[1].weight[: convs[1].weight.shape[0] // 4] = 0
    per_layer = layer_sparsity(model)
    assert per_layer[0] == 1.0 and per_layer[1] == 0.25 and per_layer[2:] == [0.0] * (len(convs) - 2)
    sizes = [c.weight.numel() for c in convs]
    assert sum(p * n for p, n in zip(per_layer, sizes)) / sum(sizes) == pytest.approx(sparsity(model))


def test_experiment_smoke(tmp_path, fashion_root):
    cfg = smoke_config(tmp_path, fashion_root, method="magnitude", arch="vgg11", prune_ratio=0.8)
    records = run_experiment(cfg, progress=False)
    base = records[0]
    assert base["baseline_tag"] == "unpruned"  # magnitude prunes a plainly trained model: the shared baseline
    for r in records[1:]:
        assert r["model"]["sparsity"] == pytest.approx(0.8, abs=1e-4)
        assert r["prune"]["trained_sparsity"] >= r["model"]["sparsity"]  # the masks held through training
        assert r["model"]["flops"] < r["model"]["dense_flops"] == base["model"]["flops"]
        assert r["model"]["widths"] == base["model"]["widths"]
        # per-layer sparsity for the book's figure, one entry per conv
        per_layer, n = r["model"]["layer_sparsity"], [w for w in base["model"]["widths"] if w != "M"]
        assert len(per_layer) == len(n) and max(per_layer) > min(per_layer)  # a global threshold cuts unevenly
    sb = records[3]
    assert sb["metrics"]["epochs"] == int(2 * base["model"]["flops"] / sb["model"]["flops"])
