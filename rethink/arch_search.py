"""Pruning as architecture search (Liu et al. 2019, Section 5): the widths Network Slimming finds, trained from
scratch, against a uniformly narrowed network of the same FLOPs, and a "guided" design that gives every conv of
a stage the average width the pruned network kept in that stage.

The claims to check: the slimming-found architecture beats the uniform one at the same budget; later
layers are pruned most; the guided design comes close to the pruned one.  Stages are the runs of convs between
'M' (max-pool) entries of a VGG ``widths`` list.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from .config import ConfigError, RunConfig
from .data import DatasetInfo, get_loaders
from .experiment import build_model, get_baseline, original_widths, same_settings, schedule_for, training_state_path
from .metrics import count_flops, count_params
from .models import default_widths, get_model, scale_widths
from .prune import get_method, method_kwargs
from .records import earlier_train_s, provenance, read_record, write_record
from .train import train


def stages(widths: list) -> list[list[int]]:
    """Conv widths grouped by stage (split at 'M')."""
    out, cur = [], []
    for w in widths:
        if w == "M":
            out.append(cur)
            cur = []
        else:
            cur.append(w)
    return [s for s in out + [cur] if s]


def guided_widths(pruned: list) -> list:
    """Every conv of a stage gets the stage's mean pruned width (rounded, at least 1); 'M' kept."""
    if "M" not in pruned:
        raise ConfigError("the guided design is defined for VGG widths (stages separated by 'M')")
    means = iter([max(1, round(sum(s) / len(s))) for s in stages(pruned)])
    out, cur = [], None
    for i, w in enumerate(pruned):
        if w == "M":
            out.append(w)
            cur = None
            continue
        if cur is None:
            cur = next(means)
        out.append(cur)
    return out


def uniform_widths(arch: str, target_flops: int, in_channels: int = 3, num_classes: int = 10) -> tuple[list, float]:
    """(widths, multiplier): the arch's default (unscaled) widths times the one multiplier whose FLOPs come closest
    to ``target_flops`` (bisection on the multiplier, FLOPs grow with it)."""
    def flops(m):
        return count_flops(get_model(arch, num_classes, scale_widths(default_widths(arch), m, arch), in_channels),
                           (in_channels, 32, 32))
    lo, hi = 1e-3, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if flops(mid) < target_flops else (lo, mid)
    best = min((lo, hi), key=lambda m: abs(flops(m) - target_flops))
    return scale_widths(default_widths(arch), best, arch), best


def train_scratch(cfg: RunConfig, info: DatasetInfo, widths: list, seed: int, loaders, progress: bool = True,
                  desc: str = "scratch", state: Path | None = None, fresh: bool = False) -> dict:
    """Train ``widths`` from random initialisation with the large model's schedule (Scratch-E); with ``state``
    (``rethink.train.train``'s ``state_path``) a training cut off part-way continues from its last saved epoch, unless
    ``fresh``."""
    train_loader, test_loader = loaders
    torch.manual_seed(seed)
    model = build_model(cfg, info, widths)
    train_loader.reseed(seed)
    metrics = train(model, train_loader, test_loader, schedule_for(cfg, cfg.train.epochs), progress=progress,
                    desc=desc, perf=cfg.perf, state_path=state, fresh=fresh)
    shape = (info.in_channels, 32, 32)
    return dict(widths=list(model.widths), params=count_params(model), flops=count_flops(model, shape),
                metrics=metrics)


def run_arch_search(cfg: RunConfig, progress: bool = True, resume: bool = True) -> list[dict]:
    """For each seed: the slimming-trained large model (cached), its pruned widths at ``cfg.prune.prune_ratio``,
    then the pruned, the uniform and the guided architecture trained from scratch.  One record per seed; returns
    flat rows (seed, dataset, design, multiplier, widths, params, flops, best_acc, final_acc; design "uniform" with
    its width multiplier).  A seed's record written earlier under
    the same settings is reused (``resume``), so seeds can run apart and an interrupted run continues."""
    if cfg.prune.method != "slimming":
        raise ConfigError(f"the architecture search uses slimming, not {cfg.prune.method!r}")
    train_loader, test_loader, info = get_loaders(cfg.data, cfg.device, seed=0)
    loaders = (train_loader, test_loader)
    rows = []
    for seed in cfg.seeds:
        path = arch_search_record_path(cfg, seed)
        rec = read_record(path) if resume else None
        res = rec["result"] if same_settings(rec, cfg) else _search(cfg, seed, info, loaders, progress, path,
                                                                     fresh=not resume)
        rows += design_rows(res, seed, cfg.data.dataset)
    return rows


def arch_search_record_path(cfg: RunConfig, seed: int) -> Path:
    name = f"{cfg.data.dataset}-{cfg.profile}-archsearch-{cfg.arch}-p{cfg.prune.prune_ratio:g}-s{seed}"
    return Path(cfg.output_dir) / "records" / f"{name}.json"


def design_rows(result: dict, seed: int, dataset: str) -> list[dict]:
    """One record's ``result`` -> flat rows (seed, dataset, design, multiplier, widths, params, flops, best_acc,
    final_acc), one per design in the order large, pruned, uniform, guided."""
    rows = []
    for key in sorted((d for d in result if d != "clamped"), key=_design_rank):  # a record's keys are sorted
        r = result[key]
        # the record names the uniform design with its multiplier ("uniform (x0.648)"), which differs by seed:
        # one name across seeds, so that seeds pair, and the multiplier beside it
        design, mult = ("uniform", float(key[len("uniform (x"):-1])) if key.startswith("uniform") else (key, None)
        rows.append(dict(seed=seed, dataset=dataset, design=design, multiplier=mult, widths=r["widths"],
                         params=r["params"], flops=r["flops"], best_acc=r["metrics"]["best_acc"],
                         final_acc=r["metrics"]["final_acc"]))
    return rows


DESIGNS = ("large", "pruned", "uniform", "guided")  # in the order of the tables: the large model, then the designs


def _design_rank(design: str) -> int:
    return next(i for i, d in enumerate(DESIGNS) if design.startswith(d))


def _search(cfg: RunConfig, seed: int, info: DatasetInfo, loaders, progress: bool, path: Path,
            fresh: bool = False) -> dict:
    """One seed of ``run_arch_search``: its result, also written as the record at ``path``; ``fresh`` trains from
    the start, whatever an earlier attempt left."""
    train_loader, test_loader = loaders
    t0 = time.time()
    base, base_metrics, _ = get_baseline(cfg, seed, info, train_loader, test_loader, progress)
    result = get_method("slimming")(copy.deepcopy(base), **method_kwargs("slimming", cfg.prune))
    shape = (info.in_channels, 32, 32)
    target = count_flops(result.model, shape)
    uniform, mult = uniform_widths(cfg.arch, target, info.in_channels, info.num_classes)
    designs = {"pruned (slimming)": result.widths, f"uniform (x{mult / cfg.width_mult:.3f})": uniform,
               "guided (stage means)": guided_widths(result.widths)}
    res = {"large": dict(widths=original_widths(cfg), params=count_params(base), flops=count_flops(base, shape),
                         metrics=base_metrics), "clamped": result.clamped}
    states = {name: training_state_path(path, cfg, name, widths) for name, widths in designs.items()}
    for name, widths in designs.items():
        res[name] = train_scratch(cfg, info, widths, seed, loaders, progress, f"{name} seed {seed}", states[name],
                                  fresh)
    wall_s = time.time() - t0 + earlier_train_s(res[n]["metrics"] for n in designs)
    write_record(dict(run_id=path.stem, kind="architecture-search", seed=seed, config=cfg.to_dict(), result=res,
                      provenance=provenance(cfg.device, wall_s)), path)
    for p in states.values():  # only now: a kill before the record was written loses no training
        p.unlink(missing_ok=True)
    return res


def arch_table(rows, source: str = ""):
    """Rows of ``run_arch_search`` -> one row per design: params and FLOPs (mean over seeds: slimming's global
    threshold gives each seed its own widths), best and final accuracy (mean ± std over the seeds whose run did not
    fail), n (seeds run), and the failed runs left out (:func:`rethink.verdict.flag_by`, e.g. a design that never trained)."""
    import pandas as pd

    from .report import kept_mean_std
    from .verdict import flag_by
    df = pd.DataFrame(rows)
    df = df.assign(flag=flag_by(df, "design", "best_acc"))
    out = []
    for design, g in df.groupby("design", sort=False):
        mults = sorted(g.multiplier.dropna())
        if mults:  # the uniform design: its width multiplier, one per seed
            span = f"{mults[0]:.3f}" if mults[0] == mults[-1] else f"{mults[0]:.3f}-{mults[-1]:.3f}"
            design = f"{design} (x{span})"
        out.append({"design": design, "params": int(round(g.params.mean())), "FLOPs": int(round(g.flops.mean())),
                    "best acc": kept_mean_std(g, "best_acc", "flag"),
                    "final acc": kept_mean_std(g, "final_acc", "flag"), "n": g.seed.nunique(),
                    "left out": "; ".join(f"seed {r.seed}: {r.flag}" for r in g.itertuples() if r.flag),
                    "source": source})
    return pd.DataFrame(out).set_index("design")


def kept_by_stage(original: list, pruned: list):
    """Fraction of channels kept per stage (slimming's pruned widths / the original widths)."""
    import pandas as pd
    pairs = zip(stages(original), stages(pruned))
    rows = [{"stage": i + 1, "convs": len(a), "original": sum(a), "kept": sum(b),
             "kept %": round(100 * sum(b) / sum(a), 1)} for i, (a, b) in enumerate(pairs)]
    return pd.DataFrame(rows).set_index("stage")
