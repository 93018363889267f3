"""The training loop of the papers' CIFAR code: SGD (momentum 0.9, weight decay 1e-4), lr divided by 10 at 50%
and 75% of the epochs (or constant, for fine-tuning), best and final test accuracy.

Methods plug in through hooks, plain callables, so they never own the loop:
``after_backward(model)`` runs between backward and the optimizer step (e.g. a penalty on BN gradients),
``on_epoch_end(model, epoch)`` after each epoch's evaluation (e.g. soft filter pruning).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm  # text bars: they work in terminals, papermill logs and notebooks alike


@dataclass(frozen=True)
class Schedule:
    epochs: int
    lr: float
    milestones: tuple = (0.5, 0.75)  # fractions of epochs; () = constant lr
    momentum: float = 0.9
    weight_decay: float = 1e-4

    def lr_at(self, epoch: int) -> float:
        """lr of 0-based ``epoch``: divided by 10 from each milestone epoch int(f * epochs) on, as the papers'
        code does at the start of epochs 80 and 120 of 160."""
        return self.lr * 0.1 ** sum(epoch >= int(f * self.epochs) for f in self.milestones)


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    after_backward: Sequence[Callable] = ()) -> tuple[float, float]:
    """One pass over ``loader``; returns (mean loss, accuracy %)."""
    model.train()
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.int64)
    n = 0
    for x, y in loader:
        out = model(x)
        loss = F.cross_entropy(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for hook in after_backward:
            hook(model)
        optimizer.step()
        # Accumulate on the device; one synchronisation per epoch, not per batch.
        loss_sum = loss_sum.to(loss.device) + loss.detach() * len(y)
        correct = correct.to(y.device) + (out.argmax(1) == y).sum()
        n += len(y)
    return loss_sum.item() / n, 100.0 * correct.item() / n


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable) -> tuple[float, float]:
    """(mean loss, accuracy %) over ``loader``."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in loader:
        out = model(x)
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        n += len(y)
    return loss_sum / n, 100.0 * correct / n


def train(model: nn.Module, train_loader, test_loader, schedule: Schedule, *,
          after_backward: Sequence[Callable] = (), on_epoch_end: Sequence[Callable] = (),
          progress: bool = True, desc: str = "train") -> dict:
    """Train ``model`` in place; returns metrics {curve: [per epoch], best_acc, final_acc, epochs}."""
    params_bn = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params_bn, lr=schedule.lr, momentum=schedule.momentum,
                                weight_decay=schedule.weight_decay)
    curve = []
    bar = tqdm(range(schedule.epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        lr = schedule.lr_at(epoch)
        for g in optimizer.param_groups:
            g["lr"] = lr
        train_loss, train_acc = train_one_epoch(model, train_loader, optimizer, after_backward)
        test_loss, test_acc = evaluate(model, test_loader)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"{desc}: training loss is {train_loss} at epoch {epoch + 1}")
        curve.append(dict(epoch=epoch + 1, lr=lr, train_loss=train_loss, train_acc=train_acc,
                          test_loss=test_loss, test_acc=test_acc))
        for hook in on_epoch_end:
            hook(model, epoch)
        bar.set_postfix(test_acc=f"{test_acc:.2f}", lr=f"{lr:g}")
    accs = [c["test_acc"] for c in curve]
    return dict(curve=curve, epochs=schedule.epochs,
                best_acc=max(accs) if accs else None, final_acc=accs[-1] if accs else None)
