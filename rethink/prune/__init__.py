"""Pruning methods: ``get_method(name)(model, **settings) -> PruneResult``; ``list_methods()``."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from ..registry import Registry

METHODS: Registry = Registry("method")
register_method = METHODS.register


@dataclass
class PruneResult:
    model: nn.Module            # physically smaller, weights copied from the original
    widths: list                # its widths
    keep: dict                  # conv layer id -> kept filter indices (sorted LongTensor)
    clamped: list = field(default_factory=list)  # messages for layers kept at one channel instead of zero


def get_method(name: str):
    return METHODS.get(name)


def list_methods() -> list[str]:
    return METHODS.names()


from . import l1_norm  # noqa: E402,F401  (registration side effects)
