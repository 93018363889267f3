"""CIFAR ResNet-20/32/56/110 (He et al. 2016, option A): BasicBlock, stage widths 16/32/64, and the
parameter-free shortcut (stride-2 subsample + zero-padded channels), as in Li et al. 2017 / Liu et al. 2019.

``widths`` lists the output channels of every conv in layer-id order: id 1 is the stem, block b (counted from 0
over the whole network) has conv ids 2+2b (its first conv, the only one L1-norm pruning touches) and 3+2b (its
second conv, whose width is the stage width because of the residual sum).
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from . import ConvLayer, register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def shortcut(self, x):
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, 0, self.pad))  # zero channels appended: no parameters
        return x

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, widths: list, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        n = (depth - 2) // 6
        if len(widths) != 1 + 6 * n:
            raise ValueError(f"resnet{depth} needs {1 + 6 * n} widths (one per conv), got {len(widths)}")
        self.widths = list(widths)
        stage = [widths[0]] + [widths[2 + 2 * b] for b in range(3 * n)]  # outputs of stem and each block
        for s in range(3):
            w = {stage[1 + s * n + i] for i in range(n)}
            if len(w) != 1 or (s == 0 and widths[0] not in w):
                raise ValueError("the second conv of every block in a stage (and the stem for stage 1) must have "
                                 "the same width: the residual sum adds them")
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        blocks, cin = [], widths[0]
        for b in range(3 * n):
            stride = 2 if b in (n, 2 * n) else 1
            blocks.append(BasicBlock(cin, widths[1 + 2 * b], widths[2 + 2 * b], stride))
            cin = widths[2 + 2 * b]
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))  # = avgpool 8 on 32x32 inputs


    def conv_layers(self) -> list[ConvLayer]:
        layers = [ConvLayer(1, "conv1", "bn1", (), 0, prunable=False)]
        for b in range(len(self.blocks)):
            first, second = 2 + 2 * b, 3 + 2 * b
            layers.append(ConvLayer(first, f"blocks.{b}.conv1", f"blocks.{b}.bn1", (f"blocks.{b}.conv2",),
                                    first - 1, prunable=True))
            layers.append(ConvLayer(second, f"blocks.{b}.conv2", f"blocks.{b}.bn2", (), second - 1,
                                    prunable=False))
        return layers


class _Family:
    def __init__(self, depth):
        n = (depth - 2) // 6
        self.depth = depth
        self.default_widths = [16] + [w for s in (16, 32, 64) for _ in range(n) for w in (s, s)]

    def build(self, widths, num_classes, in_channels):
        return CifarResNet(self.depth, widths, num_classes, in_channels)


for _d in (20, 32, 56, 110):
    register_model(f"resnet{_d}")(_Family(_d))
