"""Records -> tables (mean ± std, n) and the standard figures, with the paper's numbers beside ours.

Every table carries the dataset, profile, device and number of seeds of the runs behind it.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.csv")
COLUMNS = ("baseline", "fine-tune", "scratch-e", "scratch-b")
# controls stand beside a method's row as a column, not as rows of their own (rethink.prune.random_filters)
CONTROLS = {"random-filters": ("random filters, fine-tuned", "FT − random")}
LABELS = {"baseline": "unpruned", "fine-tune": "fine-tuned", "scratch-e": "Scratch-E", "scratch-b": "Scratch-B"}


def paper_numbers() -> pd.DataFrame:
    """The papers' published numbers (one data file, with source and a verified mark)."""
    return pd.read_csv(PAPER_NUMBERS)


def mean_std(values) -> str:
    s = pd.Series(list(values), dtype=float)
    if len(s) == 1:
        return f"{s.iloc[0]:.2f}"
    return f"{s.mean():.2f} ± {s.std(ddof=1):.2f}"


def n_seeds(n: int, what: str = "seed") -> str:
    """"1 seed", "3 seeds" ("2 paired seeds" with ``what="paired seed"``)."""
    return f"{n} {what}{'s' if n != 1 else ''}"


def _source(dataset, profile, device, n) -> str:
    return f"ours: {dataset}, {profile} profile, {device}, {n_seeds(n)}"


def caption(df: pd.DataFrame) -> str:
    """What a result table's rows rest on, said once above it rather than on every row: our runs' dataset,
    profile and device (``df``: the records behind the table), and what the paper's rows are."""
    return (f"Rows marked *ours*: {sources(df) or 'no runs'}; `runs` = seeds per row (per regime where they differ; the differences pair the seeds that have both). Rows marked *paper*: the published "
            f"numbers under the paper's own protocol (full data, full width, its epochs) on the dataset named; "
            f"`runs` = its runs per number; (u) = not yet checked against the paper's text." + _shared_note(df))


def _any_shared(df: pd.DataFrame) -> bool:
    """Whether some records of ``df`` are scratch runs trained once for two methods (``shared_from``)."""
    return "shared_from" in df and bool(df.shared_from.notna().any())


def _shared_note(df: pd.DataFrame) -> str:
    """" The Scratch-E/B runs of channel-pruning are thinet's (...)." where scratch runs were trained once for two
    methods that reach the same widths; "" otherwise."""
    if not _any_shared(df):
        return ""
    from .prune import list_methods
    methods = list_methods()

    def method_of(run_id: str, dataset: str, profile: str) -> str:  # run ids: <dataset>-<profile>-<method>-...
        rest = run_id.removeprefix(f"{dataset}-{profile}-")
        return max((m for m in methods if rest.startswith(f"{m}-")), key=len, default=f"run {run_id}")
    pairs = sorted({(m, method_of(src, d, p)) for m, src, d, p in zip(df.method, df.shared_from, df.dataset, df.profile)
                    if isinstance(src, str)})
    said = "; ".join(f"those of {m} are {o}'s" for m, o in pairs)
    return (f" Scratch runs that two methods share ({said}) were trained once: a scratch model inherits only its "
            f"widths, and with the same widths, seed and schedule it is the same training.")


# the order of the paper's sections and tables: predefined methods, automatic ones, unstructured; VGG before ResNet
# before DenseNet, shallow before deep
METHOD_ORDER = ("l1-norm", "thinet", "channel-pruning", "sfp", "slimming", "sss", "magnitude")
FAMILY_ORDER = ("vgg", "resnet", "preresnet", "densenet")


def paper_order(method: str, arch: str, variant=None, prune_ratio=None) -> tuple:
    """Sort key that lists rows as the paper does (Table 1: VGG-16-A, ResNet-56-A/B, ResNet-110-A/B), not
    alphabetically (which puts ResNet-110 before ResNet-56)."""
    import re
    m = re.match(r"([a-z]+)(\d*)", str(arch))
    family, depth = (m.group(1), int(m.group(2) or 0)) if m else (str(arch), 0)
    rank = lambda seq, v: seq.index(v) if v in seq else len(seq)  # noqa: E731
    ratio = -1.0 if prune_ratio is None or pd.isna(prune_ratio) else float(prune_ratio)
    return (rank(METHOD_ORDER, method), rank(FAMILY_ORDER, family), depth, str(arch),
            variant if isinstance(variant, str) else "", ratio)


def groups_in_paper_order(df: pd.DataFrame, keys: list) -> list:
    """``df`` grouped by ``keys`` (which hold method, arch, variant and prune_ratio) as (dict of the keys, group)
    pairs, in the paper's order (:func:`paper_order`)."""
    groups = [(dict(zip(keys, k)), g) for k, g in df.groupby(keys, dropna=False, sort=False)]
    return sorted(groups, key=lambda dg: paper_order(dg[0]["method"], dg[0]["arch"], dg[0]["variant"],
                                                     dg[0]["prune_ratio"]))


def split_superseded(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(current, superseded) records of ``df`` (:func:`rethink.records.load_records`), the superseded with a
    ``why`` column that says what changed (:func:`rethink.records.settings_change`).  Records of one large model
    (its baselines and every row pruned from it, controls included: tables join them by large model) must share
    its training settings, and the seeds of one row its pruning settings too; where they differ, those of the
    newest settings count (:func:`rethink.records.newest_settings`).  A row is re-run seed by seed, and its older
    seeds are never pooled or paired with the new."""
    from .records import newest_settings, settings_change
    if df.empty:
        return df, df.assign(why=pd.Series(dtype=str), superseded=pd.Series(dtype=bool))
    why = {}
    large_model = ["arch", "dataset", "profile", "baseline_tag"]
    row = ["method", "arch", "variant", "prune_ratio", "dataset", "profile"]
    for keys, prune in ((large_model, False), (row, True)):
        left = df[~df.run_id.isin(why)]
        for _, g in left.groupby([k for k in keys if k in left], dropna=False, sort=False):
            current, older = newest_settings(list(g.record), prune)
            why.update({r["run_id"]: "earlier settings: " + settings_change(r["config"], current[0]["config"])
                        for r in older})
    old = df.run_id.isin(why)
    return df[~old], df[old].assign(why=df.run_id[old].map(why), superseded=True)


def sources(df: pd.DataFrame) -> str:
    """Our runs' dataset, profile and device, each combination once: "fashion-mnist, book profile, cpu (...)"."""
    return "; ".join(sorted({f"{d}, {p} profile, {dev}" for d, p, dev in zip(df.dataset, df.profile, df.device)}))


def model_label(arch: str, variant, prune_ratio) -> str:
    """A pruned model's name in tables: its published variant, else "<arch> p=<prune ratio>"."""
    return variant if isinstance(variant, str) else f"{arch} p={prune_ratio:g}"


def pruned_label(method: str, model: str) -> str:
    """A pruned model with its method where its label does not imply it: a published variant does (vgg16-a is
    L1-norm's), a ratio does not, and two methods may reach the same one ("thinet resnet56 p=0.5")."""
    return model if method == "l1-norm" else f"{method} {model}"


DIFFERENCES = (("scratch-e", "E − FT"), ("scratch-b", "B − FT"))


def _differences(means: dict) -> dict:
    """The paper's rows: Scratch-E and Scratch-B minus fine-tuned, in points, from the published means ("–" where
    one lacks)."""
    return {label: (f"{means[reg] - means['fine-tune']:+.2f}" if reg in means and "fine-tune" in means else "–")
            for reg, label in DIFFERENCES}


def _paired_diff(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> str:
    """Ours: ``a`` minus ``b`` in points ("+0.45"), the mean over the seeds that have both (paired by seed, as the
    verdicts are: a regime with fewer seeds so far is not set against the other seeds' runs); "–" where none has."""
    a, b = a.set_index("seed")[metric], b.set_index("seed")[metric]
    both = a.index.intersection(b.index)
    return f"{(a[both] - b[both]).mean():+.2f}" if len(both) else "–"


def kept_mean_std(runs: pd.DataFrame, metric: str, flag: str = "run_flag") -> str:
    """mean ± std of the runs whose ``flag`` column is empty (not flagged as failed), with "(2 of 3 seeds)" when
    some were left out, so that a row's seed count is never read off the wrong cell; when every run is flagged,
    their values marked "(left out)" (shown, not averaged in as a result); "–" without runs."""
    ok = runs[runs[flag].isna()]
    if len(ok) == len(runs) and len(ok):
        return mean_std(ok[metric])
    if len(ok):
        return f"{mean_std(ok[metric])} ({len(ok)} of {len(runs)} seeds)"
    return f"{mean_std(runs[metric])} (left out)" if len(runs) else "–"


def result_table(df: pd.DataFrame, metric: str = "best_acc", paper: bool = True) -> pd.DataFrame:
    """One row per (pruned model, dataset, profile, device): unpruned | fine-tuned | Scratch-E | Scratch-B
    accuracy as mean ± std over seeds, Scratch-B epochs, and n.  With ``paper``, the paper's row for the
    same pruned model follows ours."""
    if df.empty:
        table = pd.DataFrame(index=pd.Index([], name="model"))
        table.attrs["caption"] = "No runs of these on this profile yet (rows waiting for their re-run are listed below)."
        return table
    if "baseline_tag" not in df:  # records written before methods trained their own large models
        df = df.assign(baseline_tag="unpruned")
    from .verdict import flag_runs
    # a failed run (near chance, far below its seed siblings) is shown in "left out", not averaged in
    flags = flag_runs(df, metric)
    left_out = {i: f for i, f in flags.items() if f}
    df = df.assign(run_flag=flags)
    pruned = df[(df.regime != "baseline") & ~df.method.isin(CONTROLS)]
    controls = df[df.method.isin(CONTROLS) & (df.regime == "fine-tune")]
    if pruned.empty:  # a control's records alone (e.g. `python -m rethink run --method random-filters`): its rows
        pruned, controls = df[df.regime != "baseline"], controls.iloc[0:0]
    keys = ["dataset", "profile", "device", "arch", "method", "variant", "prune_ratio"]
    rows = []
    mixed = len(pruned.groupby(["dataset", "profile", "device"]))
    for d, g in groups_in_paper_order(pruned, keys):
        # the large model these were pruned from: plainly trained, or trained by the method (slimming, SFP)
        tag = g.baseline_tag.iloc[0]
        base = df[(df.regime == "baseline") & (df.dataset == d["dataset"]) & (df.profile == d["profile"]) &
                  (df.device == d["device"]) & (df.arch == d["arch"]) & (df.baseline_tag == tag)]
        model = model_label(d["arch"], d["variant"], d["prune_ratio"])
        row = {"model": model, LABELS["baseline"]: kept_mean_std(base, metric)}
        for regime in COLUMNS[1:]:
            row[LABELS[regime]] = kept_mean_std(g[g.regime == regime], metric)
        ok = g[g.run_flag.isna()]
        row.update({label: _paired_diff(ok[ok.regime == reg], ok[ok.regime == "fine-tune"], metric)
                    for reg, label in DIFFERENCES})
        for control, (label, diff_label) in CONTROLS.items():  # same large model, widths and data
            c = controls[(controls.method == control) & (controls.baseline_tag == tag)]
            for f in ("dataset", "profile", "device", "arch", "variant", "prune_ratio"):
                c = c[c[f].isna()] if pd.isna(d[f]) else c[c[f] == d[f]]
            if len(c):
                row[label] = kept_mean_std(c, metric)
                row[diff_label] = _paired_diff(ok[ok.regime == "fine-tune"], c[c.run_flag.isna()], metric)
        # one number; a range where seeds pruned to different FLOPs (slimming's global threshold, magnitude)
        epochs = sorted({int(e) for e in g[g.regime == "scratch-b"].epochs})
        row["Scratch-B epochs"] = (epochs[0] if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}") if epochs else None
        n = g.seed.nunique()
        if left_out:
            runs = pd.concat([base, g])
            row["left out"] = "; ".join(f"{LABELS[r.regime]} seed {r.seed}: {r.run_flag}"
                                        for r in runs.itertuples() if r.Index in left_out) or ""
        # seeds per regime where they differ (a row still running): "fine-tuned 3, Scratch-E 1, ..."
        counts = {LABELS[r]: g[g.regime == r].seed.nunique() for r in COLUMNS[1:] if (g.regime == r).any()}
        row["runs"] = n if len(set(counts.values())) <= 1 else ", ".join(f"{k} {v}" for k, v in counts.items())
        # said once in the caption; on the row too where the table mixes datasets, profiles or devices
        row["source"] = "ours" if mixed == 1 else f"ours: {d['dataset']}, {d['profile']} profile, {d['device']}"
        rows.append(row)
        if paper:  # by variant where there is one, else by arch and prune ratio
            variant = d["variant"] if isinstance(d["variant"], str) else None
            rows += paper_rows(variant, d["method"], d["arch"], d["prune_ratio"])
    table = pd.DataFrame(rows).set_index("model")
    for label, diff_label in CONTROLS.values():  # "–" on the paper's rows and rows without a control
        if label in table:
            table[[label, diff_label]] = table[[label, diff_label]].fillna("–")
    first = [c for c in table if c not in ("Scratch-B epochs", "runs", "left out", "source")]
    table = table[first + [c for c in ("Scratch-B epochs", "runs", "left out", "source") if c in table]]
    table.attrs["caption"] = caption(df)
    if "left out" in table:
        table["left out"] = table["left out"].fillna("")
    col = table.get("Scratch-B epochs")
    if col is not None and not any(isinstance(v, str) for v in col):  # whole numbers, also where a paper row has none
        table["Scratch-B epochs"] = col.astype("Int64")
    elif col is not None:  # ranges among them: text, with a dash where there is no number
        table["Scratch-B epochs"] = [v if isinstance(v, str) else "–" if pd.isna(v) else str(int(v)) for v in col]
    return table


def unsettled(df: pd.DataFrame, metric: str = "best_acc", spread: float = 10.0) -> pd.DataFrame:
    """Rows of ``result_table`` not to read as a mean: (model, regime) whose seeds differ by more than ``spread``
    points, with each seed's value; such a row says the profile is too short for that model, not which regime wins."""
    keys = ["dataset", "profile", "device", "arch", "method", "variant", "prune_ratio", "baseline_tag", "regime"]
    rows = []
    for k, g in df.groupby(keys, dropna=False, sort=True):
        d = dict(zip(keys, k))
        if len(g) > 1 and g[metric].max() - g[metric].min() > spread:
            model = d["arch"] if d["regime"] == "baseline" else model_label(d["arch"], d["variant"], d["prune_ratio"])
            rows.append({"model": model, "regime": LABELS[d["regime"]],
                         "seeds": ", ".join(f"{v:.1f} (seed {s})" for s, v in sorted(zip(g.seed, g[metric]))),
                         "source": _source(d["dataset"], d["profile"], d["device"], g.seed.nunique())})
    return pd.DataFrame(rows).drop_duplicates().set_index("model") if rows else pd.DataFrame()


def paper_numbers_for(papers: pd.DataFrame, variant, method: str, arch=None, prune_ratio=None) -> pd.DataFrame:
    """The rows of ``papers`` (``paper_numbers()``) for one pruned model: by its published ``variant`` where it has
    one, else by ``arch`` pruned by ``method`` at ``prune_ratio``; empty when the papers have none."""
    if isinstance(variant, str):
        return papers[(papers.variant == variant) & (papers.method == method)]
    if "prune_ratio" not in papers or prune_ratio is None or pd.isna(prune_ratio):
        return papers.iloc[0:0]
    return papers[papers.variant.isna() & (papers.method == method) & (papers.arch == arch)
                  & ((papers.prune_ratio - prune_ratio).abs() < 1e-9)]


def paper_rows(variant: str | None, method: str, arch: str | None = None,
               prune_ratio: float | None = None) -> list[dict]:
    """The paper's rows for a published ``variant``, or (variant None) for ``arch`` pruned by ``method`` at
    ``prune_ratio`` (e.g. slimming's Table 4).  A missing std or epoch count is left out, not made up."""
    p = paper_numbers_for(paper_numbers(), variant, method, arch, prune_ratio)
    name = variant if isinstance(variant, str) else model_label(arch, None, prune_ratio)
    out = []
    for (paper, dataset), g in p.groupby(["paper", "dataset"]):
        row = {"model": name}
        for regime in COLUMNS:
            r = g[g.regime == regime]
            if len(r):
                r = r.iloc[0]
                mark = "" if r.verified else " (u)"
                std = "" if pd.isna(r.acc_std) else f" ± {r.acc_std:.2f}"
                row[LABELS[regime]] = f"{r.acc_mean:.2f}{std}{mark}"
                if regime == "scratch-b" and not pd.isna(r.epochs):
                    row["Scratch-B epochs"] = int(r.epochs)
        means = {reg: g[g.regime == reg].acc_mean.iloc[0] for reg in COLUMNS if len(g[g.regime == reg])}
        row.update(_differences(means))
        n = int(g.n_runs.iloc[0])
        table = g.table.iloc[0]
        where = f" Table {int(table)}" if not pd.isna(table) else ""
        row["runs"] = n
        row["source"] = f"paper: {paper}{where}, {dataset}"
        out.append(row)
    return out


def _size_row(model: dict, large: dict, sparse: bool) -> dict:
    row = {"params (M)": round(model["params"] / 1e6, 3), "FLOPs (M MACs)": round(model["flops"] / 1e6, 2),
           "params reduction %": round(100 * (1 - model["params"] / large["params"]), 1),
           "FLOPs reduction %": round(100 * (1 - model["flops"] / large["flops"]), 1)}
    if sparse:
        row["conv sparsity %"] = round(100 * model.get("sparsity", 0.0), 2)
    return row


def size_table(records: list[dict]) -> pd.DataFrame:
    """Params and FLOPs (conv + linear multiply-accumulates) of the unpruned and the pruned model; for a masked
    (unstructured) model they count the non-zero weights, and a conv sparsity column says how many are zero."""
    r = next(r for r in records if r["regime"] != "baseline")
    sparse = "dense_flops" in r["model"]
    rows = [{"model": name, **_size_row(m, r["baseline"], sparse)}
            for name, m in (("unpruned", r["baseline"]), ("pruned", r["model"]))]
    return pd.DataFrame(rows).set_index("model")


def size_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per pruned model in the records of ``df`` (``load_records``): method, its unpruned and pruned
    params and FLOPs, the reductions and, for masked models, the conv sparsity (non-zero weights counted)."""
    pruned = df[df.regime != "baseline"]
    if pruned.empty:
        return pd.DataFrame()
    keys = ["dataset", "profile", "arch", "method", "variant", "prune_ratio"]
    rows = []
    for k, g in pruned.groupby(keys, dropna=False, sort=True):
        d = dict(zip(keys, k))
        r = g.record.iloc[0]
        model = model_label(d["arch"], d["variant"], d["prune_ratio"])
        # sizes depend on the profile (its width multiplier) and the dataset (input channels, classes), and, for a
        # method that finds its widths in the trained large model (slimming, SFP, SSS), on the seed: then the
        # mean of the seeds' pruned models, and the source says so
        per_seed = {seed: rec["model"] for seed, rec in zip(g.seed, g.record)}
        sizes = {(m["params"], m["flops"]) for m in per_seed.values()}
        pruned_model = r["model"] if len(sizes) == 1 else {
            **r["model"], **{key: sum(m.get(key, 0.0) for m in per_seed.values()) / len(per_seed)
                             for key in ("params", "flops", "sparsity")}}
        rows.append({"model": model, "method": d["method"],
                     "unpruned params (M)": round(r["baseline"]["params"] / 1e6, 3),
                     "unpruned FLOPs (M MACs)": round(r["baseline"]["flops"] / 1e6, 2),
                     **_size_row(pruned_model, r["baseline"], "dense_flops" in r["model"])})
        n = len(per_seed)
        width = r.get("config", {}).get("width_mult")  # the book's models are narrowed: say by how much
        rows[-1]["source"] = (f"ours: {d['dataset']}, {d['profile']} profile, "
                              + (f"widths x{width:g}, " if width is not None else "")
                              + (n_seeds(n) if len(sizes) == 1 else
                                 f"mean of {n} seeds' pruned models (found per seed: params "
                                 f"{min(p for p, _ in sizes) / 1e6:.3f}-{max(p for p, _ in sizes) / 1e6:.3f} M)"))
    table = pd.DataFrame(rows).set_index("model")
    if "conv sparsity %" in table:  # a column only masked models fill: blank, not NaN, for the others
        table["conv sparsity %"] = table["conv sparsity %"].astype("Float64")
        table = table[[c for c in table if c != "source"] + ["source"]]
    return table


def run_time_table(df: pd.DataFrame) -> pd.DataFrame:
    """Wall time of the runs behind each pruned model, in minutes summed over seeds, one column per regime (the
    large model: its training time, also when its record came from the cache), in the paper's order; the seeds
    and the total in hours beside them.  The caption (``attrs``) names dataset, profile and device."""
    if df.empty:
        return pd.DataFrame()
    keys = ["dataset", "profile", "device", "arch", "method", "variant", "prune_ratio", "baseline_tag"]
    if "baseline_tag" not in df:
        df = df.assign(baseline_tag="unpruned")
    rows = []
    pruned = df[df.regime != "baseline"]
    for d, g in groups_in_paper_order(pruned, keys):
        base = df[(df.regime == "baseline") & (df.arch == d["arch"]) & (df.baseline_tag == d["baseline_tag"]) &
                  (df.dataset == d["dataset"]) & (df.profile == d["profile"]) & (df.device == d["device"]) &
                  df.seed.isin(g.seed)]
        row = {"model": model_label(d["arch"], d["variant"], d["prune_ratio"]), "method": d["method"]}
        for regime in COLUMNS:
            runs = base if regime == "baseline" else g[g.regime == regime]
            row[f"{LABELS[regime]} (min)"] = round(runs.wall_time_s.sum() / 60, 1) if len(runs) else None
        row["seeds"] = g.seed.nunique()
        row["total (h)"] = round((base.wall_time_s.sum() + g.wall_time_s.sum()) / 3600, 2)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    cols = [c for c in table if c.endswith("(min)")]
    table[cols] = table[cols].astype("Float64")  # a regime a method does not run: blank, not NaN
    shared = _any_shared(df)
    table.attrs["caption"] = (f"Wall time in minutes, summed over the seeds ({sources(df)}); a large model shared by two "
                              f"rows (e.g. ResNet-56-A and -B) is counted in each"
                              + (", and so is a scratch run that two methods share (same widths, seed and schedule: "
                                 "trained once)." if shared else "."))
    return table


def conv_widths(widths: list) -> list[int]:
    return [w for w in widths if not isinstance(w, str)]


def _layer_bars(original: list, pruned: list, ylabel: str, pruned_label: str, title: str):
    """Per-conv-layer bars, the original value in grey behind the pruned one; for deep networks (more than 40
    layers: ResNet-110, DenseNet-40) steps instead of bars, which stay readable."""
    x = range(1, len(original) + 1)
    if len(original) > 40:
        fig, ax = plt.subplots(figsize=(10, 3.2))
        ax.fill_between(x, original, step="mid", color="#cfd8e3", label="original")
        ax.step(x, pruned, where="mid", color="#2f6db5", lw=1.5, label=pruned_label)
        ax.set_xlim(0.5, len(original) + 0.5)
    else:
        fig, ax = plt.subplots(figsize=(min(14, 3 + 0.25 * len(original)), 3.2))
        ax.bar(x, original, color="#cfd8e3", label="original")
        ax.bar(x, pruned, color="#2f6db5", width=0.5, label=pruned_label)
    ax.set(xlabel="conv layer id", ylabel=ylabel, title=title)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: bars fill the axes
    fig.tight_layout()
    return fig


def plot_widths(original: list, pruned: list, title: str = ""):
    """Bars of output channels per conv layer, original vs pruned."""
    return _layer_bars(conv_widths(original), conv_widths(pruned), "output channels", "pruned", title)


def plot_sparsity(layer_sparsity: list, title: str = ""):
    """Bars of the percentage of weights kept per conv layer of a masked (unstructured) model: a global threshold
    cuts layers unevenly."""
    return _layer_bars([100] * len(layer_sparsity), [100 * (1 - s) for s in layer_sparsity], "weights kept %",
                       "kept weights", title)


def plot_curves(records: list[dict], title: str = ""):
    """Test accuracy per epoch for each regime, one line per seed."""
    regimes = [r for r in COLUMNS if any(rec["regime"] == r for rec in records)]
    fig, axes = plt.subplots(1, len(regimes), figsize=(3.2 * len(regimes), 2.8), sharey=True, squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        for rec in records:
            if rec["regime"] == regime:
                c = rec["metrics"]["curve"]
                ax.plot([e["epoch"] for e in c], [e["test_acc"] for e in c], label=f"seed {rec['seed']}")
        ax.set(title=LABELS[regime], xlabel="epoch")
    axes[0][0].set_ylabel("test accuracy %")
    axes[0][-1].legend(frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
