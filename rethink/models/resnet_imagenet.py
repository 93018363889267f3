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

A block whose convs before its last have width 0 has no residual branch (relu(shortcut(x)): SSS's ResNet-41/32/26,
``PUBLISHED_WIDTHS``); its convs get no ids.  ``resnet50-2x`` adds He et al.'s fixed input-channel selections.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from . import ConvLayer, register_model

STAGE_STRIDES = (1, 2, 2, 2)


class BasicBlock(nn.Module):
    """3x3 -> BN -> ReLU -> 3x3 -> BN, + shortcut, ReLU (torchvision's BasicBlock); widths [0, cout]: no residual
    branch, relu(shortcut(x)) alone (a removed block, as in the CIFAR ResNets)."""
    n_convs = 2

    def __init__(self, cin: int, widths: list, stride: int):
        super().__init__()
        mid, cout = widths
        self.has_branch = mid > 0
        if self.has_branch:
            self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(mid)
            self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x):
        if not self.has_branch:
            return _branchless(self, x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ChannelSelection(nn.Module):
    """Passes on the input channels where ``indexes`` (a 0/1 mask over the ``len(mask)`` input channels) is 1: the
    ``channel_selection`` layer of Liu et al.'s ResNet-50-2x, in front of a block's first conv (He et al. 2017 prune
    the input channels of that conv, not the residual stream it reads).  ``indexes`` is a buffer under the name
    Liu et al.'s checkpoints give it (``layerX.Y.selection.indexes``; theirs is an ``nn.Parameter`` that nothing
    trains: it is read through ``argwhere``); the kept positions are precomputed (``index``, not saved), so that the
    layer also runs on the meta device."""

    def __init__(self, mask: list):
        super().__init__()
        kept = [i for i, v in enumerate(mask) if v]
        self.n_kept = len(kept)
        self.register_buffer("indexes", torch.tensor([float(bool(v)) for v in mask]))
        self.register_buffer("index", torch.tensor(kept, dtype=torch.long), persistent=False)

    def forward(self, x):
        return x.index_select(1, self.index)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1, each with BN, + shortcut, ReLU (torchvision's Bottleneck, stride on the 3x3);
    widths [0, 0, cout]: no residual branch, relu(shortcut(x)) alone (a removed block: Sparse Structure Selection's
    ResNets).  ``select``: a 0/1 mask over the ``cin`` input channels that the first conv reads (ResNet-50-2x)."""
    n_convs = 3

    def __init__(self, cin: int, widths: list, stride: int, select=None):
        super().__init__()
        w1, w2, cout = widths
        if (w1 == 0) != (w2 == 0):
            raise ValueError("a bottleneck's first two convs are both 0 (no residual branch) or both positive, "
                             f"got {widths}")
        self.has_branch = w1 > 0
        if select is not None:
            if len(select) != cin:
                raise ValueError(f"the channel selection needs one entry per input channel ({cin}), got {len(select)}")
            self.selection = ChannelSelection(select)
        if self.has_branch:
            self.conv1 = nn.Conv2d(self.selection.n_kept if select is not None else cin, w1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(w1)
            self.conv2 = nn.Conv2d(w1, w2, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(w2)
            self.conv3 = nn.Conv2d(w2, cout, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x):
        if not self.has_branch:
            return _branchless(self, x)
        out = self.relu(self.bn1(self.conv1(self.selection(x) if hasattr(self, "selection") else x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _branchless(block: nn.Module, x):
    """A block without its residual branch: relu(shortcut(x)); with an identity shortcut that is ``x`` itself (its
    input is a ReLU's output), with a projection the 1x1 conv + BN + ReLU."""
    return x if block.downsample is None else block.relu(block.downsample(x))


def _downsample(cin: int, cout: int, stride: int):
    if stride == 1 and cin == cout:
        return None  # identity shortcut: torchvision's block holds downsample=None, so no state_dict entries
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ImageNetResNet(nn.Module):
    """``stages`` blocks of type ``block`` per stage; see the module docstring for ``widths``."""

    def __init__(self, name: str, block: type, stages: tuple, widths: list, num_classes: int = 1000,
                 in_channels: int = 3, selects: Optional[list] = None):
        super().__init__()
        k, n_blocks = block.n_convs, sum(stages)
        # 0 is allowed in a block's convs before its last: a block without a residual branch (SSS's removed blocks)
        if (len(widths) != 1 + k * n_blocks or any(isinstance(w, str) for w in widths)
                or any(w < (0 if i % k else 1) for i, w in enumerate(widths))):
            raise ValueError(f"{name} needs {1 + k * n_blocks} widths (one per main-path conv), positive except a "
                             f"block's convs before its last (0: the block has no residual branch), got {widths}")
        if selects is not None and (block is not Bottleneck or len(selects) != n_blocks):
            raise ValueError(f"{name}: a channel selection is one mask per bottleneck block ({n_blocks})")
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
                extra = {} if selects is None else {"select": selects[b]}
                blocks.append(block(cin, widths[1 + k * b:1 + k * (b + 1)], STAGE_STRIDES[s] if i == 0 else 1,
                                    **extra))
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
        """Main-path convs with ids 1, 2, ... in forward order (blocks without a residual branch have none), then
        the 1x1 downsample convs (not prunable)."""
        k = self.block_convs
        layers = [ConvLayer(1, "conv1", "bn1", (), 0, prunable=False)]
        for b, (name, blk) in enumerate(self.blocks()):
            if not blk.has_branch:
                continue
            for j in range(1, k + 1):
                last = j == k  # feeds the residual sum: its width is the stage's
                layers.append(ConvLayer(len(layers) + 1, f"{name}.conv{j}", f"{name}.bn{j}",
                                        () if last else (f"{name}.conv{j + 1}",), k * b + j, prunable=not last))
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


# --- the papers' pruned ResNet-50s ------------------------------------------------------------------------------------
# Data from the code of Liu et al. 2019, github.com/Eric-mingjie/rethinking-network-pruning at commit
# 2ac473d70a09810df888e932bb394f225f9ed2d1 ("LIU_CODE" below), turned into our ``widths`` (see the module docstring).
LIU_CODE = "Eric-mingjie/rethinking-network-pruning@2ac473d70a09810df888e932bb394f225f9ed2d1"


def from_liu_cfg(cfg: list) -> list:
    """Liu et al.'s 48-entry ResNet-50 ``cfg`` -> our 49 ``widths``.  Their cfg holds, per block, (the channels its
    first conv reads, that conv's output, the 3x3's output); the 1x1 expansion is always planes * 4 (256, 512, 1024,
    2048), the stem always 64.  The first entry of each triple is the block's input width -- or, in ResNet-50-2x,
    what its channel selection keeps of it (``Bottleneck(select=...)``), which is not a width of ours."""
    if len(cfg) != 48:
        raise ValueError(f"a ResNet-50 cfg has 48 entries, got {len(cfg)}")
    outs = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    return [64] + [w for b, out in enumerate(outs) for w in (cfg[3 * b + 1], cfg[3 * b + 2], out)]


# ThiNet (Luo et al., ICCV 2017): LIU_CODE imagenet/thinet/models/thinetresnet.py, cfg_thinet30/50/70
_CFG_THINET = {
    "thinet-30": [64, 19, 19, 256, 19, 19, 256, 19, 19, 256, 38, 38, 512, 38, 38, 512, 38, 38, 512, 38, 38, 512, 76,
                  76, 1024, 76, 76, 1024, 76, 76, 1024, 76, 76, 1024, 76, 76, 1024, 76, 76, 1024, 153, 153, 2048, 153,
                  153, 2048, 153, 153],
    "thinet-50": [64, 32, 32, 256, 32, 32, 256, 32, 32, 256, 64, 64, 512, 64, 64, 512, 64, 64, 512, 64, 64, 512, 128,
                  128, 1024, 128, 128, 1024, 128, 128, 1024, 128, 128, 1024, 128, 128, 1024, 128, 128, 1024, 256, 256,
                  2048, 256, 256, 2048, 256, 256],
    "thinet-70": [64, 44, 44, 256, 44, 44, 256, 44, 44, 256, 89, 89, 512, 89, 89, 512, 89, 89, 512, 89, 89, 512, 179,
                  179, 1024, 179, 179, 1024, 179, 179, 1024, 179, 179, 1024, 179, 179, 1024, 179, 179, 1024, 358, 358,
                  2048, 358, 358, 2048, 358, 358],
}
# Regression-based channel pruning (He et al., ICCV 2017), "2x": LIU_CODE imagenet/regression-pruning/models/
# resnet_2x.py, cfg_2x (the selections: resnet50_2x_selection.py)
CFG_2X = [35, 64, 55, 101, 51, 39, 97, 50, 37, 144, 128, 106, 205, 105, 72, 198, 105, 72, 288, 128, 110, 278, 256, 225,
          418, 209, 147, 407, 204, 158, 423, 212, 155, 412, 211, 148, 595, 256, 213, 606, 512, 433, 1222, 512, 437, 1147,
          512, 440]
# Sparse Structure Selection (Huang & Wang, ECCV 2018): ResNet-41/32/26 of ResNet-50's 16 blocks keep 13/10/8.
# LIU_CODE imagenet/sparse-structure-selection/README.md gives them per stage as (a, b): the stage keeps a blocks
# with a residual branch, b = whether its first block (the one with the projection shortcut) is one of them; a
# first block without its branch keeps the projection (1x1 conv + BN, stride), as SSS's code computes it.  Which of
# the other (identical, identity-shortcut) blocks keep theirs does not change the network: we keep the first ones.
SSS_UNITS = {
    "resnet-41": [(0, False), (4, True), (6, True), (3, True)],
    "resnet-32": [(1, False), (4, True), (4, True), (1, True)],
    "resnet-26": [(0, False), (2, False), (5, False), (1, True)],
}


def sss_widths(units: list, stages: tuple = (3, 4, 6, 3)) -> list:
    """ResNet-50's widths with SSS's removed blocks as [0, 0, out] (``units``: see SSS_UNITS)."""
    widths = [64]
    for s, ((a, first), n) in enumerate(zip(units, stages)):
        planes = 64 * 2 ** s
        kept = [first] + [i < a - int(first) for i in range(n - 1)]
        if sum(kept) != a:
            raise ValueError(f"stage {s + 1}: {a} blocks with a branch do not fit its {n} blocks")
        widths += [w for k in kept for w in ((planes, planes) if k else (0, 0)) + (4 * planes,)]
    return widths


PUBLISHED_WIDTHS = {name: ("resnet50", from_liu_cfg(cfg)) for name, cfg in _CFG_THINET.items()}
PUBLISHED_WIDTHS["resnet50-2x"] = ("resnet50-2x", from_liu_cfg(CFG_2X))
PUBLISHED_WIDTHS.update({name: ("resnet50", sss_widths(units)) for name, units in SSS_UNITS.items()})


class SelectionFamily(Family):
    """ResNet-50-2x: ResNet-50 whose bottlenecks' first convs read the fixed channel selections of He et al.'s
    model (resnet50_2x_selection.py); ``widths`` default to the 2x widths.  The selections are tied to the residual
    widths (256 ... 2048), so ``scale_widths`` scales only the prunable convs (the first two of each block)."""

    def __init__(self):
        super().__init__("resnet50-2x", Bottleneck, (3, 4, 6, 3))
        self.default_widths = from_liu_cfg(CFG_2X)

    def build(self, widths, num_classes, in_channels):
        from .resnet50_2x_selection import masks
        return ImageNetResNet(self.name, self.block, self.stages, widths, num_classes, in_channels, selects=masks())

    def scale_widths(self, widths: list, mult: float) -> list:
        return [w if i % 3 == 0 else max(1, int(round(w * mult))) for i, w in enumerate(widths)]


register_model("resnet50-2x")(SelectionFamily())
