"""ThiNet (Luo, Wu, Lin, "ThiNet: A Filter Level Pruning Method for Deep Neural Network Compression", ICCV 2017),
a predefined method of Liu et al. 2019 (Table 2: its ImageNet architectures trained from scratch).

Layer by layer, in forward order: the filters of layer i are chosen by their effect on the NEXT layer.  On
sampled (image, position, output channel) triples of the next layer, its output is y = sum_c z_c, one term z_c
per input channel (= filter of layer i).  The greedy rule of the paper (Algorithm 1) builds the removed set T one
channel at a time, each time adding the channel that keeps sum_s (sum_{c in T} z_{s,c})^2 smallest, until T
holds the prune_ratio of the channels.  The filters in T are removed (surgery), then the kept input channels of
the next layer are rescaled by least squares, w = argmin sum_s (y_s - sum_{c kept} w_c z_{s,c})^2 (Eq. 6), and
the next layer is pruned on the pruned model's activations.

Differences from the paper: no fine-tuning between layers (the paper fine-tunes one or two epochs after each
layer; here the protocol's fine-tune regime follows the whole prune); samples come from ``n_batches`` batches of
the training loader (the paper: 10 positions in each of 3,000 ImageNet images); the prunable layers are those of
``conv_layers()`` (VGG: every conv; CIFAR ResNets: the first conv of each block, whose next layer is the block's
second conv), and the ratios are ``prune_ratio`` on each of them or a published variant's (see l1_norm.py).
``PruneResult.report`` holds each layer's relative reconstruction error of the next layer's sampled output
after removing T (``error_pruned``) and after the least-squares rescaling (``error_reconstructed``).
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn as nn

from . import PruneResult, register_method
from .reconstruct import (consumer_patches, consumer_weight, least_squares, prune_layer_by_layer, relative_error,
                          take_images)


def greedy_remove(z: torch.Tensor, n_remove: int) -> list[int]:
    """ThiNet's greedy rule on contributions ``z`` (samples, channels): the channels to remove, in the order they
    were added to T; each step adds the channel i minimising ||sum_{c in T + i} z_c||^2 (ties: lowest index)."""
    z = z.double()
    removed: list[int] = []
    v = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)  # sum of the removed channels' contributions
    norms = (z * z).sum(0)
    free = torch.ones(z.shape[1], dtype=torch.bool, device=z.device)
    for _ in range(n_remove):
        cost = (v @ v) + 2 * (v @ z) + norms  # ||v + z_i||^2 for every i
        cost[~free] = float("inf")
        i = int(torch.argmin(cost))
        removed.append(i)
        free[i] = False
        v = v + z[:, i]
    return removed


def contributions(patches: torch.Tensor, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """z (samples, in channels): each sample's output channel drawn from ``generator``; z[s, c] =
    <weight[o_s, c], patches[s, c]>.  ``patches``: (samples, C, kk), ``weight``: (out, C, kk)."""
    o = torch.randint(0, weight.shape[0], (patches.shape[0],), generator=generator).to(patches.device)
    return (patches * weight.float()[o]).sum(2)


def scale_kept(z: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """ThiNet's Eq. 6: per kept channel the factor w minimising ||y - z[:, keep] w||^2, y = z.sum(1)."""
    return least_squares(z[:, keep], z.sum(1)).flatten()


@register_method("thinet")
def thinet(model: nn.Module, variant: Optional[str] = None, prune_ratio: Optional[float] = None,
           loader: Optional[Iterable] = None, n_batches: int = 8, n_locations: int = 10, seed: int = 0,
           ratios: Optional[dict] = None) -> PruneResult:
    """Prune ``model`` layer by layer with ThiNet's greedy channel selection on the next layer and its
    least-squares rescaling, at a uniform ``prune_ratio`` or a published ``variant``'s ratios; activations from the
    first ``n_batches`` of ``loader``, ``n_locations`` positions per image, drawn with ``seed``; ``ratios``
    ({conv layer id: prune_ratio}) sets each layer's ratio instead."""
    images = take_images(loader, n_batches, "thinet")
    gen = torch.Generator().manual_seed(seed)  # one stream through the layers, in forward order

    def refit(current, layer, consumer, c, k):
        patches = consumer_patches(current, consumer, images, n_locations, gen)
        z = contributions(patches, consumer_weight(dict(current.named_modules())[consumer]).detach(), gen)
        removed = greedy_remove(z, c - k)
        kept = torch.tensor(sorted(set(range(c)) - set(removed)), dtype=torch.long)
        w = scale_kept(z, kept.to(z.device))
        y = z.sum(1)
        row = dict(layer=layer.id, conv=layer.conv, channels=c, kept=k, samples=int(z.shape[0]),
                   error_pruned=relative_error(y, z[:, kept.to(z.device)].sum(1)),
                   error_reconstructed=relative_error(y, z[:, kept.to(z.device)].double() @ w))

        def update(cw):  # the kept input channels of the consumer rescaled
            cw.mul_(w.to(cw.dtype).to(cw.device).view((1, -1) + (1,) * (cw.dim() - 2)))
        return kept, update, row
    return prune_layer_by_layer(model, variant, prune_ratio, ratios, refit)


thinet.predefined = True  # widths from the ratios alone (see rethink.prune)
