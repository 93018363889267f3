"""Does training from scratch beat fine-tuning?  Per pruned model: the difference Scratch-E - fine-tuned and
Scratch-B - fine-tuned with a 95 % confidence interval, and the verdict in the paper's words.

The regimes of one seed share that seed's large model and initialisation, so they are paired: the interval is a
paired t-interval over the per-seed differences (``scipy.stats.t``).  The paper publishes only mean ± std over
its runs, so its difference gets a Welch interval from those summaries.  "on par" means the interval contains 0.

A run that failed (near chance, or far below the other seeds of its regime) is flagged and left out of the
means and the verdict, which says so; it is never averaged in silently.
"""
from __future__ import annotations

import math
from typing import Optional

import matplotlib.pyplot as plt
import pandas as pd
from scipy import stats

from .config import SHORT_PROFILES
from .data import DATASETS

GROUP = ["dataset", "profile", "device", "arch", "method", "variant", "prune_ratio", "baseline_tag"]
COMPARISONS = (("scratch-e", "Scratch-E"), ("scratch-b", "Scratch-B"))
NEAR_CHANCE = 5.0   # points above chance: a run this close to guessing did not train
BELOW_SIBLINGS = 5.0  # points below the median of the other seeds of the same regime and model: a failed seed


def chance(dataset: str) -> float:
    info = DATASETS.get(dataset)
    return 100.0 / (info.num_classes if info else 10)


def flag_group(values: pd.Series, chance_level: float) -> pd.Series:
    """Flags of one regime's runs over seeds (``values`` indexed like its rows): "near chance (x %)" for a run within
    ``NEAR_CHANCE`` points of ``chance_level``, "N points below the other seeds" for one ``BELOW_SIBLINGS`` points
    under the median of the others (needs 2+ others), else None."""
    flags = pd.Series([None] * len(values), index=values.index, dtype=object)
    for i, value in values.items():
        if value <= chance_level + NEAR_CHANCE:
            flags[i] = f"near chance ({value:.1f} %)"
            continue
        others = values.drop(i)
        if len(others) >= 2 and value < others.median() - BELOW_SIBLINGS:
            flags[i] = f"{others.median() - value:.1f} points below the other seeds"
    return flags


def flag_runs(df: pd.DataFrame, metric: str = "best_acc") -> pd.Series:
    """For each record of ``df`` (``load_records``): why it is not to be averaged (:func:`flag_group` within its
    regime of one pruned model), or None.  Needs 3 seeds to call one of them far below the others."""
    keys = (GROUP if "baseline_tag" in df else GROUP[:-1]) + ["regime"]
    return _flag_groups(df, keys, metric, lambda g: chance(g["dataset"].iloc[0]))


def _flag_groups(df: pd.DataFrame, keys, metric: str, chance_of) -> pd.Series:
    """:func:`flag_group` within each group of ``df`` by ``keys`` (by position: ``df``'s index need not be unique)."""
    flat = df.reset_index(drop=True)
    flags = pd.Series([None] * len(flat), dtype=object)
    for _, g in flat.groupby(keys, dropna=False, sort=False):
        flags[g.index] = flag_group(g[metric], chance_of(g))
    return pd.Series(flags.values, index=df.index, dtype=object)


def flag_by(df: pd.DataFrame, key, metric: str = "best_acc", dataset: Optional[str] = None) -> pd.Series:
    """:func:`flag_group` within each value of ``key`` (a column or columns: a design, an init and lr, a
    criterion) of a study's rows; chance from ``dataset``, else from the rows' ``dataset`` column."""
    if df.empty:
        return pd.Series([], index=df.index, dtype=object)
    if dataset is not None:
        return _flag_groups(df, key, metric, lambda g: chance(dataset))
    if "dataset" not in df:
        raise ValueError("flag_by needs the dataset (for its chance level): pass dataset= or a 'dataset' column")
    # rows of several datasets: each its own chance level, and never one dataset's seeds against another's
    keys = ["dataset"] + ([key] if isinstance(key, str) else list(key))
    return _flag_groups(df, keys, metric, lambda g: chance(g["dataset"].iloc[0]))


def paired_interval(diffs, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the paired differences: mean ± t_{n-1} * sd / sqrt(n); no interval for n < 2."""
    d = pd.Series(list(diffs), dtype=float)
    n = len(d)
    if n < 2:
        return (float(d.mean()) if n else math.nan), math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def welch_interval(m1, s1, n1, m2, s2, n2, confidence: float = 0.95) -> tuple[float, float, float]:
    """(difference m1 - m2, low, high) from two published mean ± std over n1 and n2 runs (unpaired, Welch)."""
    diff = float(m1 - m2)
    if any(pd.isna(v) for v in (s1, s2, n1, n2)) or n1 < 2 or n2 < 2:
        return diff, math.nan, math.nan
    v1, v2 = s1 ** 2 / n1, s2 ** 2 / n2
    if v1 + v2 == 0:
        return diff, diff, diff
    dof = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    half = stats.t.ppf(0.5 + confidence / 2, dof) * math.sqrt(v1 + v2)
    return diff, diff - half, diff + half


def verdict_word(low: float, high: float) -> str:
    """The paper's words: scratch better / on par / worse; "undecided" without an interval (fewer than 2 seeds)."""
    if pd.isna(low) or pd.isna(high):
        return "undecided"
    if low > 0:
        return "scratch better"
    if high < 0:
        return "scratch worse"
    return "on par"


def _paper_difference(paper: pd.DataFrame, regime: str) -> dict:
    """The paper's difference regime - fine-tune for one model, from its first dataset (CIFAR-10 first)."""
    if paper.empty:
        return {}
    order = {"cifar10": 0, "cifar100": 1}
    for dataset in sorted(paper.dataset.unique(), key=lambda d: order.get(d, 2)):
        p = paper[paper.dataset == dataset]
        a, b = p[p.regime == regime], p[p.regime == "fine-tune"]
        if len(a) and len(b):
            a, b = a.iloc[0], b.iloc[0]
            diff, low, high = welch_interval(a.acc_mean, a.acc_std, a.n_runs, b.acc_mean, b.acc_std, b.n_runs)
            # without a published std there is no interval, and so no verdict: "undecided", not the sign
            return dict(paper_dataset=dataset, paper_diff=round(diff, 2), paper_low=low, paper_high=high,
                        paper_verdict=verdict_word(low, high),
                        # both numbers checked against the paper's text; else shown with "(u)"
                        paper_verified=bool(a.verified == True and b.verified == True))  # noqa: E712 (NaN: no)
    return {}


def verdicts(df: pd.DataFrame, metric: str = "best_acc", confidence: float = 0.95) -> pd.DataFrame:
    """One row per (pruned model, comparison): seeds paired, mean difference to fine-tuning with its interval,
    our verdict, the paper's difference and verdict for the same model, whether they agree, and the flagged runs
    left out."""
    from .report import CONTROLS, groups_in_paper_order, model_label, paper_numbers, paper_numbers_for
    if df.empty:
        return pd.DataFrame()
    df = df.assign(flag=flag_runs(df, metric))
    if "baseline_tag" not in df:
        df = df.assign(baseline_tag="unpruned")
    papers = paper_numbers()
    rows = []
    for d, g in groups_in_paper_order(df[(df.regime != "baseline") & ~df.method.isin(CONTROLS)], GROUP):
        model = model_label(d["arch"], d["variant"], d["prune_ratio"])
        paper = paper_numbers_for(papers, d["variant"], d["method"], d["arch"], d["prune_ratio"])
        ft = g[g.regime == "fine-tune"].set_index("seed")
        for regime, label in COMPARISONS:
            other = g[g.regime == regime].set_index("seed")
            seeds = sorted(set(ft.index) & set(other.index))
            left_out = [f"seed {s}: {r} {f}" for s in seeds for r, f in
                        (("fine-tuned", ft.flag.get(s)), (label, other.flag.get(s))) if f]
            kept = [s for s in seeds if not ft.flag.get(s) and not other.flag.get(s)]
            diffs = [other[metric][s] - ft[metric][s] for s in kept]
            mean, low, high = paired_interval(diffs, confidence)
            rows.append(dict(model=model, method=d["method"], comparison=f"{label} - fine-tuned", n=len(kept),
                             diff=round(mean, 2), low=round(low, 2), high=round(high, 2),
                             verdict=verdict_word(low, high), left_out="; ".join(left_out),
                             dataset=d["dataset"], profile=d["profile"], device=d["device"],
                             # its scratch runs are another method's (same widths and seeds): not independent
                             shared="shared_from" in other and bool(other.shared_from.loc[kept].notna().any()),
                             # the settings of the row's runs: which large model they pruned (its convergence)
                             config=g.record.iloc[0].get("config") if "record" in g else None,
                             **_paper_difference(paper, regime)))
    out = pd.DataFrame(rows)
    for col in ("paper_dataset", "paper_diff", "paper_low", "paper_high", "paper_verdict",
                "paper_verified"):  # no paper row at all
        if col not in out:
            out[col] = None
    out["agrees"] = [None if p is None or pd.isna(p) or "undecided" in (v, p) else bool(v == p)
                     for v, p in zip(out.verdict, out.paper_verdict)]
    # a verdict that differs only because our interval is wider (ours "on par" with the paper's difference inside
    # it) is not a disagreement: the runs are consistent with the paper, too few or too noisy to decide
    out["consistent"] = [None if pd.isna(d) or pd.isna(lo) else bool(lo <= d <= hi)
                         for d, lo, hi in zip(out.paper_diff.astype(float), out.low, out.high)]
    return out


SHOWN = {"diff": "ours: difference", "low": "95 % low", "high": "95 % high", "paper_diff": "paper: difference",
         "paper_verdict": "paper: verdict", "left_out": "left out"}
UNVERIFIED = "(u)"  # the mark of a paper number not yet checked against the paper's text, as in the result tables


def shown_verdicts(v: pd.DataFrame, columns: list, index) -> pd.DataFrame:
    """``verdicts`` rows as the book's tables show them: ``columns`` under the book's names, blanks for missing
    values, and the paper's verdict marked "(u)" where it rests on a number not yet checked against its text."""
    t = v[columns].copy()
    if "paper_verdict" in t and "paper_verified" in v:
        t["paper_verdict"] = [f"{p} {UNVERIFIED}" if isinstance(p, str) and checked is False else p
                              for p, checked in zip(t.paper_verdict, v.paper_verified)]
    t = t.astype(object)
    return t.where(t.notna(), "").rename(columns=SHOWN).set_index(index)


def control_verdicts(df: pd.DataFrame, metric: str = "best_acc") -> pd.DataFrame:
    """Per pruned model with a control (random filters at the same widths): fine-tuned with the method's filters
    minus fine-tuned with the control's, paired by seed (same large model), failed runs left out; verdict
    "criterion better" / "on par" / "random better" / "undecided"."""
    from .report import CONTROLS, model_label, paper_order
    cols = ["model", "method", "control", "n", "diff", "low", "high", "verdict", "dataset", "profile", "device"]
    if df.empty or not df.method.isin(CONTROLS).any():
        return pd.DataFrame(columns=cols)
    if "baseline_tag" not in df:
        df = df.assign(baseline_tag="unpruned")
    ft = df[df.regime == "fine-tune"]
    rows = []
    keys = [k for k in GROUP if k != "method"]
    for k, g in ft.groupby(keys, dropna=False, sort=False):
        d = dict(zip(keys, k))
        for control in sorted(set(g.method) & set(CONTROLS)):
            for method in sorted(set(g.method) - set(CONTROLS)):
                # paired_verdict flags within each method's runs, as flag_runs does, and leaves failed runs out
                v = paired_verdict(g, method, control, "method", metric)
                word = {"better": "criterion better", "worse": "random better"}.get(v["verdict"], v["verdict"])
                rows.append(dict(model=model_label(d["arch"], d["variant"], d["prune_ratio"]), method=method,
                                 control=control, n=v["n"], diff=round(v["diff"], 2), low=round(v["low"], 2),
                                 high=round(v["high"], 2), verdict=word, dataset=d["dataset"], profile=d["profile"],
                                 device=d["device"],
                                 _order=paper_order(method, d["arch"], d["variant"], d["prune_ratio"])))
    out = pd.DataFrame(rows, columns=cols + ["_order"])
    return out.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def plot_forest(table: pd.DataFrame, title: str = ""):
    """The differences of ``verdicts`` at a glance: one line per pruned model and comparison, ours (dot, 95 %
    interval) and the paper's (diamond, Welch interval) side by side, 0 marked."""
    # a comparison with no paired seed and no paper number has nothing to draw (e.g. a row fine-tuned only so far)
    shown = (table.n > 0) | (table.paper_diff.notna() if "paper_diff" in table else False)
    t = table[shown].iloc[::-1].reset_index(drop=True)  # first row on top
    fig, ax = plt.subplots(figsize=(7.5, 1.9 + 0.42 * len(t)))
    y = list(range(len(t)))
    num = lambda v: float(v) if v is not None and v == v else math.nan  # noqa: E731 (None/NaN -> NaN)
    diff, low, high = ([num(v) for v in t[c]] for c in ("diff", "low", "high"))
    err = [[d - lo if lo == lo else 0 for d, lo in zip(diff, low)], [hi - d if hi == hi else 0 for d, hi in zip(diff, high)]]
    ax.errorbar(diff, [i + 0.15 for i in y], xerr=err, fmt="o", color="#2f6db5", capsize=3,
                label="ours (95 % paired t-interval over seeds)")
    xs = [v for v in diff + low + high if v == v] + [0.0]
    pdiff = [num(v) for v in t.get("paper_diff", [None] * len(t))]
    if any(v == v for v in pdiff):
        plow = [num(v) for v in t["paper_low"]]
        phigh = [num(v) for v in t["paper_high"]]
        checked = [v is True for v in t.get("paper_verified", [None] * len(t))]
        for verified in (True, False):  # filled: checked against the paper's text; hollow: not yet, "(u)"
            keep = [i for i, v in enumerate(pdiff) if v == v and checked[i] == verified]
            if not keep:
                continue
            perr = [[pdiff[i] - plow[i] if plow[i] == plow[i] else 0 for i in keep],
                    [phigh[i] - pdiff[i] if phigh[i] == phigh[i] else 0 for i in keep]]
            ax.errorbar([pdiff[i] for i in keep], [i - 0.15 for i in keep], xerr=perr, fmt="D", color="#d9822b",
                        capsize=3, markersize=5, markerfacecolor="#d9822b" if verified else "white",
                        label="paper (95 % Welch interval from its mean ± std)" if verified else
                        f"paper, a number not yet checked against its text {UNVERIFIED}")
        xs += [v for v in pdiff + plow + phigh if v == v]
    pad = 0.1 * (max(xs) - min(xs) or 1.0)
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_ylim(-0.7, len(t) - 0.3)
    ax.axvline(0, color="grey", lw=0.8)
    from .report import pruned_label
    labels = [f"{pruned_label(meth, m)}: {c.split(' - ')[0]}" + (f" (n={n})" if n < 2 else "")
              for m, meth, c, n in zip(t.model, t.method, t.comparison, t.n)]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("accuracy difference to fine-tuning (points); right of 0: scratch better")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.9 / (1.9 + 0.42 * len(t))),
              ncol=1)
    fig.tight_layout()
    return fig


UNSTRUCTURED = {"magnitude"}
CLAIMS = {
    "structured": "Liu et al.'s claim for structured pruning: a pruned model trained from scratch is on par with "
                  "or better than the fine-tuned one (Scratch-B most often the best).",
    "unstructured": "For unstructured magnitude pruning the paper's claim is narrower: scratch training is on par "
                    "on CIFAR, but falls behind fine-tuning on ImageNet at high sparsity.",
}


def verdict_sentence(table: pd.DataFrame, method: str, source: str) -> str:
    """What one run page found, in words chosen from its ``verdicts`` rows: each comparison with its interval and
    verdict, the paper's difference where it has a row (and whether we agree), the claim that applies to the
    method's kind (structured or not), the runs left out, and a warning for a profile that does not converge."""
    if table.empty:
        return "No pruned runs in the records: nothing to compare."
    parts = []
    for r in table.itertuples():
        label = r.comparison.split(" - ")[0]
        if r.n == 0:
            parts.append(f"{label} − fine-tuned: no pair of runs left to compare (all left out).")
        elif r.verdict == "undecided":
            parts.append(f"{label} − fine-tuned: **{r.diff:+.2f}** points from {r.n} seed(s), too few for an interval.")
        else:
            parts.append(f"{label} − fine-tuned: **{r.diff:+.2f}** points (95 % interval {r.low:+.2f} to "
                         f"{r.high:+.2f}, {r.n} seeds): **{r.verdict}**.")
        paper = getattr(r, "paper_diff", None)
        if paper is None or pd.isna(paper):
            continue
        unchecked = (" (from a number not yet checked against the paper's text)"
                     if getattr(r, "paper_verified", None) is False else "")
        if r.paper_verdict == "undecided":
            parts[-1] += (f" The paper reports {paper:+.2f} ({r.paper_dataset}){unchecked} without a std, so no "
                          f"verdict there.")
        else:
            if r.agrees is None or pd.isna(r.agrees):
                agree = ""
            elif r.agrees:
                agree = " We agree."
            elif getattr(r, "consistent", None) is True:
                agree = (f" Our interval contains the paper's {paper:+.2f} but also 0: consistent with the paper, "
                         f"too wide to decide.")
            else:
                agree = " We disagree."
            parts[-1] += f" The paper: {paper:+.2f} ({r.paper_dataset}){unchecked}, {r.paper_verdict}.{agree}"
    if "paper_diff" not in table or table["paper_diff"].isna().all():
        parts.append(("Our file of the paper's numbers (rethink/paper_numbers.csv) has no row for this pruned model, so ours "
                     "stands without a side-by-side number."))
    parts.append(CLAIMS["unstructured" if method in UNSTRUCTURED else "structured"])
    left = [x for x in table.left_out if x]
    if left:
        parts.append("Left out of the differences (failed runs, shown on the curves): " + "; ".join(left) + ".")
    profiles = set(table.profile)
    if profiles & set(SHORT_PROFILES):
        parts.append(f"The {', '.join(sorted(profiles & set(SHORT_PROFILES)))} profile's large models have not "
                     f"converged: read this as a check of the pipeline, not as evidence for or against the paper.")
    return f"**Ours ({source}).** " + " ".join(parts)


def paired_verdict(df: pd.DataFrame, a: str, b: str, key: str, metric: str = "best_acc",
                   dataset: Optional[str] = None) -> dict:
    """``a`` minus ``b`` (values of column ``key``, e.g. init "winning-ticket" vs "random-init"), paired by seed:
    {n, diff, low, high, verdict, left_out}, with the words of :func:`verdict_word` ("better" meaning ``a`` is).
    A seed whose ``a`` or ``b`` run failed (:func:`flag_by`) is left out of the pairs and named in ``left_out``."""
    df = df[df[key].isin([a, b])]
    df = df.assign(flag=flag_by(df, key, metric, dataset))
    x, y = (df[df[key] == v].set_index("seed") for v in (a, b))
    seeds = sorted(set(x.index) & set(y.index))
    left_out = [f"{v} seed {s}: {t.flag[s]}" for s in seeds for v, t in ((a, x), (b, y)) if t.flag[s]]
    kept = [s for s in seeds if not x.flag[s] and not y.flag[s]]
    mean, low, high = paired_interval([x[metric][s] - y[metric][s] for s in kept])
    word = verdict_word(low, high).replace("scratch ", "")
    return dict(n=len(kept), diff=mean, low=low, high=high, verdict=word, left_out=left_out)


def describe(v: dict, what: str) -> str:
    """"<what>: +1.23 points (95 % interval ..., n seeds): better" in the book's words, and the failed runs left
    out of the pairs."""
    left = f" (left out as failed: {'; '.join(v['left_out'])})" if v.get("left_out") else ""
    if v["n"] < 2:
        shown = f"{v['diff']:+.2f}** points from {v['n']} seed" if v["n"] else "no** pair of seeds"
        return f"{what}: **{shown}{left}, too few for an interval (undecided)"
    return (f"{what}: **{v['diff']:+.2f}** points (95 % interval {v['low']:+.2f} to {v['high']:+.2f}, {v['n']} "
            f"seeds{left}): **{v['verdict']}**")


