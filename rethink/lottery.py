"""The lottery ticket comparison of Liu et al. 2019 (Section 6): iterative magnitude pruning (Frankle & Carbin,
ICLR 2019), then the sparse network trained from the large model's own initialisation masked (the "winning
ticket") and from a random initialisation, each at the same learning rate as the large model.  Their finding:
at the usual lr 0.1 the winning ticket is no better than random init; it helps only at lr 0.01,
which ends lower.

One round of pruning removes the same fraction of the remaining conv weights, so that after ``rounds`` rounds
``prune_ratio`` of them are gone (global magnitude threshold, ``rethink.prune.masks``); between rounds the ticket
is rewound to the initialisation and retrained.  The random initialisation is the one the protocol's scratch
training uses for masks (He-normal with the fan of the kept weights).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch.nn as nn

from .config import RunConfig
from .data import DatasetInfo
from .experiment import (get_baseline, initial_model, same_settings, schedule_for, training_state_path,
                         weights_digest)
from .metrics import count_flops, sparsity
from .prune.masks import apply_masks, magnitude_masks, mask_hooks, mask_sparsity, reinit_masked
from .records import earlier_train_s, provenance, read_record, write_record
from .train import train

INITS = ("winning-ticket", "random-init")


def round_ratios(prune_ratio: float, rounds: int) -> list[float]:
    """Cumulative prune_ratio after each round: each round removes the same fraction of what is left, ending at
    ``prune_ratio`` (e.g. 0.8 in 2 rounds: 0.553, 0.8)."""
    if rounds < 1 or not 0.0 <= prune_ratio < 1.0:
        raise ValueError(f"need rounds >= 1 and prune_ratio in [0, 1); got {rounds}, {prune_ratio}")
    return [1 - (1 - prune_ratio) ** ((r + 1) / rounds) for r in range(rounds)]


def with_lr(cfg: RunConfig, lr: float) -> RunConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=float(lr)))


def _train_masked(model: nn.Module, masks: dict, cfg: RunConfig, seed: int, loaders, progress: bool, desc: str,
                  state: Path | None = None, fresh: bool = False):
    train_loader, test_loader = loaders
    hooks = mask_hooks(masks)
    train_loader.reseed(seed)
    return train(model, train_loader, test_loader, schedule_for(cfg, cfg.train.epochs), progress=progress, desc=desc,
                 perf=cfg.perf, after_backward=hooks.after_backward, on_epoch_end=hooks.on_epoch_end,
                 state_path=state, fresh=fresh)


def lottery_ticket(cfg: RunConfig, seed: int, lr: float, info: DatasetInfo, loaders, rounds: int = 2,
                   progress: bool = True, record: Path | None = None, fresh: bool = False) -> dict:
    """Dense training at ``lr`` (the cached baseline), ``rounds`` rounds of global magnitude pruning to
    ``cfg.prune.prune_ratio`` with rewinding, then the final mask trained from the winning ticket and from a random
    init.  Returns {dense, rounds: [...], winning-ticket, random-init: metrics, sparsity, flops...}.  With
    ``record`` (the path its result goes to) a training cut off part-way continues from its last saved epoch,
    unless ``fresh``."""
    cfg = with_lr(cfg, lr)

    states = []

    def state(what: str, masks: dict):  # every training of the record has its own, named by the mask it keeps
        if record is None:
            return None
        states.append(training_state_path(record, cfg, rounds, what, weights_digest(masks)))
        return states[-1]
    train_loader, test_loader = loaders
    shape = (info.in_channels, 32, 32)
    dense, dense_metrics, cached = get_baseline(cfg, seed, info, train_loader, test_loader, progress)
    out = {"dense": dense_metrics, "dense_cached": cached, "rounds": [], "dense_flops": count_flops(dense, shape)}

    def ticket(masks):  # theta_0 of this seed (initial_model seeds itself), masked
        return apply_masks(initial_model(cfg, info, seed), masks)

    model = dense
    ratios = round_ratios(cfg.prune.prune_ratio, rounds)
    for r, ratio in enumerate(ratios):
        masks = magnitude_masks(model, ratio, cfg.prune.scope or "global")
        if r + 1 < len(ratios):  # rewind, retrain, and prune again
            model = ticket(masks)
            m = _train_masked(model, masks, cfg, seed, loaders, progress, f"round {r + 1} lr {lr:g} seed {seed}",
                              state(f"round {r + 1}", masks), fresh)
            out["rounds"].append(dict(prune_ratio=ratio, sparsity=sparsity(model), metrics=m))
    out["sparsity"] = mask_sparsity(masks)
    for init in INITS:
        if init == "winning-ticket":
            model = ticket(masks)
        else:
            model = reinit_masked(initial_model(cfg, info, seed + 10_000), masks)  # a draw other than theta_0's
        out[init] = _train_masked(model, masks, cfg, seed, loaders, progress, f"{init} lr {lr:g} seed {seed}",
                                  state(init, masks), fresh)
        out[f"{init}_sparsity"] = sparsity(model)  # after training: the mask held
    out["flops"] = count_flops(model, shape, nonzero=True)
    out["states"] = states  # the caller removes them once the result is kept
    return out


def lottery_record_path(cfg: RunConfig, seed: int, lr: float, rounds: int) -> Path:
    name = f"{cfg.data.dataset}-{cfg.profile}-lottery-{cfg.arch}-p{cfg.prune.prune_ratio:g}-r{rounds}-lr{lr:g}-s{seed}"
    return Path(cfg.output_dir) / "records" / f"{name}.json"


def write_lottery_record(cfg: RunConfig, seed: int, lr: float, rounds: int, result: dict,
                         wall_time_s: float) -> Path:
    """One JSON record of a lottery-ticket run under <output_dir>/records."""
    path = lottery_record_path(cfg, seed, lr, rounds)
    rec = dict(run_id=path.stem, kind="lottery-ticket", seed=seed, lr=lr, rounds=rounds,
               config=with_lr(cfg, lr).to_dict(), result=result, provenance=provenance(cfg.device, wall_time_s))
    return write_record(rec, path)


def run_lottery(cfg: RunConfig, lrs=(0.1, 0.01), rounds: int = 2, progress: bool = True,
                resume: bool = True) -> list[dict]:
    """``lottery_ticket`` for every seed of ``cfg`` and every lr, one record each; returns flat rows
    (seed, dataset, lr, init, best_acc, final_acc, sparsity) for tables.  A record written earlier under the same settings
    is reused (``resume``), so seeds can run apart (``seeds=[1]``) and an interrupted run continues."""
    from .data import get_loaders
    train_loader, test_loader, info = get_loaders(cfg.data, cfg.device, seed=0)
    rows = []
    for seed in cfg.seeds:
        for lr in lrs:
            path = lottery_record_path(cfg, seed, lr, rounds)
            rec = read_record(path) if resume else None
            if same_settings(rec, with_lr(cfg, lr)) and rec.get("rounds") == rounds:
                res = rec["result"]
            else:
                t0 = time.time()
                res = lottery_ticket(cfg, seed, lr, info, (train_loader, test_loader), rounds, progress, path,
                                     fresh=not resume)
                trainings = [*(r["metrics"] for r in res["rounds"]), *(res[init] for init in INITS)]
                states = res.pop("states")
                write_lottery_record(cfg, seed, lr, rounds, res, time.time() - t0 + earlier_train_s(trainings))
                for p in states:  # only now: a kill before the record was written loses no training
                    p.unlink(missing_ok=True)
            rows += lottery_rows(res, seed, lr, cfg.data.dataset)
    return rows


def lottery_rows(result: dict, seed: int, lr: float, dataset: str) -> list[dict]:
    """One record's ``result`` -> flat rows (seed, dataset, lr, init, best_acc, final_acc, sparsity, curve), one per
    init (dense, winning ticket, random init)."""
    rows = []
    for init in ("dense",) + INITS:
        m = result[init]
        rows.append(dict(seed=seed, dataset=dataset, lr=lr, init=init, best_acc=m["best_acc"], final_acc=m["final_acc"],
                         sparsity=0.0 if init == "dense" else result[f"{init}_sparsity"],
                         curve=[c["test_acc"] for c in m["curve"]]))
    return rows


def lottery_table(rows, metric: str = "best_acc", source: str = ""):
    """Rows of ``run_lottery`` -> one row per lr: dense | winning ticket | random init (mean ± std over the seeds
    whose run did not fail), the winning ticket's gain over random init (seeds where both trained), n, and the
    failed runs left out (:func:`rethink.verdict.flag_by`: near chance, or far below the other seeds)."""
    import pandas as pd

    from .report import kept_mean_std, mean_std
    from .verdict import flag_by
    df = pd.DataFrame(rows)
    df = df.assign(flag=flag_by(df, ["lr", "init"], metric))
    out = []
    for lr, g in df.groupby("lr", sort=False):
        row = {"lr": lr}
        for init in ("dense",) + INITS:
            row[init] = kept_mean_std(g[g.init == init], metric, "flag")
        ok = g[g.flag.isna()]
        gain = (ok[ok.init == "winning-ticket"].set_index("seed")[metric]
                - ok[ok.init == "random-init"].set_index("seed")[metric]).dropna()
        row["winning - random"] = mean_std(gain) if len(gain) else "–"
        row["sparsity %"] = round(100 * g[g.init == "winning-ticket"].sparsity.mean(), 2)
        row["n"] = g.seed.nunique()
        row["left out"] = "; ".join(f"{r.init} seed {r.seed}: {r.flag}" for r in g.itertuples() if r.flag)
        row["source"] = source
        out.append(row)
    return pd.DataFrame(out).set_index("lr")


def plot_lottery(rows, title: str = ""):
    """Test accuracy per epoch of the winning ticket and the random init (mean over seeds), one panel per lr."""
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    df = pd.DataFrame(rows)
    lrs = list(dict.fromkeys(df.lr))
    fig, axes = plt.subplots(1, len(lrs), figsize=(3.6 * len(lrs), 2.9), sharey=True, squeeze=False)
    for ax, lr in zip(axes[0], lrs):
        for init, style in (("dense", ":"), ("winning-ticket", "-"), ("random-init", "--")):
            curves = np.array(list(df[(df.lr == lr) & (df.init == init)].curve))
            if len(curves):
                ax.plot(range(1, curves.shape[1] + 1), curves.mean(0), style, label=init)
        ax.set(title=f"lr {lr:g}", xlabel="epoch")
    axes[0][0].set_ylabel("test accuracy %")
    axes[0][-1].legend(frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
