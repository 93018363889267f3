"""Sampled inputs of a layer's consumer, and the linear algebra of the data-driven methods that pick a layer's
filters by how well the NEXT layer's output survives (ThiNet, thinet.py; He et al. 2017, regression.py).

The consumer of a prunable conv (the next conv, or the Linear after the last VGG conv) is linear in its input
channels: its output at one position and output channel o is sum_c <W[o, c], patch_c>, one term per input
channel c.  ``consumer_patches`` samples those patches from real images (a forward hook on the consumer, the
forward pass stopped there), so a method can weigh each input channel's contribution, drop channels and refit the
kept weights by least squares.  A Linear consumer is a 1x1 conv on a 1x1 map (one "location" per image).
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ConfigError
from . import PruneResult
from .l1_norm import layer_ratios
from .select import check_ratios, n_keep
from .surgery import prune_filters


class _Stop(Exception):
    """Raised by the sampling hook: nothing after the consumer is needed."""


def take_images(loader: Optional[Iterable], n_batches: int, method: str) -> list:
    """The images of the first ``n_batches`` batches of ``loader`` (batches of (images, labels)), reused for
    every layer so that all layers are fitted on the same samples."""
    if loader is None:
        raise ConfigError(f"{method} samples activations of the training set: give loader= (batches of images, "
                          f"labels); the experiment passes its training loader")
    images = []
    for b, (x, _) in enumerate(loader):
        if b >= n_batches:
            break
        images.append(x)
    if not images:
        raise ConfigError(f"{method}: the loader gave no batch")
    return images


def consumer_weight(module: nn.Module) -> torch.Tensor:
    """The consumer's weight as (out, in channels, kernel positions): a conv's flattened kernel, a Linear's
    (out, in, 1)."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise ConfigError("a grouped conv consumer is not supported")
        return module.weight.flatten(2)
    if isinstance(module, nn.Linear):
        return module.weight[:, :, None]
    raise ConfigError(f"the consumer must be a Conv2d or a Linear, not {type(module).__name__}")


@torch.no_grad()
def consumer_patches(model: nn.Module, consumer: str, images: list, n_locations: int,
                     generator: torch.Generator) -> torch.Tensor:
    """Input patches of module ``consumer`` of ``model`` (eval mode) on ``images``: ``n_locations`` random output
    positions per image (all of them when the map has fewer), shape (samples, in channels, kernel positions).
    The positions come from ``generator`` (CPU), drawn per batch, so two models with the same consumer shapes fed
    the same images and a generator in the same state sample the same positions."""
    module = dict(model.named_modules())[consumer]
    out = []

    def hook(m, inputs):
        x = inputs[0].float()
        if isinstance(m, nn.Linear):
            out.append(x[:, :, None])  # (N, C, 1): one location per image
            raise _Stop
        n, c = x.shape[:2]
        unf = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride)  # N, C*kk, L
        kk, length = unf.shape[1] // c, unf.shape[2]
        if n_locations >= length:
            idx = torch.arange(length).expand(n, length)
        else:
            idx = torch.stack([torch.randperm(length, generator=generator)[:n_locations] for _ in range(n)])
        idx = idx.to(x.device)
        picked = unf.gather(2, idx[:, None, :].expand(n, c * kk, idx.shape[1]))  # N, C*kk, n_loc
        out.append(picked.permute(0, 2, 1).reshape(-1, c, kk))
        raise _Stop

    handle = module.register_forward_pre_hook(hook)
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    try:
        for x in images:
            try:
                model(x.to(device=p.device, dtype=p.dtype))
            except _Stop:
                pass
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(out).to(p.device)


def check_layer(model: nn.Module, layer) -> str:
    """The one consumer of ``layer`` (a ConvLayer) whose input channels are that layer's output channels, or a
    ConfigError saying why the layer cannot be pruned by reconstruction."""
    modules = dict(model.named_modules())
    if len(layer.consumers) != 1:
        raise ConfigError(f"{model.arch} layer {layer.id} ({layer.conv}) has {len(layer.consumers)} consumers; "
                          f"reconstruction-based pruning needs exactly one (VGG, the CIFAR ResNets)")
    consumer = layer.consumers[0]
    w = consumer_weight(modules[consumer])
    if w.shape[1] != modules[layer.conv].out_channels:
        raise ConfigError(f"{model.arch}: the consumer {consumer} of {layer.conv} does not read its channels "
                          f"one to one (channel selection or concatenation); not supported")
    return consumer


def relative_error(target: torch.Tensor, approx: torch.Tensor) -> float:
    """||target - approx||^2 / ||target||^2 over all entries (0 when the target is 0 and so is the error)."""
    den = float((target.double() ** 2).sum())
    num = float(((target.double() - approx.double()) ** 2).sum())
    return num / den if den > 0 else num


def least_squares(a: torch.Tensor, b: torch.Tensor, ridge: float = 1e-8) -> torch.Tensor:
    """argmin_x ||a x - b||^2 in float64 by the normal equations, with a ridge of ``ridge`` x the mean diagonal
    (only against a singular a^T a, e.g. a channel that is always 0 after its ReLU)."""
    a, b = a.double(), b.double()
    g = a.T @ a
    g = g + torch.eye(g.shape[0], dtype=g.dtype, device=g.device) * (ridge * g.diagonal().mean().clamp_min(1e-30))
    return torch.linalg.solve(g, a.T @ b)


def lasso(gram: torch.Tensor, corr: torch.Tensor, lam, beta0: Optional[torch.Tensor] = None,
          max_iter: int = 2000, tol: float = 1e-9, lipschitz: Optional[float] = None) -> torch.Tensor:
    """argmin_beta 1/2 beta^T G beta - c^T beta + lam ||beta||_1, i.e. the LASSO 1/2 ||y - A beta||^2 +
    lam ||beta||_1 given only G = A^T A and c = A^T y, by FISTA (Beck & Teboulle 2009) with step 1/L, L the
    largest eigenvalue of G (``lipschitz``, computed when not given); warm-started at ``beta0``.  ``lam`` a float
    gives beta (n,); a 1-d tensor of L values solves them all at once and gives (n, L).  Stops when no entry moves
    by more than ``tol`` x max|beta| (checked every 10 iterations)."""
    g, c = gram.double(), corr.double()
    single = not torch.is_tensor(lam)
    lams = torch.as_tensor([lam] if single else lam, dtype=torch.float64, device=c.device).flatten()
    lip = float(torch.linalg.eigvalsh(g)[-1]) if lipschitz is None else lipschitz
    shape = (len(c), len(lams))
    beta = torch.zeros(shape, dtype=torch.float64, device=c.device)
    if beta0 is not None:
        beta += beta0.double().reshape(len(c), -1)
    if lip > 0:
        c, thr = c[:, None], (lams / lip)[None, :]
        z, t = beta.clone(), 1.0
        for it in range(max_iter):
            step = z - (g @ z - c) / lip
            new = torch.sign(step) * (step.abs() - thr).clamp_min(0)  # soft threshold: the L1 prox
            t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
            z = new + (t - 1) / t_new * (new - beta)
            done = it % 10 == 9 and float((new - beta).abs().max()) <= tol * max(float(new.abs().max()), 1e-30)
            beta, t = new, t_new
            if done:
                break
    else:
        beta.zero_()
    return beta[:, 0] if single else beta


def prune_layer_by_layer(model: nn.Module, variant, prune_ratio, ratios: Optional[dict], refit: Callable):
    """The loop ThiNet and channel pruning share: the layers' ratios (a ``variant``, one ``prune_ratio``, or
    per-layer ``ratios``), then in forward order, for each layer with a ratio above 0, ``refit(current, layer,
    consumer, c, k)`` on the model pruned so far -> (kept filter indices, ``update(weight)`` that sets the
    consumer's weight in place after surgery, a report dict); the layer's filters are cut by surgery and the
    consumer updated.  Layer ids and module names stay valid through surgery.  Returns a PruneResult whose
    ``report`` lists the layers' dicts."""
    ratios = layer_ratios(model, variant, prune_ratio) if ratios is None else check_ratios(
        model, ratios, variant, prune_ratio)
    keep, clamped, report = {}, [], []
    current = model
    for layer in model.conv_layers():
        ratio = ratios.get(layer.id, 0.0)
        if ratio <= 0:
            continue
        consumer = check_layer(current, layer)
        c = dict(current.named_modules())[layer.conv].out_channels
        k, was_clamped = n_keep(c, ratio)
        if was_clamped:
            clamped.append(f"layer {layer.id} ({layer.conv}): prune_ratio {ratio} would remove all {c} filters; "
                           f"kept one")
        kept, update, row = refit(current, layer, consumer, c, k)
        report.append(row)
        current = prune_filters(current, {layer.id: kept})
        with torch.no_grad():
            update(dict(current.named_modules())[consumer].weight)
        keep[layer.id] = kept
    if current is model:  # nothing to prune: still a copy, as every method returns
        current = prune_filters(model, {})
    return PruneResult(model=current, widths=list(current.widths), keep=keep, clamped=clamped, report=report)
