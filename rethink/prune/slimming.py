"""Network Slimming (Liu, Li, Shen, Huang, Yan, Zhang, "Learning Efficient Convolutional Networks through Network
Slimming", ICCV 2017), an automatic method of Liu et al. 2019's Table 4.

Train the large model with an L1 penalty on the BN scales (``bn_penalty``: lambda * sign(gamma) added to every
BN weight gradient); then one GLOBAL threshold on |gamma| over all prunable channels removes ``prune_ratio`` of
them.  A channel is prunable where its BN follows a conv whose output may be cut (VGG, the first two convs of a
PreResNet block), or where a channel selection reads the BN's output (PreResNet block inputs and head, every
DenseNet BN).  A layer the threshold would empty keeps its largest-|gamma| channel, reported in ``clamped`` (the
original code crashes there, e.g. VGG-19 at 70%).

Where the original code removes the channels with |gamma| <= the value at position int(N * prune_ratio) of the
sorted scales (one more than int(N * prune_ratio), more on ties), this removes exactly N - int(N(1 - prune_ratio)).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn

from ..config import ConfigError
from . import Hooks, PruneResult, Training, register_method
from .select import select_global
from .surgery import model_selections, prune_channels


def default_lambda(arch: str) -> float:
    """The paper's sparsity penalty for ``arch``: 1e-4 for VGG, 1e-5 for PreResNet-164 and DenseNet-40
   , and 1e-5 for every other family here."""
    return 1e-4 if arch.startswith("vgg") else 1e-5


def bn_penalty(lam: float) -> Callable[[nn.Module], None]:
    """An ``after_backward`` hook: the subgradient of lam * sum |gamma| over every BatchNorm2d, added to the BN
    weight gradients (as ``updateBN`` in the official code); no other gradient changes."""
    def hook(model: nn.Module) -> None:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.weight is not None and m.weight.grad is not None:
                m.weight.grad.add_(torch.sign(m.weight.detach()), alpha=lam)
    hook.sparsity_lambda = lam
    return hook


def _training(arch: str, prune) -> Training:
    lam = prune.sparsity_lambda if getattr(prune, "sparsity_lambda", None) is not None else default_lambda(arch)
    if lam < 0:
        raise ConfigError(f"sparsity_lambda must be >= 0, got {lam}")
    return Training(tag=f"slimming-l{lam:g}", settings=dict(sparsity_lambda=lam),
                    hooks=Hooks(after_backward=(bn_penalty(lam),)))


def channel_scores(model: nn.Module) -> tuple[dict, dict]:
    """({unit: |gamma| of its prunable channels}, {unit: readable name}); a unit is a prunable conv layer id (its
    output channels) or a selection module name (the channels it selects now)."""
    modules = dict(model.named_modules())
    scores, names = {}, {}
    for layer in model.conv_layers():
        if layer.prunable:
            scores[layer.id] = modules[layer.bn].weight.detach().abs().cpu()
            names[layer.id] = layer.conv
    for name, s in model_selections(model).items():
        index = modules[s.select].index
        scores[name] = modules[s.bn].weight.detach().abs()[index].cpu()
        names[name] = f"{s.bn} -> {s.consumer}"
    return scores, names


@register_method("slimming")
def slimming(model: nn.Module, variant: Optional[str] = None, prune_ratio: Optional[float] = None) -> PruneResult:
    """Remove ``prune_ratio`` of all prunable channels of ``model`` (trained with ``bn_penalty``) by one global
    |gamma| threshold; returns a physically smaller model.  ``keep`` maps conv ids and selection names to the
    kept channels."""
    if variant is not None:
        raise ConfigError("slimming has no published variants: give prune_ratio (fraction of channels removed)")
    if prune_ratio is None or not 0.0 <= prune_ratio < 1.0:
        raise ConfigError(f"slimming needs prune_ratio in [0, 1): the fraction of channels removed; got {prune_ratio}")
    scores, names = channel_scores(model)
    if not scores:
        raise ConfigError(f"{model.arch} has no BN channels that slimming can prune")
    keep, clamped = select_global(scores, prune_ratio, None, names)
    pruned = prune_channels(model, keep)
    return PruneResult(model=pruned, widths=list(pruned.widths), keep=keep, clamped=clamped)


slimming.training = _training
