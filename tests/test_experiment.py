"""The protocol end to end on tiny data: records, baseline cache, resume, corrupt checkpoints, the CLI."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import smoke_config
from rethink import experiment
from rethink.__main__ import main
from rethink.experiment import cache_dir, run_experiment
from rethink.records import load_records
from rethink.report import result_table

REGIMES = ["baseline", "fine-tune", "scratch-e", "scratch-b"]


def tiny(tmp_path, fashion_root, **kw):
    return smoke_config(tmp_path, fashion_root, **{"arch": "vgg11", "prune_ratio": 0.5, "seeds": [0, 1], **kw})


def test_records_hold_config_metrics_model_and_provenance(tmp_path, fashion_root):
    cfg = tiny(tmp_path, fashion_root)
    records = run_experiment(cfg, progress=False)
    assert [r["regime"] for r in records] == REGIMES * 2 and [r["seed"] for r in records] == [0] * 4 + [1] * 4
    files = sorted((tmp_path / "runs" / "records").iterdir())
    assert len(files) == 8 and not [f for f in files if f.suffix != ".json"]  # no partial files left behind
    for r in records:
        on_disk = json.loads((tmp_path / "runs" / "records" / f"{r['run_id']}.json").read_text())
        assert on_disk == json.loads(json.dumps(r))
        m = r["metrics"]
        assert len(m["curve"]) == m["epochs"] and m["best_acc"] == max(c["test_acc"] for c in m["curve"])
        assert m["final_acc"] == m["curve"][-1]["test_acc"]
        assert r["config"] == cfg.to_dict() and r["config"]["perf"] == m["perf"]
        assert {"git_sha", "torch", "device", "wall_time_s"} <= set(r["provenance"])
        assert r["model"]["params"] > 0 and r["model"]["flops"] > 0
    by = {(r["regime"], r["seed"]): r for r in records}
    sb = by[("scratch-b", 0)]
    assert sb["metrics"]["epochs"] == int(2 * sb["baseline"]["flops"] / sb["model"]["flops"]) > 2
    assert by[("fine-tune", 0)]["metrics"]["epochs"] == cfg.train.finetune_epochs
    assert all(c["lr"] == cfg.train.finetune_lr for c in by[("fine-tune", 0)]["metrics"]["curve"])
    assert by[("scratch-e", 0)]["model"]["widths"] == by[("fine-tune", 0)]["model"]["widths"]
    # the same seed gives the same baseline; another seed another one
    assert by[("baseline", 0)]["metrics"] != by[("baseline", 1)]["metrics"]

    table = result_table(load_records(tmp_path / "runs" / "records"))
    assert table.source.iloc[0] == "ours" and table.runs.iloc[0] == 2
    assert "fashion-mnist, smoke profile" in table.attrs["caption"]  # said once above the table, not per row


def test_second_run_reuses_baseline_and_finished_runs(tmp_path, fashion_root, monkeypatch):
    cfg = tiny(tmp_path, fashion_root, seeds=[0])
    first = run_experiment(cfg, progress=False)

    def no_training(*a, **k):
        raise AssertionError("nothing should be trained again")
    monkeypatch.setattr(experiment, "train", no_training)
    second = run_experiment(cfg, progress=False)
    assert [r["metrics"] for r in second] == [r["metrics"] for r in first]
    # on a machine with other speed settings (bf16 or fp32) the records are still this run's
    bf16 = cfg.perf.amp == "bf16"  # the opposite of this machine's
    other_machine = dataclasses.replace(cfg, perf=dataclasses.replace(cfg.perf, amp="off" if bf16 else "bf16",
                                                                      channels_last=not bf16))
    assert [r["metrics"] for r in run_experiment(other_machine, progress=False)] == [r["metrics"] for r in first]

    # another variant of the same baseline: the baseline comes from the cache, the regimes are trained
    monkeypatch.undo()
    real_train, calls = experiment.train, []
    monkeypatch.setattr(experiment, "train", lambda model, *a, desc="", **k: calls.append(desc) or
                        real_train(model, *a, desc=desc, **k))
    other = run_experiment(tiny(tmp_path, fashion_root, seeds=[0], prune_ratio=0.25), progress=False)
    assert [c.split()[0] for c in calls] == ["fine-tune", "scratch-e", "scratch-b"]
    assert other[0]["metrics"] == first[0]["metrics"]
    # a baseline record written from the cache reports what training it cost, not the time to load it
    moved = run_experiment(dataclasses.replace(cfg, output_dir=str(tmp_path / "moved")), progress=False)
    assert moved[0]["baseline_cached"] is True
    assert moved[0]["provenance"]["wall_time_s"] == first[0]["metrics"]["train_time_s"] > 0


def test_a_large_model_gone_from_the_cache_is_not_retrained_when_not_needed(tmp_path, fashion_root, monkeypatch):
    cfg = tiny(tmp_path, fashion_root, seeds=[0], prune_ratio=0.5)
    first = {r["regime"]: r for r in run_experiment(cfg, progress=False, regimes=("fine-tune",))}
    experiment.baseline_path(cfg, 0).unlink()  # the cache did not survive
    real_train, calls = experiment.train, []
    monkeypatch.setattr(experiment, "train", lambda model, *a, desc="", **k: calls.append(desc) or
                        real_train(model, *a, desc=desc, **k))
    # L1-norm's widths follow from the ratios alone: the scratch runs take them from the untrained large model
    scratch = {r["regime"]: r for r in run_experiment(cfg, progress=False, regimes=("scratch-e", "scratch-b"))}
    assert [c.split()[0] for c in calls] == ["scratch-e", "scratch-b"]
    assert not experiment.baseline_path(cfg, 0).exists()
    assert scratch["baseline"]["metrics"] == first["baseline"]["metrics"]  # the record of the trained one, kept
    sb = scratch["scratch-b"]
    assert sb["model"]["widths"] == first["fine-tune"]["model"]["widths"]
    assert sb["baseline"]["weights_used"] is False and "cached" not in sb["baseline"]
    assert {k: sb["baseline"][k] for k in ("flops", "params", "widths")} == \
        {k: first["fine-tune"]["baseline"][k] for k in ("flops", "params", "widths")}
    # every record written: nothing is trained, not even the large model, by a rerun of the whole protocol
    calls.clear()
    again = run_experiment(cfg, progress=False)
    assert calls == [] and [r["regime"] for r in again] == REGIMES
    # a method whose widths come from the trained weights cannot do without it: the large model is retrained
    calls.clear()
    run_experiment(dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, method="magnitude")),
                   progress=False, regimes=("scratch-e",))
    assert calls[0].startswith("baseline")


def test_scratch_runs_left_of_a_seed_take_its_pruned_widths_from_its_records(tmp_path, fashion_root, monkeypatch):
    # slimming's widths come from the trained weights; with the seed's fine-tuning recorded and its large model
    # gone from the cache, the scratch runs take the widths the records keep instead of retraining the large model
    cfg = tiny(tmp_path, fashion_root, seeds=[0], method="slimming")
    first = {r["regime"]: r for r in run_experiment(cfg, progress=False, regimes=("fine-tune",))}
    experiment.baseline_path(cfg, 0).unlink()  # the cache did not survive
    real_train, calls = experiment.train, []
    monkeypatch.setattr(experiment, "train", lambda model, *a, desc="", **k: calls.append(desc) or
                        real_train(model, *a, desc=desc, **k))
    rest = {r["regime"]: r for r in run_experiment(cfg, progress=False)}
    assert [c.split()[0] for c in calls] == ["scratch-e", "scratch-b"]
    assert not experiment.baseline_path(cfg, 0).exists()
    assert [rest[r]["metrics"] for r in ("baseline", "fine-tune")] == \
        [first[r]["metrics"] for r in ("baseline", "fine-tune")]
    sb = rest["scratch-b"]
    assert sb["model"] == first["fine-tune"]["model"]
    assert sb["prune"]["clamped"] == first["fine-tune"]["prune"]["clamped"]
    assert sb["baseline"]["widths_from"] == first["fine-tune"]["run_id"]
    assert {k: sb["baseline"][k] for k in ("flops", "params", "widths")} == \
        {k: first["fine-tune"]["baseline"][k] for k in ("flops", "params", "widths")}
    # the very trainings a run with its large model gives: the same widths, epochs and accuracy curve
    calls.clear()
    full = {r["regime"]: r for r in run_experiment(dataclasses.replace(cfg, output_dir=str(tmp_path / "full")),
                                                   progress=False)}
    assert calls[0].startswith("baseline")
    for regime in ("scratch-e", "scratch-b"):
        assert full[regime]["model"] == rest[regime]["model"]
        assert [c["test_acc"] for c in full[regime]["metrics"]["curve"]] == \
            [c["test_acc"] for c in rest[regime]["metrics"]["curve"]]
    # a scratch run alone, its fine-tuning not recorded yet: the large model is needed (its pruning is not kept)
    experiment.baseline_path(cfg, 0).unlink()

    class Needed(Exception):
        pass
    monkeypatch.setattr(experiment, "get_baseline", lambda *a, **k: (_ for _ in ()).throw(Needed()))
    with pytest.raises(Needed):
        run_experiment(dataclasses.replace(cfg, output_dir=str(tmp_path / "alone")), progress=False,
                       regimes=("scratch-e",))


def test_corrupt_checkpoint_is_retrained(tmp_path, fashion_root):
    cfg = tiny(tmp_path, fashion_root, seeds=[5])
    run_experiment(cfg, progress=False)
    ckpt = next((cache_dir() / "baselines").glob(f"vgg11-{experiment.baseline_key(cfg, 5)}.pt"))
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated, as after a crash mid-copy
    with pytest.warns(UserWarning, match="unusable.*retraining"):
        records = run_experiment(cfg, progress=False, resume=False)
    assert records[0]["baseline_cached"] is False
    torch.load(ckpt, weights_only=True)  # rewritten whole


def test_interrupted_run_resumes(tmp_path, fashion_root, monkeypatch):
    cfg = tiny(tmp_path, fashion_root, seeds=[0])
    real_train = experiment.train
    calls = []

    def crash_on_scratch_b(model, *a, desc="", **k):
        calls.append(desc)
        if desc.startswith("scratch-b"):
            raise KeyboardInterrupt
        return real_train(model, *a, desc=desc, **k)
    monkeypatch.setattr(experiment, "train", crash_on_scratch_b)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, progress=False)
    assert len(list((tmp_path / "runs" / "records").glob("*.json"))) == 3
    calls.clear()
    monkeypatch.setattr(experiment, "train", lambda model, *a, desc="", **k: calls.append(desc) or
                        real_train(model, *a, desc=desc, **k))
    records = run_experiment(cfg, progress=False)
    assert [c.split()[0] for c in calls] == ["scratch-b"] and len(records) == 4


@pytest.mark.parametrize("method,arch", [("slimming", "vgg11"), ("sfp", "resnet20"), ("magnitude", "resnet20")])
def test_cli_runs_each_method(method, arch, tmp_path, fashion_root, capsys):
    rc = main(["run", "--method", method, "--arch", arch, "--prune-ratio", "0.5", "--dataset", "fashion-mnist",
               "--profile", "smoke", "--device", "cpu", "--data-root", fashion_root, "--output-dir", str(tmp_path),
               "--train-subset", "32", "--quiet"])
    assert rc == 0
    assert f"{arch} p=0.5" in capsys.readouterr().out
    regimes = {json.loads(p.read_text())["regime"] for p in Path(tmp_path, "records").glob(f"*-{method}-*.json")}
    assert regimes == {"fine-tune", "scratch-e", "scratch-b"} | ({"baseline"} if method != "magnitude" else set())


def test_cli_run_and_errors(tmp_path, fashion_root, capsys):
    rc = main(["run", "--arch", "resnet20", "--prune-ratio", "0.3", "--dataset", "fashion-mnist", "--profile",
               "smoke", "--device", "cpu", "--data-root", fashion_root, "--output-dir", str(tmp_path),
               "--train-subset", "32", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "resnet20 p=0.3" in out and "smoke profile" in out
    assert len(list(Path(tmp_path, "records").glob("*.json"))) == 4
    assert main(["run", "--arch", "vgg17"]) == 2
    assert "unknown arch 'vgg17'" in capsys.readouterr().err
    assert main(["run", "--arch", "vgg16", "--dataset", "svhn", "--device", "cpu"]) == 2
    assert "unknown dataset 'svhn'" in capsys.readouterr().err


def test_seeds_run_apart_are_reused_by_a_run_of_all_of_them(tmp_path, fashion_root, monkeypatch):
    # e.g. `python -m rethink run --seeds 1` and `--seeds 2` in two processes, then the notebook of seeds 0-2
    apart = [run_experiment(tiny(tmp_path, fashion_root, seeds=[s]), progress=False) for s in (0, 1)]

    def no_training(*a, **k):
        raise AssertionError("nothing should be trained again")
    monkeypatch.setattr(experiment, "train", no_training)
    both = run_experiment(tiny(tmp_path, fashion_root, seeds=[0, 1]), progress=False)
    assert [r["metrics"] for r in both] == [r["metrics"] for r in apart[0] + apart[1]]


def test_regimes_can_run_apart(tmp_path, fashion_root, monkeypatch):
    # fine-tune while the large model is cached, the scratch runs later: the records are the same ones
    cfg = tiny(tmp_path, fashion_root, seeds=[0])
    # no regime: the large model's record only (the sweep's task for it), and nothing pruned
    with monkeypatch.context() as m:
        m.setattr(experiment, "get_method", lambda name: pytest.fail("pruned with no regime asked for"))
        only = run_experiment(dataclasses.replace(cfg, output_dir=str(tmp_path / "base")), progress=False, regimes=())
    assert [r["regime"] for r in only] == ["baseline"]
    assert [p.name for p in (tmp_path / "base" / "records").iterdir()] == [f"{only[0]['run_id']}.json"]
    first = run_experiment(cfg, progress=False, regimes=("fine-tune",))
    assert [r["regime"] for r in first] == ["baseline", "fine-tune"]
    rest = run_experiment(cfg, progress=False)
    assert [r["regime"] for r in rest] == REGIMES  # the module's list: baseline and the three regimes
    assert rest[1]["metrics"] == first[1]["metrics"]  # reused, not retrained
    from rethink.config import ConfigError
    with pytest.raises(ConfigError, match="unknown regime"):
        run_experiment(cfg, progress=False, regimes=("scratch-x",))


def test_scratch_runs_of_the_same_widths_are_trained_once(tmp_path, fashion_root, monkeypatch):
    # L1-norm and ThiNet at one ratio for every layer reach the same widths: their scratch models are the same
    # training (same seed, same fresh model, same schedule), so the second method's records name the first's
    first = run_experiment(tiny(tmp_path, fashion_root, seeds=[0]), progress=False)
    real_train, calls = experiment.train, []
    monkeypatch.setattr(experiment, "train", lambda model, *a, desc="", **k: calls.append(desc) or
                        real_train(model, *a, desc=desc, **k))
    thinet = run_experiment(tiny(tmp_path, fashion_root, seeds=[0], method="thinet"), progress=False)
    assert thinet[1]["model"]["widths"] == first[1]["model"]["widths"]
    assert [c.split()[0] for c in calls] == ["fine-tune"]  # only what pruning differently changes
    for mine, theirs in zip(thinet[2:], first[2:]):
        assert mine["shared_from"] == theirs["run_id"] and mine["metrics"] == theirs["metrics"]
        assert "thinet" in mine["run_id"] and mine["config"]["prune"]["method"] == "thinet"
        on_disk = json.loads((tmp_path / "runs" / "records" / f"{mine['run_id']}.json").read_text())
        assert on_disk["shared_from"] == theirs["run_id"]
    # the claim behind the sharing: trained apart (another folder: no twin there), ThiNet's scratch runs are L1's
    apart = run_experiment(tiny(tmp_path, fashion_root, seeds=[0], method="thinet",
                                output_dir=str(tmp_path / "apart")), progress=False)
    assert [r["metrics"]["curve"] for r in apart[2:]] == [r["metrics"]["curve"] for r in first[2:]]
    assert "shared_from" not in apart[2]
    # another seed, or other widths, is another training
    calls.clear()
    run_experiment(tiny(tmp_path, fashion_root, seeds=[1], method="thinet"), progress=False)
    assert [c.split()[0] for c in calls][-3:] == ["fine-tune", "scratch-e", "scratch-b"]  # (after its baseline)
    calls.clear()
    run_experiment(tiny(tmp_path, fashion_root, seeds=[0], method="thinet", prune_ratio=0.25), progress=False)
    assert [c.split()[0] for c in calls] == ["fine-tune", "scratch-e", "scratch-b"]
