"""Every registered architecture: output shape, parameter count near the published one, widths round trip, and
FLOPs counted as torch's own counter counts them."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rethink import count_flops, count_params, get_model, list_models
from rethink.config import ConfigError
from rethink.models import default_widths, scale_widths
from rethink.models.vgg import CFGS

CIFAR_VGGS = set(CFGS) | {"vgg19-slim"}

# Published parameter counts (CIFAR-10 heads).  A new architecture must add its own here, with the source.
PUBLISHED_PARAMS = {
    "resnet20": 0.27e6, "resnet32": 0.46e6, "resnet56": 0.85e6, "resnet110": 1.7e6,  # He et al. 2016, Table 6
    "vgg16": 1.5e7,  # CIFAR VGG-16 ~1.5e7 params (Liu et al. 2019 / Li et al. 2017)
    "vgg19": 2.0e7,  # Liu et al. 2017 (Network Slimming), Table 1: VGGNet 20.04M
    "vgg11": 9.5e6, "vgg13": 9.7e6,  # no published CIFAR count; checked against the formula below as well
    "resnet18": 11.17e6,  # CIFAR ResNet-18 (3x3 stem, projection shortcuts): 11,173,962 with a 10-class head
    # Liu et al. 2017 (Network Slimming), Table 1: VGGNet 20.04M, PreResNet-164 1.70M, DenseNet-40 1.02M
    "vgg19-slim": 20.04e6, "preresnet164": 1.70e6, "densenet40": 1.02e6,
    # ImageNet families (1000-class heads, their default): torchvision's counts (``weights.meta["num_params"]``),
    # checked exactly in test_imagenet.py
    "resnet18-imagenet": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "vgg16-imagenet": 138_357_544, "vgg16-bn-imagenet": 138_365_992,
    # no published count: torchvision's VGG-16 convs (138,357,544 less its classifier's 123,642,856) + Linear(512, 1000)
    "vgg16-gap-imagenet": 138_357_544 - 123_642_856 + 513_000,
    # no published count (He et al. 2017 give its speed-up only): Liu et al.'s cfg_2x, checked in test_imagenet.py
    "resnet50-2x": 19_693_584,
}


def preresnet_formula(depth, classes=10, cin=3) -> int:
    """Params of the bottleneck pre-activation ResNet (Network Slimming code) from its definition: per block BN
    (input), conv1x1 (c -> p), BN, conv3x3 (p -> p), BN, conv1x1 (p -> 4p), a 1x1 shortcut conv where the width
    or stride changes; 3x3 stem to 16; head BN + Linear.  Used where no count is published (depths 56, 110)."""
    n_blocks, n, c = (depth - 2) // 9, 9 * cin * 16, 16
    for planes in (16, 32, 64):
        for b in range(n_blocks):
            n += 2 * c + c * planes + 2 * planes + 9 * planes * planes + 2 * planes + planes * 4 * planes
            n += c * 4 * planes if b == 0 else 0  # the first block of each stage changes width or stride
            c = 4 * planes
    return n + 2 * c + c * classes + classes


for _d in (56, 110, 164):
    PUBLISHED_PARAMS.setdefault(f"preresnet{_d}", preresnet_formula(_d))


def vgg_formula(cfg, classes=10, cin=3, slim=False) -> int:
    """Params of the CIFAR VGG of from its definition: conv3x3 (no bias) + BN per layer, then
    Linear(C, 512) + BN1d(512) + Linear(512, classes); ``slim``: a single Linear(C, classes) (Network Slimming)."""
    n, c = 0, cin
    for w in cfg:
        if w != "M":
            n += 9 * c * w + 2 * w
            c = w
    if slim:
        return n + c * classes + classes
    return n + (c * 512 + 512) + 2 * 512 + (512 * classes + classes)


@pytest.mark.parametrize("name", list_models())
def test_forward_shape(name):
    model = get_model(name, num_classes=7).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    one = get_model(name, num_classes=10, in_channels=1).eval()
    assert one(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", list_models())
def test_params_near_published(name):
    assert name in PUBLISHED_PARAMS, f"add the published parameter count of {name} to PUBLISHED_PARAMS"
    n = count_params(get_model(name))
    assert abs(n - PUBLISHED_PARAMS[name]) / PUBLISHED_PARAMS[name] < 0.05, n
    if name in CIFAR_VGGS:
        assert n == vgg_formula(default_widths(name), slim=name.endswith("-slim"))
    if name.startswith("preresnet"):
        assert n == preresnet_formula(int(name[len("preresnet"):]))


@pytest.mark.parametrize("name", list_models())
def test_widths_round_trip(name):
    model = get_model(name)
    assert model.arch == name and model.widths == default_widths(name)
    narrow = get_model(name, widths=scale_widths(model.widths, 0.5, arch=name))  # a family may scale its own way
    again = get_model(name, widths=narrow.widths)
    assert again.widths == narrow.widths
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in narrow.state_dict().items()}
    assert count_params(narrow) < count_params(model)


@pytest.mark.parametrize("name", list_models())
def test_flops_match_torch_counter(name):
    model = get_model(name).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32))
    # torch counts 2 FLOPs per multiply-accumulate, for conv and matmul (linear) only
    assert count_flops(model, (3, 32, 32)) == counter.get_total_flops() // 2


def test_reference_flops():
    # Liu et al. 2019 / Li et al. 2017: CIFAR VGG-16 ~3.13e8 MACs, ResNet-56 ~1.25e8 MACs
    assert count_flops(get_model("vgg16")) == pytest.approx(3.13e8, rel=0.01)
    assert count_flops(get_model("resnet56")) == pytest.approx(1.25e8, rel=0.01)


def test_unknown_arch_lists_known():
    with pytest.raises(ConfigError, match="unknown arch 'vgg17'.*resnet56.*vgg16"):
        get_model("vgg17")


def test_resnet_refuses_widths_that_break_the_residual_sum():
    widths = default_widths("resnet20")
    widths[2] = 8  # second conv of block 0 must equal the stage width (16)
    with pytest.raises(ValueError, match="residual"):
        get_model("resnet20", widths=widths)


def test_channel_selection_keeps_the_layout_and_the_values():
    # channels_last input: the selection gathers in NHWC and must give index_select's values, gradient and a
    # channels_last output (an NCHW one sends the BN before it down a slow mixed-layout backward)
    from rethink.models.selection import ChannelSelection
    sel = ChannelSelection(7, 3)
    sel.index = torch.tensor([0, 4, 6])
    x = torch.randn(2, 7, 5, 5)
    for fmt in (torch.contiguous_format, torch.channels_last):
        xi = x.clone().to(memory_format=fmt).requires_grad_()
        out = sel(xi)
        assert torch.equal(out, x.index_select(1, sel.index))
        assert out.is_contiguous(memory_format=fmt)
        (out * torch.arange(out.numel()).view_as(out)).sum().backward()
        grad = torch.zeros_like(x)
        grad[:, [0, 4, 6]] = torch.arange(out.numel(), dtype=x.dtype).view_as(out)
        assert torch.equal(xi.grad, grad)
