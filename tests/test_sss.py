"""Sparse Structure Selection: block factors on the residual branches, the sparsity penalty, removal of exactly the
zero-factor blocks into a real shallower ResNet whose output equals the original's, FLOPs of the shallower model,
checkpoints with factors, and the SSS-trained baseline through the experiment."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import smoke_config
from rethink import count_flops, count_params, get_method, get_model
from rethink.config import ConfigError, PruneConfig
from rethink.experiment import baseline_key, baseline_path, run_experiment
from rethink.models import default_widths, scale_widths
from rethink.prune import baseline_training
from rethink.prune.sss import scale_penalty

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small models run faster on one thread


def scaled(arch="resnet20", mult=0.5, seed=0):
    """A model with block factors and non-trivial BN statistics (so that a wrong removal shows)."""
    torch.manual_seed(seed)
    model = get_model(arch, widths=scale_widths(default_widths(arch), mult)).add_block_scales()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        for b, s in model.block_scales().items():
            s.fill_(0.3 + 0.1 * b)
    return model.eval()


@pytest.mark.parametrize("arch,zero", [("resnet20", (1, 3, 8)), ("resnet20", (6, 7, 8)), ("resnet18", (2, 4, 7))])
def test_removes_exactly_the_zero_factor_blocks_and_the_output_is_unchanged(arch, zero):
    # (1, 3, 8): block 3 opens stage 2 (stride 2 + zero channels); (6, 7, 8): all of stage 3;
    # resnet18 blocks 2 and 4 open stages with a projection shortcut, which stays
    model = scaled(arch, 0.5 if arch == "resnet20" else 0.125)
    with torch.no_grad():
        for b in zero:
            model.block_scales()[b].zero_()
    result = get_method("sss")(model)  # the paper's rule: factors at or below the threshold
    removed = [r["block"] for r in result.report if r["removed"]]
    assert removed == list(zero)
    n = len(model.blocks)
    assert [result.widths[1 + 2 * b] == 0 for b in range(n)] == [b in zero for b in range(n)]
    pruned = result.model.eval()
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert sum(isinstance(m, nn.Conv2d) for m in pruned.modules()) == n_convs - 2 * len(zero)  # really shallower
    assert not pruned.block_scales()  # the kept factors are folded into the BNs: a plain ResNet
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(pruned(x), model(x), atol=1e-5)
    rebuilt = get_model(arch, widths=result.widths)
    rebuilt.load_state_dict(pruned.state_dict())  # architecture is data: the widths rebuild it
    assert torch.allclose(rebuilt.eval()(x), pruned(x))
    wider = scale_widths(result.widths, 2.0)  # a width multiplier keeps the removed blocks removed
    assert [w == 0 for w in wider] == [w == 0 for w in result.widths]
    assert get_model(arch, widths=wider)(x).shape == (4, 10)


def test_flops_and_params_drop_by_the_removed_blocks():
    model = scaled()
    with torch.no_grad():
        model.block_scales()[4].zero_()
    result = get_method("sss")(model)
    block = model.blocks[4]
    block_flops = 2 * block.conv1.weight.numel() * 16 * 16  # stage 2: 16x16 maps, two convs of equal size
    block_params = sum(p.numel() for n, p in block.named_parameters())  # with its factor
    assert count_flops(model) - count_flops(result.model) == block_flops
    # and the 8 kept blocks' factors, folded into their BNs
    assert count_params(model) - count_params(result.model) == block_params + 8


def test_prune_ratio_removes_the_smallest_factors():
    model = scaled()
    with torch.no_grad():
        for b, v in {0: 0.9, 1: -0.05, 2: 0.5, 5: 0.02, 7: -0.3}.items():
            model.block_scales()[b].fill_(v)
    result = get_method("sss")(model, prune_ratio=0.3)  # 9 blocks: keep int(9 * 0.7) = 6, remove 3
    assert [r["block"] for r in result.report if r["removed"]] == [1, 5, 7]
    with pytest.raises(ConfigError):
        get_method("sss")(get_model("resnet20"), prune_ratio=0.3)  # no factors: not trained by SSS
    with pytest.raises(ConfigError):
        get_method("sss")(get_model("vgg11"), prune_ratio=0.3)


def test_every_factor_zero_keeps_one_block():
    model = scaled()
    with torch.no_grad():
        for s in model.block_scales().values():
            s.zero_()
    model.block_scales()[3].data.fill_(1e-4)
    result = get_method("sss")(model)
    assert [r["block"] for r in result.report if not r["removed"]] == [3] and result.clamped


def test_penalty_changes_only_the_factors_gradients_and_drives_them_to_zero():
    model = scaled().train()
    F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model.block_scales()[2].fill_(-0.4)
    scale_penalty(0.1)(model)
    for n, p in model.named_parameters():
        if n.endswith(".scale"):
            sign = -1.0 if n == "blocks.2.scale" else 1.0
            assert torch.allclose(p.grad, before[n] + 0.1 * sign)
        else:
            assert torch.equal(p.grad, before[n])
    # a factor with no data gradient under the penalty alone: plain SGD steps it down to a neighbourhood of 0
    s = nn.Parameter(torch.tensor(0.5))
    holder = type("M", (), {"block_scales": lambda self: {0: s}})()
    for _ in range(100):
        s.grad = torch.zeros(())
        scale_penalty(0.1)(holder)
        with torch.no_grad():
            s -= 0.1 * s.grad
    assert abs(float(s.detach())) <= 0.1 * 0.1


def test_a_checkpoint_with_factors_rebuilds_from_arch_and_widths():
    model = scaled()
    rebuilt = get_model("resnet20", widths=model.widths)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(rebuilt.eval()(x), model(x)) and len(rebuilt.block_scales()) == 9


def test_training_settings_and_families():
    t = baseline_training("sss", "resnet56", PruneConfig(method="sss", prune_ratio=0.3))
    assert t.tag == "sss-l0.01" and t.settings == {"sss_lambda": 0.01} and t.prepare is not None
    t = baseline_training("sss", "resnet56", PruneConfig(method="sss", prune_ratio=0.3, sparsity_lambda=1e-3))
    assert t.tag == "sss-l0.001"
    with pytest.raises(ConfigError, match="ResNet"):
        baseline_training("sss", "vgg16", PruneConfig(method="sss", prune_ratio=0.3))


def test_experiment_trains_the_factors_and_prunes_blocks(tmp_path, fashion_root):
    cfg = smoke_config(tmp_path, fashion_root, arch="resnet20", method="sss", prune_ratio=0.3, epochs=1,
                       width_mult=0.5)
    assert baseline_key(cfg, 0) != baseline_key(smoke_config(tmp_path, fashion_root, arch="resnet20",
                                                             method="l1-norm", prune_ratio=0.3), 0)
    records = run_experiment(cfg, progress=False)
    base, ft = records[0], records[1]
    assert base["baseline_tag"] == "sss-l0.01"
    assert "blocks.0.scale" in torch.load(baseline_path(cfg, 0), weights_only=True)["state_dict"]
    widths = ft["model"]["widths"]
    assert sum(widths[1 + 2 * b] == 0 for b in range(9)) == 3 and ft["model"]["flops"] < base["model"]["flops"]
    assert len(ft["prune"]["report"]) == 9
    # the cached baseline (with its factors) is read back and gives the same pruned model
    again = run_experiment(cfg, progress=False, resume=False)
    assert again[1]["model"]["widths"] == widths and again[0]["baseline_cached"]
