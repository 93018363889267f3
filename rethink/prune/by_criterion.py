"""Prune by any registered criterion (Huang et al., "Rethinking the Pruning Criteria for Convolutional Neural
Network", NeurIPS 2021, compare criteria at one prune_ratio): score the prunable conv layers, select layer-wise
or globally, and copy the kept filters into a physically smaller model."""
from __future__ import annotations

from typing import Iterable, Optional

import torch.nn as nn

from . import PruneResult
from .criteria import model_scores
from .select import select
from .surgery import prune_filters


def prune_by_criterion(model: nn.Module, criterion: str, prune_ratio: float, scope: str = "layer",
                       normalise: Optional[str] = None, loader: Optional[Iterable] = None,
                       n_batches: int = 4) -> PruneResult:
    """Remove ``prune_ratio`` of the filters of every prunable layer (``scope="layer"``) or of all prunable
    layers together (``"global"``, optionally ``normalise``d per layer) by the lowest ``criterion`` scores.
    Data-driven criteria (taylor) score on the first ``n_batches`` of ``loader``."""
    layers = [layer for layer in model.conv_layers() if layer.prunable]
    scores = model_scores(model, [criterion], [layer.id for layer in layers], loader, n_batches)[criterion]
    keep, clamped = select(scores, prune_ratio, scope, normalise, {layer.id: layer.conv for layer in layers})
    pruned = prune_filters(model, keep)
    return PruneResult(model=pruned, widths=list(pruned.widths), keep=keep, clamped=clamped)
