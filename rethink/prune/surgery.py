"""Kept filter indices -> a physically smaller model of the same family, with the kept weights copied."""
from __future__ import annotations

import copy

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
    return _rebuild(model, widths, cuts)


def _rebuild(model: nn.Module, widths: list, cuts: dict) -> nn.Module:
    """A new model of ``model``'s family at ``widths``, holding ``model``'s state with ``cuts`` applied
    (state_dict key -> [(dim, kept indices)]), on ``model``'s device and dtype."""
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


def model_selections(model: nn.Module) -> dict:
    """{selection module name: Selection} of a model with channel selections (PreResNet, DenseNet), else {}."""
    return {s.select: s for s in getattr(model, "selections", lambda: [])()}


def prune_channels(model: nn.Module, keep: dict) -> nn.Module:
    """``prune_filters`` extended to channel selections: ``keep`` maps a conv layer id (int) to its kept filters,
    and a selection module name (str, see ``model.selections()``) to the kept positions among the channels it
    selects now.  A selection's index buffer keeps ``index[kept]`` and its consumer's input channels are cut; its
    BN stays whole (the channels it does not select are simply not read, as in the Network Slimming code)."""
    conv_keep = {k: v for k, v in keep.items() if not isinstance(k, str)}
    sel_keep = {k: torch.as_tensor(v, dtype=torch.long).cpu() for k, v in keep.items() if isinstance(k, str)}
    new = prune_filters(model, conv_keep) if conv_keep else model
    if not sel_keep:
        return new if new is not model else copy.deepcopy(model)
    sels = model_selections(model)
    widths = list(new.widths)
    cuts: dict[str, list] = {}
    for name, idx in sel_keep.items():
        if name not in sels:
            raise ValueError(f"{model.arch} has no channel selection {name!r}; it has: {', '.join(sels) or 'none'}")
        s = sels[name]
        widths[s.width_index] = len(idx)
        cuts[f"{s.select}.index"] = [(0, idx)]  # positions among the selected -> original channel numbers
        cuts[f"{s.consumer}.weight"] = [(1, idx)]
    return _rebuild(new, widths, cuts)


@torch.no_grad()
def mask_channels(model: nn.Module, keep: dict) -> nn.Module:
    """The masked twin of ``prune_channels`` (in place): removed filters as ``mask_filters``; for a selection,
    the BN scale and shift of the selected channels not kept are zeroed, so ReLU passes 0 to the consumer."""
    mask_filters(model, {k: v for k, v in keep.items() if not isinstance(k, str)})
    sels, modules = model_selections(model), dict(model.named_modules())
    for name, idx in keep.items():
        if not isinstance(name, str):
            continue
        s = sels[name]
        index = modules[s.select].index
        drop = torch.ones(len(index), dtype=torch.bool, device=index.device)
        drop[torch.as_tensor(idx, dtype=torch.long, device=index.device)] = False
        bn = modules[s.bn]
        bn.weight[index[drop]] = 0
        bn.bias[index[drop]] = 0
    return model
