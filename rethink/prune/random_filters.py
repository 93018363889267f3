"""A control, not a method: keep *random* filters at the widths a predefined method keeps, then fine-tune.

Both papers turn on "architecture or which filters": if fine-tuning the L1-norm's choice is no better than
fine-tuning random filters at the same widths, the criterion's choice is not what carries the accuracy.  The
widths are those of :func:`rethink.prune.l1_norm.layer_ratios` (a published variant or one prune ratio), so the
control stands beside the L1-norm row of the same variant.  Which filters are random differs per seed.

Only fine-tuning is run: Scratch-E/B of the same widths are the criterion's own scratch rows (a scratch model
does not inherit filters, so it is the same run).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from . import PruneResult, register_method
from .l1_norm import layer_ratios
from .select import select_layerwise
from .surgery import prune_filters


@register_method("random-filters")
def random_filters(model: nn.Module, variant: str | None = None, prune_ratio: float | None = None,
                   seed: int = 0) -> PruneResult:
    """Keep int(C(1-p)) filters per layer chosen uniformly at random (seeded by ``seed``), at the ratios of a
    published ``variant`` or one ``prune_ratio``."""
    ratios = layer_ratios(model, variant, prune_ratio)
    layers = {layer.id: layer for layer in model.conv_layers()}
    modules = dict(model.named_modules())
    g = torch.Generator().manual_seed(1_000_003 + seed)  # one stream per seed, layers in id order
    scores = {lid: torch.rand(modules[layers[lid].conv].weight.shape[0], generator=g)
              for lid, r in sorted(ratios.items()) if r > 0}
    keep, clamped = select_layerwise(scores, ratios, {lid: layers[lid].conv for lid in scores})
    pruned = prune_filters(model, keep)
    return PruneResult(model=pruned, widths=list(pruned.widths), keep=keep, clamped=clamped)


random_filters.regimes = ("fine-tune",)
# the methods whose widths it keeps (same variant or prune ratio): the predefined ones; beside ThiNet and channel
# pruning it also leaves out their reconstruction of the next layer, so it tests selection and refit together
random_filters.controls = ("l1-norm", "thinet", "channel-pruning")
