"""CIFAR DenseNet without bottleneck and without compression (Huang et al. 2017), as in the Network Slimming code
(Liu et al. 2017): DenseNet-40 has a 3x3 stem of 2 x growth channels, 3 dense blocks of 12 layers
(BN -> select -> ReLU -> conv3x3 with ``growth`` outputs, concatenated to its input), transitions BN -> select ->
ReLU -> conv1x1 -> avgpool 2 between the blocks, and the head BN -> select -> ReLU -> global average pool -> FC.
BN scales start at 0.5 and convs are He-normal (fan_out), as in the official code.

``widths`` lists, in forward order: the stem's output channels; for every dense layer [selected, growth] (the
channels its selection keeps, its conv's output channels); for every transition [selected, output]; last the
channels the head's selection keeps.  Slimming prunes only selections: every conv output is concatenated into
the dense stream, so no conv is cut (all conv layers are ``prunable=False``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ConvLayer, register_model
from .selection import ChannelSelection, Selection, slimming_init


class DenseLayer(nn.Module):
    def __init__(self, cin: int, sel: int, growth: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.select = ChannelSelection(cin, sel)
        self.conv = nn.Conv2d(sel, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(self.select(self.bn(x))))], 1)


class Transition(nn.Module):
    def __init__(self, cin: int, sel: int, cout: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.select = ChannelSelection(cin, sel)
        self.conv = nn.Conv2d(sel, cout, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.select(self.bn(x)))), 2)


def _layout(depth: int) -> list[str]:
    """The kinds of the modules of ``features`` in order: 'layer' (dense) or 'trans'."""
    n = (depth - 4) // 3
    return ["layer"] * n + ["trans"] + ["layer"] * n + ["trans"] + ["layer"] * n


class DenseNet(nn.Module):
    def __init__(self, depth: int, widths: list, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        kinds = _layout(depth)
        if len(widths) != 2 + 2 * len(kinds):
            raise ValueError(f"densenet{depth} needs {2 + 2 * len(kinds)} widths (stem, 2 per layer and "
                             f"transition, head), got {len(widths)}")
        if not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ValueError(f"densenet widths must be positive ints, got {widths}")
        self.depth, self.widths = depth, list(widths)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        mods, c = [], widths[0]
        for i, kind in enumerate(kinds):
            sel, out = widths[1 + 2 * i], widths[2 + 2 * i]
            if sel > c:
                raise ValueError(f"features.{i}: selects {sel} of its {c} input channels")
            mods.append(DenseLayer(c, sel, out) if kind == "layer" else Transition(c, sel, out))
            c = c + out if kind == "layer" else out
        if widths[-1] > c:
            raise ValueError(f"head selects {widths[-1]} of {c} channels")
        self.features = nn.Sequential(*mods)
        self.bn = nn.BatchNorm2d(c)
        self.select = ChannelSelection(c, widths[-1])
        self.fc = nn.Linear(widths[-1], num_classes)
        slimming_init(self)  # the slimming code: BN scales start at 0.5 in this family

    def forward(self, x):
        x = F.relu(self.select(self.bn(self.features(self.conv1(x)))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))  # = avgpool 8 on 32x32 inputs

    def conv_layers(self) -> list[ConvLayer]:
        nf = len(self.features)
        nxt_bn = [f"features.{i + 1}.bn" if i + 1 < nf else "bn" for i in range(nf)]
        layers = [ConvLayer(1, "conv1", "features.0.bn", (), 0, prunable=False)]
        for i in range(nf):
            layers.append(ConvLayer(i + 2, f"features.{i}.conv", nxt_bn[i], (), 2 + 2 * i, prunable=False))
        return layers

    def selections(self) -> list[Selection]:
        sel = [Selection(f"features.{i}.select", f"features.{i}.bn", f"features.{i}.conv", 1 + 2 * i)
               for i in range(len(self.features))]
        return sel + [Selection("select", "bn", "fc", len(self.widths) - 1)]


class _Family:
    def __init__(self, depth: int, growth: int = 12):
        if (depth - 4) % 3:
            raise ValueError("DenseNet depth must be 3n+4")
        self.depth, self.growth = depth, growth
        self.default_widths = self.widths_for(2 * growth, growth)

    def widths_for(self, stem: int, growth: int) -> list:
        """Unpruned widths: every selection keeps all its input channels; transitions keep the width."""
        widths, c = [stem], stem
        for kind in _layout(self.depth):
            widths += [c, growth if kind == "layer" else c]
            c = c + growth if kind == "layer" else c
        return widths + [c]

    def scale_widths(self, widths: list, mult: float) -> list:
        """A width multiplier for the unpruned network scales the stem and the growth rate; scaling each
        selection's count on its own would not match the concatenated widths (round(36m) != round(24m) +
        round(12m))."""
        if list(widths) != self.default_widths:
            raise ValueError("only the unpruned densenet widths can be scaled")
        return self.widths_for(max(1, round(2 * self.growth * mult)), max(1, round(self.growth * mult)))

    def build(self, widths, num_classes, in_channels):
        return DenseNet(self.depth, widths, num_classes, in_channels)


register_model("densenet40")(_Family(40))
