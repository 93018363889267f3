"""The lottery ticket comparison: round ratios, rewinding to the baseline's own initialisation, nested masks, and a
smoke run writing its records."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import smoke_config
from rethink.data import get_loaders
from rethink.experiment import get_baseline, initial_model
from rethink.lottery import INITS, lottery_table, round_ratios, run_lottery
from rethink.models import get_model
from rethink.prune.masks import apply_masks, magnitude_masks


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small models run faster on one thread


def test_round_ratios_remove_the_same_fraction_of_what_is_left():
    r = round_ratios(0.8, 3)
    assert r[-1] == pytest.approx(0.8) and r == sorted(r)
    left = [1.0] + [1 - x for x in r]
    fractions = [left[i + 1] / left[i] for i in range(3)]
    assert fractions == pytest.approx([fractions[0]] * 3)
    assert round_ratios(0.5, 1) == [0.5]
    with pytest.raises(ValueError):
        round_ratios(0.5, 0)


def test_later_rounds_keep_a_subset_of_earlier_masks():
    torch.manual_seed(0)
    model = get_model("vgg11")
    first = magnitude_masks(model, 0.5)
    second = magnitude_masks(apply_masks(model, first), 0.75)
    assert all(torch.all(second[k] <= first[k]) for k in first)


def tiny(tmp_path, fashion_root, **kw):
    return smoke_config(tmp_path, fashion_root, **{"method": "magnitude", "arch": "resnet20", "prune_ratio": 0.8,
                                                   "output_dir": str(tmp_path / "lottery"), **kw})


def test_the_ticket_rewinds_to_the_baselines_own_initialisation(tmp_path, fashion_root):
    cfg = tiny(tmp_path, fashion_root, epochs=0)  # an untrained baseline is its initialisation
    train_loader, test_loader, info = get_loaders(cfg.data, cfg.device)
    base, _, _ = get_baseline(cfg, 3, info, train_loader, test_loader, progress=False)
    init = initial_model(cfg, info, 3)
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), init.state_dict().values()))
    other = initial_model(cfg, info, 4)
    assert not torch.equal(other.conv1.weight, init.conv1.weight)


def test_smoke_run_writes_records_and_keeps_the_masks(tmp_path, fashion_root, monkeypatch):
    cfg = tiny(tmp_path, fashion_root)
    rows = run_lottery(cfg, lrs=(0.1, 0.01), rounds=2, progress=False)
    assert len(rows) == 2 * 3 and {r["init"] for r in rows} == {"dense", *INITS}
    for r in rows:
        assert len(r["curve"]) == 2
        if r["init"] != "dense":
            assert r["sparsity"] == pytest.approx(0.8, abs=1e-3)  # measured after training
    files = sorted((tmp_path / "lottery" / "records").glob("*.json"))
    assert len(files) == 2
    rec = json.loads(files[0].read_text())
    assert rec["kind"] == "lottery-ticket" and len(rec["result"]["rounds"]) == 1
    assert rec["config"]["train"]["lr"] == rec["lr"]
    table = lottery_table(rows, source="ours")
    assert list(table.index) == [0.1, 0.01] and (table.n == 1).all()
    # run again: the records are reused, nothing trains, the rows are the same
    from rethink import lottery
    monkeypatch.setattr(lottery, "train", lambda *a, **k: pytest.fail("a finished record was trained again"))
    assert run_lottery(cfg, lrs=(0.1, 0.01), rounds=2, progress=False) == rows


def test_a_failed_ticket_is_left_out_of_the_table():
    # three seeds at one lr; seed 1's random init stayed at chance: the table averages the two that trained,
    # the gain is over the seeds where both trained, and the failure is named
    rows = [dict(seed=s, dataset="fashion-mnist", lr=0.1, init=i, best_acc=a, final_acc=a, sparsity=0.8)
            for s, accs in [(0, (91.0, 90.0, 89.0)), (1, (91.2, 90.4, 10.0)), (2, (90.8, 89.8, 89.4))]
            for i, a in zip(("dense",) + INITS, accs)]
    row = lottery_table(rows).loc[0.1]
    assert row["random-init"] == "89.20 ± 0.28 (2 of 3 seeds)" and row["left out"] == "random-init seed 1: near chance (10.0 %)"
    assert row["winning - random"] == "0.70 ± 0.42" and row["n"] == 3


def test_a_page_that_reuses_records_reports_what_they_cost(tmp_path):
    # the page's time note sums the records' wall times: reading them back must not report "0.0 min"
    from rethink.records import records_wall_s, run_time_note
    for i, s in enumerate((1200.0, 1500.5)):
        (tmp_path / f"r{i}.json").write_text(json.dumps({"provenance": {"wall_time_s": s}}))
    (tmp_path / "broken.json").write_text("{")
    seconds = records_wall_s([tmp_path / "r0.json", tmp_path / "r1.json", tmp_path / "broken.json",
                              tmp_path / "missing.json"])
    assert seconds == 2700.5 and "**45.0 min**" in run_time_note(seconds, "cpu", "x")
