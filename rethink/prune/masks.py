"""Unstructured (weight-level) masks of conv layers: computed by magnitude, applied, kept at zero through training,
and a scratch re-initialisation that respects them.

A mask set is ``{conv module name: bool tensor of the weight's shape}``, True = kept.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from . import Hooks
from .select import prune_lowest


def conv_weights(model: nn.Module) -> dict:
    """{module name: weight} of every Conv2d (unstructured pruning touches conv weights only, as in Liu et al. 2019)."""
    return {name: m.weight for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@torch.no_grad()
def magnitude_masks(model: nn.Module, prune_ratio: float, scope: str = "global") -> dict:
    """Masks removing ``prune_ratio`` of the conv weights with the smallest |w|: one threshold over all conv
    weights (``scope="global"``, Han et al. as in Liu et al.'s code) or the ratio in every layer (``"layer"``).
    Exactly int(N * prune_ratio) weights are removed (ties broken by position)."""
    if not 0.0 <= prune_ratio < 1.0:
        raise ValueError(f"prune_ratio must be in [0, 1): the fraction of weights removed; got {prune_ratio}")
    weights = conv_weights(model)
    if scope == "layer":
        return {name: _lowest_out(w.abs().flatten(), prune_ratio).view_as(w) for name, w in weights.items()}
    if scope != "global":
        raise ValueError(f"unknown scope {scope!r}; known: global, layer")
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    keep = _lowest_out(flat, prune_ratio)
    masks, start = {}, 0
    for name, w in weights.items():
        masks[name] = keep[start:start + w.numel()].view_as(w)
        start += w.numel()
    return masks


def _lowest_out(values: torch.Tensor, prune_ratio: float) -> torch.Tensor:
    """Bool mask: False for the int(N * prune_ratio) smallest values."""
    k = int(len(values) * prune_ratio + 1e-9)
    keep = torch.ones(len(values), dtype=torch.bool, device=values.device)
    keep[prune_lowest(values, k)] = False
    return keep


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict) -> nn.Module:
    """Zero the masked-out weights in place."""
    weights = conv_weights(model)
    for name, mask in masks.items():
        weights[name].mul_(mask.to(weights[name].device, weights[name].dtype))
    return model


def mask_hooks(masks: dict) -> Hooks:
    """Hooks keeping masked weights at zero: their gradient is zeroed before every optimizer step (so momentum
    and weight decay, both proportional to zero, never move them), and the mask is applied again after every
    epoch in case anything else touched the weights."""
    if not masks:
        return Hooks()
    cache: dict = {}

    def _on(model):  # masks moved to the model's device once
        key = id(model)
        if key not in cache:
            w = conv_weights(model)
            cache.clear()
            cache[key] = {n: m.to(w[n].device, w[n].dtype) for n, m in masks.items()}
        return cache[key]

    def mask_grads(model: nn.Module) -> None:
        weights = conv_weights(model)
        for name, m in _on(model).items():
            if weights[name].grad is not None:
                weights[name].grad.mul_(m)

    def reapply(model: nn.Module, epoch: int) -> None:
        apply_masks(model, _on(model))

    return Hooks(after_backward=(mask_grads,), on_epoch_end=(reapply,))


@torch.no_grad()
def reinit_masked(model: nn.Module, masks: dict) -> nn.Module:
    """Scratch re-initialisation for a mask (Liu et al.'s weight-level code): each masked conv gets He-normal
    weights with std sqrt(2 / n), n = kept weights / in_channels (the fan_out of the dense layer scaled by its
    density), and then the mask."""
    weights = conv_weights(model)
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        w = weights[name]
        n = mask.sum().item() / (modules[name].in_channels // modules[name].groups)
        w.normal_(0, math.sqrt(2.0 / n) if n > 0 else 0.0)
    return apply_masks(model, masks)


def mask_sparsity(masks: dict) -> float:
    """Fraction of masked-out entries over all masks."""
    n = sum(m.numel() for m in masks.values())
    return float(sum((~m).sum().item() for m in masks.values()) / n) if n else 0.0
