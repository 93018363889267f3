"""Channel selection (Liu et al., ICCV 2017, "Network Slimming"): where a residual sum or a dense concatenation
forbids cutting a conv's output channels, pruning instead selects which channels of a BN's output the next conv
reads.

The original code keeps a 0/1 vector and gathers with numpy on every forward pass; here the selection holds the
kept channel indices as a buffer (so a checkpoint's ``state_dict`` carries them) and the count of kept channels
is the layer's entry in ``widths`` (so ``widths`` alone fixes every tensor shape).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass(frozen=True)
class Selection:
    """One channel-selection point as pruning sees it: ``select`` is the ChannelSelection module, ``bn`` the BN
    whose output it selects from (its scales are what slimming scores), ``consumer`` the conv/linear reading the
    selected channels (its input channels are cut), ``width_index`` the position of the kept count in ``widths``."""
    select: str
    bn: str
    consumer: str
    width_index: int


class ChannelSelection(nn.Module):
    """Keeps channels ``index`` (a sorted LongTensor buffer, default the first ``n_out``) of an (N, n_in, H, W) or
    (N, n_in) input."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        if not 1 <= n_out <= n_in:
            raise ValueError(f"a channel selection keeps between 1 and {n_in} channels, not {n_out}")
        self.n_in = n_in
        self.register_buffer("index", torch.arange(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.index.numel() == self.n_in:  # sorted, distinct and all of them: the identity
            return x
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            # gather along the innermost (channel) dim of the NHWC storage, so the output stays channels_last:
            # index_select(1) returns NCHW, and the BN before it then runs its backward on mixed layouts, a slow
            # path (a pruned DenseNet-40 step took 3.4x the unpruned one's on a CPU; 1.2x with this)
            return x.permute(0, 2, 3, 1).index_select(3, self.index).permute(0, 3, 1, 2)
        return x.index_select(1, self.index)

    def extra_repr(self) -> str:
        return f"{self.n_in} -> {self.index.numel()}"


def slimming_init(model: nn.Module, convs: bool = True) -> None:
    """The Network Slimming code's initialisation: every BN scale 0.5 and shift 0, and (``convs``) every
    conv Kaiming-normal with fan_out for ReLU."""
    for m in model.modules():
        if convs and isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 0.5)
            nn.init.zeros_(m.bias)
