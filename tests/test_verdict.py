from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy import stats

from rethink.verdict import flag_runs, paired_interval, verdict_word, verdicts, welch_interval


def test_paired_interval_is_the_t_interval_of_the_differences():
    diffs = [0.4, 0.9, 0.2, 0.7, 0.5]
    mean, low, high = paired_interval(diffs)
    lo, hi = stats.t.interval(0.95, len(diffs) - 1, loc=sum(diffs) / 5, scale=stats.sem(diffs))
    assert mean == pytest.approx(0.54) and (low, high) == (pytest.approx(lo), pytest.approx(hi))
    assert math.isnan(paired_interval([1.0])[1])  # one seed: no interval


def test_verdict_words():
    assert verdict_word(0.1, 0.8) == "scratch better"
    assert verdict_word(-0.8, -0.1) == "scratch worse"
    assert verdict_word(-0.2, 0.3) == "on par"
    assert verdict_word(math.nan, math.nan) == "undecided"


def test_welch_interval_from_published_summaries():
    diff, low, high = welch_interval(93.78, 0.15, 5, 93.41, 0.12, 5)
    t = stats.ttest_ind_from_stats(93.78, 0.15, 5, 93.41, 0.12, 5, equal_var=False)
    assert diff == pytest.approx(0.37) and low > 0  # significant, as the p-value says
    assert t.pvalue < 0.05
    assert math.isnan(welch_interval(1.0, math.nan, 5, 0.5, 0.1, 5)[1])  # no std published: no interval


def _records(accs: dict, arch="vgg16", variant="vgg16-a"):
    rows = []
    for regime, values in accs.items():
        for seed, acc in enumerate(values):
            rows.append(dict(regime=regime, seed=seed, best_acc=acc, dataset="fashion-mnist", profile="book",
                             device="cpu", arch=arch, method="l1-norm", variant=variant, prune_ratio=None,
                             baseline_tag="unpruned"))
    return pd.DataFrame(rows)


def test_failed_seeds_are_flagged_not_averaged():
    df = _records({"baseline": [90.0, 90.2, 89.9], "fine-tune": [89.0, 89.2, 88.9],
                   "scratch-e": [89.5, 11.0, 89.6], "scratch-b": [90.1, 90.0, 80.0]})
    flags = flag_runs(df)
    flagged = {(r.regime, r.seed): f for r, f in zip(df.itertuples(), flags) if f}
    assert set(flagged) == {("scratch-e", 1), ("scratch-b", 2)}
    assert "near chance" in flagged[("scratch-e", 1)] and "below the other seeds" in flagged[("scratch-b", 2)]
    v = verdicts(df).set_index("comparison")
    e = v.loc["Scratch-E - fine-tuned"]
    assert e.n == 2 and "seed 1" in e.left_out and e["diff"] == pytest.approx(0.6)  # (0.5 + 0.7) / 2


def test_verdicts_pair_seeds_and_sit_beside_the_paper():
    # fine-tuning differs a lot between seeds, but Scratch-B is always 1 point above it: paired, that is decided
    df = _records({"baseline": [91.0, 89.0, 90.0], "fine-tune": [90.0, 88.0, 89.0],
                   "scratch-e": [89.5, 88.2, 89.1], "scratch-b": [91.0, 89.1, 89.9]})
    v = verdicts(df).set_index("comparison")
    b = v.loc["Scratch-B - fine-tuned"]
    assert b.verdict == "scratch better" and b.low > 0 and b.n == 3
    assert v.loc["Scratch-E - fine-tuned"].verdict == "on par"
    # the paper's vgg16-a row (rethink/paper_numbers.csv): Scratch-B 93.78 ± 0.15 vs fine-tuned 93.41 ± 0.12
    assert b.paper_diff == pytest.approx(0.37) and b.paper_verdict == "scratch better" and b.agrees == True  # noqa: E712


def test_a_paper_verdict_from_an_unchecked_number_is_marked():
    from rethink.verdict import _paper_difference, shown_verdicts, verdict_sentence
    # vgg16-a's fine-tuned 93.41 is recalled, not yet checked against the paper's text (verified False)
    df = _records({"baseline": [91.0, 89.0, 90.0], "fine-tune": [90.0, 88.0, 89.0],
                   "scratch-e": [89.5, 88.2, 89.1], "scratch-b": [91.0, 89.1, 89.9]})
    v = verdicts(df)
    assert list(v.paper_verified) == [False, False]
    t = shown_verdicts(v, ["comparison", "verdict", "paper_verdict"], "comparison")
    assert t.loc["Scratch-B - fine-tuned", "paper: verdict"] == "scratch better (u)"
    assert "not yet checked against the paper's text" in verdict_sentence(v, "l1-norm", "book")
    # both numbers checked: no mark
    paper = pd.DataFrame([dict(dataset="cifar10", regime=r, acc_mean=m, acc_std=0.1, n_runs=5, verified=True)
                          for r, m in (("fine-tune", 93.0), ("scratch-b", 93.5))])
    assert _paper_difference(paper, "scratch-b")["paper_verified"] is True
    assert _paper_difference(paper.assign(verified=[True, False]), "scratch-b")["paper_verified"] is False


def test_forest_plot_has_a_line_per_comparison():
    from rethink.verdict import plot_forest
    df = _records({"baseline": [91.0, 89.0, 90.0], "fine-tune": [90.0, 88.0, 89.0],
                   "scratch-e": [89.5, 88.2, 89.1], "scratch-b": [91.0, 89.1, 89.9]})
    fig = plot_forest(verdicts(df))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["vgg16-a: Scratch-B", "vgg16-a: Scratch-E"]
    assert len(ax.containers) == 2  # ours and the paper's error bars
    # vgg16-a's paper numbers are not yet checked against its text: hollow diamonds, and the legend says why
    paper_markers = ax.containers[1].lines[0]
    assert paper_markers.get_marker() == "D" and paper_markers.get_markerfacecolor() == "white"
    assert "not yet checked" in [t.get_text() for t in ax.get_legend().get_texts()][1]
    # two methods at the same widths are told apart; a comparison with nothing to draw is left out
    thinet = _records({"baseline": [91.0, 89.0], "fine-tune": [90.0, 88.0], "scratch-e": [89.0, 88.5],
                       "scratch-b": [91.0, 89.5]}, variant=None).assign(method="thinet", prune_ratio=0.5)
    unpaired = _records({"baseline": [91.0], "fine-tune": [90.0]}, variant=None).assign(method="sss", prune_ratio=0.3)
    ax = plot_forest(verdicts(pd.concat([df, thinet, unpaired]))).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "thinet vgg16 p=0.5: Scratch-B" in labels and "vgg16-a: Scratch-B" in labels
    assert not [t for t in labels if "sss" in t]


def test_the_sentence_is_chosen_from_the_records():
    from rethink.verdict import verdict_sentence
    df = _records({"baseline": [91.0, 89.0, 90.0], "fine-tune": [90.0, 88.0, 89.0],
                   "scratch-e": [89.5, 88.2, 89.1], "scratch-b": [91.0, 89.1, 89.9]})
    text = verdict_sentence(verdicts(df), "l1-norm", "fashion-mnist, book profile")
    assert "Scratch-B − fine-tuned: **+1.00**" in text and "scratch better" in text and "We agree." in text
    assert "structured pruning" in text and "not converged" not in text
    # an unstructured method without a paper row, on the quick profile: other words
    df = _records({"fine-tune": [90.0, 88.0], "scratch-e": [89.5, 88.2], "scratch-b": [91.0, 89.1]},
                  arch="vgg19", variant=None).assign(method="magnitude", prune_ratio=0.5, profile="quick")
    v = verdicts(df)
    assert {"paper_diff", "paper_verdict"} <= set(v.columns) and v.paper_diff.isna().all()  # columns even so
    text = verdict_sentence(v, "magnitude", "quick")
    assert "no row for this pruned model" in text and "ImageNet at high sparsity" in text
    assert "not converged" in text and "We agree" not in text


def test_findings_are_computed_from_the_verdicts(tmp_path):
    from rethink.findings import findings_markdown, findings_table
    better = _records({"baseline": [91.0, 89.0, 90.0], "fine-tune": [90.0, 88.0, 89.0],
                       "scratch-e": [89.5, 88.2, 89.1], "scratch-b": [91.0, 89.1, 89.9]})
    t = findings_table(verdicts(better), book_dir=tmp_path).set_index("claim")
    predefined = t.iloc[0]
    assert predefined.verdict == "supported" and "1 scratch better, 1 on par, 0 scratch worse" in predefined.ours
    assert "fashion-mnist, book profile" in predefined.ours
    assert t.iloc[1].verdict == "inconclusive"  # no slimming or SFP runs
    # one seed of an automatic method: inconclusive, and the model it has so far names its method
    one = _records({"baseline": [91.0], "fine-tune": [90.0], "scratch-e": [89.5], "scratch-b": [91.0]},
                   variant=None).assign(method="sss", prune_ratio=0.3)
    v1 = verdicts(one)
    auto = findings_table(v1, book_dir=tmp_path).iloc[1]
    assert auto.verdict == "inconclusive" and f"so far sss {v1.model.iloc[0]} (1 paired seed)" in auto.ours
    # beside decided models, a model with one seed so far is named as not counted yet, not left unsaid
    running = pd.concat([better, one.assign(method="thinet")], ignore_index=True)
    first = findings_table(verdicts(running), book_dir=tmp_path).iloc[0]
    assert first.verdict == "supported" and "too few seeds so far, not counted: thinet" in first.ours
    assert "too few seeds" not in predefined.ours
    worse = better.assign(best_acc=[b - 3.0 if r in ("scratch-e", "scratch-b") else b
                                    for r, b in zip(better.regime, better.best_acc)])
    assert findings_table(verdicts(worse), book_dir=tmp_path).iloc[0].verdict == "contradicted"
    # one comparison worse of two: mixed, and the worse one is named
    mixed = better.assign(best_acc=[b - 3.0 if r == "scratch-e" else b
                                    for r, b in zip(better.regime, better.best_acc)])
    row = findings_table(verdicts(mixed), book_dir=tmp_path).iloc[0]
    assert row.verdict == "mixed" and "1 scratch worse (vgg16-a Scratch-E)" in row.ours
    assert "scratch worse (" not in predefined.ours
    # the models counted are named, and a row still waiting for its re-run is named apart, not counted
    assert "(vgg16-a)" in predefined.ours and "not yet re-run" not in predefined.ours
    waiting = pd.DataFrame(dict(method=["l1-norm", "sfp"], arch=["resnet110", "resnet56"],
                                variant=["resnet110-a", None], prune_ratio=[None, 0.3]))
    t = findings_table(verdicts(better), book_dir=tmp_path, waiting=waiting)
    assert t.iloc[0].ours.endswith("; not yet run on the book profile, so not counted: resnet110-a")
    assert t.iloc[0].verdict == "supported" and "sfp resnet56 p=0.3" in t.iloc[1].ours
    # the other studies: whether their chapter has records of the profile
    (tmp_path / "lottery" / "records").mkdir(parents=True)
    (tmp_path / "lottery" / "records" / "fashion-mnist-book-lottery-x.json").write_text("{}")
    lottery = findings_table(verdicts(better), book_dir=tmp_path).iloc[3]
    assert lottery.verdict == "inconclusive" and "no record with the comparison" in lottery.ours
    assert findings_markdown(t.reset_index()).count("\n| ") == len(t)  # one line per claim after the header


def test_findings_count_methods_of_the_same_widths_apart_and_say_what_they_share(tmp_path):
    from rethink.findings import findings_table
    accs = {"baseline": [91.0, 89.0, 90.0], "fine-tune": [90.0, 88.0, 89.0], "scratch-e": [89.5, 88.2, 89.1],
            "scratch-b": [91.0, 89.1, 89.9]}
    thinet = _records(accs, variant=None).assign(method="thinet", prune_ratio=0.5, shared_from=None)
    cp = thinet.assign(method="channel-pruning", shared_from=[
        f"thinet-{r}" if r.startswith("scratch") else None for r in thinet.regime])
    v = verdicts(pd.concat([thinet, cp], ignore_index=True))
    assert v.model.nunique() == 1  # one label, "vgg16 p=0.5", for both methods
    assert list(v.shared) == [False, False, True, True]
    ours = findings_table(v, book_dir=tmp_path).iloc[0].ours
    assert ours.startswith("2 pruned model(s) (channel-pruning vgg16 p=0.5, thinet vgg16 p=0.5), 4 comparisons") and "2 of them compare with scratch runs shared" in ours
    # the criteria claim counts the criteria-similarity records, not the weight-distribution ones beside them
    folder = tmp_path / "criteria" / "records"
    folder.mkdir(parents=True)
    (folder / "fashion-mnist-book-weight-distribution-vgg16-s0.json").write_text("{}")
    assert findings_table(v, book_dir=tmp_path).iloc[5].verdict == "inconclusive"
    (folder / "fashion-mnist-book-criteria-similarity-vgg16-s0.json").write_text("{}")  # unreadable: no result
    assert findings_table(v, book_dir=tmp_path).iloc[5].verdict == "inconclusive"
    # the weight-distribution record is read by the CWDA row (an unreadable one is no result)
    assert findings_table(v, book_dir=tmp_path).iloc[6].verdict == "inconclusive"


def test_paired_verdicts_of_the_other_studies():
    from rethink.verdict import describe, paired_verdict
    df = pd.DataFrame([dict(seed=s, init=i, best_acc=a, dataset="fashion-mnist") for s, i, a in [
        (0, "winning-ticket", 90.0), (0, "random-init", 89.0), (1, "winning-ticket", 88.5), (1, "random-init", 87.4),
        (2, "winning-ticket", 89.1), (2, "random-init", 88.2)]])
    v = paired_verdict(df, "winning-ticket", "random-init", "init")
    assert v["n"] == 3 and v["diff"] == pytest.approx(1.0) and v["verdict"] == "better"
    assert "**better**" in describe(v, "winning ticket − random init") and "3 seeds" in describe(v, "x")
    one = paired_verdict(df[df.seed == 0], "winning-ticket", "random-init", "init")
    assert one["verdict"] == "undecided" and "too few for an interval" in describe(one, "x")
    # a run that never trained is named and left out of the pairs (here: 2 seeds left, still an interval)
    failed = df.assign(best_acc=[10.0 if (s, i) == (0, "random-init") else a for s, i, a in
                                 zip(df.seed, df.init, df.best_acc)])
    v = paired_verdict(failed, "winning-ticket", "random-init", "init")
    assert v["n"] == 2 and v["left_out"] == ["random-init seed 0: near chance (10.0 %)"]
    assert v["diff"] == pytest.approx(1.0) and "left out as failed: random-init seed 0" in describe(v, "x")
    # far below its seed siblings (3 seeds of that init) is flagged too; chance comes from the dataset
    low = df.assign(best_acc=[80.0 if (s, i) == (2, "winning-ticket") else a for s, i, a in
                              zip(df.seed, df.init, df.best_acc)])
    assert "below the other seeds" in paired_verdict(low, "winning-ticket", "random-init", "init")["left_out"][0]
    with pytest.raises(ValueError, match="dataset"):
        paired_verdict(df.drop(columns="dataset"), "winning-ticket", "random-init", "init")
    one_left = paired_verdict(failed[failed.seed < 2], "winning-ticket", "random-init", "init")
    assert one_left["n"] == 1 and "too few for an interval" in describe(one_left, "x")


def test_a_wider_interval_is_consistent_with_the_paper_not_a_disagreement():
    from rethink.verdict import verdict_sentence
    # Scratch-B +0.35 with an interval of about ±1.2 around it: "on par", the paper's +0.37 "scratch better"
    df = _records({"baseline": [91.3, 91.0, 91.2], "fine-tune": [91.1, 91.2, 91.2],
                   "scratch-e": [91.4, 90.7, 90.9], "scratch-b": [92.0, 91.3, 91.3]})
    v = verdicts(df).set_index("comparison")
    b = v.loc["Scratch-B - fine-tuned"]
    assert b.verdict == "on par" and b.paper_verdict == "scratch better" and b.agrees == False  # noqa: E712
    assert b.consistent == True  # noqa: E712  (the paper's +0.37 is inside our interval)
    text = verdict_sentence(verdicts(df), "l1-norm", "book")
    assert "consistent with the paper" in text and "We disagree" not in text
    # far from the paper's difference and decided the other way: a disagreement
    worse = df.assign(best_acc=[b - 2.0 if r == "scratch-b" else b for r, b in zip(df.regime, df.best_acc)])
    w = verdicts(worse).set_index("comparison").loc["Scratch-B - fine-tuned"]
    assert w.consistent == False and "We disagree" in verdict_sentence(verdicts(worse), "l1-norm", "book")  # noqa: E712


def _study_record(folder, run_id, seed, result, epochs=30, finished_at="2026-12-01T00:00:00+00:00", **extra):
    folder.mkdir(parents=True, exist_ok=True)
    kind = "lottery-ticket" if "lottery" in run_id else "architecture-search"
    arch = next(part for part in run_id.split("-") if part.startswith(("resnet", "vgg")))
    ratio = float(run_id.split(f"{arch}-p")[1].split("-")[0])
    rec = dict(run_id=run_id, kind=kind, seed=seed, result=result, config=dict(
                   data=dict(dataset="fashion-mnist"), profile="book", arch=arch, prune=dict(prune_ratio=ratio),
                   train=dict(epochs=epochs)),
               provenance=dict(device="cpu (x86_64)", finished_at=finished_at), **extra)
    (folder / f"{run_id}.json").write_text(json.dumps(rec))


def _metrics(acc):
    return dict(best_acc=acc, final_acc=acc - 0.1, curve=[dict(test_acc=acc - 0.1)])


def test_the_lottery_and_architecture_claims_are_decided_from_their_records(tmp_path):
    from rethink.findings import findings_table
    lottery = tmp_path / "lottery" / "records"
    # lr 0.1: the ticket within noise of a random init (supported); lr 0.01 records do not enter the claim
    for seed, (wt, ri) in enumerate([(90.1, 90.0), (89.9, 90.0), (90.3, 90.2)]):
        for lr, shift in ((0.1, 0.0), (0.01, -3.0)):
            _study_record(lottery, f"fashion-mnist-book-lottery-resnet20-p0.8-r2-lr{lr:g}-s{seed}", seed,
                          {"dense": _metrics(91.0), "winning-ticket": _metrics(wt + shift + (2 if lr == 0.01 else 0)),
                           "random-init": _metrics(ri + shift), "winning-ticket_sparsity": 0.8,
                           "random-init_sparsity": 0.8}, lr=lr)
    arch = tmp_path / "arch_search" / "records"
    # seed 0's pruned design never trained: left out and named; the other three seeds put uniform ahead
    for seed, (pruned, uniform, mult) in enumerate([(10.0, 90.2, 0.648), (88.5, 90.0, 0.645), (88.9, 90.1, 0.65),
                                                    (88.6, 90.0, 0.647)]):
        design = dict(widths=[8, "M", 4], params=100, flops=1000)
        _study_record(arch, f"fashion-mnist-book-archsearch-vgg11-p0.7-s{seed}", seed,
                      {"large": {**design, "metrics": _metrics(91.0)}, "clamped": [],
                       "pruned (slimming)": {**design, "metrics": _metrics(pruned)},
                       f"uniform (x{mult:.3f})": {**design, "metrics": _metrics(uniform)},
                       "guided (stage means)": {**design, "metrics": _metrics(89.0)}})
    t = findings_table(pd.DataFrame(), book_dir=tmp_path)
    lot, search = t.iloc[3], t.iloc[4]
    assert lot.verdict == "supported" and "3 seeds" in lot.ours and "fashion-mnist, book profile" in lot.ours
    assert "+0.03 points" in lot.ours and lot.ours.startswith("resnet20 at prune_ratio 0.8: winning ticket")  # (0.1 - 0.1 + 0.1) / 3, lr 0.1 only
    assert search.verdict == "contradicted" and "3 seeds" in search.ours
    assert "left out as failed: pruned (slimming) seed 0: near chance (10.0 %)" in search.ours
    # a setting re-run seed by seed on a longer schedule: its one new seed is not pooled with the two older ones
    _study_record(lottery, "fashion-mnist-book-lottery-resnet20-p0.8-r2-lr0.1-s0", 0,
                  {"dense": _metrics(91.5), "winning-ticket": _metrics(91.8), "random-init": _metrics(90.8),
                   "winning-ticket_sparsity": 0.8, "random-init_sparsity": 0.8},
                  epochs=60, finished_at="2026-12-02T00:00:00+00:00", lr=0.1)
    rerun = findings_table(pd.DataFrame(), book_dir=tmp_path).iloc[3]
    assert rerun.verdict == "inconclusive" and "1 seed" in rerun.ours and "+1.00" in rerun.ours
    assert "not counted until re-run: seed 1, 2 of earlier settings (train.epochs 30, now 60)" in rerun.ours
    # the uniform design merely on par: the claim (pruned beats uniform) is not supported, not contradicted
    for seed, pruned in ((1, 90.1), (2, 89.9), (3, 90.0)):
        rec = json.loads((arch / f"fashion-mnist-book-archsearch-vgg11-p0.7-s{seed}.json").read_text())
        rec["result"]["pruned (slimming)"]["metrics"] = _metrics(pruned)
        (arch / f"fashion-mnist-book-archsearch-vgg11-p0.7-s{seed}.json").write_text(json.dumps(rec))
    assert findings_table(pd.DataFrame(), book_dir=tmp_path).iloc[4].verdict == "not supported"
    # a second setting with one seed so far is shown but does not vote: no "mixed" from too few seeds
    _study_record(arch.parent.parent / "arch_search" / "records", "fashion-mnist-book-archsearch-vgg16-p0.5-s0", 0,
                  {"pruned (slimming)": {**design, "metrics": _metrics(91.0)},
                   "uniform (x0.700)": {**design, "metrics": _metrics(89.0)}})
    both = findings_table(pd.DataFrame(), book_dir=tmp_path).iloc[4]
    assert both.verdict == "not supported" and "vgg16 at prune_ratio 0.5: " in both.ours and "too few for an interval" in both.ours
    # a record of another kind in the folder is not read as this study's
    (arch / "fashion-mnist-book-archsearch-notes.json").write_text(json.dumps({"kind": "other", "result": {}}))
    assert findings_table(pd.DataFrame(), book_dir=tmp_path).iloc[4].verdict == "not supported"


def test_the_criteria_claim_is_decided_from_the_per_layer_rank_correlations(tmp_path):
    from rethink.findings import findings_table
    from rethink.records import write_record
    from rethink.similarity import norm_pair_agreement
    pairs = ["L1–L2", "L1–GM", "L2–GM", "L2–Taylor"]
    def record(arch, columns):  # per-layer Spearman of 3 conv layers, as the notebook writes it
        layers = pd.DataFrame(columns, index=[1, 2, 3], columns=pairs)
        return dict(kind="criteria-similarity", seed=0, run_id=f"fashion-mnist-book-criteria-similarity-{arch}-s0",
                    config=dict(arch=arch, width_mult=0.5, seeds=[0, 1, 2], profile="book",
                                data=dict(dataset="fashion-mnist")),
                    provenance=dict(device="cpu"), results=dict(layer_spearman=layers.to_dict(orient="split")))
    near = [[0.99, 0.97, 0.98, 0.2], [0.95, 0.93, 0.96, 0.3], [0.97, 0.40, 0.99, 0.1]]
    agree = norm_pair_agreement(pd.DataFrame(near, index=[1, 2, 3], columns=pairs))
    assert list(agree.pair) == ["L1–L2", "L1–GM", "L2–GM"]  # Taylor is not one of the paper's criteria
    assert list(agree.near_identical) == [True, True, True] and agree.lowest.min() == 0.40
    assert agree.set_index("pair").loc["L1–GM", "lowest_layer"] == 3
    folder = tmp_path / "criteria" / "records"
    write_record(record("vgg16", near), folder / "fashion-mnist-book-criteria-similarity-vgg16-s0.json")
    empty = pd.DataFrame(columns=["method", "verdict", "model", "n", "dataset", "profile", "device"])
    row = findings_table(empty, book_dir=tmp_path).iloc[5]
    assert row.verdict == "supported" and "vgg16 x0.5 (3 seeds): 3 of 3 pairs" in row.ours
    assert "lowest single layer 0.400, L1–GM in conv 3" in row.ours
    far = [[0.5, 0.6, 0.99, 0.2]] * 3  # L2 and GM agree, L1 does not: mixed
    write_record(record("resnet18", far), folder / "fashion-mnist-book-criteria-similarity-resnet18-s0.json")
    assert findings_table(empty, book_dir=tmp_path).iloc[5].verdict == "mixed"


def test_a_study_on_a_large_model_that_had_not_converged_is_shown_but_not_evidence(tmp_path):
    import shutil
    from pathlib import Path

    from rethink.config import RunConfig
    from rethink.convergence import convergence_of
    from rethink.experiment import baseline_tag
    from rethink.findings import findings_table
    from rethink.records import read_record
    folder = tmp_path / "lottery" / "records"
    folder.mkdir(parents=True)
    book = Path(__file__).resolve().parents[1] / "book"
    # the book's lottery records at lr 0.1 of one setting (mid-way through a re-run they hold two)
    from collections import Counter

    from rethink.records import settings_key
    book_recs = sorted((book / "lottery" / "records").glob("*-book-*-lr0.1-*.json"))
    common = Counter(settings_key(read_record(p)["config"]) for p in book_recs).most_common(1)[0][0]
    for p in book_recs:
        if settings_key(read_record(p)["config"]) == common:
            shutil.copy(p, folder)
    cfg = RunConfig.from_dict(read_record(next(folder.glob("*.json")))["config"])
    def check(converged):
        return pd.DataFrame([dict(large_model=baseline_tag(cfg), arch=cfg.arch, dataset=cfg.data.dataset,
                                  profile=cfg.profile, width_mult=cfg.width_mult, train_images=cfg.data.train_subset,
                                  epochs_x1=cfg.train.epochs, gain_x2=0.4 if converged else 1.2,
                                  converged=converged)])
    assert convergence_of(read_record(next(folder.glob("*.json")))["config"], check(True))["gain_x2"] == 0.4
    assert convergence_of(read_record(next(folder.glob("*.json")))["config"], check(True).assign(epochs_x1=7)) is None
    empty = pd.DataFrame(columns=["method", "verdict", "model", "n", "dataset", "profile", "device"])
    decided = findings_table(empty, book_dir=tmp_path, convergence=check(True)).iloc[3]
    assert decided.verdict in ("supported", "contradicted") and "not evidence" not in decided.ours
    incomplete = check(True).assign(converged=None, gain_x2=float("nan"))
    both = pd.concat([incomplete, check(False)], ignore_index=True)  # a check under way beside a failed one
    assert findings_table(empty, book_dir=tmp_path, convergence=incomplete).iloc[3].verdict != "inconclusive"
    shown = findings_table(empty, book_dir=tmp_path, convergence=both).iloc[3]
    assert shown.verdict == "inconclusive" and "winning ticket − random init at lr 0.1" in shown.ours
    assert f"not converged at {cfg.train.epochs} epochs (+1.20 points at 2x" in shown.ours


def test_a_pruned_model_whose_large_model_had_not_converged_does_not_count(tmp_path):
    from rethink.config import make_config
    from rethink.experiment import baseline_tag
    from rethink.findings import findings_table
    cfg = make_config(arch="vgg16", variant="vgg16-a", dataset="fashion-mnist", profile="book", device="cpu")
    df = _records({"baseline": [91.0, 89.0, 90.0], "fine-tune": [90.0, 88.0, 89.0],
                   "scratch-e": [89.5, 88.2, 89.1], "scratch-b": [91.0, 89.1, 89.9]})
    df["record"] = [{"config": cfg.to_dict()}] * len(df)
    v = verdicts(df)
    check = pd.DataFrame([dict(large_model=baseline_tag(cfg), arch="vgg16", dataset="fashion-mnist", profile="book",
                               width_mult=cfg.width_mult, train_images=cfg.data.train_subset,
                               epochs_x1=cfg.train.epochs, gain_x2=1.5, converged=False)])
    # another width's check (or training set's) is not this model's
    assert findings_table(v, book_dir=tmp_path, convergence=check.assign(width_mult=1.0)).iloc[0].verdict == "supported"
    row = findings_table(v, book_dir=tmp_path, convergence=check).iloc[0]
    assert row.verdict == "inconclusive" and "not converged at its epochs (protocol page): vgg16-a" in row.ours
    assert findings_table(v, book_dir=tmp_path, convergence=check.assign(converged=True)).iloc[0].verdict == "supported"
