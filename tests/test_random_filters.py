"""The random-filters control: the L1-norm's widths with random filters, fine-tuned only, beside the L1-norm row."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from rethink.experiment import control_config, record_paths, run_experiment
from rethink.models import get_model
from rethink.prune import get_method, method_regimes
from rethink.prune.l1_norm import l1_norm
from rethink.records import load_records
from rethink.report import result_table
from rethink.verdict import control_verdicts

from test_experiment import tiny


def test_same_widths_as_l1_norm_other_filters_per_seed():
    torch.manual_seed(0)
    model = get_model("vgg16", num_classes=10)
    crit = l1_norm(model, variant="vgg16-a")
    a, a_again, b = (get_method("random-filters")(model, variant="vgg16-a", seed=s) for s in (0, 0, 1))
    assert a.widths == crit.widths == b.widths
    assert all(torch.equal(a.keep[k], a_again.keep[k]) for k in a.keep)  # one seed, one draw
    assert any(not torch.equal(a.keep[k], b.keep[k]) for k in a.keep)    # another seed, another draw
    assert any(not torch.equal(a.keep[k], crit.keep[k]) for k in a.keep)  # not the L1-norm's choice
    assert method_regimes("random-filters") == ("fine-tune",)


def test_control_applies_to_predefined_methods_only(tmp_path, fashion_root):
    cfg = tiny(tmp_path, fashion_root)
    ctrl = control_config(cfg, "random-filters")
    assert ctrl.prune.method == "random-filters" and ctrl.prune.prune_ratio == cfg.prune.prune_ratio
    assert control_config(cfg, None) is None
    slim = tiny(tmp_path, fashion_root, method="slimming", arch="vgg11")
    assert control_config(slim, "random-filters") is None  # slimming's widths depend on its own choice
    thinet = tiny(tmp_path, fashion_root, method="thinet")
    assert control_config(thinet, "random-filters").prune.prune_ratio == thinet.prune.prune_ratio
    # the control stands beside exactly the methods whose widths follow from their ratios alone
    from rethink.prune import get_method, is_predefined, list_methods
    assert set(get_method("random-filters").controls) == {m for m in list_methods() if is_predefined(m)}
    # only fine-tuning is run for the control: its scratch runs would be the L1-norm's own
    assert [p.stem.rsplit("-s", 1)[0].endswith(("baseline", "fine-tune")) for p in record_paths(ctrl)] == [True] * 4
    assert sum("fine-tune" in p.name for p in record_paths(ctrl)) == 2


@pytest.mark.slow
def test_control_runs_beside_the_l1_norm_row(tmp_path, fashion_root):
    cfg = tiny(tmp_path, fashion_root)
    run_experiment(cfg, progress=False)
    records = run_experiment(control_config(cfg, "random-filters"), progress=False)
    assert [r["regime"] for r in records] == ["baseline", "fine-tune"] * 2
    assert {p.name for p in record_paths(control_config(cfg, "random-filters"))} <= {
        p.name for p in (tmp_path / "runs" / "records").iterdir()}
    df = load_records(tmp_path / "runs" / "records")
    table = result_table(df, paper=False)
    assert len(table) == 1  # one row, the control is a column of it
    assert table["random filters, fine-tuned"].iloc[0] != "–"  # smoke runs are near chance: shown, left out
    assert list(control_verdicts(df).method) == ["l1-norm"]


def test_control_verdict_is_paired_by_seed(tmp_path):
    rows = []
    for method, accs in (("l1-norm", [90.0, 88.0, 89.0]), ("random-filters", [89.5, 87.4, 88.6])):
        for seed, acc in enumerate(accs):
            rows.append(dict(regime="fine-tune", seed=seed, best_acc=acc, epochs=15, dataset="fashion-mnist", profile="book",
                             device="cpu", arch="vgg16", method=method, variant="vgg16-a", prune_ratio=None,
                             baseline_tag="unpruned"))
    df = pd.DataFrame(rows)
    table = result_table(df, paper=False)
    assert table["random filters, fine-tuned"].iloc[0] == "88.50 ± 1.05" and table["FT − random"].iloc[0] == "+0.50"
    cv = control_verdicts(df)
    r = cv.iloc[0]
    assert r.n == 3 and r["diff"] == pytest.approx(0.5) and r.verdict == "criterion better" and r.low > 0
    from rethink.findings import findings_table
    t = findings_table(pd.DataFrame(columns=["method", "verdict", "model", "n", "dataset", "profile", "device"]),
                       control_rows=cv, book_dir=tmp_path)
    assert t.iloc[-1].verdict == "contradicted" and "vgg16-a: +0.50" in t.iloc[-1].ours  # the criterion's choice adds
    named = findings_table(pd.DataFrame(columns=t.columns), control_rows=cv.assign(method="thinet", model="vgg16 p=0.5"),
                           book_dir=tmp_path)
    assert "thinet vgg16 p=0.5: +0.50" in named.iloc[-1].ours  # a ratio's label does not say whose filters they are
    worse = control_verdicts(pd.DataFrame(rows).assign(best_acc=[90.0, 88.0, 89.0, 91.0, 89.2, 89.9]))
    assert worse.verdict.iloc[0] == "random better"
    assert findings_table(pd.DataFrame(columns=t.columns), control_rows=worse,
                          book_dir=tmp_path).iloc[-1].verdict == "supported"
