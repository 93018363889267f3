"""Sparse Structure Selection (Huang, Wang, "Data-Driven Sparse Structure Selection for Deep Neural Networks",
ECCV 2018), an automatic method of Liu et al. 2019 (Table 3: its ImageNet ResNets trained from scratch).

Every residual block gets a scalar factor on its residual branch, relu(lambda_b * F_b(x) + shortcut(x))
(``CifarResNet.add_block_scales``, applied by ``Training.prepare`` before the large model trains), and the large
model trains with a sparsity penalty gamma * sum_b |lambda_b|.  A block whose factor is zero computes
relu(shortcut(x)) only, so it is removed: the pruned model is a real shallower ResNet (the block's first width is
0 in ``widths``, it has no conv), and the kept factors are folded into the second BN of their block, so the
pruned model is a plain ResNet that ``get_model(arch, widths=...)`` rebuilds and ``rethink.metrics`` counts.

Which blocks go: with ``prune_ratio`` (the experiment's setting) the ``B - int(B(1 - prune_ratio))`` blocks of
smallest |lambda| of the B blocks; without, the paper's rule, every block with |lambda| <= ``threshold``.  At
least one block is kept (reported in ``clamped``).

Differences from the paper: the penalty is added as its sub-gradient, gamma * sign(lambda), to the factors'
gradients (as Network Slimming does for BN scales), not by the paper's accelerated proximal gradient, so the
factors reach a small neighbourhood of zero (a few lr * gamma) instead of exactly 0; hence the threshold
(default 1e-2, far above that neighbourhood at the final lr).  gamma is ``sparsity_lambda`` (default 1e-2, our
choice: the papers give none for CIFAR; on ResNet-56 x0.5, 4,000 Fashion-MNIST images, 10 epochs, gamma 1e-3, 3e-3
and 1e-2 left 1, 2 and 5 of the 27 factors at or below 1e-2, at 77.3, 78.5 and 79.9 % on 1,000 test images: the
penalty spreads the factors without costing accuracy there; longer schedules push harder, so lower it for them).  Only block-level selection (the paper also selects groups and neurons),
only the CIFAR ResNets of ``rethink.models.resnet`` (ResNet-20/32/56/110, ResNet-18).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn

from ..config import ConfigError
from ..models import MODELS, get_model
from . import Hooks, PruneResult, Training, register_method
from .select import n_keep

DEFAULT_LAMBDA = 1e-2
DEFAULT_THRESHOLD = 1e-2


def _is_resnet(arch: str) -> bool:
    from ..models.resnet import Family
    return isinstance(MODELS.get(arch), Family)


def scale_penalty(lam: float) -> Callable[[nn.Module], None]:
    """An ``after_backward`` hook: the sub-gradient of lam * sum_b |lambda_b|, added to every block factor's
    gradient; no other gradient changes."""
    def hook(model: nn.Module) -> None:
        for s in model.block_scales().values():
            if s.grad is not None:
                s.grad.add_(torch.sign(s.detach()), alpha=lam)
    hook.sparsity_lambda = lam
    return hook


def add_scales(model: nn.Module) -> nn.Module:
    """``Training.prepare``: the factor lambda_b = 1 on every residual branch (in place)."""
    return model.add_block_scales(1.0)


def _training(arch: str, prune) -> Training:
    if not _is_resnet(arch):
        raise ConfigError(f"sss selects residual blocks: it needs a CIFAR ResNet (resnet20/32/56/110, resnet18), "
                          f"not {arch}")
    lam = prune.sparsity_lambda if getattr(prune, "sparsity_lambda", None) is not None else DEFAULT_LAMBDA
    if lam < 0:
        raise ConfigError(f"sparsity_lambda must be >= 0, got {lam}")
    return Training(tag=f"sss-l{lam:g}", settings=dict(sss_lambda=lam), hooks=Hooks(after_backward=(scale_penalty(lam),)),
                    prepare=add_scales)


def removed_blocks(scales: dict, prune_ratio: Optional[float], threshold: float) -> tuple[list, list]:
    """(sorted indices of the blocks to remove, clamped messages) from {block: |factor|}."""
    blocks = sorted(scales)
    mags = torch.tensor([float(scales[b]) for b in blocks])
    if prune_ratio is not None:
        k, _ = n_keep(len(blocks), prune_ratio)
        order = torch.sort(mags, stable=True).indices  # smallest first; ties: lower block first
        drop = sorted(blocks[i] for i in order[:len(blocks) - k].tolist())
    else:
        drop = [b for b, m in zip(blocks, mags.tolist()) if m <= threshold]
    clamped = []
    if blocks and len(drop) == len(blocks):
        best = blocks[int(torch.argmax(mags))]
        drop.remove(best)
        clamped.append(f"every block's factor is at or below the threshold {threshold}; kept block {best}")
    return drop, clamped


@register_method("sss")
def sss(model: nn.Module, variant: Optional[str] = None, prune_ratio: Optional[float] = None,
        threshold: float = DEFAULT_THRESHOLD) -> PruneResult:
    """Remove the residual blocks of ``model`` (trained with ``scale_penalty``) whose factors are smallest
    (``prune_ratio`` of the blocks) or at most ``threshold`` in magnitude (``prune_ratio=None``); returns a
    shallower plain ResNet with the kept factors folded into the BNs.  ``report`` lists every block's factor."""
    if variant is not None:
        raise ConfigError("sss has no published variants: give prune_ratio (fraction of residual blocks removed)")
    if prune_ratio is not None and not 0.0 <= prune_ratio < 1.0:
        raise ConfigError(f"sss needs prune_ratio in [0, 1): the fraction of residual blocks removed; got {prune_ratio}")
    if not hasattr(model, "block_scales"):
        raise ConfigError(f"sss selects residual blocks; {model.arch} has none")
    scales = {b: s.detach().abs() for b, s in model.block_scales().items()}
    if not scales:
        raise ConfigError("the model has no block factors: train it with the sss method's training "
                          "(get_method('sss').training), which adds them")
    drop, clamped = removed_blocks(scales, prune_ratio, threshold)
    widths = list(model.widths)
    state = dict(model.state_dict())
    for b in drop:
        widths[1 + 2 * b] = 0
        branch = (f"blocks.{b}.conv1.", f"blocks.{b}.bn1.", f"blocks.{b}.conv2.", f"blocks.{b}.bn2.")
        state = {k: v for k, v in state.items() if not k.startswith(branch) and k != f"blocks.{b}.scale"}
    for b in scales:
        if b in drop:
            continue
        s = state.pop(f"blocks.{b}.scale")
        for key in (f"blocks.{b}.bn2.weight", f"blocks.{b}.bn2.bias"):  # s * (gamma x_hat + beta)
            state[key] = state[key] * s
    new = get_model(model.arch, model.num_classes, widths, model.in_channels)
    new.load_state_dict({k: v.detach().clone() for k, v in state.items()})
    p = next(model.parameters())
    new = new.to(device=p.device, dtype=p.dtype)
    report = [dict(block=b, scale=float(model.block_scales()[b].detach()), removed=b in drop) for b in sorted(scales)]
    return PruneResult(model=new, widths=list(new.widths), keep={}, clamped=clamped, report=report)


sss.training = _training
sss.applies_to = lambda model: hasattr(model, "block_scales")
