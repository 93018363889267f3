"""Pruning methods: ``get_method(name)(model, **settings) -> PruneResult``; ``list_methods()``.

What a method needs beyond pruning is declared, never special-cased by the experiment:
- a method that changes how the large model is trained (Network Slimming's sparsity penalty, soft filter pruning)
  carries ``method.training(arch, prune_config) -> Training``: hooks for the baseline phase and the settings that
  make that baseline different (part of its cache key);
- a control that only fine-tunes (random-filters) declares ``regimes``;
- a method whose result is a mask (unstructured pruning) returns it in ``PruneResult.masks``; ``result.hooks()``
  keeps the masked weights at zero during fine-tuning and scratch training, and ``result.init_scratch(model)``
  re-initialises a scratch model for the mask.
``method_kwargs(name, prune_config)`` picks the settings of a PruneConfig a method takes.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Optional

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
    masks: dict = field(default_factory=dict)    # unstructured methods: conv module name -> bool mask (True = kept)

    def hooks(self) -> "Hooks":
        """Training hooks for fine-tuning and scratch training of the pruned model (none without masks)."""
        from .masks import mask_hooks
        return mask_hooks(self.masks)

    def init_scratch(self, model: nn.Module) -> nn.Module:
        """Prepare a freshly built model of ``widths`` for scratch training: with masks, He-normal re-init with
        the fan of the kept weights, then the mask (PAPERS.md); without, nothing to do."""
        from .masks import reinit_masked
        return reinit_masked(model, self.masks) if self.masks else model


@dataclass(frozen=True)
class Hooks:
    """Keyword arguments of ``rethink.train.train``: ``after_backward(model)``, ``on_epoch_end(model, epoch)``."""
    after_backward: tuple = ()
    on_epoch_end: tuple = ()


@dataclass(frozen=True)
class Training:
    """How a method trains the large model: ``tag`` names that baseline in records (e.g. "slimming-l1e-05"),
    ``settings`` (primitives) go into its cache key and record, ``hooks`` into ``train``."""
    tag: str
    settings: dict
    hooks: Hooks


def baseline_training(method: str, arch: str, prune) -> Optional[Training]:
    """The Training of ``method`` for ``arch`` and PruneConfig ``prune``; None when the method prunes a plainly
    trained model (then every such method shares one cached baseline)."""
    training: Optional[Callable] = getattr(get_method(method), "training", None)
    return training(arch, prune) if training else None


# PruneConfig fields that are not for every method; None means "the method's default"
_OPTIONAL_SETTINGS = ("scope", "sparsity_lambda")


def method_kwargs(method: str, prune, seed: int = 0) -> dict:
    """Keyword arguments of ``get_method(method)`` from PruneConfig ``prune``: variant and prune_ratio, the
    optional settings the method takes, and ``seed`` for a method that draws at random; an optional setting given to
    a method that does not take it is an error."""
    from ..config import ConfigError
    params = inspect.signature(get_method(method)).parameters
    kw = dict(variant=prune.variant, prune_ratio=prune.prune_ratio)
    if "seed" in params:
        kw["seed"] = seed
    for name in _OPTIONAL_SETTINGS:
        value = getattr(prune, name, None)
        if name in params:
            kw[name] = value
        elif value is not None:
            raise ConfigError(f"method {method!r} has no setting {name!r}")
    return kw


def method_regimes(method: str) -> tuple:
    """The regimes a method's pruned model goes through: fine-tune, Scratch-E, Scratch-B, unless it declares fewer
    (a control whose scratch runs would repeat another method's, e.g. random-filters)."""
    from ..experiment import REGIMES
    return tuple(getattr(get_method(method), "regimes", REGIMES))


def get_method(name: str):
    return METHODS.get(name)


def list_methods() -> list[str]:
    return METHODS.names()


from . import l1_norm, magnitude, random_filters, sfp, slimming  # noqa: E402,F401  (registration side effects)
