"""Unstructured magnitude pruning (Han, Pool, Tran, Dally, "Learning both Weights and Connections for Efficient
Neural Networks", NIPS 2015), the weight-level method of Liu et al. 2019 (Section 4.4, Table 6-7).

Only conv weights are pruned: one GLOBAL threshold on |w| over all of them removes ``prune_ratio`` of the
weights (``scope="layer"``: the ratio in every layer).  The architecture keeps its widths; the result carries
the masks, which fine-tuning and scratch training keep at zero (``PruneResult.hooks``), and scratch training
starts from He-normal weights whose fan counts only the kept weights (``PruneResult.init_scratch``).  The
measured sparsity and the FLOPs of the non-zero weights (for the Scratch-B budget) come from ``rethink.metrics``.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch.nn as nn

from ..config import ConfigError
from . import PruneResult, register_method
from .masks import apply_masks, magnitude_masks


@register_method("magnitude")
def magnitude(model: nn.Module, variant: Optional[str] = None, prune_ratio: Optional[float] = None,
              scope: Optional[str] = None) -> PruneResult:
    """A masked copy of ``model`` without the ``prune_ratio`` smallest-magnitude conv weights (``scope`` global,
    the default, or layer)."""
    if variant is not None:
        raise ConfigError("magnitude pruning has no published variants: give prune_ratio (fraction of conv weights "
                          "removed)")
    if prune_ratio is None or not 0.0 <= prune_ratio < 1.0:
        raise ConfigError(f"magnitude pruning needs prune_ratio in [0, 1): the fraction of conv weights removed; "
                          f"got {prune_ratio}")
    scope = scope or "global"
    if scope not in ("global", "layer"):
        raise ConfigError(f"unknown scope {scope!r}; known: global, layer")
    masks = magnitude_masks(model, prune_ratio, scope)
    pruned = apply_masks(copy.deepcopy(model), masks)
    return PruneResult(model=pruned, widths=list(model.widths), keep={}, masks=masks)
