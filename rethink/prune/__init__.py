"""Pruning methods: ``get_method(name)(model, **settings) -> PruneResult``; ``list_methods()``.

What a method needs beyond pruning is declared, never special-cased by the experiment:
- a method that changes how the large model is trained (Network Slimming's sparsity penalty, soft filter pruning)
  carries ``method.training(arch, prune_config) -> Training``: hooks for the baseline phase and the settings that
  make that baseline different (part of its cache key);
- a control that only fine-tunes (random-filters) declares ``regimes``;
- a predefined method, whose widths follow from its ratios alone and not from the trained weights (L1-norm,
  ThiNet, channel pruning: each layer keeps int(C(1-p)) filters), declares ``predefined = True``: its scratch
  runs can take their widths from the untrained large model when the trained one has left the cache;
- a method whose result is a mask (unstructured pruning) returns it in ``PruneResult.masks``; ``result.hooks()``
  keeps the masked weights at zero during fine-tuning and scratch training, and ``result.init_scratch(model)``
  re-initialises a scratch model for the mask;
- a method that reads data (ThiNet, regression-based channel pruning) takes a ``loader`` argument (batches of
  (images, labels) from the training set): ``method_kwargs(name, prune, loader=...)`` passes it to exactly the
  methods whose signature has it;
- a method that prunes only some families carries ``method.applies_to(model) -> bool`` (SSS: residual blocks);
- what a method measured while pruning (e.g. the per-layer reconstruction errors of ThiNet and channel pruning)
  goes into ``PruneResult.report``, a list of dicts of primitives that the experiment writes into each record.
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
    report: list = field(default_factory=list)   # what the method measured, one dict of primitives per layer/block

    def hooks(self) -> "Hooks":
        """Training hooks for fine-tuning and scratch training of the pruned model (none without masks)."""
        from .masks import mask_hooks
        return mask_hooks(self.masks)

    def init_scratch(self, model: nn.Module) -> nn.Module:
        """Prepare a freshly built model of ``widths`` for scratch training: with masks, He-normal re-init with
        the fan of the kept weights, then the mask; without, nothing to do."""
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
    ``settings`` (primitives) go into its cache key and record, ``hooks`` into ``train``; ``prepare(model)``, when
    given, changes the freshly built large model in place before training (SSS: a factor per residual block)."""
    tag: str
    settings: dict
    hooks: Hooks
    prepare: Optional[Callable] = None


def baseline_training(method: str, arch: str, prune) -> Optional[Training]:
    """The Training of ``method`` for ``arch`` and PruneConfig ``prune``; None when the method prunes a plainly
    trained model (then every such method shares one cached baseline)."""
    training: Optional[Callable] = getattr(get_method(method), "training", None)
    return training(arch, prune) if training else None


# PruneConfig fields that are not for every method; None means "the method's default"
_OPTIONAL_SETTINGS = ("scope", "sparsity_lambda")


def method_kwargs(method: str, prune, seed: int = 0, loader=None) -> dict:
    """Keyword arguments of ``get_method(method)`` from PruneConfig ``prune``: variant and prune_ratio, and the
    optional settings the method takes; an optional setting given to a method that does not take it is an error.
    ``seed`` goes to a method that draws at random (random-filters); ``loader`` (training batches) to a method that
    takes one (``needs_data``), which then requires it."""
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
    if needs_data(method):
        if loader is None:
            raise ConfigError(f"method {method!r} samples activations: it needs a loader of training batches")
        kw["loader"] = loader
    return kw


def method_regimes(method: str) -> tuple:
    """The regimes a method's pruned model goes through: fine-tune, Scratch-E, Scratch-B, unless it declares fewer
    (a control whose scratch runs would repeat another method's, e.g. random-filters)."""
    from ..experiment import REGIMES
    return tuple(getattr(get_method(method), "regimes", REGIMES))


def is_predefined(method: str) -> bool:
    """Whether ``method``'s widths follow from its settings alone, whatever the weights (``predefined = True``)."""
    return bool(getattr(get_method(method), "predefined", False))


def needs_data(method: str) -> bool:
    """Whether ``method`` reads training data while pruning (its signature takes ``loader``)."""
    return "loader" in inspect.signature(get_method(method)).parameters


def applies_to(method: str, model: nn.Module) -> bool:
    """Whether ``method`` can prune ``model`` (a method without ``applies_to`` prunes every family)."""
    check = getattr(get_method(method), "applies_to", None)
    return True if check is None else bool(check(model))


def get_method(name: str):
    return METHODS.get(name)


def list_methods() -> list[str]:
    return METHODS.names()


from . import l1_norm, magnitude, random_filters, regression, sfp, slimming, sss, thinet  # noqa: E402,F401  (registration side effects)
