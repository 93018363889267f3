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

# Published pruned widths of the ImageNet VGG-16 (PAPERS.md); arch -> widths.
PUBLISHED_WIDTHS = {
    # He, Zhang, Sun, "Channel Pruning for Accelerating Very Deep Neural Networks", ICCV 2017 (regression-based
    # channel pruning, "5x" FLOPs reduction), as trained from scratch by Liu et al. 2019 (no BN, as in their code)
    "vgg16-5x": ("vgg16-imagenet", [24, 22, "M", 41, 51, "M", 108, 89, 111, "M", 184, 276, 228, "M", 512, 512, 512, "M"]),
}


class ImageNetVGG(nn.Module):
    def __init__(self, widths: list, num_classes: int = 1000, in_channels: int = 3, batch_norm: bool = False):
        super().__init__()
        if sum(1 for w in widths if w == "M") != 5:
            raise ValueError("ImageNet VGG widths need exactly five 'M' (224 -> 7)")
        self.widths, self.batch_norm = list(widths), batch_norm
        layers, c = [], in_channels
        for w in widths:
            if w == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, w, 3, padding=1)] + ([nn.BatchNorm2d(w)] if batch_norm else [])
                layers.append(nn.ReLU(inplace=True))
                c = w
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        # skip_init: the Linear layers (120M weights) are initialised once, below, not twice (halves the build time)
        # (on the default device, so that a model built under ``with torch.device("meta")`` is all on meta)
        linear = lambda i, o: nn.utils.skip_init(nn.Linear, i, o, device=torch.get_default_device())  # noqa: E731
        self.classifier = nn.Sequential(linear(c * 49, 4096), nn.ReLU(True), nn.Dropout(), linear(4096, 4096),
                                        nn.ReLU(True), nn.Dropout(), linear(4096, num_classes))
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
                          width_index=wpos[k], prunable=k < last)
                for k, p in enumerate(pos)]


class _Family:
    num_classes = 1000  # get_model's default number of classes for this family

    def __init__(self, cfg, batch_norm: bool):
        self.default_widths, self.batch_norm = cfg, batch_norm

    def build(self, widths, num_classes, in_channels):
        return ImageNetVGG(widths, num_classes, in_channels, self.batch_norm)


# torchvision's vgg16 and vgg16_bn ("vgg16" is the CIFAR VGG-16 of vgg.py)
register_model("vgg16-imagenet")(_Family(VGG16, batch_norm=False))
register_model("vgg16-bn-imagenet")(_Family(VGG16, batch_norm=True))
