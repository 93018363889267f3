"""CIFAR VGG (Liu et al. 2019 / Li et al. 2017 code): conv3x3 (no bias) -> BN -> ReLU, 'M' = maxpool 2,
then avgpool 2 and Linear(C, 512) -> BN1d -> ReLU -> Linear(512, classes).

``widths`` is the cfg list, e.g. [64, 64, 'M', 128, ...]; conv layers are counted from 1 in that order.
"""
from __future__ import annotations

import torch.nn as nn

from . import ConvLayer, register_model
from .selection import slimming_init

CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class VGG(nn.Module):
    def __init__(self, widths: list, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if sum(1 for w in widths if w == "M") != 4:
            raise ValueError("CIFAR VGG widths need exactly four 'M' (32 -> 2, then avgpool 2)")
        self.widths = list(widths)
        layers, c = [], in_channels
        for w in widths:
            if w == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(c, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                        nn.Linear(512, num_classes))
        for m in self.modules():  # He init as in the papers' code
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))

    def conv_layers(self) -> list[ConvLayer]:
        mods = list(self.features)
        pos = [i for i, m in enumerate(mods) if isinstance(m, nn.Conv2d)]
        wpos = [i for i, w in enumerate(self.widths) if w != "M"]
        return [ConvLayer(id=k + 1, conv=f"features.{p}", bn=f"features.{p + 1}",
                          consumers=(f"features.{pos[k + 1]}",) if k + 1 < len(pos) else ("classifier.0",),
                          width_index=wpos[k], prunable=True)
                for k, p in enumerate(pos)]


class _Family:
    def __init__(self, cfg):
        self.default_widths = cfg

    def build(self, widths, num_classes, in_channels):
        return VGG(widths, num_classes, in_channels)


for _name, _cfg in CFGS.items():
    register_model(_name)(_Family(_cfg))


class SlimVGG(VGG):
    """VGG of the Network Slimming code (Liu et al. 2017): the same conv stack and avgpool 2, then a
    single Linear(C, classes); BN scales start at 0.5 and the Linear at N(0, 0.01), as in that code."""

    def __init__(self, widths: list, num_classes: int = 10, in_channels: int = 3):
        super().__init__(widths, num_classes, in_channels)
        c = [w for w in widths if w != "M"][-1]
        self.classifier = nn.Sequential(nn.Linear(c, num_classes))  # classifier.0: the last conv's consumer
        slimming_init(self, convs=False)  # the convs keep VGG's initialisation
        nn.init.normal_(self.classifier[0].weight, 0, 0.01)
        nn.init.zeros_(self.classifier[0].bias)


class _SlimFamily(_Family):
    def build(self, widths, num_classes, in_channels):
        return SlimVGG(widths, num_classes, in_channels)


register_model("vgg19-slim")(_SlimFamily(CFGS["vgg19"]))
