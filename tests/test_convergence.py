from __future__ import annotations

import json

import pytest

from conftest import smoke_config

from rethink.convergence import check_convergence, convergence_table
from rethink.experiment import baseline_path
from rethink.train import Schedule


def test_warmup_runs_the_first_epochs_at_a_tenth_of_the_lr():
    s = Schedule(epochs=8, lr=0.1, warmup_epochs=1)
    assert [round(s.lr_at(e), 6) for e in range(8)] == [0.01, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert Schedule(epochs=8, lr=0.1).lr_at(0) == 0.1  # none by default: the papers' schedule


def test_convergence_check_reuses_the_rows_large_model_and_trains_2x(tmp_path, fashion_root, one_thread,
                                                                     monkeypatch):
    cfg = smoke_config(tmp_path, fashion_root, arch="vgg16", warmup_epochs=1)
    records = check_convergence(cfg, progress=False)
    assert [r["factor"] for r in records] == [1, 2]
    assert [r["metrics"]["epochs"] for r in records] == [2, 4]
    assert records[0]["metrics"]["curve"][0]["lr"] == pytest.approx(cfg.train.lr / 10)  # warm-up recorded in the curve
    assert records[1]["config"]["train"]["warmup_epochs"] == 1
    assert baseline_path(cfg, 0).exists()  # the 1x model is the cached baseline the rows prune
    table = convergence_table(tmp_path / "runs" / "records")
    row = table.iloc[0]
    assert (row.arch, row.epochs_x1, row.epochs_x2) == ("vgg16", 2, 4)
    assert row.gain_x2 == round(row.best_acc_x2 - row.best_acc_x1, 2)
    assert row.converged == (row.gain_x2 <= 1.0)
    # a second call trains nothing and keeps the records
    before = [p.read_text() for p in sorted((tmp_path / "runs" / "records").glob("*.json"))]
    import rethink.experiment
    real_train = rethink.experiment.train
    monkeypatch.setattr(rethink.experiment, "train", lambda *a, **k: pytest.fail("retrained a cached model"))
    check_convergence(cfg, progress=False)
    assert before == [p.read_text() for p in sorted((tmp_path / "runs" / "records").glob("*.json"))]
    assert json.loads(before[0])["regime"] == "convergence"
    # a later session, whose cache is gone: the records are the check's result, nothing trains again
    import dataclasses
    twice = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=2 * cfg.train.epochs))
    for c in (cfg, twice):  # only this check's two models: the test cache is shared by the session
        baseline_path(c, 0).unlink()
    check_convergence(cfg, progress=False)
    assert before == [p.read_text() for p in sorted((tmp_path / "runs" / "records").glob("*.json"))]
    assert not baseline_path(cfg, 0).exists()
    # --restart (redo) trains both again
    monkeypatch.setattr(rethink.experiment, "train", real_train)
    check_convergence(cfg, progress=False, redo=True)
    assert baseline_path(cfg, 0).exists()


def test_cli_converge_needs_no_prune_ratio(tmp_path, fashion_root, capsys, one_thread):
    from rethink.__main__ import main
    rc = main(["converge", "--arch", "vgg11", "--dataset", "fashion-mnist", "--profile", "smoke", "--device", "cpu",
               "--data-root", fashion_root, "--output-dir", str(tmp_path), "--train-subset", "64", "--epochs", "1",
               "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "vgg11" in out and "gain_x2" in out
    assert len(list((tmp_path / "records").glob("*convergence*vgg11-x[12]-s0.json"))) == 2
    table = (tmp_path / "table.md").read_text()
    assert "| unpruned | vgg11 | x0.125 | 64 | 0 | 1 |" in table and "smoke profile" in table


def test_convergence_table_keeps_two_checks_of_one_large_model_apart(tmp_path):
    # a search checks SFP's ResNet-56 at 30 vs 60 epochs, then at 60 vs 120: two rows, not one merged
    def record(epochs, factor, acc):
        return dict(regime="convergence", factor=factor, seed=0, baseline_tag="sfp-p0.3",
                    config=dict(arch="resnet56", profile="book", width_mult=0.5,
                                data=dict(dataset="fashion-mnist", train_subset=10000),
                                train=dict(epochs=epochs, warmup_epochs=0)),
                    metrics=dict(epochs=epochs, best_acc=acc, train_time_s=1.0),
                    provenance=dict(device="cpu", wall_time_s=1.0))
    for name, (epochs, factor, acc) in {"a-x1-e30": (30, 1, 85.47), "a-x2-e30": (60, 2, 89.25),
                                        "a-x1-e60": (60, 1, 89.25), "a-x2-e60": (120, 2, 90.58)}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(record(epochs, factor, acc)))
    table = convergence_table(tmp_path).sort_values("epochs_x1")
    assert list(table.epochs_x1) == [30, 60] and list(table.epochs_x2) == [60, 120]
    assert list(table.gain_x2) == [3.78, 1.33] and list(table.converged) == [False, False]
