"""Regression-based channel pruning (He, Zhang, Sun, "Channel Pruning for Accelerating Very Deep Neural Networks",
ICCV 2017), a predefined method of Liu et al. 2019 (Table 2: its ImageNet architectures trained from scratch).

Layer by layer, in forward order.  For the prunable conv i, the next layer's output Y (samples of positions x all
output channels) is Y = sum_c Z_c, Z_c = X_c W_c^T the term of input channel c.  He et al. minimise
1/2 ||Y - sum_c beta_c Z_c||^2 + lambda ||beta||_1 over the channel weights beta (a LASSO; step (i) of their
alternation), raising lambda until at most the wanted number of channels have beta != 0, then refit the kept
weights W' by least squares on Y (step (ii)): the filters of layer i whose channels are dropped are removed
(surgery).  As in the paper, Y comes from the ORIGINAL model while the inputs X come from the model pruned so far,
so that each layer's reconstruction also absorbs the error accumulated before it.

Here the LASSO is solved by FISTA on the Gram matrix G = A^T A (A: one column per channel, the flattened Z_c),
computed from the patches' own Gram matrix, so memory does not grow with samples x output channels; lambda is
searched on grids between 0 and max|A^T y| (at the top, beta = 0), all of a grid solved at once.  Exactly
``int(C(1 - prune_ratio))`` channels are kept: the non-zeros of beta at the smallest lambda found with at most that
many, completed by the largest |beta| just below it.  One round of (i) then (ii), where the paper may alternate
them more than once.  No fine-tuning between layers.

``PruneResult.report`` holds, per layer, the relative error ||Y - Y_hat||^2 / ||Y||^2 of the next layer's sampled
output: with every channel on the pruned-so-far model (``error_unpruned``, the accumulated error), with the kept
channels and their original weights (``error_pruned``, "before"), and after the least-squares reconstruction
(``error_reconstructed``, "after").
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn as nn

from . import PruneResult, register_method
from .reconstruct import (consumer_patches, consumer_weight, lasso, least_squares, prune_layer_by_layer,
                          relative_error, take_images)


def gram(patches: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, c) of the LASSO over channels: G[c, d] = <Z_c, Z_d>, c[c] = <Z_c, Y>, where Z_c (samples, out) =
    patches[:, c] @ weight[:, c]^T.  ``patches`` (S, C, kk), ``weight`` (O, C, kk), ``target`` Y (S, O).

    Computed without the (S, C, O) terms: G[c, d] = sum_{k,l} P[c, k, d, l] M[c, d, k, l] with P = X^T X of the
    flattened patches X (S, C*kk) and M[c, d] = W_c^T W_d (kk x kk), i.e. O(S (C kk)^2) instead of O(S C^2 O)."""
    s, c, kk = patches.shape
    x = patches.reshape(s, c * kk).double()
    w = weight.double()
    p = (x.T @ x).view(c, kk, c, kk)
    m = torch.einsum("ock,odl->cdkl", w, w)
    g = torch.einsum("ckdl,cdkl->cd", p, m)
    corr = torch.einsum("cko,ock->c", (x.T @ target.double()).view(c, kk, -1), w)
    return g, corr


def select_channels(g: torch.Tensor, corr: torch.Tensor, k: int, rounds: int = 4, grid: int = 16,
                    max_iter: int = 500) -> tuple[torch.Tensor, float]:
    """The k channels the LASSO keeps (sorted indices) and the lambda found.  The number of non-zeros falls as
    lambda rises from 0 to max|c| (where beta = 0); ``rounds`` grids of ``grid`` lambdas, each solved at once,
    narrow the bracket [largest lambda with more than k non-zeros, smallest with at most k].  The kept channels
    are the non-zeros at the bracket's top, completed (when fewer than k) by the largest |beta| at its bottom."""
    n = len(corr)
    if k >= n:
        return torch.arange(n), 0.0
    lip = float(torch.linalg.eigvalsh(g.double())[-1])
    top = float(corr.abs().max())  # at lambda = max|c| the solution is 0
    lo, hi = 0.0, top
    beta_lo, beta_hi = None, torch.zeros(n, dtype=torch.float64, device=corr.device)
    lams = top * torch.logspace(-4, 0, grid, dtype=torch.float64)[:-1]  # first round: geometric, then linear
    for _ in range(rounds):
        betas = lasso(g, corr, lams, max_iter=max_iter, tol=1e-6, lipschitz=lip)
        nnz = (betas != 0).sum(0)
        for j in range(len(lams)):  # lams ascending: nnz (nearly) descending
            lam = float(lams[j])
            if int(nnz[j]) > k and lam >= lo:
                lo, beta_lo = lam, betas[:, j]
            elif int(nnz[j]) <= k and lam < hi:
                hi, beta_hi = lam, betas[:, j]
        if int((beta_hi != 0).sum()) == k:
            break
        lams = torch.linspace(lo, hi, grid + 2, dtype=torch.float64)[1:-1]
    chosen = [int(i) for i in torch.nonzero(beta_hi).flatten()]
    rest = (beta_lo if beta_lo is not None else corr.double()).abs()
    for i in torch.sort(rest, descending=True, stable=True).indices.tolist():
        if len(chosen) >= k:
            break
        if i not in chosen:
            chosen.append(i)
    return torch.tensor(sorted(chosen[:k]), dtype=torch.long), hi


@register_method("channel-pruning")
def channel_pruning(model: nn.Module, variant: Optional[str] = None, prune_ratio: Optional[float] = None,
                    loader: Optional[Iterable] = None, n_batches: int = 8, n_locations: int = 10,
                    seed: int = 0, ratios: Optional[dict] = None) -> PruneResult:
    """Prune ``model`` layer by layer by LASSO channel selection on the next layer's output and least-squares
    reconstruction of its kept weights (He et al. 2017), at a uniform ``prune_ratio`` or a published
    ``variant``'s ratios (``ratios``, {conv layer id: prune_ratio}, sets each layer's instead); activations from
    the first ``n_batches`` of ``loader``, ``n_locations`` positions per image drawn with ``seed``."""
    images = take_images(loader, n_batches, "channel-pruning")
    original = model

    def refit(current, layer, consumer, c, k):
        # the same positions in both models: two generators in the same state
        x = consumer_patches(current, consumer, images, n_locations, torch.Generator().manual_seed(seed + layer.id))
        x0 = consumer_patches(original, consumer, images, n_locations, torch.Generator().manual_seed(seed + layer.id))
        w = consumer_weight(dict(current.named_modules())[consumer]).detach()
        w0 = consumer_weight(dict(original.named_modules())[consumer]).detach()
        y = torch.einsum("sck,ock->so", x0.double(), w0.double())  # the original model's output (no bias)
        g, corr = gram(x, w, y)
        kept, lam = select_channels(g, corr, k)
        kd = kept.to(x.device)
        xk = x[:, kd].flatten(1)  # S, k*kk
        w_new = least_squares(xk, y)  # (k*kk, O)
        approx_all = torch.einsum("sck,ock->so", x.double(), w.double())
        approx_kept = xk.double() @ w[:, kd].flatten(1).double().T
        row = dict(layer=layer.id, conv=layer.conv, channels=c, kept=k, samples=int(x.shape[0]),
                   lasso_lambda=lam, error_unpruned=relative_error(y, approx_all),
                   error_pruned=relative_error(y, approx_kept),
                   error_reconstructed=relative_error(y, xk.double() @ w_new))

        def update(cw):  # the consumer's kept weights refitted
            cw.copy_(w_new.T.reshape(cw.shape).to(cw.dtype))
        return kept, update, row
    return prune_layer_by_layer(model, variant, prune_ratio, ratios, refit)


channel_pruning.predefined = True  # widths from the ratios alone (see rethink.prune)
