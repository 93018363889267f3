"""The paper's numbers file is well formed and its rows reach the tables; the size summary reads the records."""
from __future__ import annotations

import pandas as pd

from rethink import list_methods
from rethink.report import COLUMNS, paper_numbers, paper_rows, result_table, size_summary, unsettled


def test_paper_numbers_are_one_well_formed_file_with_sources():
    p = paper_numbers()
    assert len(p) and not p.duplicated(["paper", "dataset", "arch", "method", "variant", "regime", "prune_ratio"]).any()
    assert set(p.regime) <= set(COLUMNS) and set(p.method) <= set(list_methods())
    assert p.acc_mean.between(50, 100).all() and (p.acc_std.dropna() < 1).all()
    assert p.source.str.len().gt(10).all() and p.verified.isin([True, False]).all()
    # a row is either a published variant or an arch at a prune ratio, never both or neither
    assert (p.variant.isna() != p.prune_ratio.isna()).all()
    assert p.n_runs.ge(1).all()


def test_paper_rows_label_their_source_and_unverified_numbers():
    (row,) = paper_rows("resnet56-b", "l1-norm")
    assert row["Scratch-B"] == "93.05 ± 0.18" and row["fine-tuned"].endswith("(u)")
    assert row["source"] == "paper: liu2019 Table 1, cifar10" and row["runs"] == 5
    assert row["Scratch-B epochs"] == 220
    (imagenet,) = paper_rows(None, "magnitude", "vgg16-bn", 0.6)
    assert imagenet["Scratch-E"] == "71.50" and imagenet["source"].endswith("imagenet") and imagenet["runs"] == 1
    assert "unpruned" not in imagenet  # not published: left out, not made up
    assert paper_rows(None, "slimming", "vgg19-slim", 0.5)[0]["source"].split(", ")[1] == "cifar100"
    assert paper_rows(None, "sfp", "resnet56", 0.3) == []


def _record(regime, method, flops, params, sparsity=None, variant=None, ratio=0.5):
    model = dict(flops=flops, params=params, widths=[])
    if sparsity is not None:
        model.update(sparsity=sparsity, dense_flops=1000, dense_params=100)
    return dict(regime=regime, arch="vgg19", method=method, variant=variant, prune_ratio=ratio,
                dataset="fashion-mnist", profile="quick", seed=0, record=dict(
                    model=model, baseline=dict(flops=1000, params=100)))


def test_size_summary_has_one_row_per_pruned_model_and_sparsity_only_for_masks():
    df = pd.DataFrame([_record("baseline", "slimming", 1000, 100),
                       _record("fine-tune", "slimming", 400, 30), _record("scratch-e", "slimming", 400, 30),
                       _record("fine-tune", "magnitude", 550, 50, sparsity=0.5, ratio=0.5)])
    t = size_summary(df)
    assert list(t.index) == ["vgg19 p=0.5", "vgg19 p=0.5"] and list(t.method) == ["magnitude", "slimming"]
    assert list(t["FLOPs reduction %"]) == [45.0, 60.0] and list(t["params reduction %"]) == [50.0, 70.0]
    assert t["conv sparsity %"].iloc[0] == 50.0 and pd.isna(t["conv sparsity %"].iloc[1])
    assert t.columns[-1] == "source" and t.source.iloc[0] == "ours: fashion-mnist, quick profile, 1 seed"
    assert size_summary(df[df.regime == "baseline"]).empty
    # the width multiplier the models were built with is named (the book's are narrowed)
    narrowed = df.copy()
    narrowed["record"] = [{**r, "config": {"width_mult": 0.25}} for r in df.record]
    assert size_summary(narrowed).source.iloc[0] == "ours: fashion-mnist, quick profile, widths x0.25, 1 seed"
    # a method that finds its widths per seed: the mean of the seeds' pruned models, and the source says so
    seeds = [{**_record("fine-tune", "slimming", f, p), "seed": s} for s, f, p in ((0, 400, 3e5), (1, 600, 5e5))]
    for r in seeds:
        r["record"]["baseline"]["params"] = 1e6
    t = size_summary(pd.DataFrame(seeds)).set_index("method")
    assert t.loc["slimming", "params reduction %"] == 60.0 and t.loc["slimming", "FLOPs reduction %"] == 50.0
    assert t.loc["slimming", "source"].endswith("mean of 2 seeds' pruned models (found per seed: params 0.300-0.500 M)")


def test_scratch_b_epochs_show_a_range_where_seeds_pruned_differently():
    def row(regime, seed, epochs, acc):
        return dict(regime=regime, seed=seed, epochs=epochs, best_acc=acc, dataset="fashion-mnist", profile="quick",
                    device="cpu", arch="vgg19-slim", method="slimming", variant=None, prune_ratio=0.7,
                    baseline_tag="slimming-l0.0001")
    df = pd.DataFrame([row("baseline", 0, 10, 80.0), row("baseline", 1, 10, 82.0),
                       row("scratch-b", 0, 71, 88.0), row("scratch-b", 1, 70, 89.0)])
    t = result_table(df)
    ours, paper = t.iloc[0], t.iloc[1]
    assert ours["Scratch-B epochs"] == "70-71" and ours["unpruned"] == "81.00 ± 1.41" and ours["fine-tuned"] == "–"
    assert paper["Scratch-B epochs"] == "–" and paper["source"].startswith("paper: liu2019 Table 4, cifar10")
    same = result_table(df.assign(epochs=[10, 10, 70, 70]))
    assert str(same["Scratch-B epochs"].dtype) == "Int64" and same["Scratch-B epochs"].iloc[0] == 70


def test_rows_whose_seeds_disagree_are_listed_with_each_seed():
    def row(regime, seed, acc):
        return dict(regime=regime, seed=seed, best_acc=acc, dataset="fashion-mnist", profile="quick", device="cpu",
                    arch="resnet110", method="l1-norm", variant="resnet110-b", prune_ratio=None, baseline_tag="unpruned")
    df = pd.DataFrame([row("baseline", 0, 50.0), row("baseline", 1, 45.0),
                       row("scratch-e", 0, 11.5), row("scratch-e", 1, 49.1)])
    t = unsettled(df)
    assert list(t.index) == ["resnet110-b"] and t.regime.iloc[0] == "Scratch-E"
    assert t.seeds.iloc[0] == "11.5 (seed 0), 49.1 (seed 1)"
    assert unsettled(df, spread=40).empty and unsettled(df[df.seed == 0]).empty  # one seed: nothing to compare


def test_run_time_table_sums_minutes_per_regime_and_names_its_source():
    from rethink.report import run_time_table

    def row(regime, seed, seconds, method="l1-norm"):
        return dict(regime=regime, seed=seed, wall_time_s=seconds, dataset="fashion-mnist", profile="book",
                    device="cpu", arch="vgg16", method=method, variant="vgg16-a", prune_ratio=None,
                    baseline_tag="unpruned")
    df = pd.DataFrame([row("baseline", 0, 600), row("baseline", 1, 1200), row("fine-tune", 0, 60),
                       row("fine-tune", 1, 120), row("scratch-e", 0, 300), row("fine-tune", 0, 30, "random-filters")])
    t = run_time_table(df)
    l1 = t[t.method == "l1-norm"].iloc[0]
    assert l1["unpruned (min)"] == 30.0 and l1["fine-tuned (min)"] == 3.0 and l1["Scratch-E (min)"] == 5.0
    assert pd.isna(l1["Scratch-B (min)"]) and l1.seeds == 2 and l1["total (h)"] == round(2280 / 3600, 2)
    control = t[t.method == "random-filters"].iloc[0]  # its seed 0 only: that seed's large model
    assert control["unpruned (min)"] == 10.0 and control.seeds == 1
    assert "fashion-mnist, book profile, cpu" in t.attrs["caption"]


def test_captions_say_which_scratch_runs_two_methods_share():
    from rethink.report import caption, run_time_table

    def row(run_id, method, regime, shared_from=None):
        return dict(run_id=run_id, regime=regime, seed=0, wall_time_s=60, dataset="fashion-mnist", profile="book",
                    device="cpu", arch="vgg16", method=method, variant=None, prune_ratio=0.5,
                    baseline_tag="unpruned", shared_from=shared_from)
    source = "fashion-mnist-book-thinet-vgg16-p0.5-scratch-e-s0"
    df = pd.DataFrame([row(source, "thinet", "scratch-e"), row("c-e", "channel-pruning", "scratch-e", source)])
    assert "those of channel-pruning are thinet's" in caption(df) and "trained once" in caption(df)
    assert "scratch run that two methods share" in run_time_table(df).attrs["caption"]
    assert "those of channel-pruning are thinet's" in caption(df.iloc[1:])  # the source's record not in the table
    alone = df.iloc[:1]
    assert "trained once" not in caption(alone)
    assert "two methods share" not in run_time_table(alone).attrs["caption"]


def test_an_empty_result_table_still_says_what_it_is():
    t = result_table(pd.DataFrame())
    assert t.empty and "No runs" in t.attrs["caption"]


def test_rows_of_two_profiles_say_which_on_the_row():
    def row(regime, seed, acc, profile):
        return dict(regime=regime, seed=seed, epochs=10, best_acc=acc, dataset="fashion-mnist", profile=profile,
                    device="cpu", arch="vgg16", method="l1-norm", variant="vgg16-a", prune_ratio=None,
                    baseline_tag="unpruned")
    one = pd.DataFrame([row("baseline", 0, 90.0, "book"), row("fine-tune", 0, 89.0, "book")])
    assert list(result_table(one, paper=False).source) == ["ours"]
    two = pd.concat([one, pd.DataFrame([row("baseline", 0, 75.0, "quick"), row("fine-tune", 0, 74.0, "quick")])])
    assert sorted(result_table(two, paper=False).source) == ["ours: fashion-mnist, book profile, cpu",
                                                               "ours: fashion-mnist, quick profile, cpu"]


def test_a_row_still_running_pairs_its_differences_and_counts_seeds_per_regime():
    def row(regime, seed, acc, method="l1-norm"):
        return dict(regime=regime, seed=seed, epochs=10, best_acc=acc, dataset="fashion-mnist", profile="book",
                    device="cpu", arch="resnet56", method=method, variant="resnet56-a", prune_ratio=None,
                    baseline_tag="unpruned")
    # seed 1 fine-tunes 2 points above seed 0; only seed 0 has its scratch run and its control so far
    df = pd.DataFrame([row("baseline", 0, 90.0), row("baseline", 1, 92.0), row("fine-tune", 0, 89.0),
                       row("fine-tune", 1, 91.0), row("scratch-e", 0, 89.5), row("scratch-b", 0, 89.75),
                       row("fine-tune", 0, 88.0, "random-filters")])
    r = result_table(df, paper=False).iloc[0]
    # unpaired means would say 89.5 - 90.0 = -0.50: seed 1's fine-tuning against nothing
    assert r["E − FT"] == "+0.50" and r["B − FT"] == "+0.75"
    assert r["FT − random"] == "+1.00"
    assert r["runs"] == "fine-tuned 2, Scratch-E 1, Scratch-B 1"
    done = pd.concat([df, pd.DataFrame([row("scratch-e", 1, 91.0), row("scratch-b", 1, 91.0)])])
    assert result_table(done, paper=False).iloc[0]["runs"] == 2


def _settings_record(folder, regime, seed, epochs, acc, finished, method="slimming", arch="densenet40", ratio=0.4,
                     warmup=True, scope=None, profile="book"):
    from rethink.records import write_record
    train = dict(epochs=epochs, lr=0.1, **({"warmup_epochs": 0} if warmup else {}))
    config = dict(arch=arch, profile=profile, width_mult=0.5, seeds=[seed], output_dir="book/runs", train=train,
                  data=dict(dataset="fashion-mnist", train_subset=10000, root="/somewhere"),
                  prune=dict(method=method, variant=None, prune_ratio=ratio, scope=scope))
    run_id = f"fashion-mnist-{profile}-{method}-{arch}-p{ratio}-{regime}-s{seed}"
    write_record(dict(run_id=run_id, format=2, regime=regime, seed=seed, config=config, baseline_tag="unpruned",
                      metrics=dict(best_acc=acc, final_acc=acc, epochs=epochs),
                      model=dict(params=1, flops=1, widths=[1]),
                      provenance=dict(device="cpu", wall_time_s=1.0, finished_at=finished)),
                 folder / f"{run_id}.json")


def test_seeds_of_earlier_settings_wait_for_their_re_run_and_are_not_pooled(tmp_path):
    from rethink.findings import _waiting_labels, _waiting_text
    from rethink.records import load_records, settings_key
    from rethink.report import split_superseded
    rec = lambda *a, **k: _settings_record(tmp_path, *a, **k)  # noqa: E731
    rec("fine-tune", 0, 60, 91.0, "2026-12-02T00:00:00+00:00")  # re-run on the longer schedule
    rec("fine-tune", 1, 30, 89.0, "2026-11-30T00:00:00+00:00", warmup=False)  # written before warm-up existed
    rec("fine-tune", 2, 30, 89.5, "2026-11-30T01:00:00+00:00")
    rec("scratch-e", 1, 30, 88.0, "2026-11-30T02:00:00+00:00")  # the row's regimes pair by seed: judged together
    rec("scratch-e", 0, 60, 90.0, "2026-12-01T12:00:00+00:00")
    current, old = split_superseded(load_records(tmp_path))
    assert sorted(zip(current.regime, current.seed)) == [("fine-tune", 0), ("scratch-e", 0)]
    assert sorted(old.seed) == [1, 1, 2] and set(old.why) == {"earlier settings: train.epochs 30, now 60"}
    assert old.superseded.all()
    same, none = split_superseded(current)
    assert len(same) == 2 and none.empty and "why" in none
    # a field added since (warm-up) reads as its default: not a change of settings
    a, b = (load_records(tmp_path).set_index("run_id").record[f"fashion-mnist-book-slimming-densenet40-p0.4-fine-tune-s{s}"]
            for s in (1, 2))
    assert settings_key(a["config"]) == settings_key(b["config"])
    # findings name a re-run row's waiting seeds, and a row of another profile without them
    other = tmp_path / "quick"
    other.mkdir()
    _settings_record(other, "fine-tune", 0, 10, 80.0, "2026-11-01T00:00:00+00:00", method="sfp", arch="resnet56",
                     ratio=0.3, profile="quick")
    waiting = pd.concat([load_records(other).assign(why="another profile's records only", superseded=False), old],
                        ignore_index=True)  # as the results page builds it
    assert _waiting_labels(waiting, ["slimming", "sfp"]) == {
        "new": ["sfp resnet56 p=0.3"], "rerun": ["slimming densenet40 p=0.4 (seed 1, 2 of earlier settings)"]}
    assert _waiting_text(waiting, ["slimming", "sfp"], "book") == (
        "; not yet run on the book profile, so not counted: sfp resnet56 p=0.3; not yet re-run on the book profile's "
        "current settings, so not counted: slimming densenet40 p=0.4 (seed 1, 2 of earlier settings)")


def test_rows_that_share_a_large_model_share_its_settings(tmp_path):
    from rethink.records import load_records
    from rethink.report import split_superseded
    rec = lambda *a, **k: _settings_record(tmp_path, *a, method=k.pop("method", "thinet"), arch="vgg16", ratio=0.5,  # noqa: E731
                                           **k)
    # thinet re-ran seed 0 at 60 epochs, rewriting the large model's record that channel pruning shares
    rec("baseline", 0, 60, 91.0, "2026-12-02T00:00:00+00:00")
    rec("fine-tune", 0, 60, 90.5, "2026-12-02T01:00:00+00:00")
    rec("fine-tune", 0, 30, 89.0, "2026-11-30T00:00:00+00:00", method="channel-pruning")
    rec("fine-tune", 0, 30, 88.0, "2026-11-30T00:00:00+00:00", method="random-filters")  # the control
    current, old = split_superseded(load_records(tmp_path))
    assert sorted(current.method) == ["thinet", "thinet"] and sorted(old.method) == ["channel-pruning", "random-filters"]
    # within a row, a different pruning scope is another experiment too
    rec("fine-tune", 1, 60, 90.0, "2026-12-03T00:00:00+00:00", scope="layer")
    current, old = split_superseded(load_records(tmp_path))
    assert set(current.seed[current.method == "thinet"]) == {1}
    assert "earlier settings: prune.scope None, now layer" in set(old.why)
