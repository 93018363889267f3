"""The findings table of the book's first page: each claim of the papers, the paper's evidence, ours, and a verdict
(supported / not supported / contradicted / mixed / inconclusive) computed from the records, never typed by hand.

The scratch-vs-fine-tune claims are decided from :func:`rethink.verdict.verdicts` (paired 95 % intervals per
pruned model); the lottery-ticket and architecture-search claims from their records' paired comparison
(:func:`rethink.verdict.paired_verdict`); the criteria claim from the per-layer rank correlations of its records,
CWDA from the per-layer tests of the weight-distribution records.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .report import model_label, n_seeds, pruned_label

# The papers' claims and the evidence the papers give; which of our records speak to each.
CLAIMS = (
    dict(key="predefined", paper="Liu et al. 2019",
         claim="Predefined structured pruning (L1-norm, ThiNet, regression-based channel pruning): the pruned "
               "model trained from scratch is on par with or better than the fine-tuned one",
         evidence="Table 1: VGG-16-A, ResNet-56-A/B, ResNet-110-A/B on CIFAR-10, mean ± std of 5 runs; ResNet-34-A/B "
                  "on ImageNet, 1 run; ThiNet's and channel pruning's published ImageNet architectures, Scratch-B, 1 run",
         methods=("l1-norm", "thinet", "channel-pruning")),
    dict(key="automatic", paper="Liu et al. 2019",
         claim="Automatic structured pruning (Network Slimming, SFP, Sparse Structure Selection): the same holds for the architectures such "
               "methods find",
         evidence="Table 4: Network Slimming on VGG-19, PreResNet-164, DenseNet-40, CIFAR-10/100, and VGG-11 on "
                  "ImageNet; Sparse Structure Selection's ImageNet ResNet-41/32/26, Scratch-B, 1 run (no SFP numbers "
                  "in our numbers file, rethink/paper_numbers.csv)",
         methods=("slimming", "sfp", "sss")),
    dict(key="unstructured", paper="Liu et al. 2019",
         claim="Unstructured magnitude pruning: scratch training is on par with fine-tuning on CIFAR (and falls "
               "behind on ImageNet at high sparsity)",
         evidence="CIFAR: VGG-19, PreResNet-110, DenseNet-40 at 30-95 %; ImageNet: VGG-16-BN, ResNet-50 at 30/60 %",
         methods=("magnitude",)),
)
STUDIES = (
    dict(key="lottery", paper="Liu et al. 2019", folder="lottery", records="*-{profile}-*.json",
         claim="Lottery ticket: at the optimal lr 0.1 the winning ticket is no better than a random initialisation",
         evidence="Iterative magnitude pruning, VGG and ResNet on CIFAR-10, lr 0.1 vs 0.01"),
    dict(key="arch_search", paper="Liu et al. 2019", folder="arch_search", records="*-{profile}-*.json",
         claim="Pruning as architecture search: slimming-found widths trained from scratch beat a uniformly "
               "narrowed network of the same FLOPs",
         evidence="Network Slimming on VGG-19 / PreResNet / DenseNet, CIFAR"),
    # the criteria folder also holds the weight-distribution records, which test a premise, not this claim
    dict(key="criteria", paper="Huang et al. 2021", folder="criteria", records="*-{profile}-criteria-*.json",
         claim="L1, L2, geometric-median and Fermat criteria rank the filters of a layer almost identically",
         evidence="Spearman correlations near 1 per layer, VGG-16 and ResNet on CIFAR-10 and ImageNet"),
    dict(key="cwda", paper="Huang et al. 2021", folder="criteria", records="*-{profile}-weight-distribution-*.json",
         claim="CWDA: the trained filters of a conv layer are roughly i.i.d. samples of a zero-mean, Gaussian-alike "
               "distribution (so norm-based scores concentrate as the layer's filters grow)",
         evidence="Statistical tests on the layers of trained CNNs (zero mean and near-diagonal covariance: our "
                  "reading, not checked against the paper's text; its exact tests are not known to us)"),
)


def _scratch_verdict(rows: pd.DataFrame, convergence: pd.DataFrame | None = None) -> tuple[str, str]:
    """(verdict, our evidence) of a claim "scratch on par or better" over the comparisons in ``rows``; a pruned
    model whose large model failed the convergence check (``convergence``) at its epochs does not count, and is
    named."""
    from .convergence import failed_check
    configs = rows.config if "config" in rows else [None] * len(rows)
    unconverged = pd.Series([isinstance(c, dict) and failed_check(c, convergence) is not None for c in configs],
                            index=rows.index, dtype=bool)
    verdict, ours = _scratch_words(rows[~unconverged])
    if unconverged.any():
        names = sorted({pruned_label(m, model) for m, model in zip(rows[unconverged].method,
                                                                    rows[unconverged].model)})
        ours += f"; not counted, their large model not converged at its epochs (protocol page): {', '.join(names)}"
    return verdict, ours


def _scratch_words(rows: pd.DataFrame) -> tuple[str, str]:
    decided = rows[rows.verdict != "undecided"]
    # n: the seeds that pair (both regimes, neither flagged); per model, its best comparison
    best = rows.groupby(["method", "model"], sort=False).n.max()
    counted = set(zip(decided.method, decided.model))  # two methods may reach the same widths (label)
    so_far = sorted(f"{pruned_label(m, model)} ({n_seeds(n, 'paired seed')})" for (m, model), n in best.items()
                    if (m, model) not in counted)
    if decided.empty:
        return "inconclusive", ("no pruned model with 2+ seeds on this profile yet"
                                + (f"; so far {', '.join(so_far)}" if so_far else ""))
    worse = int((decided.verdict == "scratch worse").sum())
    better = int((decided.verdict == "scratch better").sum())
    n = len(decided)
    models = len(counted)
    seeds = f"{int(decided.n.min())}-{int(decided.n.max())}" if decided.n.min() != decided.n.max() else str(
        int(decided.n.min()))
    names = ", ".join(sorted({pruned_label(m, model) for m, model in zip(decided.method, decided.model)}))
    ours = (f"{models} pruned model(s) ({names}), {n} comparisons (Scratch-E/B - fine-tuned, {seeds} seeds each): "
            f"{better} scratch better, {n - better - worse} on par, {worse} scratch worse")
    if worse:  # which ones: what makes a claim "mixed" is shown, not left to the results page
        lost = decided[decided.verdict == "scratch worse"]
        ours += " (" + ", ".join(f"{pruned_label(m, model)} {c.split(' - ')[0]}" for m, model, c in
                                 zip(lost.method, lost.model, lost.comparison)) + ")"
    shared = int(decided.shared.fillna(False).astype(bool).sum()) if "shared" in decided else 0
    if shared:
        ours += (f" ({shared} of them compare with scratch runs shared with another method of the same widths: "
                 "not independent evidence)")
    if so_far:  # a row still running: shown on the results page, not yet counted here
        ours += f"; too few seeds so far, not counted: {', '.join(so_far)}"
    if worse == 0:
        return "supported", ours
    if worse == n:
        return "contradicted", ours
    return "mixed", ours


# The studies decided by one paired comparison: (the records' kind, a, b, key, the comparison in words, and the
# claim's verdict for each of our words).  Lottery: "no better" holds when the ticket is on par or worse; the
# architecture search claims the pruned widths *beat* the uniform ones, which on par does not support.
STUDY_VERDICTS = {
    "lottery": dict(kind="lottery-ticket", a="winning-ticket", b="random-init", key="init",
                    what="winning ticket − random init at lr 0.1",
                    words={"on par": "supported", "worse": "supported", "better": "contradicted"}),
    "arch_search": dict(kind="architecture-search", a="pruned (slimming)", b="uniform", key="design",
                        what="pruned (slimming) − uniform",
                        words={"better": "supported", "on par": "not supported", "worse": "contradicted"}),
}


def _study_rows(key: str, rec: dict) -> list[dict]:
    dataset = rec["config"]["data"]["dataset"]
    if key == "lottery":
        from .lottery import lottery_rows
        return lottery_rows(rec["result"], rec["seed"], rec["lr"], dataset) if rec["lr"] == 0.1 else []
    from .arch_search import design_rows
    return design_rows(rec["result"], rec["seed"], dataset)


def _study_verdict(key: str, paths, convergence: pd.DataFrame | None = None) -> tuple[str, str]:
    """(verdict, ours) of a study from its records: the paired comparison of :data:`STUDY_VERDICTS` (failed runs
    left out and named), per setting (the records' names without the seed), with dataset, profile and device.
    A setting whose large model the convergence check (``convergence``) found not converged at its epochs does not
    vote: its comparison is shown, with why it is not evidence."""
    import re

    from .records import newest_settings, settings_change
    from .verdict import describe, paired_verdict
    spec = STUDY_VERDICTS[key]
    groups: dict = {}
    for rec in _records_of(paths, spec["kind"]):
        groups.setdefault(re.sub(r"-s\d+$", "", rec["run_id"]), []).append(rec)
    verdicts, parts = [], []
    for name, recs in groups.items():
        recs, older = newest_settings(recs)  # a setting re-run seed by seed: its older seeds wait, not pooled
        rows = [r for rec in recs for r in _study_rows(key, rec)]
        if not rows:
            continue
        v = paired_verdict(pd.DataFrame(rows), spec["a"], spec["b"], spec["key"])
        c = recs[0]["config"]
        unconverged = _unconverged(recs[0], convergence)
        verdicts.append("inconclusive" if v["verdict"] == "undecided" or unconverged else spec["words"][v["verdict"]])
        what = f"{c['arch']} at prune_ratio {c['prune']['prune_ratio']:g}"
        changes = "; ".join(sorted({settings_change(r["config"], c) for r in older}))
        waiting = (f"; not counted until re-run: seed {', '.join(str(s) for s in sorted(r['seed'] for r in older))} "
                   f"of earlier settings ({changes})" if older else "")
        parts.append(f"{what}: " + describe(v, spec["what"]).replace("**", "") + f" ({_where(recs[0])})"
                     + (unconverged or "") + waiting)
    if not parts:
        return "inconclusive", "no record with the comparison yet"
    decided = set(verdicts) - {"inconclusive"}  # a setting with too few seeds so far does not vote
    verdict = "inconclusive" if not decided else decided.pop() if len(decided) == 1 else "mixed"
    return verdict, "; ".join(parts)


def _records_of(paths, kind: str):
    """The readable records of ``kind`` among ``paths`` (an unreadable or foreign file is not a result)."""
    from .records import read_record
    for p in paths:
        rec = read_record(p)
        if rec and rec.get("kind") == kind:
            yield rec


def _unconverged(rec: dict, convergence: pd.DataFrame | None) -> str | None:
    """Why ``rec`` is not evidence yet, where the convergence check found its large model not converged at its
    epochs; None where it passed or was not checked."""
    from .convergence import failed_check
    check = failed_check(rec["config"], convergence)
    if check is None:
        return None
    return (f"; not evidence yet: its large model was not converged at {check['epochs_x1']:.0f} epochs "
            f"({check['gain_x2']:+.2f} points at 2x, protocol page); its re-run on a longer schedule is pending")


def _where(rec: dict) -> str:
    c = rec["config"]
    return f"{c['data']['dataset']}, {c['profile']} profile, {rec['provenance']['device']}"


def _holds(holds: list, parts: list, none: str) -> tuple[str, str]:
    """(verdict, ours) of a claim made of parts that each hold or not: all, none, or some."""
    if not parts:
        return "inconclusive", none
    return "supported" if all(holds) else "contradicted" if not any(holds) else "mixed", "; ".join(parts)


def _criteria_verdict(paths, convergence: pd.DataFrame | None = None) -> tuple[str, str]:
    """(verdict, ours) of the criteria-similarity claim from its records: per model, the median Spearman over its
    conv layers of each pair of L1, L2, GM and Fermat (:func:`rethink.similarity.norm_pair_agreement`); supported
    when every pair of every model reaches "near-identical", contradicted when none does, mixed otherwise."""
    from .similarity import NEAR_IDENTICAL, norm_pair_agreement
    near, parts = [], []
    for rec in _records_of(paths, "criteria-similarity"):
        if "layer_spearman" not in rec.get("results", {}):
            continue
        c = rec["config"]
        agree = norm_pair_agreement(pd.DataFrame(**rec["results"]["layer_spearman"]))
        if agree.empty:
            continue
        unconverged = _unconverged(rec, convergence)
        near += [] if unconverged else list(agree.near_identical)
        low = agree.loc[agree["median"].idxmin()]
        worst = agree.loc[agree.lowest.idxmin()]
        seeds = c.get("seeds") or [rec["seed"]]
        parts.append(f"{c['arch']} x{c['width_mult']:g} ({n_seeds(len(seeds))}): {int(agree.near_identical.sum())} of "
                     f"{len(agree)} pairs with a median Spearman over the conv layers ≥ {NEAR_IDENTICAL:g} (lowest "
                     f"median {low['median']:.3f}, {low.pair}; lowest single layer {worst.lowest:.3f}, {worst.pair} "
                     f"in conv {worst.lowest_layer}) ({_where(rec)})" + (unconverged or ""))
    return _holds(near, parts, "no criteria-similarity record with per-layer correlations yet")


def _cwda_verdict(paths, convergence: pd.DataFrame | None = None) -> tuple[str, str]:
    """(verdict, ours) of CWDA from the weight-distribution records: supported when both of its testable parts
    (zero mean, i.i.d. concentration; :func:`rethink.cwda.cwda_parts`) hold in every model, contradicted when
    neither holds in any, mixed otherwise."""
    from .cwda import cwda_parts
    holds, parts = [], []
    for rec in _records_of(paths, "weight-distribution"):
        res, c = rec.get("results", {}), rec["config"]
        if "layers" not in res or "alpha" not in res:  # a record of an older format: not a result here
            continue
        cw = cwda_parts(pd.DataFrame(**res["layers"]), res["alpha"])
        if not cw["layers"]:
            continue
        unconverged = _unconverged(rec, convergence)
        holds += [] if unconverged else [cw["zero_mean_holds"], cw["concentration_holds"]]
        low, high = cw["kurtosis"]
        tails = ("heavier tails than a Gaussian" if low > 0 else "lighter tails than a Gaussian" if high < 0
                 else "tails on both sides of a Gaussian's")
        parts.append(f"{c['arch']} x{c['width_mult']:g} (seed {rec['seed']}, {cw['layers']} conv layers): zero mean "
                     f"kept in {cw['zero_mean']} of {cw['layers']} layers (t-test, α = {res['alpha']:g}); L2 scores "
                     f"concentrate as i.i.d. filters' would in {cw['concentrates']} of {cw['layers']} (median CV "
                     f"{cw['cv_ratio_median']:.2f}x the i.i.d. value); excess kurtosis {low:.2f} to {high:.2f} "
                     f"({tails}) ({_where(rec)})" + (unconverged or ""))
    return _holds(holds, parts, "no weight-distribution record yet")


CONTROL = dict(paper="control (this project)",
               claim="Which filters a criterion keeps adds nothing once fine-tuned: random filters kept at the same "
                     "widths fine-tune as well as the criterion's (L1-norm's, ThiNet's, channel pruning's)",
               evidence="none in either paper; both turn on architecture vs inherited weights, so the criterion's "
                        "choice is tested against chance")


def _control_row(control_rows: pd.DataFrame | None) -> dict:
    """The random-filters control as a findings row: supported when no decided pruned model has the criterion's
    filters better than random ones (on par), contradicted when every one has, mixed otherwise."""
    c = control_rows if control_rows is not None else pd.DataFrame(columns=["verdict", "method", "model", "n"])
    decided = c[c.verdict != "undecided"]
    if decided.empty:
        so_far = ", ".join(f"{pruned_label(m, model)} ({n_seeds(n)})"
                           for m, model, n in zip(c.method, c.model, c.n))
        return dict(**CONTROL, ours="no pruned model with 2+ seeds of the control yet"
                    + (f"; so far {so_far}" if so_far else ""), verdict="inconclusive")
    better = int((decided.verdict == "criterion better").sum())
    parts = [f"{pruned_label(r.method, r.model)}: {r.diff:+.2f} points ({r.low:+.2f} to {r.high:+.2f}, {r.n} seeds), {r.verdict}"
             for r in decided.itertuples()]
    sources = sorted({f"{d}, {p} profile, {dev}" for d, p, dev in zip(decided.dataset, decided.profile,
                                                                     decided.device)})
    verdict = "supported" if better == 0 else "contradicted" if better == len(decided) else "mixed"
    return dict(**CONTROL, ours="fine-tuned minus random filters fine-tuned, 95 % paired interval: "
                + "; ".join(parts) + "; " + "; ".join(sources), verdict=verdict)


def findings_table(verdict_rows: pd.DataFrame, book_dir="book", profile: str = "book",
                   control_rows: pd.DataFrame | None = None, waiting: pd.DataFrame | None = None,
                   convergence: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim: paper, claim, the paper's evidence, ours (with dataset, profile, seeds) and a verdict;
    with ``control_rows`` (:func:`rethink.verdict.control_verdicts`), the random-filters control as a last row.
    ``waiting``: records (method, arch, variant, prune_ratio) of rows not yet re-run on the profile; a claim names
    those of its methods, so that its verdict is not read as covering them.  ``convergence``: the convergence
    checks (:func:`rethink.convergence.convergence_table`); None reads them from ``book_dir/convergence``."""
    if convergence is None:
        from .convergence import book_checks
        convergence = book_checks(book_dir)
    out = []
    v = verdict_rows if len(verdict_rows) else pd.DataFrame(columns=["method", "verdict", "model", "n", "dataset",
                                                                      "profile", "device"])
    for c in CLAIMS:
        rows = v[v.method.isin(c["methods"])]
        verdict, ours = _scratch_verdict(rows, convergence)
        if len(rows):
            ours += "; " + "; ".join(sorted({f"{d}, {p} profile, {dev}" for d, p, dev in
                                            zip(rows.dataset, rows.profile, rows.device)}))
        ours += _waiting_text(waiting, c["methods"], profile)
        out.append(dict(paper=c["paper"], claim=c["claim"], paper_evidence=c["evidence"], ours=ours, verdict=verdict))
    for s in STUDIES:
        records = sorted(Path(book_dir, s["folder"], "records").glob(s["records"].format(profile=profile)))
        if not records:
            verdict, ours = "inconclusive", (f"not yet re-run on the {profile} profile (its chapter shows an earlier "
                                             "short-profile run)")
        elif s.get("key") in STUDY_VERDICTS:
            verdict, ours = _study_verdict(s["key"], records, convergence)
        elif s["key"] == "cwda":
            verdict, ours = _cwda_verdict(records, convergence)
        else:
            verdict, ours = _criteria_verdict(records, convergence)
        out.append(dict(paper=s["paper"], claim=s["claim"], paper_evidence=s["evidence"], ours=ours,
                        verdict=verdict))
    if control_rows is not None:
        r = _control_row(control_rows)
        out.append(dict(paper=r["paper"], claim=r["claim"], paper_evidence=r["evidence"], ours=r["ours"],
                        verdict=r["verdict"]))
    return pd.DataFrame(out)


def _waiting_labels(waiting: pd.DataFrame | None, methods) -> dict[str, list[str]]:
    """The pruned models of ``methods`` among ``waiting``'s records, as the tables name them, by why they wait:
    "new" (no record of the profile yet: another profile's only) and "rerun" (re-run seed by seed on the profile's
    current settings, :func:`rethink.report.split_superseded`: its current seeds count, the named ones wait)."""
    if waiting is None or not len(waiting):
        return {}
    w = waiting[waiting.method.isin(methods)]
    labels = {}
    none = pd.Series([False] * len(w), index=w.index)
    for m, a, v, r, seed, superseded in zip(w.method, w.arch, w.variant, w.prune_ratio, w.get("seed", none),
                                            w.get("superseded", none)):
        seeds = labels.setdefault(pruned_label(m, model_label(a, v, r)), set())
        if pd.notna(superseded) and bool(superseded):
            seeds.add(int(seed))
    out = {}
    for k, s in sorted(labels.items()):
        if s:
            out.setdefault("rerun", []).append(f"{k} (seed {', '.join(map(str, sorted(s)))} of earlier settings)")
        else:
            out.setdefault("new", []).append(k)
    return out


def _waiting_text(waiting: pd.DataFrame | None, methods, profile: str) -> str:
    """"; not yet run on the book profile, so not counted: ..." for a claim's pruned models still waiting."""
    pending = _waiting_labels(waiting, methods)
    return "".join(f"; {what.format(profile=profile)}, so not counted: {', '.join(pending[key])}"
                   for key, what in (("new", "not yet run on the {profile} profile"),
                                     ("rerun", "not yet re-run on the {profile} profile's current settings"))
                   if key in pending)


def findings_markdown(table: pd.DataFrame) -> str:
    lines = ["| paper | claim | the paper's evidence | ours | verdict |", "|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.paper} | {r.claim} | {r.paper_evidence} | {r.ours} | **{r.verdict}** |")
    lines += ["", "Computed from the run records by the results page (`rethink.findings`); a claim about scratch "
                  "training is *supported* when none of its decided comparisons has scratch worse than "
                  "fine-tuning (95 % paired interval below 0), *contradicted* when all do, *mixed* otherwise, "
                  "and *inconclusive* without a pruned model with two or more seeds; a claim's verdict covers "
                  "the pruned models it names, not those still waiting for their re-run. Runs whose large model "
                  "failed the convergence check at its epochs (protocol page) are shown in every row but never "
                  "counted. The lottery-ticket row "
                  "is *supported* when the winning ticket is on par with or worse than a random initialisation at "
                  "lr 0.1 (paired 95 % interval), *contradicted* when it is better; the architecture-search row is "
                  "*supported* when the slimming-found widths beat the uniform ones, *not supported* when on par, "
                  "*contradicted* when worse; failed runs are left out of both and named. The criteria row is "
                  "*supported* when every pair of L1, L2, GM and Fermat has a median Spearman correlation over a "
                  "model's conv layers of 0.9 or more, *contradicted* when no pair has, *mixed* otherwise. CWDA is "
                  "*supported* when its two testable parts, a zero mean and scores that concentrate as i.i.d. "
                  "filters' would (L2's CV within 2x of 1/√(2d)), each hold in at least half of a model's conv layers, "
                  "*contradicted* when neither does, *mixed* otherwise. "
                  "The control row is "
                  "*supported* when no decided pruned model fine-tunes better from the criterion's filters than "
                  "from random filters at the same widths (95 % paired interval above 0), *contradicted* when all "
                  "do, *mixed* otherwise."]
    return "\n".join(lines) + "\n"
