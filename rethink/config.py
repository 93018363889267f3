"""Run configuration: frozen dataclasses of primitives, profiles, and dict round trips.

No torch here (DESIGN.md: config is imported by everything).  A *profile* is a named set of defaults:
``paper`` is the protocol of the papers (CIFAR's, and ImageNet's through its ``per_dataset`` table), ``book`` is the converged CPU profile of the book's runs, ``quick``
fits minutes on a 2-core CPU (labs), ``smoke`` fits seconds (CI).
Any parameter overrides the profile.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any, Optional

PROFILES: dict[str, dict[str, Any]] = {
    # Liu et al. 2019, CIFAR protocol: 160 epochs, batch 64/256, fine-tune 40 epochs at lr 0.001.
    "paper": dict(n_seeds=5, epochs=160, finetune_epochs=40, batch_size=64, train_subset=None, test_subset=None,
                  width_mult=1.0,
                  # ImageNet protocol: 90 epochs, lr /10 every 30 (at 1/3 and 2/3), batch 256, fine-tune
                  # 20 epochs (L1), 1 run.  ``per_dataset`` settings apply when the dataset is the key.
                  per_dataset={"imagenet": dict(n_seeds=1, epochs=90, finetune_epochs=20, batch_size=256,
                                                test_batch_size=256, milestones=(1 / 3, 2 / 3))}),
    # Same schedule shape (lr /10 at 50% and 75%), a training subset and one width multiplier applied to the
    # original and the pruned widths alike, so that one Table 1 row takes minutes on 2 CPU cores.
    "quick": dict(n_seeds=2, epochs=10, finetune_epochs=3, batch_size=64, train_subset=3000, test_subset=1000,
                  width_mult=0.5),
    # The book's CPU profile: converged large models (checked on the protocol page: the large model under this
    # profile vs 2x the epochs is within 1 point), the full 10,000-image test set, 3 seeds.  Chosen by measurement
    # (README, "The book profile"): the paper's schedule shape, batch 64, fine-tuning a quarter of the epochs as
    # in the paper (40 of 160).  ``per_arch`` settings apply to the architectures whose name starts with the key.
    "book": dict(n_seeds=3, epochs=30, finetune_epochs=8, batch_size=64, train_subset=10000, test_subset=None,
                 width_mult=0.5,
                 # VGG: x0.25 has a quarter of x0.5's multiply-accumulates, ample for 10 classes of 32x32 grey images; at 30
                 # epochs VGG-16 gained 2.5 points from 2x the epochs (not converged), so it trains 60 (fine-tune 15)
                 per_arch={"vgg": dict(width_mult=0.25, epochs=60, finetune_epochs=15),
                           # VGG-19 gained 1.44 points from 60 to 120 epochs (not converged) and 0.65 from 120 to
                           # 240 (converged), so it trains 120;
                           # slimming's VGG-19 (penalty on its BN scales) gained 0.23 (converged), so it keeps 60
                           "vgg19": dict(epochs=120, finetune_epochs=30),
                           "vgg19-slim": dict(epochs=60, finetune_epochs=15),
                           # torch.compile doubles the CIFAR ResNets' training speed here (bf16 alone: none), while
                           # it slows VGG down: book/perf/throughput-cpu-book.md
                           "resnet": dict(compile="default"),
                           # ResNet-20 (the lottery ticket's) gained 1.20 points from 30 to 60 epochs (not converged)
                           "resnet20": dict(epochs=60, finetune_epochs=15),
                           # He et al. 2016 warm ResNet-110 up at lr 0.01 (~400 iterations): one epoch at lr/10;
                           # it gained 1.77 points from 30 to 60 epochs (not converged), so it trains 60
                           "resnet110": dict(warmup_epochs=1, epochs=60, finetune_epochs=15)},
                 # ``per_method`` settings apply to every run of that method (its large model, fine-tuning and
                 # scratch runs alike).  SFP's ResNet-56 (30 % of filters zeroed after every epoch) reached 85.47 %
                 # at 30 epochs, 89.25 % at 60 (+3.78) and 90.6 % at 120 (+1.3): not converged at 60 either, so it
                 # trains 120 (fine-tune 30)
                 per_method={"sfp": dict(epochs=120, finetune_epochs=30)}),
    # Seconds: exercises every code path, numbers mean nothing.
    "smoke": dict(n_seeds=1, epochs=2, finetune_epochs=1, batch_size=32, train_subset=128, test_subset=128,
                  width_mult=0.125),
}


SHORT_PROFILES = ("quick", "smoke")  # profiles whose large models do not converge (the protocol page)


class ConfigError(ValueError):
    """A configuration value is unknown or out of range."""


def known(kind: str, name: str, names) -> ConfigError:
    """The error for an unknown name: it lists the known ones (house rule 4)."""
    return ConfigError(f"unknown {kind} {name!r}; known: {', '.join(sorted(names))}")


def resolve_profile(profile: str, device: str) -> str:
    """``auto`` means ``paper`` on CUDA and ``quick`` elsewhere."""
    if profile == "auto":
        return "paper" if str(device).startswith("cuda") else "quick"
    if profile not in PROFILES:
        raise known("profile", profile, list(PROFILES) + ["auto"])
    return profile


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "cifar10"
    root: Optional[str] = None          # None: $RETHINK_DATA, else ./.data
    train_subset: Optional[int] = None  # first-N-per-seeded-permutation training images; None = all
    test_subset: Optional[int] = None
    batch_size: int = 64
    test_batch_size: int = 256


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 160                   # large model and Scratch-E
    lr: float = 0.1
    milestones: tuple = (0.5, 0.75)     # fractions of the epochs where lr is divided by 10
    momentum: float = 0.9
    weight_decay: float = 1e-4
    finetune_epochs: int = 40
    finetune_lr: float = 0.001          # constant during fine-tuning
    # He et al. 2016's warm-up for deep ResNets: the first warmup_epochs epochs at lr / 10 (the papers' code has
    # none: 0 in the paper profile); applies to the large model and to Scratch-E/B, not to fine-tuning
    warmup_epochs: int = 0


@dataclass(frozen=True)
class PruneConfig:
    method: str = "l1-norm"
    variant: Optional[str] = None       # e.g. "vgg16-a"; None: uniform prune_ratio
    prune_ratio: Optional[float] = None  # fraction of filters REMOVED per prunable layer
    sparsity_lambda: Optional[float] = None  # slimming: L1 penalty on BN scales (None: 1e-4 VGG, 1e-5 others); sss: on block factors (None: 1e-2)
    scope: Optional[str] = None          # magnitude: "global" (one threshold, default) | "layer"


AMP_MODES = ("auto", "off", "bf16")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class PerfConfig:
    """How fast the same computation runs; none of these changes the protocol (data, schedule, batch size).

    ``auto``/None resolve by device (:func:`resolve_perf`): on CUDA bf16 autocast, channels_last and
    cudnn.benchmark; on a CPU with bf16 instructions (AVX-512 BF16 or AMX) bf16 autocast and channels_last
    (2.2x faster for VGG-16 here, book/perf/); elsewhere fp32, contiguous, eager.  Records hold the resolved
    values.
    """
    amp: str = "auto"                       # auto | off | bf16: autocast dtype of forward passes (grads stay fp32)
    channels_last: Optional[bool] = None    # NHWC memory layout for model and batches; None = auto
    cudnn_benchmark: Optional[bool] = None  # let cuDNN time its conv algorithms once per shape; None = auto
    compile: str = "off"                    # off | default | reduce-overhead (CUDA graphs) | max-autotune


def resolve_perf(perf: "PerfConfig", device: str) -> "PerfConfig":
    """``perf`` with its automatic values fixed for ``device``; checks the names."""
    if perf.amp not in AMP_MODES:
        raise known("amp mode", perf.amp, AMP_MODES)
    if perf.compile not in COMPILE_MODES:
        raise known("compile mode", perf.compile, COMPILE_MODES)
    cuda = str(device).startswith("cuda")
    fast = cuda or cpu_has_bf16()
    auto = lambda v, default: default if v is None else bool(v)  # noqa: E731
    return PerfConfig(amp=("bf16" if fast else "off") if perf.amp == "auto" else perf.amp,
                      channels_last=auto(perf.channels_last, fast), cudnn_benchmark=auto(perf.cudnn_benchmark, cuda),
                      compile=perf.compile)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX tiles), where bf16 autocast is about twice
    as fast as fp32; elsewhere it is emulated and slower.  $RETHINK_CPU_BF16=0/1 overrides the detection."""
    env = os.environ.get("RETHINK_CPU_BF16")
    if env is not None:
        return env.strip() not in ("", "0", "false", "no")
    try:
        import torch
    except ImportError:  # config has no hard torch dependency
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


@dataclass(frozen=True)
class RunConfig:
    arch: str = "vgg16"
    profile: str = "quick"
    device: str = "cpu"
    width_mult: float = 1.0
    seeds: tuple = (0,)
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        sub = {"data": DataConfig, "train": TrainConfig, "prune": PruneConfig, "perf": PerfConfig}
        kw = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name in sub:
                v = _build(sub[f.name], v)
            elif isinstance(v, list):
                v = tuple(v)
            kw[f.name] = v
        return cls(**kw)


def _build(cls, d: dict):
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def make_config(*, arch: str, profile: str = "auto", device: str = "auto", dataset: str = "cifar10",
                method: str = "l1-norm", variant: Optional[str] = None, prune_ratio: Optional[float] = None,
                sparsity_lambda: Optional[float] = None, scope: Optional[str] = None,
                seeds=None, data_root: Optional[str] = None, output_dir: str = "runs",
                **overrides) -> RunConfig:
    """Flat primitives (a notebook's parameters cell) -> a RunConfig.

    ``overrides`` take any field of DataConfig/TrainConfig/PerfConfig by name, plus ``width_mult``; a value of
    None keeps the profile's default; PerfConfig's automatic values are resolved for ``device``.
    ``seeds=None`` means seeds 0..n-1 with the profile's n.
    """
    if device == "auto":
        device = _auto_device()
    profile = resolve_profile(profile, device)
    if prune_ratio is not None and not 0.0 <= prune_ratio < 1.0:
        raise ConfigError(f"prune_ratio must be in [0, 1): it is the fraction of filters removed; got {prune_ratio}")
    values = dict(PROFILES[profile])
    values.update(values.pop("per_dataset", {}).get(dataset, {}))
    values.update(arch_settings(values.pop("per_arch", {}), arch))
    values.update(values.pop("per_method", {}).get(method, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    if seeds is None:
        seeds = range(values["n_seeds"])
    values.pop("n_seeds")
    names = {f.name for c in (DataConfig, TrainConfig, PerfConfig) for f in fields(c)} | {"width_mult"}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)}; known: {', '.join(sorted(names))}")
    pick = lambda cls: {f.name: values[f.name] for f in fields(cls) if f.name in values}  # noqa: E731
    return RunConfig(
        arch=arch, profile=profile, device=device, width_mult=float(values.get("width_mult", 1.0)),
        seeds=tuple(int(s) for s in seeds), output_dir=str(output_dir),
        data=DataConfig(dataset=dataset, root=data_root, **pick(DataConfig)),
        train=TrainConfig(**pick(TrainConfig)),
        prune=PruneConfig(method=method, variant=variant, prune_ratio=prune_ratio,
                          sparsity_lambda=None if sparsity_lambda is None else float(sparsity_lambda), scope=scope),
        perf=resolve_perf(PerfConfig(**pick(PerfConfig)), device),
    )


def arch_settings(per_arch: dict, arch: str) -> dict:
    """The settings of a profile's ``per_arch`` table that apply to ``arch``: those of every key that ``arch``
    starts with, longer keys last (so "resnet110" overrides "resnet")."""
    values = {}
    for key in sorted(per_arch, key=len):
        if str(arch).startswith(key):
            values.update(per_arch[key])
    return values


def _auto_device() -> str:
    try:
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # config has no hard torch dependency
        return "cpu"
