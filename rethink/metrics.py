"""Model size and accuracy.  FLOPs here means multiply-accumulates of conv and linear layers, the unit pruning
papers call "FLOPs"; BN, ReLU, pooling and the residual sums are not counted."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn


def count_params(model: nn.Module, nonzero: bool = False, exclude: Iterable[str] = ()) -> int:
    """Number of parameters (``nonzero=True``: only the non-zero entries, for masked models).  ``exclude``: names
    of modules whose parameters are left out (e.g. the 1x1 projection shortcuts, which Li et al. 2017 do not
    count)."""
    skip = {id(p) for name in exclude for p in model.get_submodule(name).parameters()}
    return int(sum((p != 0).sum().item() if nonzero else p.numel() for p in model.parameters() if id(p) not in skip))


@torch.no_grad()
def count_flops(model: nn.Module, input_shape=(3, 32, 32), nonzero: bool = False, exclude: Iterable[str] = ()) -> int:
    """Multiply-accumulates of one forward pass of one input of ``input_shape`` (C, H, W); ImageNet models are
    counted at (3, 224, 224).

    ``nonzero=True`` counts only non-zero weights (unstructured sparsity): each weight is used once per output
    position.  ``exclude``: names of conv/linear modules left out of the count.
    """
    total = 0

    def hook(m, inp, out):
        nonlocal total
        w = (m.weight != 0).sum().item() if nonzero else m.weight.numel()
        if isinstance(m, nn.Conv2d):
            total += int(w * out.shape[2] * out.shape[3])  # weight.numel() already divides by groups
        else:
            total += int(w)

    skip = {id(model.get_submodule(name)) for name in exclude}
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in skip]
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        model(torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def _conv_zeros(model: nn.Module) -> list[tuple[int, int]]:
    """(zero weights, weights) of every conv layer, in module order."""
    return [(int((m.weight == 0).sum().item()), m.weight.numel()) for m in model.modules()
            if isinstance(m, nn.Conv2d)]


def sparsity(model: nn.Module) -> float:
    """Measured fraction of zero weights over conv layers."""
    counts = _conv_zeros(model)
    n = sum(c[1] for c in counts)
    return float(sum(c[0] for c in counts) / n) if n else 0.0


def layer_sparsity(model: nn.Module) -> list[float]:
    """Measured fraction of zero weights of each conv layer, in module order (where a global threshold cut)."""
    return [z / n for z, n in _conv_zeros(model)]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()
