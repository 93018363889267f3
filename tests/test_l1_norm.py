"""L1-norm filter pruning as Li et al. 2017 / Liu et al. 2019 define it: the published FLOPs reductions and
Scratch-B budgets, largest-L1 selection, and surgery that equals masking."""
from __future__ import annotations

import pytest
import torch

from rethink import count_flops, get_method, get_model, list_methods
from rethink.config import ConfigError
from rethink.experiment import scratch_b_epochs
from rethink.models import default_widths, scale_widths
from rethink.prune.l1_norm import VARIANTS, list_variants
from rethink.prune.select import n_keep
from rethink.prune.surgery import mask_filters

# Li et al. 2017 (checked against the paper): FLOPs reduction %, and Liu et al. 2019's Scratch-B epochs for 160 epochs.  ImageNet
# ResNet-34-A/B (rethink/paper_numbers.csv, unverified): counted at 224 without the 1x1 projection shortcuts, as Li et
# al. count (test_imagenet.py); no Scratch-B epochs printed.
PUBLISHED = {"vgg16-a": (34.2, 243), "resnet56-a": (10.4, 178), "resnet56-b": (27.6, 220),
             "resnet110-a": (15.9, 190), "resnet110-b": (38.6, 260), "resnet34-a": (15.5, None),
             "resnet34-b": (24.2, None)}


@pytest.fixture(scope="module")
def pruned():
    out = {}
    for variant, (arch, _) in VARIANTS.items():
        torch.manual_seed(0)
        model = get_model(arch)
        out[variant] = (model, get_method("l1-norm")(model, variant=variant))
    return out


def test_every_published_variant_is_covered():
    assert set(PUBLISHED) == set(VARIANTS)


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_flops_reduction_and_scratch_b_epochs(pruned, variant):
    model, result = pruned[variant]
    if hasattr(model, "shortcut_convs"):  # ImageNet ResNet
        f0, f1 = (count_flops(m, (3, 224, 224), exclude=m.shortcut_convs()) for m in (model, result.model))
    else:
        f0, f1 = count_flops(model), count_flops(result.model)
    reduction, epochs = PUBLISHED[variant]
    assert 100 * (1 - f1 / f0) == pytest.approx(reduction, abs=0.2)
    if epochs is not None:
        assert scratch_b_epochs(160, f0, f1) == epochs


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_masked_model_equals_pruned_model(pruned, variant):
    model, result = pruned[variant]
    # non-trivial BN statistics, so that a wrongly copied channel would show
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    result = get_method("l1-norm")(model, variant=variant)
    x = torch.randn(4, 3, 32, 32)
    model.eval(), result.model.eval()
    with torch.no_grad():
        pruned_out = result.model(x)
        masked_out = mask_filters(model, result.keep)(x)
    assert torch.allclose(pruned_out, masked_out, atol=1e-4), (pruned_out - masked_out).abs().max()


def test_vgg16_a_widths(pruned):
    assert pruned["vgg16-a"][1].widths == [32, 64, "M", 128, 128, "M", 256, 256, 256, "M", 256, 256, 256, "M",
                                           256, 256, 256]


def test_resnet_prunes_only_first_conv_of_each_block(pruned):
    model, result = pruned["resnet56-b"]
    for layer in model.conv_layers():
        if layer.id % 2 == 1:  # stem and second convs keep their width: they feed the residual sums
            assert result.widths[layer.width_index] == model.widths[layer.width_index]
    # skipped layers keep every filter
    for lid in (16, 18, 20, 34, 38, 54):
        assert result.widths[lid - 1] == model.widths[lid - 1]
    assert result.widths[1] == int(16 * 0.4) and result.widths[21] == int(32 * 0.7)


def test_keeps_the_filters_with_largest_l1_norm():
    torch.manual_seed(0)
    model = get_model("vgg11")
    conv = model.features[0]
    with torch.no_grad():
        conv.weight.mul_(0.01)
        conv.weight[[3, 7, 11]] *= 1000  # three clearly largest filters
    result = get_method("l1-norm")(model, prune_ratio=0.95)
    assert result.keep[1].tolist() == [3, 7, 11]  # int(64 * 0.05) = 3 kept
    assert torch.equal(result.model.features[0].weight, conv.weight[[3, 7, 11]])


def test_uniform_prune_ratio_on_other_archs():
    for arch in ("vgg13", "resnet20"):
        model = get_model(arch)
        result = get_method("l1-norm")(model, prune_ratio=0.5)
        assert count_flops(result.model) < count_flops(model)
        result.model.eval()(torch.randn(1, 3, 32, 32))


def test_n_keep_is_lis_rule():
    assert n_keep(64, 0.5) == (32, False)
    assert n_keep(16, 0.1) == (14, False)  # int(16 * 0.9) = int(14.4)
    assert n_keep(64, 0.1) == (57, False)
    assert n_keep(2, 0.9) == (1, True)


def test_ratio_that_would_empty_a_layer_keeps_one_and_says_so():
    model = get_model("vgg11", widths=scale_widths(default_widths("vgg11"), 1 / 64))  # first layer: 1 channel
    with pytest.warns(UserWarning, match="kept the one with the highest score"):
        result = get_method("l1-norm")(model, prune_ratio=0.9)
    assert min(w for w in result.widths if w != "M") == 1
    assert result.clamped and "layer 1" in result.clamped[0]
    result.model.eval()(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_prune_ratio_outside_unit_interval_is_refused(ratio):
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        get_method("l1-norm")(get_model("vgg11"), prune_ratio=ratio)


def test_bad_variant_and_method_names_list_known_ones():
    with pytest.raises(ConfigError, match="unknown variant 'vgg16-z'.*vgg16-a"):
        get_method("l1-norm")(get_model("vgg16"), variant="vgg16-z")
    with pytest.raises(ConfigError, match="is for resnet56, not vgg16.*vgg16-a"):
        get_method("l1-norm")(get_model("vgg16"), variant="resnet56-a")
    with pytest.raises(ConfigError, match="unknown method 'l3'.*l1-norm"):
        get_method("l3")
    with pytest.raises(ConfigError, match="exactly one"):
        get_method("l1-norm")(get_model("vgg16"))
    assert "l1-norm" in list_methods() and list_variants("resnet56") == ["resnet56-a", "resnet56-b"]


def test_registry_refuses_duplicates():
    from rethink.prune import register_method
    with pytest.raises(ValueError, match="already registered"):
        register_method("l1-norm")(lambda model: None)
