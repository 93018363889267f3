"""Soft filter pruning: the lowest-L2 fraction zeroed after every epoch while training goes on, zeroed filters
free to recover, the final hard prune, and the SFP-trained baseline cached apart from the plain one."""
from __future__ import annotations

import pytest
import torch

from conftest import smoke_config
from rethink.config import PruneConfig
from rethink.experiment import baseline_key, run_experiment
from rethink.models import default_widths, get_model, scale_widths
from rethink.prune import baseline_training, get_method
from rethink.prune.criteria import l2
from rethink.prune.select import n_keep
from rethink.prune.sfp import soft_prune, soft_prune_hook
from rethink.train import Schedule, train


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small models run faster on one thread


def resnet(mult=0.5):
    torch.manual_seed(0)
    return get_model("resnet20", widths=scale_widths(default_widths("resnet20"), mult))


def zero_filters(model) -> dict:
    mods = dict(model.named_modules())
    return {layer.id: set(torch.nonzero(mods[layer.conv].weight.flatten(1).abs().sum(1) == 0).flatten().tolist())
            for layer in model.conv_layers()}


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_soft_prune_zeroes_the_lowest_l2_fraction_of_prunable_layers_only(ratio):
    model = resnet()
    mods = dict(model.named_modules())
    norms = {layer.id: l2(mods[layer.conv].weight) for layer in model.conv_layers()}
    soft_prune(model, ratio)
    zeros = zero_filters(model)
    for layer in model.conv_layers():
        if not layer.prunable:
            assert not zeros[layer.id], f"layer {layer.id} feeds a residual sum: SFP must not zero it"
            continue
        c = len(norms[layer.id])
        k, _ = n_keep(c, ratio)
        assert len(zeros[layer.id]) == c - k
        lowest = set(torch.sort(norms[layer.id]).indices[: c - k].tolist())
        assert zeros[layer.id] == lowest


def batches(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(n)]


def test_every_epoch_zeroes_the_fraction_and_zeroed_filters_keep_training():
    model = resnet()
    data = batches()
    seen = []

    def check(m, epoch):  # runs after SFP's hook: this epoch's zeroed sets
        seen.append(zero_filters(m))

    train(model, data, data[:1], Schedule(3, 0.05), on_epoch_end=(soft_prune_hook(0.3), check), progress=False)
    prunable = [layer for layer in model.conv_layers() if layer.prunable]
    mods = dict(model.named_modules())
    for zeros in seen:
        for layer in prunable:
            c = mods[layer.conv].out_channels
            assert len(zeros[layer.id]) == c - n_keep(c, 0.3)[0]
    # soft-pruned filters are not frozen: one more training pass moves them away from zero (those whose BN shift
    # is <= 0 get no gradient through the ReLU and may stay at zero, so not necessarily all of them)
    before = seen[-1]
    train(model, data, data[:1], Schedule(1, 0.05), progress=False)
    after = zero_filters(model)
    recovered = sum(len(before[layer.id] - after[layer.id]) for layer in prunable)
    assert recovered > 0


def test_hard_prune_keeps_the_filters_soft_pruning_left():
    model = resnet()
    soft_prune(model, 0.3)
    zeros = zero_filters(model)
    result = get_method("sfp")(model, prune_ratio=0.3)
    mods = dict(model.named_modules())
    for layer in model.conv_layers():
        if layer.prunable:
            c = mods[layer.conv].out_channels
            assert result.keep[layer.id].tolist() == sorted(set(range(c)) - zeros[layer.id])
            assert result.widths[layer.width_index] == n_keep(c, 0.3)[0]
        else:
            assert result.widths[layer.width_index] == model.widths[layer.width_index]
    assert not zero_filters(result.model)[2]  # the zeroed filters are gone, not carried
    assert result.model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_training_settings_follow_the_prune_ratio():
    t = baseline_training("sfp", "resnet56", PruneConfig(method="sfp", prune_ratio=0.3))
    assert t.settings == {"sfp_prune_ratio": 0.3} and t.tag == "sfp-p0.3" and len(t.hooks.on_epoch_end) == 1


def test_experiment_smoke(tmp_path, fashion_root):
    def cfg_of(method, ratio):
        return smoke_config(tmp_path, fashion_root, arch="resnet20", method=method, prune_ratio=ratio)
    cfg = cfg_of("sfp", 0.3)
    # SFP trains its own large model: its key differs from the plain baseline's and depends on the ratio
    assert baseline_key(cfg, 0) != baseline_key(cfg_of("l1-norm", 0.3), 0)
    assert baseline_key(cfg, 0) != baseline_key(cfg_of("sfp", 0.5), 0)
    records = run_experiment(cfg, progress=False)
    base, ft = records[0], records[1]
    assert base["baseline_tag"] == "sfp-p0.3" and "-sfp-p0.3-resnet20-baseline-" in base["run_id"]
    assert ft["model"]["flops"] < base["model"]["flops"]
    assert records[3]["metrics"]["epochs"] == int(2 * base["model"]["flops"] / ft["model"]["flops"])
