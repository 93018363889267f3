"""Soft Filter Pruning (He, Kang, Dong, Fu, Yang, "Soft Filter Pruning for Accelerating Deep Convolutional Neural
Networks", IJCAI 2018), an automatic method of Liu et al. 2019.

While the large model trains, after every epoch the ``prune_ratio`` of filters with the smallest L2 norm in each
selected layer are set to zero, but stay in the model and keep training (they may grow back).  After the last
epoch the zeroed filters are removed: a hard prune to a physically smaller model.  The selected layers are the
prunable ones of ``conv_layers()`` (for the CIFAR ResNets, the first conv of each block: the second feeds the
residual sum).  The official setting is ResNet-20/32/56/110 on CIFAR-10 with keep rate 0.7, i.e. prune_ratio 0.3.

Differences from the official code, which runs its own loop: the zeroing runs after each epoch's test evaluation
(``on_epoch_end``), so the baseline's recorded accuracies are those of the model before that epoch's zeroing; the
BN after a zeroed filter is left as it is (its shift passes through until the hard prune removes the channel).
The SFP paper soft-prunes the convs that feed residual sums too; here only filters that can be physically removed
are pruned (first conv of each block), so at prune_ratio 0.3 a ResNet-56 loses 31% of its FLOPs, less than the
paper's reductions.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn

from ..config import ConfigError
from . import Hooks, PruneResult, Training, register_method
from .by_criterion import prune_by_criterion
from .criteria import l2
from .select import n_keep, prune_lowest


def _check(prune_ratio) -> float:
    if prune_ratio is None or not 0.0 <= prune_ratio < 1.0:
        raise ConfigError(f"sfp needs prune_ratio in [0, 1): the fraction of filters removed per layer (the paper's "
                          f"keep rate 0.7 is prune_ratio 0.3); got {prune_ratio}")
    return float(prune_ratio)


@torch.no_grad()
def soft_prune(model: nn.Module, prune_ratio: float) -> dict:
    """Zero, in place, the ``C - int(C(1 - prune_ratio))`` lowest-L2 filters of every prunable conv layer.
    Returns {conv layer id: zeroed filter indices}."""
    modules = dict(model.named_modules())
    zeroed = {}
    for layer in model.conv_layers():
        if not layer.prunable:
            continue
        w = modules[layer.conv].weight
        k, _ = n_keep(w.shape[0], prune_ratio)
        drop = prune_lowest(l2(w), w.shape[0] - k)
        w[drop.to(w.device)] = 0
        zeroed[layer.id] = drop.sort().values
    return zeroed


def soft_prune_hook(prune_ratio: float) -> Callable[[nn.Module, int], None]:
    """An ``on_epoch_end`` hook running ``soft_prune`` after every epoch."""
    def hook(model: nn.Module, epoch: int) -> None:
        soft_prune(model, prune_ratio)
    return hook


def _training(arch: str, prune) -> Training:
    p = _check(prune.prune_ratio)
    return Training(tag=f"sfp-p{p:g}", settings=dict(sfp_prune_ratio=p),
                    hooks=Hooks(on_epoch_end=(soft_prune_hook(p),)))


@register_method("sfp")
def sfp(model: nn.Module, variant: Optional[str] = None, prune_ratio: Optional[float] = None) -> PruneResult:
    """Hard prune of a model trained with ``soft_prune_hook``: per prunable layer keep the int(C(1 - p)) filters
    of largest L2 norm (after soft-pruned training, exactly the ones not zeroed) in a physically smaller model."""
    if variant is not None:
        raise ConfigError("sfp has no published variants: give prune_ratio (fraction of filters removed per layer)")
    p = _check(prune_ratio)
    if not any(layer.prunable for layer in model.conv_layers()):
        raise ConfigError(f"{model.arch} has no conv layer whose filters can be removed")
    return prune_by_criterion(model, "l2", p)  # layer-wise: the same fraction of every prunable layer


sfp.training = _training
