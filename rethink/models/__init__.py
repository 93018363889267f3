"""Model registry: ``get_model(name, num_classes=10, widths=None, in_channels=3)``.

Every model is built from ``widths`` (architecture is data) and carries ``.arch`` and ``.widths`` so that a
checkpoint {arch, num_classes, in_channels, widths, state_dict} rebuilds it exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch.nn as nn

from ..config import known
from ..registry import Registry

@dataclass(frozen=True)
class ConvLayer:
    """One conv layer as pruning sees it: ``id`` counts convs from 1 in forward order; ``conv``/``bn`` are
    module names; ``consumers`` are the modules whose input channels are this conv's output channels;
    ``width_index`` is its position in ``widths``; ``prunable`` says whether its output channels may be cut
    (a conv whose output feeds a residual sum may not)."""
    id: int
    conv: str
    bn: str
    consumers: tuple
    width_index: int
    prunable: bool


MODELS: Registry = Registry("arch")
register_model = MODELS.register


def get_model(name: str, num_classes: Optional[int] = None, widths: Optional[Sequence] = None,
              in_channels: int = 3) -> nn.Module:
    """Build a registered architecture; ``widths=None`` gives the unpruned default widths, ``num_classes=None`` the
    family's default number of classes (10 for the CIFAR families, 1000 for the ImageNet ones)."""
    family = MODELS.get(name)
    if num_classes is None:
        num_classes = getattr(family, "num_classes", 10)
    model = family.build(widths=list(widths) if widths is not None else list(family.default_widths),
                         num_classes=num_classes, in_channels=in_channels)
    model.arch = name
    model.num_classes = num_classes
    model.in_channels = in_channels
    return model


def default_widths(name: str) -> list:
    return list(MODELS.get(name).default_widths)


def scale_widths(widths: Sequence, mult: float, arch: Optional[str] = None) -> list:
    """One width multiplier for a whole architecture (ints scaled, 'M' kept); never below one channel, except that a
    0 (a removed block of a shallower ResNet) stays 0.  With ``arch``, a family that defines its own
    ``scale_widths`` (DenseNet: widths tied by concatenation) does it."""
    if mult == 1.0:
        return list(widths)
    if arch is not None and hasattr(MODELS.get(arch), "scale_widths"):
        return MODELS.get(arch).scale_widths(list(widths), mult)
    return [w if isinstance(w, str) or w == 0 else max(1, int(round(w * mult))) for w in widths]


def list_models() -> list[str]:
    return MODELS.names()


def published_widths(name: str) -> tuple[str, list]:
    """(arch, widths) of a pruned architecture the papers publish as widths (e.g. "vgg16-5x", ThiNet's "vgg-gap" and
    "thinet-30", "resnet50-2x", SSS's "resnet-26"), for ``get_model(arch, widths=widths)``.  Li et al.'s variants are not here: they are L1-norm pruning settings
    (``rethink.prune.l1_norm.VARIANTS``)."""
    from .resnet_imagenet import PUBLISHED_WIDTHS as resnets
    from .vgg_imagenet import PUBLISHED_WIDTHS as vggs
    table = {**vggs, **resnets}
    if name not in table:
        raise known("published architecture", name, table)
    arch, widths = table[name]
    return arch, list(widths)


from . import densenet, preresnet, resnet, resnet18, resnet_imagenet, vgg, vgg_imagenet  # noqa: E402,F401  (registration side effects)
