"""Filter importance criteria: pure functions weight (out, in, kh, kw) -> score per filter (out,).
Higher score = keep.

``get_criterion(name)`` / ``list_criteria()`` look them up by name; ``model_scores`` scores every conv layer of a
model (data-driven criteria get their gradients from ``loss_grads``, the only impure part).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import Registry


def l1(weight: torch.Tensor) -> torch.Tensor:
    """Sum of |w| over (in, kh, kw): the criterion of Li et al. 2017."""
    return weight.detach().flatten(1).abs().sum(1)


def l2(weight: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of the flattened filter."""
    return weight.detach().flatten(1).norm(dim=1)


# --- The criteria compared by Huang et al. (NeurIPS 2021) ---------------------------------------------------------
# A filter j of a layer is the vector w_j of length d = in * kh * kw.  Distances are computed in float64 so that
# the ranks of nearly equal sums (GM and Fermat scores concentrate as d grows) are not decided by rounding.

def geometric_median(weight: torch.Tensor) -> torch.Tensor:
    """FPGM (He et al., CVPR 2019): sum of Euclidean distances from filter j to every other filter of the layer.

    A filter close to all the others (near the layer's geometric median) is replaceable by them, so its sum is
    small and it is pruned first: score = the sum, higher = keep.
    """
    x = weight.detach().flatten(1).double()
    return torch.cdist(x, x).sum(1).to(weight.dtype)


def fermat_point(points: torch.Tensor, tol: float = 1e-7, max_iter: int = 1000) -> torch.Tensor:
    """Geometric median (Fermat-Weber point) of the rows of ``points`` (n, d) by Weiszfeld iterations.

    Starts at the centroid; y <- sum(x_i / |x_i - y|) / sum(1 / |x_i - y|), distances clamped at 1e-12 so that an
    iterate landing on a data point stays there (that point is then the median, as for an odd set on a line).
    Stops when a step moves y by at most ``tol`` * max(1, |y|), or after ``max_iter`` steps.
    """
    x = points.detach().double()
    y = x.mean(0)
    for _ in range(max_iter):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(1e-12)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        step = (y_new - y).norm()
        y = y_new
        if step <= tol * max(1.0, y.norm().item()):
            break
    return y


def fermat(weight: torch.Tensor, tol: float = 1e-7, max_iter: int = 1000) -> torch.Tensor:
    """Euclidean distance from filter j to the layer's Fermat point (geometric median, by Weiszfeld iterations
    with tolerance ``tol`` and at most ``max_iter`` steps).  Near the median = replaceable: higher = keep.

    The exact form in Huang et al. is recalled, not checked; this is the distance form.
    """
    x = weight.detach().flatten(1).double()
    return (x - fermat_point(x, tol, max_iter)).norm(dim=1).to(weight.dtype)


def taylor(weight: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """First-order Taylor importance (Molchanov et al. 2019, the |w * dL/dw| form): per filter the sum over
    (in, kh, kw) of |w * g|, averaged over batches.

    ``grads`` is the gradient of the loss w.r.t. ``weight``, shape (out, in, kh, kw) for one batch, or
    (batches, out, in, kh, kw) for several (see ``loss_grads``): the pure part of the criterion.
    """
    w = weight.detach()
    g = grads.detach()
    if g.dim() == w.dim():
        g = g.unsqueeze(0)
    if g.shape[1:] != w.shape:
        raise ValueError(f"grads of shape {tuple(g.shape)} do not match the weight's {tuple(w.shape)}")
    return (w.unsqueeze(0) * g).abs().flatten(2).sum(2).mean(0)


def bn_gamma(gamma: torch.Tensor) -> torch.Tensor:
    """|gamma| of the BN following the conv: the scale factor Network Slimming (Liu et al. 2017) prunes by."""
    return gamma.detach().abs()


def random_scores(weight: torch.Tensor) -> torch.Tensor:
    """A control, not a criterion: one uniform random score per filter, the same for a layer of the same shape in
    every run (seeded by the shape), so that "how similar are two criteria" has a floor to be read against."""
    g = torch.Generator().manual_seed(7919 * weight.shape[0] + weight[0].numel())
    return torch.rand(weight.shape[0], generator=g)


# --- Registry and whole-model scoring --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Criterion:
    """A registered criterion: ``fn`` takes the conv weight (``needs="weight"``), the following BN's weight
    (``"bn"``), or the conv weight and its per-batch loss gradients (``"grad"``, data-driven)."""
    name: str
    fn: Callable
    needs: str
    label: str  # as the papers write it, for tables and figures


CRITERIA: Registry = Registry("criterion")

for _c in (Criterion("l1", l1, "weight", "L1"), Criterion("l2", l2, "weight", "L2"),
           Criterion("gm", geometric_median, "weight", "GM"), Criterion("fermat", fermat, "weight", "Fermat"),
           Criterion("taylor", taylor, "grad", "Taylor"), Criterion("bn-gamma", bn_gamma, "bn", "BN |γ|"),
           Criterion("random", random_scores, "weight", "Random")):
    CRITERIA.register(_c.name)(_c)


def get_criterion(name: str) -> Criterion:
    """The criterion registered as ``name``; an unknown name raises an error listing the known ones."""
    return CRITERIA.get(name)


def list_criteria() -> list[str]:
    return CRITERIA.names()


def loss_grads(model: nn.Module, loader: Iterable, conv_names: list, n_batches: int = 4) -> dict:
    """{conv module name: stacked gradients (batches, out, in, kh, kw)} of the cross-entropy loss over the first
    ``n_batches`` batches of ``loader``.  The model runs in eval mode (BN running statistics are not changed) and
    its ``.grad`` fields are not touched."""
    modules = dict(model.named_modules())
    weights = [modules[n].weight for n in conv_names]
    was_training = model.training
    model.eval()
    grads = {n: [] for n in conv_names}
    try:
        for b, (x, y) in enumerate(loader):
            if b >= n_batches:
                break
            x, y = x.to(weights[0].device), y.to(weights[0].device)  # a CPU loader may feed a GPU model
            gs = torch.autograd.grad(F.cross_entropy(model(x), y), weights)
            for n, g in zip(conv_names, gs):
                grads[n].append(g.detach())
    finally:
        model.train(was_training)
    if conv_names and not grads[conv_names[0]]:
        raise ValueError("the loader gave no batch: the taylor criterion needs data")
    return {n: torch.stack(g) for n, g in grads.items()}


def model_scores(model: nn.Module, criteria: Iterable[str], layer_ids: Optional[Iterable[int]] = None,
                 loader: Optional[Iterable] = None, n_batches: int = 4) -> dict:
    """{criterion name: {conv layer id: scores (out,)}} for every layer of ``model.conv_layers()`` (or the ids
    in ``layer_ids``).  Data-driven criteria (taylor) need ``loader``; they use its first ``n_batches``."""
    crits = [get_criterion(c) for c in criteria]
    ids = None if layer_ids is None else set(layer_ids)  # once: layer_ids may be any iterable, even a generator
    layers = [layer for layer in model.conv_layers() if ids is None or layer.id in ids]
    modules = dict(model.named_modules())
    grads = {}
    if any(c.needs == "grad" for c in crits):
        if loader is None:
            raise ValueError("data-driven criteria (taylor) need a loader of (images, labels) batches")
        grads = loss_grads(model, loader, [layer.conv for layer in layers], n_batches)
    out = {}
    for c in crits:
        out[c.name] = {}
        for layer in layers:
            w = modules[layer.conv].weight
            if c.needs == "weight":
                s = c.fn(w)
            elif c.needs == "bn":
                s = c.fn(modules[layer.bn].weight)
            else:
                s = c.fn(w, grads[layer.conv])
            out[c.name][layer.id] = s.detach().cpu()
    return out
