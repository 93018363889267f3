"""Kept filter indices -> a physically smaller model of the same family, with the kept weights copied."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..models import get_model


def prune_filters(model: nn.Module, keep: dict) -> nn.Module:
    """A new model whose conv layer ``id`` keeps only the filters ``keep[id]`` (a LongTensor of indices).

    The conv's output channels, its BN, and the input channels of the modules consuming it are sliced; every
    other tensor is copied as it is.
    """
    layers = {layer.id: layer for layer in model.conv_layers()}
    widths = list(model.widths)
    cuts: dict[str, list] = {}  # state_dict key -> [(dim, indices)]
    for lid, idx in keep.items():
        layer = layers[lid]
        if not layer.prunable:
            raise ValueError(f"conv layer {lid} of {model.arch} feeds a residual sum; its filters cannot be removed")
        idx = torch.as_tensor(idx, dtype=torch.long).cpu()
        widths[layer.width_index] = len(idx)
        for key in (f"{layer.conv}.weight", f"{layer.bn}.weight", f"{layer.bn}.bias", f"{layer.bn}.running_mean",
                    f"{layer.bn}.running_var"):
            cuts.setdefault(key, []).append((0, idx))
        for consumer in layer.consumers:
            cuts.setdefault(f"{consumer}.weight", []).append((1, idx))
    new = get_model(model.arch, model.num_classes, widths, model.in_channels)
    state = {}
    for key, t in model.state_dict().items():
        for dim, idx in cuts.get(key, ()):
            t = t.index_select(dim, idx.to(t.device))
        state[key] = t.clone()
    new.load_state_dict(state)
    p = next(model.parameters())
    return new.to(device=p.device, dtype=p.dtype)


@torch.no_grad()
def mask_filters(model: nn.Module, keep: dict) -> nn.Module:
    """Zero (in place) the removed filters and their BN scale and shift: the masked twin of ``prune_filters``,
    whose outputs equal the pruned model's in eval mode."""
    layers = {layer.id: layer for layer in model.conv_layers()}
    modules = dict(model.named_modules())
    for lid, idx in keep.items():
        layer = layers[lid]
        drop = torch.ones(modules[layer.conv].out_channels, dtype=torch.bool)
        drop[torch.as_tensor(idx, dtype=torch.long)] = False
        modules[layer.conv].weight[drop] = 0
        modules[layer.bn].weight[drop] = 0
        modules[layer.bn].bias[drop] = 0
    return model
