"""The training loop of the papers' CIFAR code: SGD (momentum 0.9, weight decay 1e-4), lr divided by 10 at 50%
and 75% of the epochs (or constant, for fine-tuning), best and final test accuracy.

Methods plug in through hooks, plain callables, so they never own the loop:
``after_backward(model)`` runs between backward and the optimizer step (e.g. a penalty on BN gradients),
``on_epoch_end(model, epoch)`` after each epoch's evaluation (e.g. soft filter pruning).

Speed settings (:class:`rethink.config.PerfConfig`: bf16 autocast, channels_last, cudnn.benchmark, torch.compile)
change how fast, not what, the loop computes: parameters, gradients and the optimizer stay fp32, hooks get the
plain (uncompiled) model, and the model is handed back in the default memory layout.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm  # text bars: they work in terminals, papermill logs and notebooks alike

from .config import PerfConfig, resolve_perf


@dataclass(frozen=True)
class Schedule:
    epochs: int
    lr: float
    milestones: tuple = (0.5, 0.75)  # fractions of epochs; () = constant lr
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: int = 0           # the first epochs at lr / 10 (He et al. 2016's warm-up of ResNet-110)

    def lr_at(self, epoch: int) -> float:
        """lr of 0-based ``epoch``: divided by 10 from each milestone epoch int(f * epochs) on, as the papers'
        code does at the start of epochs 80 and 120 of 160; and by 10 during the warm-up epochs."""
        if epoch < self.warmup_epochs:
            return self.lr * 0.1
        return self.lr * 0.1 ** sum(epoch >= int(f * self.epochs) for f in self.milestones)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _perf(perf: PerfConfig | None, device: torch.device) -> PerfConfig:
    return resolve_perf(perf or PerfConfig(), str(device))


def autocast(perf: PerfConfig, device: torch.device):
    """bf16 autocast of the forward pass when ``perf.amp == 'bf16'``, else nothing.  bf16 has fp32's exponent
    range, so no loss scaling is needed, and parameter gradients stay fp32."""
    if perf.amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, perf: PerfConfig):
    """A batch on the model's device (a no-op for a device-resident loader), NHWC when channels_last."""
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if perf.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    after_backward: Sequence[Callable] = (), perf: PerfConfig | None = None,
                    forward: Callable | None = None) -> tuple[float, float]:
    """One pass over ``loader``; returns (mean loss, accuracy %).  ``forward`` is the callable that computes the
    outputs (the compiled model when compiling; default ``model``); hooks always get ``model``."""
    device = _device(model)
    perf = _perf(perf, device)
    forward = model if forward is None else forward  # not `or`: a compiled module has no truth value
    model.train()
    # Sums stay on the device: one synchronisation per epoch, not per batch.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    for x, y in loader:
        x, y = _to_device(x, y, device, perf)
        with autocast(perf, device):
            out = forward(x)
        loss = F.cross_entropy(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for hook in after_backward:
            hook(model)
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (out.argmax(1) == y).sum()
        n += len(y)
    return loss_sum.item() / n, 100.0 * correct.item() / n


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, perf: PerfConfig | None = None,
             forward: Callable | None = None) -> tuple[float, float]:
    """(mean loss, accuracy %) over ``loader``."""
    device = _device(model)
    perf = _perf(perf, device)
    forward = model if forward is None else forward  # not `or`: a compiled module has no truth value
    model.eval()
    # Sums stay on the device: one synchronisation per evaluation, not per batch.
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    for x, y in loader:
        x, y = _to_device(x, y, device, perf)
        with autocast(perf, device):
            out = forward(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
        n += len(y)
    return loss_sum.item() / n, 100.0 * correct.item() / n


def train(model: nn.Module, train_loader, test_loader, schedule: Schedule, *,
          after_backward: Sequence[Callable] = (), on_epoch_end: Sequence[Callable] = (),
          progress: bool = True, desc: str = "train", perf: PerfConfig | None = None,
          state_path: str | Path | None = None, fresh: bool = False) -> dict:
    """Train ``model`` in place; returns metrics {curve: [per epoch], best_acc, final_acc, epochs, perf}, where
    ``perf`` holds the speed settings used, resolved for the model's device.

    With ``state_path`` the training survives an interruption (:class:`TrainingState`): a later call with the same
    path continues from the last saved epoch, and the metrics say so (``resumed_at_epoch``).  The caller makes the
    path unique to everything that determines the training, and removes the file once it has kept the result.
    ``fresh`` (a restart) removes an earlier attempt's state first, so the training starts over."""
    if state_path is not None and fresh:
        Path(state_path).unlink(missing_ok=True)
    perf = _perf_continued(state_path, perf, _device(model), schedule)
    state = TrainingState(state_path, schedule, perf, _device(model)) if state_path is not None else None
    with speed_setup(model, perf) as forward:
        metrics = _train(model, train_loader, test_loader, schedule, after_backward, on_epoch_end, progress, desc,
                         perf, forward, state)
    metrics["perf"] = dict(vars(perf))
    # on a CPU the float sums, hence the weights, depend on the thread count: kept with the model, since a record
    # written later (a cached large model) names only its own process's threads in its provenance
    metrics["threads"] = torch.get_num_threads()
    return metrics


def _perf_continued(state_path, perf: PerfConfig | None, device: torch.device, schedule: Schedule) -> PerfConfig:
    """``perf`` resolved for ``device``, except that a saved state of this schedule and device type written under
    other speed settings keeps them where ``perf``'s are this machine's own defaults (amp, channels_last,
    cudnn.benchmark as ``auto`` resolves them here): a training carried from a CPU without bf16 to one with it
    (README, ``cache --save``) continues in fp32, as it began, instead of starting over.  A setting that differs
    from this machine's default was asked for, and must match the state's (:class:`TrainingState`)."""
    resolved = _perf(perf, device)
    if state_path is None or not Path(state_path).exists():
        return resolved
    try:
        s = torch.load(state_path, map_location="cpu", weights_only=True)
        saved = PerfConfig(**s["perf"])
    except Exception:  # noqa: BLE001 (unreadable or foreign: TrainingState.load reports it)
        return resolved
    if saved == resolved or s.get("device") != device.type or s.get("schedule") != dataclasses.asdict(schedule):
        return resolved
    default = _perf(PerfConfig(compile=resolved.compile), device)
    asked = ["compile"] + [k for k in ("amp", "channels_last", "cudnn_benchmark")  # compile: the profile's choice
                           if getattr(resolved, k) != getattr(default, k)]
    if any(getattr(saved, k) != getattr(resolved, k) for k in asked):
        return resolved
    warnings.warn(f"training state {state_path} was written under amp={saved.amp}, "
                  f"channels_last={saved.channels_last}; the training continues under them")
    return saved


STATE_EVERY_S = 30.0  # a lost interval costs at most this much training; a write costs a fraction of a second


class TrainingState:
    """The file a resumable training writes after its epochs and reads back when it starts again: weights,
    optimizer, the loader's and torch's random streams (and the model's GPU's), the curve and the seconds trained,
    written atomically after an epoch at most every ``STATE_EVERY_S`` seconds, and after the last epoch (so a training
    whose result was not kept yet is not redone).  It holds what else makes the training: the schedule, the speed
    settings and the device type; a state of any other is reported and ignored.  On a CPU the continued training
    ends with the very weights of an uninterrupted one; on a GPU, where cudnn.benchmark chooses kernels per
    process, it is the same training continued, not bit for bit."""

    IDENTITY = ("schedule", "perf", "device")  # the keys of ``identity`` (rethink.cache compares two states by them)

    def __init__(self, path, schedule: Schedule, perf: PerfConfig, device: torch.device):
        self.path, self.last_write = Path(path), time.monotonic()
        self.identity = dict(schedule=dataclasses.asdict(schedule), perf=dict(vars(perf)), device=device.type)

    def load(self, model: nn.Module, optimizer, loader) -> tuple[list, float]:
        """Restore a saved state into ``model``, ``optimizer`` and ``loader``; returns (curve so far, seconds the
        earlier attempts trained), or ([], 0) when there is none.  Everything is checked before anything changes:
        a state that is unreadable or another training's is reported and ignored, and the training starts over
        as it would have without it."""
        if not self.path.exists():
            return [], 0.0
        try:
            s = torch.load(self.path, map_location="cpu", weights_only=True)
            self._check(s, model, optimizer, loader)
        except Exception as e:  # noqa: BLE001 (truncated, other model, other settings: all mean start over)
            warnings.warn(f"training state {self.path} is unusable ({type(e).__name__}: {e}); starting over")
            return [], 0.0
        model.load_state_dict(s["model"])
        optimizer.load_state_dict(s["optimizer"])  # moves the buffers to the parameters' device
        if s["loader_rng"] is not None:
            _generator(loader).set_state(s["loader_rng"])
        torch.set_rng_state(s["torch_rng"])
        if s["cuda_rng"] is not None:
            torch.cuda.set_rng_state(s["cuda_rng"], _device(model))
        return list(s["curve"]), float(s["elapsed_s"])

    def _check(self, s: dict, model: nn.Module, optimizer, loader) -> None:
        """Raise unless ``s`` can be loaded whole into these objects."""
        for k, v in self.identity.items():
            if s.get(k) != v:
                raise ValueError(f"written for another {k}, {s.get(k)}, not {v}")
        shapes = lambda sd: {k: tuple(v.shape) for k, v in sd.items()}  # noqa: E731
        if shapes(s["model"]) != shapes(model.state_dict()):
            raise ValueError("its weights are another model's")
        params = [p for g in optimizer.param_groups for p in g["params"]]
        saved = s["optimizer"]
        if [len(g["params"]) for g in saved["param_groups"]] != [len(g["params"]) for g in optimizer.param_groups]:
            raise ValueError("its optimizer has other parameters")
        for i, buf in saved["state"].items():
            b = buf.get("momentum_buffer")
            if b is not None and tuple(b.shape) != tuple(params[i].shape):
                raise ValueError("its optimizer has other parameters")
        g = _generator(loader)
        if (s["loader_rng"] is None) != (g is None) or (g is not None
                                                       and s["loader_rng"].numel() != g.get_state().numel()):
            raise ValueError("its loader's random stream is another kind")

    def save(self, model: nn.Module, optimizer, loader, curve: list, elapsed_s: float, final: bool) -> None:
        if not final and time.monotonic() - self.last_write < STATE_EVERY_S:
            return
        from .records import atomic_torch_save
        g = _generator(loader)
        device = _device(model)
        atomic_torch_save(dict(**self.identity, model=model.state_dict(), optimizer=optimizer.state_dict(),
                               loader_rng=None if g is None else g.get_state(), torch_rng=torch.get_rng_state(),
                               # the model's GPU only: another machine may have fewer
                               cuda_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                               curve=curve, elapsed_s=elapsed_s), self.path)
        self.last_write = time.monotonic()


def _generator(loader) -> torch.Generator | None:
    """The generator behind a loader's order and augmentation (TensorLoader and DataLoader both keep one)."""
    return getattr(loader, "generator", None)


@contextlib.contextmanager
def speed_setup(model: nn.Module, perf: PerfConfig):
    """Apply the resolved ``perf`` to ``model`` for the duration (cudnn.benchmark on CUDA, channels_last layout,
    torch.compile) and yield the callable that computes outputs; afterwards the model is back in the default
    layout (criteria, surgery and checkpoints see ordinary tensors) and cudnn.benchmark as it was."""
    benchmark = torch.backends.cudnn.benchmark
    if _device(model).type == "cuda":
        torch.backends.cudnn.benchmark = perf.cudnn_benchmark
    if perf.channels_last:
        model.to(memory_format=torch.channels_last)  # in place: the parameters keep their identity
    try:
        forward = model
        if perf.compile != "off":
            forward = torch.compile(model, mode=None if perf.compile == "default" else perf.compile)
        yield forward
    finally:
        torch.backends.cudnn.benchmark = benchmark
        if perf.channels_last:
            model.to(memory_format=torch.contiguous_format)


def _train(model, train_loader, test_loader, schedule, after_backward, on_epoch_end, progress, desc, perf,
           forward, state: TrainingState | None) -> dict:
    params_bn = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params_bn, lr=schedule.lr, momentum=schedule.momentum,
                                weight_decay=schedule.weight_decay)
    curve, earlier_s = state.load(model, optimizer, train_loader) if state is not None else ([], 0.0)
    start, t0 = len(curve), time.monotonic()
    bar = tqdm(range(start, schedule.epochs), desc=desc, disable=not progress, leave=False, initial=start,
               total=schedule.epochs)
    for epoch in bar:
        lr = schedule.lr_at(epoch)
        for g in optimizer.param_groups:
            g["lr"] = lr
        train_loss, train_acc = train_one_epoch(model, train_loader, optimizer, after_backward, perf, forward)
        test_loss, test_acc = evaluate(model, test_loader, perf, forward)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"{desc}: training loss is {train_loss} at epoch {epoch + 1}")
        curve.append(dict(epoch=epoch + 1, lr=lr, train_loss=train_loss, train_acc=train_acc,
                          test_loss=test_loss, test_acc=test_acc))
        for hook in on_epoch_end:
            hook(model, epoch)
        bar.set_postfix(test_acc=f"{test_acc:.2f}", lr=f"{lr:g}")
        if state is not None:
            state.save(model, optimizer, train_loader, curve, earlier_s + time.monotonic() - t0,
                       final=epoch + 1 == schedule.epochs)
    accs = [c["test_acc"] for c in curve]
    resumed = dict(resumed_at_epoch=start, earlier_train_s=round(earlier_s, 2)) if start else {}
    return dict(curve=curve, epochs=schedule.epochs,
                best_acc=max(accs) if accs else None, final_acc=accs[-1] if accs else None, **resumed)
