"""Is a profile long enough?  The large model of seed 0 under the profile vs the same model, data and schedule
shape with 2x the epochs.  The book calls a profile converged for an architecture when the 2x model is at most
``TOLERANCE`` points better (best test accuracy, full test set).

The 1x model is the very checkpoint the book's rows prune (same cache key), so the check costs one extra
training of 2x the epochs per architecture.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from .config import RunConfig
from .data import get_loaders
from .experiment import baseline_tag, get_baseline, same_settings
from .records import provenance, read_record, write_record

TOLERANCE = 1.0  # points of best test accuracy between 2x and 1x epochs


def convergence_run_id(cfg: RunConfig, factor: int, seed: int) -> str:
    return f"{cfg.data.dataset}-{cfg.profile}-convergence-{baseline_tag(cfg)}-{cfg.arch}-x{factor}-s{seed}"


def check_convergence(cfg: RunConfig, seed: int = 0, progress: bool = True, redo: bool = False) -> list[dict]:
    """Train (or take from the cache) the large model of ``cfg`` for its epochs and for twice as many; write one
    record each to ``<output_dir>/records`` (regime ``convergence``, ``factor`` 1 or 2); return both.  A record
    written under the same settings is the result, cache or not: a check of a 1x model trained in an earlier
    session (whose cache is gone) does not train it again, only its missing 2x; ``redo`` trains both again."""
    from .paths import check_run_paths
    check_run_paths(cfg.output_dir, cfg.data.root)
    train_loader, test_loader, info = get_loaders(cfg.data, cfg.device, seed=0)
    out = Path(cfg.output_dir) / "records"
    records = []
    for factor in (1, 2):
        run_cfg = dataclasses.replace(cfg, seeds=(seed,),
                                      train=dataclasses.replace(cfg.train, epochs=cfg.train.epochs * factor))
        path = out / f"{convergence_run_id(cfg, factor, seed)}.json"
        rec = read_record(path)
        if not redo and same_settings(rec, run_cfg):
            records.append(rec)
            continue
        t0 = time.time()
        model, metrics, cached = get_baseline(run_cfg, seed, info, train_loader, test_loader, progress)
        if rec is None or rec["metrics"] != metrics or redo:
            rec = dict(run_id=path.stem, regime="convergence", factor=factor, seed=seed, config=run_cfg.to_dict(),
                       metrics=metrics, baseline_tag=baseline_tag(cfg), baseline_cached=cached,
                       model=dict(arch=cfg.arch, widths=list(model.widths)),
                       provenance=provenance(cfg.device, metrics.get("train_time_s", time.time() - t0)))
            write_record(rec, path)
        records.append(rec)
    return records


def convergence_table(records_dir):
    """One row per (method's large model, arch): best test accuracy at 1x and 2x epochs, the difference and
    whether it is within ``TOLERANCE``; from the records alone."""
    import pandas as pd
    rows = {}
    for p in sorted(Path(records_dir).glob("*.json")):
        r = read_record(p)
        if r is None or r.get("regime") != "convergence":
            continue
        c = r["config"]
        # one row per check: a search may check the same large model at 30 vs 60 and at 60 vs 120 epochs
        key = (r["baseline_tag"], c["arch"], c["data"]["dataset"], c["profile"], r["seed"],
               c["train"]["epochs"] // r["factor"])
        row = rows.setdefault(key, dict(large_model=r["baseline_tag"], arch=c["arch"], dataset=c["data"]["dataset"],
                                        profile=c["profile"], seed=r["seed"], width_mult=c["width_mult"],
                                        train_images=c["data"]["train_subset"],
                                        warmup_epochs=c["train"].get("warmup_epochs", 0),
                                        device=r["provenance"]["device"]))
        f = r["factor"]
        row[f"epochs_x{f}"] = r["metrics"]["epochs"]
        row[f"best_acc_x{f}"] = r["metrics"]["best_acc"]
        time_s = r["metrics"].get("train_time_s")
        row[f"time_s_x{f}"] = time_s if time_s is not None else r["provenance"].get("wall_time_s")
    df = pd.DataFrame(list(rows.values()))
    if df.empty:
        return df
    for col in ("best_acc_x1", "best_acc_x2", "epochs_x1", "epochs_x2", "time_s_x1", "time_s_x2"):
        if col not in df:
            df[col] = float("nan")
    from .report import paper_order
    df = df.iloc[sorted(range(len(df)), key=lambda i: (paper_order("l1-norm", df.arch.iloc[i]),
                                                       df.epochs_x1.iloc[i]))].reset_index(drop=True)
    df["gain_x2"] = (df["best_acc_x2"] - df["best_acc_x1"]).round(2)
    df["converged"] = df["gain_x2"].map(lambda g: None if g != g else bool(g <= TOLERANCE))
    return df


def book_checks(book_dir) -> "pd.DataFrame":
    """Every convergence check of a book: the profile's (``convergence/records``) and the search's
    (``convergence/search/records``), one :func:`convergence_table`."""
    import pandas as pd
    tables = [t for t in (convergence_table(Path(book_dir, "convergence", *sub, "records"))
                          for sub in ((), ("search",))) if not t.empty]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def convergence_of(config: dict, table) -> dict | None:
    """The row of ``table`` (:func:`convergence_table`) that checked the large model a record's ``config`` trained
    (the same method's large model, arch, dataset, profile, width, training images and epochs), or None where none
    did; where two checks match, a failed one.  Its ``converged`` is True, False or None (2x not trained yet)."""
    if table is None or table.empty:
        return None
    cfg = RunConfig.from_dict(config)
    images = table.train_images.map(lambda v: None if v != v else int(v))  # NaN: all images, as None in a config
    match = table[(table.large_model == baseline_tag(cfg)) & (table.arch == cfg.arch) &
                  (table.dataset == cfg.data.dataset) & (table.profile == cfg.profile) &
                  (table.width_mult == cfg.width_mult) & (images == cfg.data.train_subset) &
                  (table.epochs_x1 == cfg.train.epochs)]
    if not len(match):
        return None
    rows = [r.to_dict() for _, r in match.iterrows()]
    for r in rows:
        r["converged"] = None if r["converged"] is None or r["converged"] != r["converged"] else bool(r["converged"])
    return next((r for r in rows if r["converged"] is False), rows[0])


def failed_check(config: dict, table) -> dict | None:
    """The check (:func:`convergence_of`) that found the large model of ``config`` not converged; None where it
    passed, is still under way or was never run."""
    check = convergence_of(config, table)
    return check if check is not None and check["converged"] is False else None


def convergence_markdown(table, records_dir="book/convergence/records") -> str:
    """``convergence_table`` as the markdown the protocol page includes, with what the runs were."""
    if table.empty:
        return "No convergence check has been run yet (`python -m rethink converge --arch ARCH --profile book`).\n"
    lines = ["| large model | arch | width | training images | warm-up epochs | epochs | best acc % | 2x epochs | "
             "best acc % at 2x | gain at 2x (points) | converged | training time (s, 1x / 2x) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    fmt = lambda v, f="{:.2f}": "–" if v is None or v != v else f.format(v)  # noqa: E731
    for r in table.itertuples():
        lines.append(f"| {r.large_model} | {r.arch} | x{r.width_mult:g} | {fmt(r.train_images, '{:,.0f}')} | "
                     f"{r.warmup_epochs} | {fmt(r.epochs_x1, '{:.0f}')} | {fmt(r.best_acc_x1)} | "
                     f"{fmt(r.epochs_x2, '{:.0f}')} | {fmt(r.best_acc_x2)} | {fmt(r.gain_x2, '{:+.2f}')} | "
                     f"{'–' if r.converged is None else 'yes' if r.converged else '**no**'} | "
                     f"{fmt(r.time_s_x1, '{:,.0f}')} / {fmt(r.time_s_x2, '{:,.0f}')} |")
    sources = sorted({f"{r.dataset}, {r.profile} profile, {r.device}, seed {r.seed}" for r in table.itertuples()})
    lines += ["", f"Ours: {'; '.join(sources)}; best test accuracy on the full test set. Converged: the model "
                  f"trained for twice the epochs (same data, schedule shape, seed) is at most {TOLERANCE:g} point "
                  f"better. Training times are wall times of one torch thread on the project's 2-core CPU with other "
                  f"runs beside it: they show the cost, not a speed. Made from the records in `{records_dir}` by "
                  f"`python -m rethink converge`."]
    return "\n".join(lines) + "\n"


def write_convergence_markdown(records_dir, path) -> Path:
    from .records import atomic_write_bytes
    atomic_write_bytes(Path(path), convergence_markdown(convergence_table(records_dir), records_dir).encode())
    return Path(path)
