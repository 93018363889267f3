"""Filter importance criteria: pure functions weight (out, in, kh, kw) -> score per filter (out,).
Higher score = keep."""
from __future__ import annotations

import torch


def l1(weight: torch.Tensor) -> torch.Tensor:
    """Sum of |w| over (in, kh, kw): the criterion of Li et al. 2017."""
    return weight.detach().flatten(1).abs().sum(1)


def l2(weight: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of the flattened filter."""
    return weight.detach().flatten(1).norm(dim=1)
