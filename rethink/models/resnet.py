"""CIFAR ResNets of BasicBlocks: ResNet-20/32/56/110 (He et al. 2016, option A: stage widths 16/32/64 and the
parameter-free shortcut, stride-2 subsample + zero-padded channels, as in Li et al. 2017 / Liu et al. 2019), and
ResNet-18 (resnet18.py: four stages, 1x1 conv + BN projection shortcuts where the shape changes).

``widths`` lists the output channels of every main-path conv in layer-id order: id 1 is the stem, block b (counted
from 0 over the whole network) has conv ids 2+2b (its first conv, the only one L1-norm pruning touches) and 3+2b
(its second conv, whose width is the stage width because of the residual sum).  Projection shortcut convs are not
in ``widths``; ``conv_layers`` lists them after the main path.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ConvLayer, register_model


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) [* scale] + shortcut(x)); ``mid == 0``: relu(shortcut(x)) alone (a
    removed block: what the block computes when its branch's scale is 0)."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, projection: bool = False):
        super().__init__()
        self.has_branch = mid > 0
        if self.has_branch:
            self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(mid)
            self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
        self.scale = None  # an nn.Parameter (0-dim) after add_scale(): SSS's factor on the residual branch
        self.stride, self.pad = stride, cout - cin
        # Option B (ResNet-18): 1x1 conv + BN where the shape changes; option A: no parameters (see _shortcut).
        self.shortcut = nn.Sequential()
        if projection and (stride != 1 or cin != cout):
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def _shortcut(self, x):
        if len(self.shortcut):
            return self.shortcut(x)
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, 0, self.pad))  # zero channels appended: no parameters
        return x

    def add_scale(self, value: float = 1.0) -> None:
        """Register the residual branch's scalar factor (SSS), initialised to ``value``."""
        if not self.has_branch:
            raise ValueError("a block without a residual branch has no branch to scale")
        if self.scale is None:
            p = self.conv2.weight
            self.scale = nn.Parameter(torch.full((), float(value), device=p.device, dtype=p.dtype))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint of a model trained with scales (SSS) holds them: register before loading, so that
        # get_model(arch, widths) + load_state_dict rebuilds it
        if self.scale is None and prefix + "scale" in state_dict and self.has_branch:
            self.add_scale()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        if not self.has_branch:
            return F.relu(self._shortcut(x))
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.scale is not None:
            out = out * self.scale
        return F.relu(out + self._shortcut(x))


class CifarResNet(nn.Module):
    """``stages`` blocks per stage, stage strides ``strides``; ``projection`` selects option B shortcuts."""

    def __init__(self, name: str, stages: tuple, strides: tuple, widths: list, num_classes: int = 10,
                 in_channels: int = 3, projection: bool = False):
        super().__init__()
        n_blocks = sum(stages)
        if (len(widths) != 1 + 2 * n_blocks or any(isinstance(w, str) for w in widths)
                or any(w < (0 if i % 2 == 1 else 1) for i, w in enumerate(widths))):
            raise ValueError(f"{name} needs {1 + 2 * n_blocks} widths (one per main-path conv), positive except "
                             f"a block's first (0: the block has no residual branch), got {widths}")
        self.widths = list(widths)
        firsts = [sum(stages[:s]) for s in range(len(stages))]  # index of each stage's first block
        if not projection:  # a parameter-free shortcut only pads: the stage's outputs must all be equal
            outs = [widths[0]] + [widths[2 + 2 * b] for b in range(n_blocks)]  # stem and each block's output
            for s, first in enumerate(firsts):
                w = set(outs[1 + first:1 + first + stages[s]])
                if len(w) != 1 or (s == 0 and widths[0] not in w):
                    raise ValueError("the second conv of every block in a stage (and the stem for stage 1) must "
                                     "have the same width: the residual sum adds them")
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        blocks, cin = [], widths[0]
        for b in range(n_blocks):
            stride = strides[firsts.index(b)] if b in firsts else 1
            blocks.append(BasicBlock(cin, widths[1 + 2 * b], widths[2 + 2 * b], stride, projection))
            cin = widths[2 + 2 * b]
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))  # = avgpool 8 (4 for ResNet-18) on 32x32

    def conv_layers(self) -> list[ConvLayer]:
        """Main-path convs with ids 1, 2, ... in forward order (blocks without a branch have none), then the
        projection shortcuts (not prunable)."""
        layers = [ConvLayer(1, "conv1", "bn1", (), 0, prunable=False)]
        for b, block in enumerate(self.blocks):
            if not block.has_branch:
                continue
            first, second = len(layers) + 1, len(layers) + 2
            layers.append(ConvLayer(first, f"blocks.{b}.conv1", f"blocks.{b}.bn1", (f"blocks.{b}.conv2",),
                                    1 + 2 * b, prunable=True))
            layers.append(ConvLayer(second, f"blocks.{b}.conv2", f"blocks.{b}.bn2", (), 2 + 2 * b,
                                    prunable=False))
        for b, block in enumerate(self.blocks):
            if len(block.shortcut):
                # width_index: the block's second conv, whose width the shortcut must match
                layers.append(ConvLayer(len(layers) + 1, f"blocks.{b}.shortcut.0", f"blocks.{b}.shortcut.1", (),
                                        2 + 2 * b, prunable=False))
        return layers

    def add_block_scales(self, value: float = 1.0) -> "CifarResNet":
        """Give every block with a residual branch its scalar factor (SSS); returns the model (in place)."""
        for block in self.blocks:
            if block.has_branch:
                block.add_scale(value)
        return self

    def block_scales(self) -> dict:
        """{block index: its residual branch's factor (0-dim Parameter)} of the blocks that have one."""
        return {b: block.scale for b, block in enumerate(self.blocks) if block.scale is not None}


class Family:
    """A registered CIFAR ResNet: its stage layout, strides, shortcut type and default widths."""

    def __init__(self, name: str, stage_widths: tuple, stages: tuple, strides: tuple, projection: bool = False):
        self.name, self.stages, self.strides, self.projection = name, stages, strides, projection
        self.default_widths = [stage_widths[0]] + [w for s, n in zip(stage_widths, stages) for _ in range(n)
                                                   for w in (s, s)]

    def build(self, widths, num_classes, in_channels):
        return CifarResNet(self.name, self.stages, self.strides, widths, num_classes, in_channels, self.projection)


for _d in (20, 32, 56, 110):
    _n = (_d - 2) // 6
    register_model(f"resnet{_d}")(Family(f"resnet{_d}", (16, 32, 64), (_n, _n, _n), (1, 2, 2)))
