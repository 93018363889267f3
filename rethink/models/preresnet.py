"""CIFAR pre-activation ResNet with bottleneck blocks (He et al. 2016, "Identity mappings"), as in the Network
Slimming code (Liu et al. 2017): depth 9n+2, stage planes 16/32/64, expansion 4, a 1x1 conv shortcut
(no BN) where the width or the stride changes, and a channel selection after each block's first BN.

Block: BN1 -> select -> ReLU -> conv1 (1x1) -> BN2 -> ReLU -> conv2 (3x3, stride) -> BN3 -> ReLU -> conv3 (1x1),
plus the shortcut; the head is BN -> select -> ReLU -> global average pool -> FC.  BN scales start at 0.5 and
convs are He-normal (fan_out), as in the official code.

``widths`` = [stem] + per block [selected, conv1, conv2, conv3] + [head selected]: the stem's output channels,
then for every block the channels its selection keeps, the output channels of conv1 and conv2, and of conv3
(the residual width, equal in all blocks of a stage), and last the channels the head's selection keeps.
Slimming prunes conv1/conv2 outputs and the selections; conv3 and the stem feed residual sums and stay.
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from . import ConvLayer, register_model
from .selection import ChannelSelection, Selection, slimming_init


class Bottleneck(nn.Module):
    def __init__(self, cin: int, sel: int, c1: int, c2: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.select = ChannelSelection(cin, sel)
        self.conv1 = nn.Conv2d(sel, c1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, cout, 1, bias=False)
        self.downsample = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = self.conv1(F.relu(self.select(self.bn1(x))))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


def _split(widths: list, depth: int) -> tuple[int, list, int]:
    """widths -> (stem, [(sel, c1, c2, c3) per block], head selected), checked."""
    n = (depth - 2) // 9
    if len(widths) != 2 + 12 * n:
        raise ValueError(f"preresnet{depth} needs {2 + 12 * n} widths (stem, 4 per block, head), got {len(widths)}")
    if not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ValueError(f"preresnet widths must be positive ints, got {widths}")
    blocks = [tuple(widths[1 + 4 * b: 5 + 4 * b]) for b in range(3 * n)]
    for s in range(3):
        if len({blocks[s * n + i][3] for i in range(n)}) != 1:
            raise ValueError(f"stage {s + 1}: conv3 widths must be equal in all blocks (the residual sum adds them)")
    cin = widths[0]
    for b, (sel, _, _, c3) in enumerate(blocks):
        if sel > cin:
            raise ValueError(f"block {b}: selects {sel} of its {cin} input channels")
        cin = c3
    if widths[-1] > cin:
        raise ValueError(f"head selects {widths[-1]} of {cin} channels")
    return widths[0], blocks, widths[-1]


class PreResNet(nn.Module):
    def __init__(self, depth: int, widths: list, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.depth, self.widths = depth, list(widths)
        n = (depth - 2) // 9
        stem, blocks, head = _split(self.widths, depth)
        self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        layers, cin = [], stem
        for b, (sel, c1, c2, c3) in enumerate(blocks):
            layers.append(Bottleneck(cin, sel, c1, c2, c3, 2 if b in (n, 2 * n) else 1))
            cin = c3
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.select = ChannelSelection(cin, head)
        self.fc = nn.Linear(head, num_classes)
        slimming_init(self)  # Network Slimming's code starts all BN scales at 0.5

    def forward(self, x):
        x = self.blocks(self.conv1(x))
        x = F.relu(self.select(self.bn(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))  # = avgpool 8 on 32x32 inputs

    def conv_layers(self) -> list[ConvLayer]:
        nb = len(self.blocks)
        # the BN that next normalises the residual stream, after block b's sum
        after = [f"blocks.{b + 1}.bn1" if b + 1 < nb else "bn" for b in range(nb)]
        layers = [ConvLayer(1, "conv1", "blocks.0.bn1", (), 0, prunable=False)]
        for b, block in enumerate(self.blocks):
            base, p = 1 + 4 * b, f"blocks.{b}"
            nxt = len(layers) + 1
            layers += [ConvLayer(nxt, f"{p}.conv1", f"{p}.bn2", (f"{p}.conv2",), base + 1, prunable=True),
                       ConvLayer(nxt + 1, f"{p}.conv2", f"{p}.bn3", (f"{p}.conv3",), base + 2, prunable=True),
                       ConvLayer(nxt + 2, f"{p}.conv3", after[b], (), base + 3, prunable=False)]
            if block.downsample is not None:
                layers.append(ConvLayer(nxt + 3, f"{p}.downsample", after[b], (), base + 3, prunable=False))
        return layers

    def selections(self) -> list[Selection]:
        sel = [Selection(f"blocks.{b}.select", f"blocks.{b}.bn1", f"blocks.{b}.conv1", 1 + 4 * b)
               for b in range(len(self.blocks))]
        return sel + [Selection("select", "bn", "fc", len(self.widths) - 1)]


class _Family:
    def __init__(self, depth: int):
        if (depth - 2) % 9:
            raise ValueError("pre-activation bottleneck ResNet depth must be 9n+2")
        n = (depth - 2) // 9
        self.depth = depth
        widths, cin = [16], 16
        for planes in (16, 32, 64):
            for _ in range(n):
                widths += [cin, planes, planes, 4 * planes]
                cin = 4 * planes
        self.default_widths = widths + [cin]

    def build(self, widths, num_classes, in_channels):
        return PreResNet(self.depth, widths, num_classes, in_channels)


# 164 is the paper's; 56 and 110 (n = 6, 12) are shallower versions for CPU runs.
for _d in (56, 110, 164):
    register_model(f"preresnet{_d}")(_Family(_d))
