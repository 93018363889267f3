"""CIFAR ResNet-18 (He et al. 2016; the CIFAR form used by Huang et al. 2021 and common CIFAR code): a 3x3 stem
conv (stride 1, no max-pool), four stages of two BasicBlocks with widths 64-128-256-512 (strides 1, 2, 2, 2),
global average pooling and one Linear.  A block whose input and output shapes differ (stride 2 or a change of
width) adds its input through a projection shortcut, 1x1 conv (stride s, no bias) + BN.

Layer-counting convention (used for "the 12th conv" of Huang et al.'s Figure 1): conv layer ids count the 17
main-path 3x3 convs from 1 in forward order -- id 1 is the stem, block b (0..7 over the whole network) has ids
2 + 2b (its first conv) and 3 + 2b (its second).  The 1x1 projection shortcut convs are EXCLUDED from that
count, as the "18" in the name excludes them (17 convs + 1 Linear); they are listed after the main path with ids
18, 19, 20 (stages 2, 3, 4).  So the 12th conv is the first conv of the second block of stage 3 (256 filters).

``widths`` lists the output channels of the 17 main-path convs in id order; a shortcut's width is that of its
block's second conv.  Only the first conv of each block is prunable: the others feed a residual sum.
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from . import ConvLayer, register_model

STAGES = (64, 128, 256, 512)
STRIDES = (1, 2, 2, 2)
BLOCKS_PER_STAGE = 2


class BasicBlock(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()  # identity
        if stride != 1 or cin != cout:  # shape changes: 1x1 conv + BN projection
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet18(nn.Module):
    def __init__(self, widths: list, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        n_blocks = len(STAGES) * BLOCKS_PER_STAGE
        if len(widths) != 1 + 2 * n_blocks or any(isinstance(w, str) or w < 1 for w in widths):
            raise ValueError(f"resnet18 needs {1 + 2 * n_blocks} positive widths (one per main-path conv), "
                             f"got {widths}")
        self.widths = list(widths)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        blocks, cin = [], widths[0]
        for b in range(n_blocks):
            stage, first_in_stage = divmod(b, BLOCKS_PER_STAGE)
            stride = STRIDES[stage] if first_in_stage == 0 else 1
            blocks.append(BasicBlock(cin, widths[1 + 2 * b], widths[2 + 2 * b], stride))
            cin = widths[2 + 2 * b]
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))  # = avgpool 4 on 32x32 inputs

    def conv_layers(self) -> list[ConvLayer]:
        """Main-path convs with ids 1..17 in forward order, then the projection shortcuts (ids 18, 19, ...)."""
        layers = [ConvLayer(1, "conv1", "bn1", (), 0, prunable=False)]
        for b in range(len(self.blocks)):
            first, second = 2 + 2 * b, 3 + 2 * b
            layers.append(ConvLayer(first, f"blocks.{b}.conv1", f"blocks.{b}.bn1", (f"blocks.{b}.conv2",),
                                    first - 1, prunable=True))
            layers.append(ConvLayer(second, f"blocks.{b}.conv2", f"blocks.{b}.bn2", (), second - 1, prunable=False))
        next_id = len(layers) + 1
        for b, block in enumerate(self.blocks):
            if len(block.shortcut):
                # width_index: the block's second conv, whose width the shortcut must match
                layers.append(ConvLayer(next_id, f"blocks.{b}.shortcut.0", f"blocks.{b}.shortcut.1", (), 2 + 2 * b,
                                        prunable=False))
                next_id += 1
        return layers


class _Family:
    default_widths = [STAGES[0]] + [w for s in STAGES for _ in range(BLOCKS_PER_STAGE) for w in (s, s)]

    def build(self, widths, num_classes, in_channels):
        return CifarResNet18(widths, num_classes, in_channels)


register_model("resnet18")(_Family())
