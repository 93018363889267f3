"""CIFAR ResNet-18: the layer-counting convention (main-path 3x3 convs 1..17, shortcuts after) and surgery."""
from __future__ import annotations

import pytest
import torch

from rethink.models import default_widths, get_model
from rethink.prune.surgery import mask_filters, prune_filters


def test_layer_ids_follow_the_main_path_then_shortcuts():
    model = get_model("resnet18")
    layers = model.conv_layers()
    modules = dict(model.named_modules())
    main = [layer for layer in layers if modules[layer.conv].kernel_size == (3, 3)]
    assert [layer.id for layer in main] == list(range(1, 18))
    assert [layer.id for layer in layers[17:]] == [18, 19, 20]
    assert all(modules[layer.conv].kernel_size == (1, 1) for layer in layers[17:])
    # forward order of the main path: the order the convs run in
    ran = []
    hooks = [modules[layer.conv].register_forward_hook(lambda m, i, o, n=layer.conv: ran.append(n)) for layer in main]
    model.eval()(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert ran == [layer.conv for layer in main]
    # Huang et al.'s "12th conv": 256 filters of 256 * 3 * 3
    twelfth = modules[next(layer.conv for layer in layers if layer.id == 12)]
    assert tuple(twelfth.weight.shape) == (256, 256, 3, 3)
    assert [layer.id for layer in layers if layer.prunable] == list(range(2, 18, 2))


def test_projection_shortcuts_only_where_the_shape_changes():
    model = get_model("resnet18")
    has = [len(b.shortcut) > 0 for b in model.blocks]
    assert has == [False, False, True, False, True, False, True, False]
    assert len(default_widths("resnet18")) == 17


def test_surgery_equals_masking():
    torch.manual_seed(0)
    model = get_model("resnet18", 10, [8] + [w for s in (8, 16, 16, 32) for _ in range(2) for w in (s, s)], 1)
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    keep = {2: torch.tensor([0, 3, 5]), 12: torch.tensor([1, 2]), 16: torch.tensor([7])}
    pruned = prune_filters(model, keep).eval()
    x = torch.randn(2, 1, 32, 32)
    assert torch.allclose(pruned(x), mask_filters(model, keep)(x), atol=1e-5)
    assert pruned.widths[1] == 3 and pruned.widths[11] == 2


def test_surgery_refuses_residual_layers():
    model = get_model("resnet18")
    with pytest.raises(ValueError, match="residual"):
        prune_filters(model, {3: torch.tensor([0])})
