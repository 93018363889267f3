"""ImageNet ResNets (He et al. 2016) in torchvision's layout: ResNet-18/34 (BasicBlocks) and ResNet-50 (Bottlenecks,
stride on the 3x3 conv as torchvision has it, "v1.5"), built from ``widths``.

Module names and tensor shapes are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``,
``fc``), so ``get_model("resnet34", 1000)`` takes the ``state_dict`` of ``torchvision.models.resnet34`` as it is,
and the pruned variants (ResNet-34-A/B of Li et al. 2017, ThiNet's ResNet-50s) are the same network with other
``widths``.  Stem: 7x7 conv stride 2 + BN + ReLU + 3x3 max-pool stride 2; four stages (strides 1, 2, 2, 2); global
average pooling; one Linear.  A block whose input and output shapes differ adds its input through a 1x1 conv
(stride s, no bias) + BN (``downsample``), as torchvision does.

``widths`` lists the output channels of the main-path convs in forward order, which are also the conv layer ids:
id 1 is the stem; with BasicBlocks block b (counted over the whole network from 0) has ids 2 + 2b (its first conv)
and 3 + 2b (its second, whose width is the stage's: it feeds the residual sum); with Bottlenecks block b has ids
2 + 3b, 3 + 3b (1x1 and 3x3, prunable) and 4 + 3b (the 1x1 expansion, tied to the residual sum).  The 1x1
``downsample`` convs are not in ``widths`` (a shortcut's width is its block's output) and ``conv_layers`` lists
them after the main path -- the count of Li et al.'s pruning code, which skips 1x1 convs, so that "layer 2" is
the first conv of the first block and ResNet-34's skipped layers 2, 8, 14, 16, 26, 28, 30, 32 are first convs.
"""
from __future__ import annotations

import torch.nn as nn

from . import ConvLayer, register_model

STAGE_STRIDES = (1, 2, 2, 2)


class BasicBlock(nn.Module):
    """3x3 -> BN -> ReLU -> 3x3 -> BN, + shortcut, ReLU (torchvision's BasicBlock)."""
    n_convs = 2

    def __init__(self, cin: int, widths: list, stride: int):
        super().__init__()
        mid, cout = widths
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1, each with BN, + shortcut, ReLU (torchvision's Bottleneck, stride on the 3x3)."""
    n_convs = 3

    def __init__(self, cin: int, widths: list, stride: int):
        super().__init__()
        w1, w2, cout = widths
        self.conv1 = nn.Conv2d(cin, w1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.conv2 = nn.Conv2d(w1, w2, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(w2)
        self.conv3 = nn.Conv2d(w2, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _downsample(cin: int, cout: int, stride: int):
    if stride == 1 and cin == cout:
        return None  # identity shortcut: torchvision's block holds downsample=None, so no state_dict entries
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ImageNetResNet(nn.Module):
    """``stages`` blocks of type ``block`` per stage; see the module docstring for ``widths``."""

    def __init__(self, name: str, block: type, stages: tuple, widths: list, num_classes: int = 1000,
                 in_channels: int = 3):
        super().__init__()
        k, n_blocks = block.n_convs, sum(stages)
        if len(widths) != 1 + k * n_blocks or any(isinstance(w, str) or w < 1 for w in widths):
            raise ValueError(f"{name} needs {1 + k * n_blocks} positive widths (one per main-path conv), "
                             f"got {len(widths)}")
        self.widths = list(widths)
        self.block_convs = k
        firsts = [sum(stages[:s]) for s in range(len(stages))]
        outs = [widths[k * (b + 1)] for b in range(n_blocks)]  # each block's output (residual) width
        for s, first in enumerate(firsts):
            if len(set(outs[first:first + stages[s]])) != 1:
                raise ValueError(f"{name}: the last conv of every block in stage {s + 1} must have the same width: "
                                 "the residual sum adds them")
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, b = widths[0], 0
        for s, n in enumerate(stages):
            blocks = []
            for i in range(n):
                blocks.append(block(cin, widths[1 + k * b:1 + k * (b + 1)], STAGE_STRIDES[s] if i == 0 else 1))
                cin, b = outs[b], b + 1
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        self.stages = tuple(stages)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """(module name, block) of every block in forward order."""
        return [(f"layer{s + 1}.{i}", blk) for s in range(len(self.stages))
                for i, blk in enumerate(getattr(self, f"layer{s + 1}"))]

    def conv_layers(self) -> list[ConvLayer]:
        """Main-path convs with ids 1, 2, ... in forward order, then the 1x1 downsample convs (not prunable)."""
        k = self.block_convs
        layers = [ConvLayer(1, "conv1", "bn1", (), 0, prunable=False)]
        for b, (name, _) in enumerate(self.blocks()):
            for j in range(1, k + 1):
                lid = 1 + k * b + j
                last = j == k  # feeds the residual sum: its width is the stage's
                layers.append(ConvLayer(lid, f"{name}.conv{j}", f"{name}.bn{j}",
                                        () if last else (f"{name}.conv{j + 1}",), lid - 1, prunable=not last))
        for b, (name, blk) in enumerate(self.blocks()):
            if blk.downsample is not None:
                layers.append(ConvLayer(len(layers) + 1, f"{name}.downsample.0", f"{name}.downsample.1", (),
                                        k * (b + 1), prunable=False))
        return layers

    def shortcut_convs(self) -> list[str]:
        """Names of the 1x1 downsample convs (projection shortcuts), which Li et al.'s counts leave out."""
        return [f"{name}.downsample.0" for name, blk in self.blocks() if blk.downsample is not None]


class Family:
    """A registered ImageNet ResNet: block type, blocks per stage, default widths (torchvision's)."""
    num_classes = 1000  # get_model's default number of classes for this family

    def __init__(self, name: str, block: type, stages: tuple):
        self.name, self.block, self.stages = name, block, stages
        expansion = 4 if block is Bottleneck else 1
        per_block = lambda planes: [planes] * (block.n_convs - 1) + [planes * expansion]  # noqa: E731
        self.default_widths = [64] + [w for s, n in enumerate(stages) for _ in range(n)
                                      for w in per_block(64 * 2 ** s)]

    def build(self, widths, num_classes, in_channels):
        return ImageNetResNet(self.name, self.block, self.stages, widths, num_classes, in_channels)


# torchvision's resnet18 / resnet34 / resnet50; "resnet18" is the CIFAR ResNet-18 (resnet18.py), hence the suffix
register_model("resnet18-imagenet")(Family("resnet18-imagenet", BasicBlock, (2, 2, 2, 2)))
register_model("resnet34")(Family("resnet34", BasicBlock, (3, 4, 6, 3)))
register_model("resnet50")(Family("resnet50", Bottleneck, (3, 4, 6, 3)))
