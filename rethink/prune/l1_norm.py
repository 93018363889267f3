"""L1-norm filter pruning (Li, Kadav, Durdanovic, Samet, Graf, "Pruning Filters for Efficient ConvNets",
ICLR 2017), the predefined method of Liu et al. 2019's Table 1.

Score of a filter = sum of |w|; per layer keep the int(C * (1 - prune_ratio)) largest and copy them into a
physically smaller model.  The published variants fix which layers are pruned and by how much.
"""
from __future__ import annotations

import torch.nn as nn

from ..config import ConfigError, known
from . import PruneResult, register_method
from .criteria import l1
from .select import select_layerwise
from .surgery import prune_filters


def _resnet(depth: int, stage_ratios: tuple, skip: tuple):
    n = (depth - 2) // 6

    def ratios(model):
        # first conv of block b has id 2 + 2b; its stage is b // n
        return {2 + 2 * b: 0.0 if 2 + 2 * b in skip else stage_ratios[b // n] for b in range(3 * n)}
    return f"resnet{depth}", ratios


def _resnet34(stage_ratios: tuple, skip: tuple):
    """ImageNet ResNet-34 (3, 4, 6, 3 BasicBlocks): the first conv of block b has id 2 + 2b, as in Li et al.'s and
    Liu et al.'s pruning code, which counts the 3x3 convs from the stem and skips the 1x1 shortcuts."""
    stage = [s for s, n in enumerate((3, 4, 6, 3)) for _ in range(n)]  # block -> stage

    def ratios(model):
        return {2 + 2 * b: 0.0 if 2 + 2 * b in skip else stage_ratios[s] for b, s in enumerate(stage)}
    return "resnet34", ratios


# name -> (arch, model -> {conv layer id: prune_ratio}); Li et al. 2017 Table 1/2.
VARIANTS = {
    # conv1 and conv8-13 halved
    "vgg16-a": ("vgg16", lambda model: {i: 0.5 for i in (1, 8, 9, 10, 11, 12, 13)}),
    "resnet56-a": _resnet(56, (0.1, 0.1, 0.1), (16, 20, 38, 54)),
    "resnet56-b": _resnet(56, (0.6, 0.3, 0.1), (16, 18, 20, 34, 38, 54)),
    "resnet110-a": _resnet(110, (0.5, 0.0, 0.0), (36,)),
    "resnet110-b": _resnet(110, (0.5, 0.4, 0.3), (36, 38, 74)),
    # ImageNet (Liu et al.'s imagenet/l1-norm-pruning/prune.py): the first and last block of stages 2-3, the first
    # of stage 1 and all of stage 4 are skipped
    "resnet34-a": _resnet34((0.3, 0.3, 0.3, 0.0), (2, 8, 14, 16, 26, 28, 30, 32)),
    "resnet34-b": _resnet34((0.5, 0.6, 0.4, 0.0), (2, 8, 14, 16, 26, 28, 30, 32)),
}


def list_variants(arch: str | None = None) -> list[str]:
    return sorted(v for v, (a, _) in VARIANTS.items() if arch is None or a == arch)


def layer_ratios(model: nn.Module, variant: str | None = None, prune_ratio: float | None = None) -> dict:
    """{conv layer id: prune_ratio} of a published variant, or ``prune_ratio`` on every prunable layer."""
    if (variant is None) == (prune_ratio is None):
        raise ConfigError("give exactly one of variant (e.g. 'vgg16-a') and prune_ratio")
    if variant is not None:
        if variant not in VARIANTS:
            raise known("variant", variant, VARIANTS)
        arch, ratios = VARIANTS[variant]
        if arch != model.arch:
            raise ConfigError(f"variant {variant!r} is for {arch}, not {model.arch}; variants for {model.arch}: "
                              f"{', '.join(list_variants(model.arch)) or 'none (use prune_ratio)'}")
        return ratios(model)
    if not 0.0 <= prune_ratio < 1.0:
        raise ConfigError(f"prune_ratio must be in [0, 1): it is the fraction of filters removed; got {prune_ratio}")
    return {layer.id: prune_ratio for layer in model.conv_layers() if layer.prunable}


@register_method("l1-norm")
def l1_norm(model: nn.Module, variant: str | None = None, prune_ratio: float | None = None) -> PruneResult:
    """Prune ``model`` by the L1 norm of its filters, as a published ``variant`` or a uniform ``prune_ratio``."""
    ratios = layer_ratios(model, variant, prune_ratio)
    layers = {layer.id: layer for layer in model.conv_layers()}
    modules = dict(model.named_modules())
    scores = {lid: l1(modules[layers[lid].conv].weight) for lid, r in ratios.items() if r > 0}
    keep, clamped = select_layerwise(scores, ratios, {lid: layers[lid].conv for lid in scores})
    pruned = prune_filters(model, keep)
    return PruneResult(model=pruned, widths=list(pruned.widths), keep=keep, clamped=clamped)


l1_norm.predefined = True  # widths from the ratios alone (see rethink.prune)
