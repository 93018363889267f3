"""torchvision's ImageNet-trained weights in our models: Huang et al.'s Figure 1 ranks the filters of ImageNet-trained
VGG16 (3rd conv) and ResNet18 (12th conv).

The weights are torchvision's files, read from the torch hub cache (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``) and downloaded there where the network allows.  Our ImageNet families have
torchvision's layout, so the files load into them as they are (``resnet18-imagenet``, ``vgg16-imagenet``, ...).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from ..config import known
from . import get_model

# name -> (our arch, torchvision builder, weights enum, member).  "vgg16" and "resnet18" are the names the criteria
# notebook uses (its CIFAR models); with ImageNet weights they mean torchvision's models.
TORCHVISION_WEIGHTS = {
    "vgg16": ("vgg16-imagenet", "vgg16", "VGG16_Weights", "IMAGENET1K_V1"),
    "vgg16-imagenet": ("vgg16-imagenet", "vgg16", "VGG16_Weights", "IMAGENET1K_V1"),
    "vgg16-bn-imagenet": ("vgg16-bn-imagenet", "vgg16_bn", "VGG16_BN_Weights", "IMAGENET1K_V1"),
    "resnet18": ("resnet18-imagenet", "resnet18", "ResNet18_Weights", "IMAGENET1K_V1"),
    "resnet18-imagenet": ("resnet18-imagenet", "resnet18", "ResNet18_Weights", "IMAGENET1K_V1"),
    "resnet34": ("resnet34", "resnet34", "ResNet34_Weights", "IMAGENET1K_V1"),
    "resnet50": ("resnet50", "resnet50", "ResNet50_Weights", "IMAGENET1K_V1"),
}


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not in the cache and could not be downloaded."""


def weights_cache_dir() -> Path:
    """Where torchvision keeps (and looks for) downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_weights(arch: str):
    """The torchvision weights enum member of ``arch`` (e.g. ``VGG16_Weights.IMAGENET1K_V1``)."""
    import torchvision
    if arch not in TORCHVISION_WEIGHTS:
        raise known("arch with ImageNet weights", arch, TORCHVISION_WEIGHTS)
    _, _, enum, member = TORCHVISION_WEIGHTS[arch]
    return getattr(torchvision.models, enum)[member]


def imagenet_pretrained(arch: str) -> nn.Module:
    """Our ImageNet model of ``arch`` ("vgg16", "resnet18", "resnet34", ...) holding torchvision's ImageNet weights;
    ``WeightsNotFoundError`` (with the file and the cache folder) when they are neither cached nor downloadable."""
    weights = torchvision_weights(arch)
    ours, builder, enum, member = TORCHVISION_WEIGHTS[arch]
    path = weights_cache_dir() / os.path.basename(weights.url)
    try:
        # torch.hub reads <cache>/<file name of the url> when it exists and downloads it there otherwise
        state = weights.get_state_dict(progress=False, weights_only=True)
    except Exception as e:  # noqa: BLE001 (URLError, OSError, a truncated file: all mean "not available")
        what = "is unreadable" if path.exists() else "is not there"
        raise WeightsNotFoundError(
            f"torchvision's ImageNet weights {enum}.{member} (for {arch}) are needed: the file {path} {what}, and "
            f"the download from {weights.url} failed ({type(e).__name__}: {e}). On a machine with internet run "
            f"`python -c \"import torchvision; torchvision.models.{builder}(weights='{member}')\"` (or download "
            f"the url), then copy {os.path.basename(weights.url)} into the torch hub cache {path.parent} "
            "($TORCH_HOME/hub/checkpoints; by default ~/.cache/torch/hub/checkpoints).") from None
    model = get_model(ours, num_classes=1000)
    model.load_state_dict(state)
    return model


def imagenet_top1(arch: str) -> float:
    """torchvision's published ImageNet-1K top-1 accuracy (%) of the weights of ``arch``."""
    return float(torchvision_weights(arch).meta["_metrics"]["ImageNet-1K"]["acc@1"])
