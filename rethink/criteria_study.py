"""The experiments behind the criteria chapters (Huang et al. NeurIPS 2021): the trained baseline of a config
(from the checkpoint cache of :mod:`rethink.experiment`) next to its random initialisation, and the accuracy of
pruning it by each criterion at one prune_ratio, before and after a short fine-tune."""
from __future__ import annotations

import copy
import time
from typing import Iterable

import pandas as pd
import torch
import torch.nn as nn

from .config import RunConfig, known
from .data import get_loaders
from .experiment import get_baseline, initial_model
from .metrics import count_flops, count_params
from .models import get_model
from .models.pretrained import imagenet_pretrained, imagenet_top1
from .prune.by_criterion import prune_by_criterion
from .prune.criteria import get_criterion
from .records import provenance, write_record
from .train import Schedule, evaluate, train


WEIGHTS = ("trained", "imagenet")


def trained_and_random(cfg: RunConfig, seed: int, progress: bool = True, weights: str = "trained") -> dict:
    """{trained, random, metrics, cached, loaders: (train, test), info} for baseline ``seed`` of ``cfg``: the
    trained model comes from the cache (or is trained and cached); ``random`` is the same architecture at the
    initialisation of seed ``seed`` (the control: criteria on weights nothing was learned into).

    ``weights="imagenet"``: the trained model is torchvision's ImageNet-trained ``cfg.arch`` (VGG16, ResNet18:
    Huang et al.'s Figure 1; :func:`rethink.models.pretrained.imagenet_pretrained`), its metrics torchvision's
    published top-1, and there is no data (loaders and info None): nothing is trained or evaluated."""
    if weights not in WEIGHTS:
        raise known("weights", weights, WEIGHTS)
    if weights == "imagenet":
        t0 = time.time()
        model = imagenet_pretrained(cfg.arch)
        torch.manual_seed(seed)
        random = get_model(model.arch, num_classes=1000)
        acc = imagenet_top1(cfg.arch)
        return dict(trained=model, random=random, metrics=dict(best_acc=acc, final_acc=acc), cached=True,
                    loaders=(None, None), info=None, wall_time_s=time.time() - t0)
    train_loader, test_loader, info = get_loaders(cfg.data, cfg.device, seed=0)
    t0 = time.time()
    model, metrics, cached = get_baseline(cfg, seed, info, train_loader, test_loader, progress)
    random = initial_model(cfg, info, seed)
    return dict(trained=model, random=random, metrics=metrics, cached=cached, loaders=(train_loader, test_loader),
                info=info, wall_time_s=time.time() - t0)


def accuracy_by_criterion(model: nn.Module, criteria: Iterable[str], prune_ratio: float, train_loader,
                          test_loader, finetune_epochs: int, finetune_lr: float = 0.001, scope: str = "layer",
                          normalise: str | None = None, taylor_batches: int = 4, seed: int = 0, perf=None,
                          progress: bool = False, in_shape=(3, 32, 32)) -> pd.DataFrame:
    """Prune a copy of ``model`` by each criterion at ``prune_ratio`` (``scope`` layer or global) and fine-tune it
    for ``finetune_epochs`` at constant ``finetune_lr`` (the papers' fine-tuning, shortened); one row per
    criterion: params, FLOPs, test accuracy right after pruning and after fine-tuning (final and best), and
    the layers clamped at one filter."""
    rows = []
    for name in criteria:
        crit = get_criterion(name)
        result = prune_by_criterion(copy.deepcopy(model), name, prune_ratio, scope, normalise,
                                    loader=train_loader if crit.needs == "grad" else None, n_batches=taylor_batches)
        _, acc0 = evaluate(result.model, test_loader)
        train_loader.reseed(seed)  # every criterion fine-tunes on the same batches
        m = train(result.model, train_loader, test_loader, Schedule(finetune_epochs, finetune_lr, ()),
                  progress=progress, desc=f"fine-tune {name}", **({"perf": perf} if perf is not None else {}))
        rows.append(dict(criterion=crit.label, params=count_params(result.model),
                         flops=count_flops(result.model, in_shape), acc_pruned=acc0, acc_finetuned=m["final_acc"],
                         best_finetuned=m["best_acc"], clamped=len(result.clamped)))
    return pd.DataFrame(rows).set_index("criterion")


def per_seed_long(per_seed: dict) -> pd.DataFrame:
    """{seed: :func:`accuracy_by_criterion` table} -> one long table, a row per (seed, criterion)."""
    return pd.concat(per_seed, names=["seed"]).reset_index()


def accuracy_over_seeds(per_seed: dict, dataset: str) -> pd.DataFrame:
    """{seed: :func:`accuracy_by_criterion` table} -> one row per criterion: params and FLOPs (equal for every
    seed: layer-wise selection at one prune_ratio), the mean and std over seeds of each accuracy (std NaN for one
    seed), the most layers clamped, the number of seeds, and ``left_out``: the seeds whose fine-tuning
    failed (near ``dataset``'s chance, far below its other seeds; :func:`rethink.verdict.flag_by`), named and kept
    out of the fine-tuned means.  Right after pruning a network may well be near chance: that is not flagged."""
    from .verdict import flag_by
    long = per_seed_long(per_seed)
    long["flag"] = flag_by(long, "criterion", "acc_finetuned", dataset)
    g, kept = long.groupby("criterion", sort=False), long[long.flag.isna()].groupby("criterion", sort=False)
    out = g[["params", "flops"]].first()
    out["acc_pruned"], out["acc_pruned_std"] = g.acc_pruned.mean(), g.acc_pruned.std()
    for col in ("acc_finetuned", "best_finetuned"):
        out[col], out[f"{col}_std"] = kept[col].mean(), kept[col].std()
    out["clamped"], out["seeds"] = g.clamped.max(), g.size()
    out["left_out"] = pd.Series({c: "; ".join(f"seed {r.seed}: {r.flag}" for r in runs.itertuples() if r.flag)
                                 for c, runs in g})
    return out


def criteria_vs(per_seed: dict, reference: str, dataset: str, metric: str = "acc_finetuned") -> dict:
    """{criterion: :func:`rethink.verdict.paired_verdict` of that criterion minus ``reference`` (a criterion's
    label, e.g. "L1")}, paired by seed: every criterion of a seed prunes the same trained model and fine-tunes on
    the same batches.  A fine-tuning that failed (near ``dataset``'s chance, far below its other seeds) is left out
    of the pairs and named."""
    from .verdict import paired_verdict
    long = per_seed_long(per_seed)
    return {c: paired_verdict(long, c, reference, "criterion", metric, dataset=dataset)
            for c in long.criterion.unique() if c != reference}


def write_study_record(cfg: RunConfig, kind: str, seed: int, results: dict, wall_time_s: float) -> str:
    """One JSON record of a criteria study (``kind``: criteria-similarity | weight-distribution) under
    ``<output_dir>/records``; ``results`` must be JSON-serialisable (tables as ``DataFrame.to_dict``)."""
    from pathlib import Path
    results = _jsonable(results)
    rid = f"{cfg.data.dataset}-{cfg.profile}-{kind}-{cfg.arch}-s{seed}"
    path = Path(cfg.output_dir) / "records" / f"{rid}.json"
    write_record(dict(run_id=rid, kind=kind, seed=seed, config=cfg.to_dict(), results=results,
                      provenance=provenance(cfg.device, wall_time_s)), path)
    return str(path)


def _jsonable(obj):
    """DataFrames and Series (any nesting in dicts and lists) as JSON-ready dicts; tuple keys joined by '/'."""
    import json
    if isinstance(obj, (pd.DataFrame, pd.Series)):
        return json.loads(obj.to_json(orient="split"))
    if isinstance(obj, dict):
        return {"/".join(map(str, k)) if isinstance(k, tuple) else str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    return obj
