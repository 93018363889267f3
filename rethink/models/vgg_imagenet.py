"""ImageNet VGG-16 (Simonyan & Zisserman 2015) in torchvision's layout, built from ``widths``: 3x3 convs (with
bias) -> [BN] -> ReLU, 'M' = max-pool 2, then adaptive average pooling to 7x7 and the classifier
Linear(C*7*7, 4096) -> ReLU -> Dropout -> Linear(4096, 4096) -> ReLU -> Dropout -> Linear(4096, classes).

Module names are torchvision's (``features.<i>``, ``classifier.<i>``), so ``get_model("vgg16-imagenet", 1000)`` takes
the ``state_dict`` of ``torchvision.models.vgg16`` as it is and ``vgg16-bn-imagenet`` that of ``vgg16_bn``.  The
pruned ImageNet VGG-16s of the papers are the same family at other widths (``PUBLISHED_WIDTHS``).

``widths`` is the cfg list with five 'M' (224 -> 7); conv layers are counted from 1 in that order (Huang et al.'s
"3rd conv" of VGG16 is ``features.5``, 128 filters).  The last conv feeds the classifier through a 7x7 flatten (each
of its filters owns 49 input columns of ``classifier.0``), so it is marked not prunable; the pruned VGG-16s of the
papers keep it whole.  The no-BN family has no BN to name in ``ConvLayer.bn`` (empty string): its filters are
scored by their weights; cutting them needs the conv bias sliced too, which ``prune.surgery`` does not do yet.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from . import ConvLayer, register_model

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

# Published pruned widths of the ImageNet VGG-16; arch -> widths.
PUBLISHED_WIDTHS = {
    # He, Zhang, Sun, "Channel Pruning for Accelerating Very Deep Neural Networks", ICCV 2017 (regression-based
    # channel pruning, "5x" FLOPs reduction), as trained from scratch by Liu et al. 2019 (no BN, as in their code)
    "vgg16-5x": ("vgg16-imagenet", [24, 22, "M", 41, 51, "M", 108, 89, 111, "M", 184, 276, 228, "M", 512, 512, 512, "M"]),
    # ThiNet (Luo et al., ICCV 2017), as Liu et al. 2019 train them from scratch: Eric-mingjie/rethinking-network-
    # pruning@2ac473d70a09810df888e932bb394f225f9ed2d1, imagenet/thinet/models/thinetconv.py (``conv``: VGG-Conv, the
    # 4096-wide classifier kept) and thinetvgg.py (``gap``, ``tiny``: no fifth pool, global average pooling,
    # Linear(512 / 256, classes)); no BN in either
    "vgg-conv": ("vgg16-imagenet", [32, 32, "M", 64, 64, "M", 128, 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M"]),
    "vgg-gap": ("vgg16-gap-imagenet", [32, 32, "M", 64, 64, "M", 128, 128, 128, "M", 256, 256, 256, "M", 512, 512, 512]),
    "vgg-tiny": ("vgg16-gap-imagenet", [16, 16, "M", 32, 32, "M", 64, 64, 64, "M", 128, 128, 128, "M", 128, 128, 256]),
}


class ImageNetVGG(nn.Module):
    """``head="fc"``: five 'M', 7x7 average pool and torchvision's 4096-wide classifier; ``head="gap"`` (ThiNet's
    VGG-GAP and VGG-Tiny): four 'M' (224 -> 14), global average pooling and one Linear(C, classes) as
    ``classifier.0`` (Liu et al.'s code pools with AvgPool2d(14, 2): the same at 224)."""

    def __init__(self, widths: list, num_classes: int = 1000, in_channels: int = 3, batch_norm: bool = False,
                 head: str = "fc"):
        super().__init__()
        pools = {"fc": 5, "gap": 4}[head]
        if sum(1 for w in widths if w == "M") != pools:
            raise ValueError(f"ImageNet VGG widths with the {head!r} head need exactly {pools} 'M' "
                             f"(224 -> {224 >> pools})")
        self.widths, self.batch_norm, self.head = list(widths), batch_norm, head
        layers, c = [], in_channels
        for w in widths:
            if w == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, w, 3, padding=1)] + ([nn.BatchNorm2d(w)] if batch_norm else [])
                layers.append(nn.ReLU(inplace=True))
                c = w
        self.features = nn.Sequential(*layers)
        if head == "gap":
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(c, num_classes))
            self._init()
            return
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        # skip_init: the Linear layers (120M weights) are initialised once, below, not twice (halves the build time)
        # (on the default device, so that a model built under ``with torch.device("meta")`` is all on meta)
        linear = lambda i, o: nn.utils.skip_init(nn.Linear, i, o, device=torch.get_default_device())  # noqa: E731
        self.classifier = nn.Sequential(linear(c * 49, 4096), nn.ReLU(True), nn.Dropout(), linear(4096, 4096),
                                        nn.ReLU(True), nn.Dropout(), linear(4096, num_classes))
        self._init()

    def _init(self):
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))

    def conv_layers(self) -> list[ConvLayer]:
        mods = list(self.features)
        pos = [i for i, m in enumerate(mods) if isinstance(m, nn.Conv2d)]
        wpos = [i for i, w in enumerate(self.widths) if w != "M"]
        last = len(pos) - 1
        return [ConvLayer(id=k + 1, conv=f"features.{p}", bn=f"features.{p + 1}" if self.batch_norm else "",
                          consumers=(f"features.{pos[k + 1]}",) if k < last else ("classifier.0",),
                          width_index=wpos[k], prunable=k < last)  # the last: see the module docstring
                for k, p in enumerate(pos)]


class _Family:
    num_classes = 1000  # get_model's default number of classes for this family

    def __init__(self, cfg, batch_norm: bool, head: str = "fc"):
        self.default_widths, self.batch_norm, self.head = cfg, batch_norm, head

    def build(self, widths, num_classes, in_channels):
        return ImageNetVGG(widths, num_classes, in_channels, self.batch_norm, self.head)


# torchvision's vgg16 and vgg16_bn ("vgg16" is the CIFAR VGG-16 of vgg.py)
register_model("vgg16-imagenet")(_Family(VGG16, batch_norm=False))
register_model("vgg16-bn-imagenet")(_Family(VGG16, batch_norm=True))
# VGG-16's convs without the fifth pool, global average pooling and one Linear: the family of ThiNet's VGG-GAP and
# VGG-Tiny (its default widths, VGG-16's, are no published model: ThiNet replaced the classifier while pruning)
register_model("vgg16-gap-imagenet")(_Family(VGG16[:-1], batch_norm=False, head="gap"))
