"""Pruning as architecture search: stage grouping, the guided design, the uniform design of equal FLOPs, and a
smoke run with its record."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import smoke_config
from rethink.arch_search import arch_table, guided_widths, kept_by_stage, run_arch_search, stages, uniform_widths
from rethink.config import ConfigError
from rethink.experiment import configure
from rethink.metrics import count_flops
from rethink.models import default_widths, get_model

PRUNED = [32, 60, "M", 100, 128, "M", 200, 256, 240, "M", 100, 80, 60, "M", 20, 10, 5]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small models run faster on one thread


def test_stages_and_guided_design():
    assert stages(PRUNED) == [[32, 60], [100, 128], [200, 256, 240], [100, 80, 60], [20, 10, 5]]
    guided = guided_widths(PRUNED)
    assert [w for w in guided if w == "M"] == ["M"] * 4
    assert stages(guided) == [[46, 46], [114, 114], [232, 232, 232], [80, 80, 80], [12, 12, 12]]
    get_model("vgg16", widths=guided)  # a valid architecture
    with pytest.raises(ConfigError, match="VGG"):
        guided_widths(default_widths("resnet20"))
    table = kept_by_stage(default_widths("vgg16"), PRUNED)
    assert list(table["kept"]) == [92, 228, 696, 240, 35]


@pytest.mark.parametrize("arch", ["vgg16", "resnet56"])
def test_uniform_design_matches_the_flops(arch):
    target = count_flops(get_model("vgg16", widths=PRUNED)) if arch == "vgg16" else 0.3 * count_flops(get_model(arch))
    widths, mult = uniform_widths(arch, int(target))
    assert 0 < mult < 1
    assert count_flops(get_model(arch, widths=widths)) == pytest.approx(target, rel=0.05)


def test_smoke_run(tmp_path, fashion_root, monkeypatch):
    cfg = smoke_config(tmp_path, fashion_root, method="slimming", arch="vgg11", prune_ratio=0.5,
                       output_dir=str(tmp_path / "as"), epochs=1)
    rows = run_arch_search(cfg, progress=False)
    designs = [r["design"] for r in rows]
    assert designs[:3] == ["large", "pruned (slimming)", "uniform"] and 0 < rows[2]["multiplier"] < 1
    flops = {r["design"]: r["flops"] for r in rows}
    assert flops[designs[2]] == pytest.approx(flops["pruned (slimming)"], rel=0.1)
    assert flops["large"] > flops[designs[1]]
    rec = json.loads(next((tmp_path / "as" / "records").glob("*.json")).read_text())
    assert rec["kind"] == "architecture-search" and rec["result"]["pruned (slimming)"]["widths"] == rows[1]["widths"]
    assert list(arch_table(rows).index) == [f"uniform (x{rows[2]['multiplier']:.3f})" if d == "uniform" else d
                                            for d in designs]
    from rethink import arch_search
    monkeypatch.setattr(arch_search, "train", lambda *a, **k: pytest.fail("a finished record was trained again"))
    assert run_arch_search(cfg, progress=False) == rows  # the seed's record is reused
    monkeypatch.undo()
    trained = []
    real = arch_search.train
    monkeypatch.setattr(arch_search, "train", lambda *a, **k: trained.append(k["desc"]) or real(*a, **k))
    assert [r["best_acc"] for r in run_arch_search(cfg, progress=False, resume=False)] == [r["best_acc"] for r in rows]
    assert len(trained) == 3  # a restart trains every design again (and gets the same numbers)
    with pytest.raises(ConfigError, match="slimming"):
        run_arch_search(configure(method="l1-norm", arch="vgg11", prune_ratio=0.5, profile="smoke", device="cpu"))


def test_seeds_pair_across_uniform_multipliers_and_a_failed_design_is_left_out():
    # two seeds' records: each seed's uniform design has its own multiplier, and seed 0's pruned design never
    # trained (chance); the table and the verdict show it apart instead of averaging it in
    from rethink.verdict import paired_verdict
    rows = [dict(seed=s, dataset="fashion-mnist", design=d, multiplier=m, widths=[8, "M", 4], params=p, flops=100,
                 best_acc=a, final_acc=a - 0.1)
            for s, d, m, p, a in [(0, "pruned (slimming)", None, 70, 10.0), (0, "uniform", 0.648, 290, 90.2),
                                  (1, "pruned (slimming)", None, 74, 88.5), (1, "uniform", 0.645, 292, 90.0),
                                  (2, "pruned (slimming)", None, 72, 89.5), (2, "uniform", 0.650, 294, 90.1)]]
    table = arch_table(rows)
    assert list(table.index) == ["pruned (slimming)", "uniform (x0.645-0.650)"]
    assert table.loc["pruned (slimming)", "best acc"] == "89.00 ± 0.71 (2 of 3 seeds)" and table.loc["pruned (slimming)", "n"] == 3
    assert table.loc["pruned (slimming)", "left out"] == "seed 0: near chance (10.0 %)"
    assert table.loc["uniform (x0.645-0.650)", "params"] == 292 and table.loc["uniform (x0.645-0.650)", "n"] == 3
    v = paired_verdict(pd.DataFrame(rows), "pruned (slimming)", "uniform", "design")
    assert v["n"] == 2 and v["diff"] == pytest.approx(-1.05) and v["left_out"][0].startswith("pruned (slimming) seed 0")
