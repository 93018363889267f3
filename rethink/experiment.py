"""The protocol of Liu et al. 2019 as functions: train the large model (baseline) -> prune -> fine-tune |
Scratch-E | Scratch-B, for each seed, with one record per run.

Baselines are cached as checkpoints keyed by everything that determines them (arch, widths, data, schedule,
seed), so a second experiment on the same baseline (another variant, another method) reuses it.  Records of
finished runs are reused too (``resume=True``), so an interrupted experiment continues where it stopped, and a
training cut off part-way continues from its last saved epoch (``rethink.train.TrainingState``); a seed
whose records are all finished needs no large model at all, and the scratch runs of a predefined method need only
its untrained initialisation, so neither retrains a large model that has left the cache.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from .config import RunConfig
from .data import DatasetInfo, get_loaders
from .metrics import count_flops, count_params, layer_sparsity, sparsity
from .models import default_widths, get_model, scale_widths
from .prune import Hooks, PruneResult, baseline_training, get_method, is_predefined, method_kwargs, method_regimes
from .records import (FORMAT, READABLE_FORMATS, atomic_torch_save, earlier_train_s, file_format, provenance,
                      read_record, write_record)
from .train import Schedule, train

REGIMES = ("fine-tune", "scratch-e", "scratch-b")


# Scratch-B's cap per dataset, in multiples of the large model's epochs.  CIFAR: none, as in the papers'
# code.  ImageNet: Liu et al.'s code (imagenet/*/main_B.py) trains 180 epochs when FLOPs_large / FLOPs_pruned >= 2,
# i.e. at most 2 x 90.
SCRATCH_B_CAP = {"imagenet": 2.0}


def scratch_b_epochs(epochs: int, flops_large: int, flops_pruned: int, dataset: str | None = None) -> int:
    """Scratch-B: the pruned model gets the large model's compute budget, int(E * FLOPs_large / FLOPs_pruned)
    epochs, capped at ``SCRATCH_B_CAP[dataset]`` x E where the papers' code caps it (ImageNet: 180 of 90)."""
    budget = int(epochs * flops_large / flops_pruned)
    cap = SCRATCH_B_CAP.get(dataset)
    return budget if cap is None else min(budget, int(cap * epochs))


def cache_dir() -> Path:
    """$RETHINK_CACHE, else ~/.cache/rethink."""
    # absolute: the sweep's workers run in the grid's folder
    return Path(os.environ.get("RETHINK_CACHE") or Path.home() / ".cache" / "rethink").expanduser().resolve()


def original_widths(cfg: RunConfig) -> list:
    """The unpruned widths of ``cfg.arch`` with the profile's width multiplier applied."""
    return scale_widths(default_widths(cfg.arch), cfg.width_mult, cfg.arch)


def build_model(cfg: RunConfig, info: DatasetInfo, widths=None) -> nn.Module:
    model = get_model(cfg.arch, info.num_classes, widths or original_widths(cfg), info.in_channels)
    return model.to(cfg.device)


def initial_model(cfg: RunConfig, info: DatasetInfo, seed: int) -> nn.Module:
    """The large model of ``seed`` before training: the initialisation its baseline starts from (and the one a
    lottery ticket rewinds to)."""
    torch.manual_seed(seed)
    return build_model(cfg, info)


def schedule_for(cfg: RunConfig, epochs: int) -> Schedule:
    """The large model's schedule of ``cfg`` (lr, milestones at the same fractions, momentum, weight decay) for
    ``epochs`` epochs."""
    t = cfg.train
    return Schedule(epochs, t.lr, tuple(t.milestones), t.momentum, t.weight_decay, t.warmup_epochs)


def baseline_key(cfg: RunConfig, seed: int) -> str:
    """Hash of what determines a trained baseline; the variant and device do not, nor the method unless it trains
    the large model its own way (slimming's sparsity penalty, SFP): then its training settings are in the key."""
    d = cfg.to_dict()
    key = dict(arch=cfg.arch, widths=original_widths(cfg), data={k: v for k, v in d["data"].items() if k != "root"},
               train={k: v for k, v in d["train"].items() if not k.startswith("finetune")}, seed=seed)
    training = baseline_training(cfg.prune.method, cfg.arch, cfg.prune)
    if training is not None:
        key["training"] = dict(method=cfg.prune.method, **training.settings)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def baseline_path(cfg: RunConfig, seed: int) -> Path:
    """Where the trained baseline of ``cfg`` and ``seed`` is cached (the sweep trains baselines ahead of the runs
    that prune them, and ships this file between the machines of a Ray cluster)."""
    return cache_dir() / "baselines" / f"{cfg.arch}-{baseline_key(cfg, seed)}.pt"


def get_baseline(cfg: RunConfig, seed: int, info: DatasetInfo, train_loader, test_loader,
                 progress: bool = True) -> tuple[nn.Module, dict, bool]:
    """(trained large model, its metrics, whether it came from the cache).  A checkpoint that cannot be read or
    does not fit is reported and retrained."""
    path = baseline_path(cfg, seed)
    if path.exists():
        try:
            ckpt = torch.load(path, map_location=cfg.device, weights_only=True)
            if file_format(ckpt) not in READABLE_FORMATS:
                raise ValueError(f"format {file_format(ckpt)}, this version reads {list(READABLE_FORMATS)}")
            model = build_model(cfg, info, ckpt["widths"])
            model.load_state_dict(ckpt["state_dict"])
            return model, ckpt["metrics"], True
        except Exception as e:  # noqa: BLE001 (truncated file, wrong keys, wrong shapes: all mean retrain)
            warnings.warn(f"baseline checkpoint {path} is unusable ({type(e).__name__}: {e}); retraining it")
    t0 = time.time()
    model = initial_model(cfg, info, seed)
    train_loader.reseed(seed)
    training = baseline_training(cfg.prune.method, cfg.arch, cfg.prune)
    if training is not None and training.prepare is not None:
        model = training.prepare(model)  # e.g. SSS's factor per residual block (the checkpoint keeps it)
    hooks = training.hooks if training is not None else Hooks()  # e.g. slimming's penalty on BN scales
    state = path.with_suffix(".state.pt")  # named by the key, like the checkpoint; it holds the speed settings
    metrics = train(model, train_loader, test_loader, schedule_for(cfg, cfg.train.epochs), progress=progress,
                    desc=f"baseline {cfg.arch} seed {seed}", perf=cfg.perf, after_backward=hooks.after_backward,
                    on_epoch_end=hooks.on_epoch_end, state_path=state)
    # kept with the checkpoint, so that a record written from the cache reports what training cost, not the load
    metrics = {**metrics, "train_time_s": round(time.time() - t0 + earlier_train_s([metrics]), 2)}
    atomic_torch_save(dict(format=FORMAT, arch=cfg.arch, num_classes=info.num_classes, in_channels=info.in_channels,
                           widths=list(model.widths), state_dict=model.state_dict(), metrics=metrics), path)
    state.unlink(missing_ok=True)  # only now: a kill before the checkpoint was written loses nothing
    return model, metrics, False


def config_used(cfg: RunConfig, metrics: dict) -> dict:
    """``cfg`` as a record keeps it, with the speed settings its training used (``metrics["perf"]``): a training
    carried from another machine continues under its own (``rethink.train``)."""
    d = cfg.to_dict()
    if metrics.get("perf"):
        d["perf"] = {**d["perf"], **metrics["perf"]}
    return d


def baseline_tag(cfg: RunConfig) -> str:
    """"unpruned" for a plainly trained large model, else the method's tag (e.g. "slimming-l1e-05")."""
    training = baseline_training(cfg.prune.method, cfg.arch, cfg.prune)
    return training.tag if training is not None else "unpruned"


def run_id(cfg: RunConfig, regime: str, seed: int) -> str:
    p = cfg.prune
    what = p.variant or f"{cfg.arch}-p{p.prune_ratio:g}"
    if regime == "baseline":
        what = cfg.arch
    method = p.method if regime != "baseline" else baseline_tag(cfg)
    return f"{cfg.data.dataset}-{cfg.profile}-{method}-{what}-{regime}-s{seed}"


def _model_info(model: nn.Module, info: DatasetInfo, sparse: bool = False) -> dict:
    """Size of ``model``; ``sparse`` (a masked model): params and FLOPs count the non-zero weights only, and the
    dense counts are kept beside them."""
    shape = (info.in_channels, info.image_size, info.image_size)  # FLOPs at the training input size (ImageNet: 224)
    d = dict(arch=model.arch, widths=list(model.widths), params=count_params(model, nonzero=sparse),
             flops=count_flops(model, shape, nonzero=sparse), sparsity=round(sparsity(model), 6))
    if sparse:
        d.update(dense_params=count_params(model), dense_flops=count_flops(model, shape),
                 layer_sparsity=[round(x, 6) for x in layer_sparsity(model)])
    return d


def run_experiment(cfg: RunConfig, progress: bool = True, resume: bool = True,
                   regimes: tuple | None = None) -> list[dict]:
    """Run the whole protocol for every seed of ``cfg``; returns the records (baseline and the three regimes).
    ``regimes`` runs only those of the method's regimes (e.g. ("fine-tune",) while the large models are cached;
    a scratch run of a predefined method needs no trained large model, so it can come later on another machine)."""
    from .config import ConfigError
    from .paths import check_run_paths
    own = method_regimes(cfg.prune.method)
    if regimes is not None and not set(regimes) <= set(own):
        raise ConfigError(f"unknown regime(s) {sorted(set(regimes) - set(own))} for {cfg.prune.method}; "
                          f"its regimes: {', '.join(own)}")
    check_run_paths(cfg.output_dir, cfg.data.root)  # before any training: a bad folder costs seconds, not hours
    out = Path(cfg.output_dir) / "records"
    train_loader, test_loader, info = get_loaders(cfg.data, cfg.device, seed=0)
    tag = baseline_tag(cfg)  # which large model: the same for every seed and regime
    wanted = [r for r in own if regimes is None or r in regimes]
    records = []
    for seed in cfg.seeds:
        done = _finished(out, cfg, seed, wanted) if resume else None
        if done is not None:  # every record is here: the large model is not needed (it may have left the cache)
            records += done
            continue
        t0 = time.time()
        path = _record_path(out, cfg, "baseline", seed)
        rec = read_record(path) if resume else None
        stand_in = large_model_stand_in(cfg, seed, wanted) if resume else None
        if stand_in == "untrained":
            base, weights_used = initial_model(cfg, info, seed), False
            base_info = _model_info(base, info)
        elif stand_in is not None:  # the record that keeps the pruned model
            done_rec = stand_in
            base, base_info = None, done_rec["baseline"]
        else:
            base, base_metrics, cached = get_baseline(cfg, seed, info, train_loader, test_loader, progress)
            base_info, weights_used = _model_info(base, info), True
            # rewritten when it is not this baseline's, or was written under other settings
            if not same_settings(rec, cfg, any_method=True) or rec["metrics"] != base_metrics:
                rec = dict(run_id=path.stem, regime="baseline", seed=seed, config=config_used(cfg, base_metrics),
                           metrics=base_metrics, model=base_info, baseline_cached=cached, baseline_tag=tag,
                           provenance=provenance(cfg.device, base_metrics.get("train_time_s", time.time() - t0)))
                write_record(rec, path)
        records.append(rec)
        if not wanted:  # only the large model's record was asked for: no need to prune
            continue

        train_loader.reseed(seed)  # a method that samples training data (ThiNet) sees the same batches every time
        if base is None:  # the pruned model as its record keeps it (structured: its widths say it all), and what
            # the method measured when it pruned the trained weights
            widths, kept = done_rec["model"]["widths"], done_rec["prune"]
            result = PruneResult(model=build_model(cfg, info, widths), widths=widths, keep={},
                                 clamped=kept["clamped"], report=kept.get("report", []))
            pruned_info, whose, measured = done_rec["model"], dict(widths_from=done_rec["run_id"]), True
        else:
            result = get_method(cfg.prune.method)(copy.deepcopy(base), **method_kwargs(cfg.prune.method, cfg.prune,
                                                                                          seed, loader=train_loader))
            pruned_info = _model_info(result.model, info, sparse=bool(result.masks))
            whose = dict(cached=cached) if weights_used else dict(weights_used=False)
            measured = weights_used
        hooks = result.hooks()  # e.g. masks kept at zero (unstructured pruning); none for structured methods
        epochs_b = scratch_b_epochs(cfg.train.epochs, base_info["flops"], pruned_info["flops"], cfg.data.dataset)
        base_ref = dict(flops=base_info["flops"], params=base_info["params"], widths=base_info["widths"], **whose)
        # what the method measured on the trained weights (an untrained model's reconstruction errors mean nothing)
        report = dict(report=result.report) if result.report and measured else {}
        for regime in wanted:
            path = _record_path(out, cfg, regime, seed)
            rec = read_record(path) if resume else None
            if same_settings(rec, cfg) and rec["model"]["widths"] == result.widths:
                records.append(rec)  # finished earlier with the same settings: reuse
                continue
            if regime == "fine-tune":
                schedule = Schedule(cfg.train.finetune_epochs, cfg.train.finetune_lr, (), cfg.train.momentum,
                                    cfg.train.weight_decay)
            else:
                schedule = schedule_for(cfg, cfg.train.epochs if regime == "scratch-e" else epochs_b)
            # what a record of this run says of itself, whether trained here or shared
            ours = dict(run_id=path.stem, regime=regime, seed=seed, config=cfg.to_dict(), model=pruned_info,
                        baseline=base_ref, baseline_tag=tag)
            twin = None if regime == "fine-tune" or result.masks else scratch_twin(out, cfg, regime, seed,
                                                                                      result.widths, schedule.epochs)
            if twin is not None:  # the same training under another method's name: reuse it, say whose it is
                rec = dict(twin, **ours, shared_from=twin.get("shared_from", twin["run_id"]))
                rec.update(config=config_used(cfg, twin["metrics"]),
                           prune=dict(clamped=result.clamped, trained_sparsity=twin["prune"]["trained_sparsity"],
                                      **report))
                write_record(rec, path)
                records.append(rec)
                continue
            t0 = time.time()
            if regime == "fine-tune":
                model = copy.deepcopy(result.model)
            else:
                torch.manual_seed(seed)
                model = result.init_scratch(build_model(cfg, info, result.widths))
            train_loader.reseed(seed)
            # what the training starts from counts too: a fine-tuning's weights, a scratch run's masks
            start = weights_digest(result.model.state_dict() if regime == "fine-tune" else {}, result.masks or {})
            state = training_state_path(path, cfg, result.widths, dataclasses.asdict(schedule), start)
            metrics = train(model, train_loader, test_loader, schedule, progress=progress,
                            desc=f"{regime} {cfg.prune.variant or cfg.arch} seed {seed}", perf=cfg.perf,
                            after_backward=hooks.after_backward, on_epoch_end=hooks.on_epoch_end,
                            state_path=state, fresh=not resume)
            rec = dict(ours, config=config_used(cfg, metrics), metrics=metrics,
                       # measured after training: a mask that did not hold would show here
                       prune=dict(clamped=result.clamped, trained_sparsity=round(sparsity(model), 6), **report),
                       provenance=provenance(cfg.device, time.time() - t0 + earlier_train_s([metrics])))
            write_record(rec, path)
            state.unlink(missing_ok=True)  # only now: a kill before the record was written loses nothing
            records.append(rec)
    return records


def training_state_path(record: Path, cfg: RunConfig, *what) -> Path:
    """Where a training behind ``record`` keeps its state while it runs (``rethink.train.TrainingState``): in the
    cache, named by the record and a hash of the settings and ``what`` (everything else that determines the
    training: widths, schedule, which of the record's trainings), so that only the very same training continues
    from it.  The seed list does not count: seeds run apart continue what a run of all of them began; nor do the
    speed settings, which the state holds and checks itself (``rethink.train``: those left to the machine follow
    the state, so a training carried to a machine with other defaults continues)."""
    what = [str(Path(record).resolve()), dataclasses.replace(cfg, seeds=(), perf=None).to_dict(), *what]
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_dir() / "training-states" / f"{Path(record).stem}-{digest}.state.pt"


def weights_digest(*tensors: dict) -> str:
    """A short hash of dicts of tensors (weights, masks), for naming what a training starts from."""
    h = hashlib.sha256()
    for d in tensors:
        for k in sorted(d):
            h.update(k.encode())
            h.update(d[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def same_settings(rec: dict | None, cfg: RunConfig, any_method: bool = False) -> bool:
    """Whether ``rec`` is a readable record written under ``cfg``'s settings.  The seed list never counts: a seed's
    record is the same whichever other seeds ran with it, so seeds run as separate processes (``run --seeds 1``)
    are reused by a run of all of them.  With ``any_method`` the method setting does not count either: a baseline
    is shared by every method setting, and a scratch twin comes from another method.  The speed settings never
    count (:class:`rethink.config.PerfConfig`: they do not change the protocol): a row's seeds may come from
    machines with and without bf16, and a record names what its training used."""
    if rec is None or file_format(rec) not in READABLE_FORMATS or "config" not in rec:
        return False
    theirs = RunConfig.from_dict(rec["config"])
    return dataclasses.replace(theirs, seeds=cfg.seeds, perf=cfg.perf,
                               prune=cfg.prune if any_method else theirs.prune) == cfg


def _record_path(out: Path, cfg: RunConfig, regime: str, seed: int) -> Path:
    return out / f"{run_id(cfg, regime, seed)}.json"


def _finished(out: Path, cfg: RunConfig, seed: int, regimes: list) -> list | None:
    """The records of ``seed`` (its baseline, then ``regimes``) when every one is finished under ``cfg``'s
    settings, else None.  All of them come from one trained large model, so they also agree on its widths."""
    base = read_record(_record_path(out, cfg, "baseline", seed))
    runs = [read_record(_record_path(out, cfg, r, seed)) for r in regimes]
    if not same_settings(base, cfg, any_method=True) or not all(same_settings(r, cfg) for r in runs):
        return None
    return [base] + runs


def large_model_stand_in(cfg: RunConfig, seed: int, regimes, cwd: str | Path = ".") -> str | dict | None:
    """What stands in for ``seed``'s trained large model when it is gone from the cache (its record here) and
    ``regimes`` need only the pruned widths, so that retraining it would cost hours for nothing: "untrained" for
    scratch runs of a predefined method (the ratios give the widths, the untrained large model does too), or a
    finished record of the seed that keeps its pruned model (:func:`_recorded_pruning`: scratch runs left of a
    structured method, its fine-tuning recorded); None where the large model is needed, or cached.  ``cwd``: where
    a relative ``output_dir`` starts."""
    out = Path(cwd) / cfg.output_dir / "records"
    if baseline_path(cfg, seed).exists() or not same_settings(read_record(_record_path(out, cfg, "baseline", seed)),
                                                               cfg, any_method=True):
        return None
    if "fine-tune" not in regimes and is_predefined(cfg.prune.method):
        return "untrained"
    return _recorded_pruning(out, cfg, seed, list(regimes))


def _recorded_pruning(out: Path, cfg: RunConfig, seed: int, wanted: list) -> dict | None:
    """A finished record of ``seed`` under ``cfg``'s settings that keeps its pruned model, where all that is left of
    ``wanted`` are scratch runs of a structured method (no masks: the widths are the whole pruned model); else None.
    Its ``baseline`` holds the large model's size, its ``model`` the pruned widths."""
    recs = {r: read_record(_record_path(out, cfg, r, seed)) for r in method_regimes(cfg.prune.method)}
    left = [r for r in wanted if not same_settings(recs[r], cfg)]
    done = [rec for rec in recs.values() if same_settings(rec, cfg)]
    if not left or "fine-tune" in left or not done:
        return None
    rec = done[0]
    if "dense_params" in rec["model"] or "flops" not in rec.get("baseline", {}):  # masked: widths do not say it all
        return None
    return rec


def scratch_twin(out: Path, cfg: RunConfig, regime: str, seed: int, widths: list, epochs: int) -> dict | None:
    """A finished scratch record of another method that is the same training as ``regime`` of ``cfg``: same data,
    profile and schedule, same architecture and widths, same seed and epochs, no mask.  A scratch model inherits
    nothing from pruning but its widths (``torch.manual_seed(seed)``, then a fresh model), so two methods that
    reach the same widths (ThiNet and channel pruning at one ratio for every layer) would train it twice (bit for
    bit under the same speed settings); the second one's record is a copy that names the first (``shared_from``)."""
    for path in sorted(out.glob(f"{cfg.data.dataset}-{cfg.profile}-*-{regime}-s{seed}.json")):
        rec = read_record(path)
        if (not same_settings(rec, cfg, any_method=True) or rec.get("regime") != regime or rec.get("seed") != seed
                or "dense_params" in rec.get("model", {})):
            continue
        if (rec["config"]["prune"]["method"] != cfg.prune.method and rec["model"]["arch"] == cfg.arch
                and rec["model"]["widths"] == widths and rec["metrics"].get("epochs") == epochs):
            return rec
    return None


def control_config(cfg: RunConfig, control: str | None) -> RunConfig | None:
    """The run of ``control`` (e.g. "random-filters") beside ``cfg``: same large model, widths and seeds; None
    without a control or when the control does not apply to ``cfg``'s method (it keeps the widths of the methods
    listed in its ``controls``)."""
    if not control:
        return None
    if cfg.prune.method not in getattr(get_method(control), "controls", ()):
        return None
    return dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, method=control))


def trainings(cfg: RunConfig) -> list[tuple[Path, int, str]]:
    """(record, seed, regime) of what ``run_experiment(cfg)`` leaves behind: each seed's baseline and the method's
    regimes, in the order it trains them."""
    out = Path(cfg.output_dir) / "records"
    return [(_record_path(out, cfg, regime, seed), seed, regime) for seed in cfg.seeds
            for regime in ("baseline",) + method_regimes(cfg.prune.method)]


def record_paths(cfg: RunConfig) -> list[Path]:
    """The records ``run_experiment(cfg)`` leaves behind: each seed's baseline and the method's regimes."""
    return [path for path, _, _ in trainings(cfg)]


def configure(**params) -> RunConfig:
    """``make_config`` for notebooks and the command line: with neither ``variant`` nor ``prune_ratio``, the
    L1-norm method takes the first published variant of the arch (vgg16 -> vgg16-a, resnet56 -> resnet56-a)."""
    from .config import ConfigError, make_config
    from .models import MODELS
    from .prune.l1_norm import list_variants
    MODELS.get(params.get("arch"))  # an unknown arch is reported as such, with the known ones
    if params.get("variant") is None and params.get("prune_ratio") is None:
        variants = list_variants(params.get("arch"))
        if params.get("method", "l1-norm") != "l1-norm" or not variants:
            raise ConfigError(f"no published variant for {params.get('arch')!r}: give prune_ratio (fraction of "
                              f"filters removed) or a variant; variants: {', '.join(list_variants())}")
        params["variant"] = variants[0]
    return make_config(**params)
