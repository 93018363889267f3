"""CIFAR ResNet-18 (He et al. 2016; the CIFAR form used by Huang et al. 2021 and common CIFAR code): a 3x3 stem
conv (stride 1, no max-pool), four stages of two BasicBlocks with widths 64-128-256-512 (strides 1, 2, 2, 2),
global average pooling and one Linear.  A block whose input and output shapes differ (stride 2 or a change of
width) adds its input through a projection shortcut, 1x1 conv (stride s, no bias) + BN.  Built by resnet.py's
CifarResNet with ``projection=True``.

Layer-counting convention (used for "the 12th conv" of Huang et al.'s Figure 1): conv layer ids count the 17
main-path 3x3 convs from 1 in forward order -- id 1 is the stem, block b (0..7 over the whole network) has ids
2 + 2b (its first conv) and 3 + 2b (its second).  The 1x1 projection shortcut convs are EXCLUDED from that
count, as the "18" in the name excludes them (17 convs + 1 Linear); they are listed after the main path with ids
18, 19, 20 (stages 2, 3, 4).  So the 12th conv is the first conv of the second block of stage 3 (256 filters).

``widths`` lists the output channels of the 17 main-path convs in id order; a shortcut's width is that of its
block's second conv.  Only the first conv of each block is prunable: the others feed a residual sum.
"""
from __future__ import annotations

from . import register_model
from .resnet import Family

register_model("resnet18")(Family("resnet18", (64, 128, 256, 512), (2, 2, 2, 2), (1, 2, 2, 2), projection=True))
