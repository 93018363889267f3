"""The experiment grid: expansion and stable ids, resume (skip what is done, redo what was killed), retries then a
reported failure while the rest goes on, and the same grid through a real Ray head."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import ROOT
from rethink.sweep import GridError, Run, expand, is_done, load_grid, run_hash, sweep

TINY = ROOT / "tests" / "grids" / "tiny.yaml"  # two runs (resnet56-a, resnet56-b) sharing one baseline


def write_grid(folder: Path, **d) -> Path:
    path = folder / f"{d.pop('file', 'g')}.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def toy_notebook(path: Path) -> Path:
    """A papermill template that appends a line to <output_dir>/<tag>.attempts each time it runs, and fails when
    ``fail`` is true: counts executions without training anything."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('tag = "a"  # name of the run\nfail = False  # raise an error\n'
                                       'output_dir = "runs"  # where the attempts file goes\n'
                                       'sleep = 0.0  # seconds the run takes')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "from pathlib import Path\nPath(output_dir).mkdir(parents=True, exist_ok=True)\n"
        "with open(Path(output_dir) / f'{tag}.attempts', 'a') as f:\n    f.write('x\\n')\n"
        "import time\ntime.sleep(sleep)\n"
        "if fail:\n    raise RuntimeError(f'boom in {tag}')\nprint('ok', tag)")
    nb.cells = [params, body]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def cli(*args, cwd=ROOT, timeout=900, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rethink", "sweep", *map(str, args), "--quiet"], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


# ---------------------------------------------------------------------------------------------------- expansion

def test_grid_expands_to_the_product_of_its_axes_with_stable_ids(tmp_path):
    nb = toy_notebook(tmp_path / "toy.ipynb")
    g = write_grid(tmp_path, notebook=str(nb), output_dir="out", name="{tag}-{x}", parameters=dict(fail=False),
                   axes=[[{"tag": "a", "y": 1}, {"tag": "b", "y": 2}], {"x": [1, 2, 3]}])
    runs, baselines = expand(load_grid(g), cwd=tmp_path)
    assert len(runs) == 6 and baselines == {}
    assert sorted(r.name for r in runs) == ["a-1", "a-2", "a-3", "b-1", "b-2", "b-3"]
    a1 = next(r for r in runs if r.name == "a-1")
    assert a1.parameters == dict(fail=False, tag="a", y=1, x=1, output_dir="out")  # zipped axis sets tag and y
    assert len({r.run_id for r in runs}) == 6
    # the same grid gives the same ids; key order and location parameters do not change an id; values do
    assert [r.run_id for r in expand(load_grid(g), cwd=tmp_path)[0]] == [r.run_id for r in runs]
    p = dict(a1.parameters)
    assert run_hash("x/toy.ipynb", p) == run_hash("toy.ipynb", dict(reversed(list(p.items()))))
    assert run_hash("toy.ipynb", p) == run_hash("toy.ipynb", {**p, "output_dir": "elsewhere", "data_root": "/d"})
    assert run_hash("toy.ipynb", p) != run_hash("toy.ipynb", {**p, "x": 4})
    assert run_hash("toy.ipynb", p) != run_hash("other.ipynb", p)
    # -p style overrides and a profile override reach every run and change the ids
    over, _ = expand(load_grid(g), profile="smoke", overrides={"fail": True}, cwd=tmp_path)
    assert all(r.parameters["fail"] is True and r.parameters["profile"] == "smoke" for r in over)
    assert not {r.run_id for r in over} & {r.run_id for r in runs}


def test_grid_errors_are_reported(tmp_path):
    nb = toy_notebook(tmp_path / "toy.ipynb")
    with pytest.raises(GridError, match="unknown key"):
        load_grid(write_grid(tmp_path, notebook=str(nb), axis=[]))
    with pytest.raises(GridError, match="non-empty list"):
        load_grid(write_grid(tmp_path, notebook=str(nb), axes=[{"x": 3}]))
    with pytest.raises(GridError, match="not found"):
        expand(load_grid(write_grid(tmp_path, notebook="missing.ipynb")), cwd=tmp_path)
    with pytest.raises(GridError, match="both named"):  # two runs would write the same executed notebook
        expand(load_grid(write_grid(tmp_path, notebook=str(nb), name="{tag}", axes=[{"x": [1, 2]}],
                                    parameters=dict(tag="a"))), cwd=tmp_path)


def test_table1_grid_is_the_books_table1():
    runs, baselines = expand(load_grid(ROOT / "grids" / "table1.yaml"), cwd=ROOT)
    assert [r.name for r in runs] == ["vgg16-a", "resnet56-a", "resnet56-b", "resnet110-a", "resnet110-b"]
    assert {r.output_dir for r in runs} == {"book/runs"}
    assert all(r.parameters["dataset"] == "fashion-mnist" and r.parameters["profile"] == "book" for r in runs)
    assert all(r.error is None for r in runs)
    # book profile: 3 seeds -> one baseline per (arch, seed), shared by the variants of an arch
    assert len(baselines) == 3 * 3
    assert set(runs[1].baselines) == set(runs[2].baselines) != set(runs[0].baselines)
    # (baseline + 3 regimes) per seed, and the random-filters control's fine-tuning per seed (same baselines)
    assert all(len(r.records) == 3 * 4 + 3 for r in runs) and all(len(set(r.records)) == 15 for r in runs)
    assert sum("random-filters" in p for p in runs[0].records) == 3
    # a smoke check does not write into the book
    smoke, _ = expand(load_grid(ROOT / "grids" / "table1.yaml"), profile="smoke", cwd=ROOT)
    assert {r.output_dir for r in smoke} == {"runs/sweeps/table1-smoke"}


def test_methods_grid_covers_every_method_but_l1_norm_with_its_own_baseline():
    runs, baselines = expand(load_grid(ROOT / "grids" / "methods.yaml"), cwd=ROOT)
    from rethink import list_methods
    # l1-norm is Table 1's; its random-filters control runs from the same pages
    assert {r.parameters["method"] for r in runs} == set(list_methods()) - {"l1-norm", "random-filters"}
    assert {r.output_dir for r in runs} == {"book/runs"}  # results.ipynb reads Table 1 and these from one folder
    # slimming and SFP train their own large models; magnitude prunes a plainly trained one
    base = {r.name: Path(r.records[0]).name for r in runs}
    # the penalty is 1e-4 for VGG and 1e-5 for DenseNet (the paper's), part of the cached model's name
    assert base["slimming-vgg19-slim-p0.7"].startswith("fashion-mnist-book-slimming-l0.0001-vgg19-slim-baseline")
    assert base["slimming-densenet40-p0.4"].startswith("fashion-mnist-book-slimming-l1e-05-densenet40-baseline")
    assert base["sfp-resnet56-p0.3"].startswith("fashion-mnist-book-sfp-p0.3-resnet56-baseline")
    assert base["magnitude-vgg19-p0.5"].startswith("fashion-mnist-book-unpruned-vgg19-baseline")
    # ThiNet and channel pruning prune the plainly trained large models (Table 1's); SSS trains its block factors
    for method in ("thinet", "channel-pruning"):
        assert base[f"{method}-vgg16-p0.5"].startswith("fashion-mnist-book-unpruned-vgg16-baseline")
        assert base[f"{method}-resnet56-p0.5"].startswith("fashion-mnist-book-unpruned-resnet56-baseline")
    assert base["sss-resnet56-p0.3"].startswith("fashion-mnist-book-sss-l0.01-resnet56-baseline")
    # one per run and seed, except the plain VGG-16 and ResNet-56 that ThiNet and channel pruning share
    assert len(baselines) == (len(runs) - 2) * 3


def test_every_book_grid_names_an_existing_notebook_and_expands():
    grids = sorted((ROOT / "grids").glob("*.yaml"))
    assert grids
    for path in grids:
        runs, _ = expand(load_grid(path), cwd=ROOT)
        assert runs, path
        assert not [r.error for r in runs if r.error], path


def test_a_dry_run_says_how_far_each_run_is(tmp_path, fashion_root):
    out = tmp_path / "tiny"
    runs = expand(load_grid(TINY), output_dir=str(out), overrides={"data_root": fashion_root}, cwd=ROOT)[0]
    first = Path(runs[0].cwd) / runs[0].records[-1]  # one record of resnet56-a already written
    first.parent.mkdir(parents=True)
    first.write_text("{}")
    summary = sweep(TINY, output_dir=str(out), overrides={"data_root": fashion_root}, dry_run=True)
    n = len(runs[0].records)
    assert summary.pending == [f"resnet56-a (1 of {n} records, 0 of 1 large models cached; "
                               f"{n - 2} training(s) not measured yet)",
                               f"resnet56-b (0 of {n} records, 0 of 1 large models cached; "
                               f"{n - 1} training(s) not measured yet)"]
    assert not list(out.rglob("*.ipynb"))  # a dry run runs nothing


def test_a_run_with_all_its_records_needs_no_large_model(tmp_path, fashion_root):
    # re-executing a page whose records are all written must not retrain large models that left the cache
    out = tmp_path / "tiny"
    runs = expand(load_grid(TINY), output_dir=str(out), overrides={"data_root": fashion_root}, cwd=ROOT)[0]
    for r in runs[0].records:
        (Path(runs[0].cwd) / r).parent.mkdir(parents=True, exist_ok=True)
        (Path(runs[0].cwd) / r).write_text("{}")
    summary = sweep(TINY, output_dir=str(out), overrides={"data_root": fashion_root}, dry_run=True)
    n = len(runs[0].records)
    shared = len(set(runs[0].records) & set(runs[1].records))  # the large model's record, shared by both
    assert shared == 1 and summary.pending == [
        f"resnet56-a ({n} of {n} records, no large model needed; only its page to make)",
        f"resnet56-b ({shared} of {n} records, 0 of 1 large models cached; {n - 1} training(s) not measured yet)"]


def test_each_missing_record_is_a_training_task_between_its_large_model_and_its_run(tmp_path, fashion_root):
    # so that --jobs 2 trains two seeds or regimes of one row at once; rows come one after another, but those that
    # prune the same large models (here both) train each seed's regimes of both before the next seed's large model
    from rethink.sweep import Summary, _tasks
    out = tmp_path / "tiny"
    runs, baselines = expand(load_grid(TINY), output_dir=str(out), overrides={"data_root": fashion_root}, cwd=ROOT)
    a, b = runs
    written = next(r for r in a.records if r.endswith("-l1-norm-resnet56-a-fine-tune-s0.json"))
    (out / "records").mkdir(parents=True)
    Path(written).write_text("{}")
    base = f"baseline:{a.baselines[0]}"
    # one job: the notebooks train their records themselves
    assert [(t.key, t.deps) for t in _tasks(runs, baselines, Summary("tiny", str(out)), split=False)] == [
        (base, []), (f"run:{a.run_id}", [base]), (f"run:{b.run_id}", [base])]
    tasks = _tasks(runs, baselines, Summary("tiny", str(out)))
    regimes = lambda run: [r for r in run.records if "-baseline-" not in r]  # noqa: E731
    # longest first: both rows' Scratch-B, then Scratch-E, then the fine-tunings (controls included)
    order = ["-scratch-b-", "-scratch-e-", "-fine-tune-"]
    longest = lambda rs: sorted(rs, key=lambda r: next(i for i, o in enumerate(order) if o in r))  # noqa: E731
    assert [t.key for t in tasks] == ([base] + [f"training:{r}" for r in longest(
        [r for r in regimes(a) if r != written] + regimes(b))] + [f"run:{a.run_id}", f"run:{b.run_id}"])
    by_key = {t.key: t for t in tasks}
    assert all(t.deps == [base] for t in tasks if t.kind == "training")
    assert by_key[f"run:{b.run_id}"].deps == [base] + [f"training:{r}" for r in longest(regimes(b))]
    control = by_key[f"training:{next(r for r in regimes(a) if '-random-filters-' in r)}"]
    assert control.label == "resnet56-a: random-filters fine-tune seed 0" and control.spec["seed"] == 0
    assert control.spec["control"] == "random-filters" and control.spec["params"]["method"] == "l1-norm"
    assert by_key[f"run:{a.run_id}"].spec["trainings"] == []  # the worker's argument stays short
    # with every regime written, only the large model's record is left: one training writes it
    for r in regimes(a):
        Path(r).write_text("{}")
    tasks = _tasks(runs[:1], baselines, Summary("tiny", str(out)))
    assert [(t.kind, t.spec.get("regime")) for t in tasks] == [("baseline", None), ("training", "baseline"),
                                                               ("run", None)]


def test_a_large_model_gone_from_the_cache_is_trained_only_for_what_needs_its_weights(tmp_path, fashion_root):
    # a later session (its cache gone) with a seed's fine-tuning recorded: the scratch runs left need only the
    # pruned widths, which the records keep, so no large-model task is planned and they wait for none
    from rethink.experiment import baseline_path, configure
    from rethink.records import FORMAT, write_record
    from rethink.sweep import Summary, Training, _tasks
    grid = write_grid(tmp_path, file="slim", description="slimming on a tiny VGG-11", kind="experiment",
                      notebook="notebooks/scratch_vs_finetune.ipynb", output_dir="runs/slim", name="{arch}",
                      parameters=dict(method="slimming", dataset="fashion-mnist", profile="smoke", device="cpu",
                                      seeds=[0], epochs=1, finetune_epochs=1, train_subset=32, prune_ratio=0.5),
                      axes=[{"arch": ["vgg11"]}])
    out = tmp_path / "slim"
    runs, baselines = expand(load_grid(grid), output_dir=str(out), overrides={"data_root": fashion_root}, cwd=ROOT)
    by_regime = {t["regime"]: Training(**t) for t in runs[0].trainings}

    def write(regime):  # a finished record as run_experiment writes it (its settings are what counts)
        t = by_regime[regime]
        write_record(dict(format=FORMAT, run_id=Path(t.record).stem, regime=regime, seed=0,
                          config=configure(**dict(t.params)).to_dict(),
                          metrics=dict(best_acc=50.0, final_acc=50.0, epochs=1),
                          model=dict(arch="vgg11", params=1, flops=1, widths=[1]),
                          baseline=dict(params=2, flops=2, widths=[2]), prune=dict(clamped=[]),
                          provenance=dict(device="cpu", wall_time_s=1.0)), Path(t.cwd) / t.record)

    def plan():
        tasks = _tasks(runs, baselines, Summary("slim", str(out)))
        return [t.kind for t in tasks], {t.spec.get("regime"): t.deps for t in tasks if t.kind == "training"}

    write("baseline")
    write("scratch-e")
    kinds, deps = plan()  # the fine-tuning needs the trained weights, so Scratch-B waits for the large model too
    assert kinds[0] == "baseline" and deps == {r: [f"baseline:{runs[0].baselines[0]}"] for r in ("fine-tune",
                                                                                                 "scratch-b")}
    write("fine-tune")
    kinds, deps = plan()
    assert kinds == ["training", "run"] and deps == {"scratch-b": []}
    # the large model in the cache: its task is planned (done at once), as ever
    path = baseline_path(configure(**dict(by_regime["baseline"].params)), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    try:
        assert plan()[0] == ["baseline", "training", "run"]
    finally:
        path.unlink()


def test_a_seeds_regimes_come_before_the_next_seeds_large_model(tmp_path, fashion_root):
    # a free job takes the first ready task: seed 0's regimes are trained before seed 1's large model starts
    # waiting for a job, so that a session's hard stop leaves whole seeds of records behind, not three large
    # models (lost with the cache) and no records
    from rethink.sweep import Summary, _tasks
    out = tmp_path / "tiny"
    runs, baselines = expand(load_grid(TINY), output_dir=str(out), overrides={"data_root": fashion_root,
                                                                             "seeds": [0, 1]}, cwd=ROOT)
    b0, b1 = (f"baseline:{n}" for n in runs[0].baselines)
    seed = lambda k: 0 if k == b0 or "-s0.json" in k else 1 if k == b1 or "-s1.json" in k else None  # noqa: E731
    for rows in (runs[:1], runs):  # one row, then the A and B rows, which prune the same large models
        keys = [t.key for t in _tasks(rows, baselines, Summary("tiny", str(out)))]
        order = [seed(k) for k in keys[:-len(rows)]]
        assert all(k.startswith("run:") for k in keys[-len(rows):]) and keys[0] == b0
        assert keys.index(b1) == order.index(1)
        assert order == sorted(order) and order.count(0) == order.count(1) > 2  # seed 0 whole, then seed 1 whole
        assert sum("-resnet56-b-" in k for k in keys[:keys.index(b1)]) == (len(rows) - 1) * 4  # B's seed 0 too


def test_a_dry_run_estimates_the_training_left_from_finished_runs(tmp_path, fashion_root):
    from rethink.experiment import configure
    from rethink.records import FORMAT, write_record
    out = tmp_path / "tiny"
    runs = expand(load_grid(TINY), output_dir=str(out), overrides={"data_root": fashion_root}, cwd=ROOT)[0]

    def finished(path, method, regime, seconds, epochs=1):  # a record as run_experiment writes it, with its wall time
        cfg = configure(method=method, arch="resnet56", variant="resnet56-a", dataset="fashion-mnist",
                        profile="smoke", device="cpu", seeds=[0])
        write_record(dict(format=FORMAT, run_id=Path(path).stem, regime=regime, seed=0, config=cfg.to_dict(),
                          metrics=dict(best_acc=50.0, final_acc=50.0, epochs=epochs),
                          model=dict(params=1, flops=1, widths=[1]),
                          provenance=dict(device="cpu", wall_time_s=seconds)), Path(runs[0].cwd) / path)
    a = {Path(r).name.rsplit("-s", 1)[0].split("-", 3)[-1]: r for r in runs[0].records}
    finished(next(r for r in runs[0].records if "-baseline-" in r), "l1-norm", "baseline", 300)
    finished(a["l1-norm-resnet56-a-fine-tune"], "l1-norm", "fine-tune", 120)
    # Scratch-E measured under a schedule twice as long as the grid's one epoch: 300 s per epoch
    finished(a["l1-norm-resnet56-a-scratch-e"], "l1-norm", "scratch-e", 600, epochs=2)
    finished(a["random-filters-resnet56-a-fine-tune"], "random-filters", "fine-tune", 60)
    summary = sweep(TINY, output_dir=str(out), overrides={"data_root": fashion_root}, dry_run=True)
    left_a, left_b = summary.pending
    # resnet56-a lacks only Scratch-B, and no Scratch-B of resnet56 is measured yet: it counts as its large model's
    # one epoch at 300 s (the budget Scratch-B is given), 5 min
    assert left_a.endswith("; about 0.1 h to train)")
    # resnet56-b: fine-tuning as the median ResNet-56 fine-tuning (1.5 min) and its control as A's (1 min),
    # Scratch-E one epoch at A's 300 s per epoch (5 min; 10 min if the estimate ignored the epochs), Scratch-B 5 min
    assert left_b.endswith("; about 0.2 h to train)")
    # with A's Scratch-B and the large model, unless cached, as its record's 5 minutes: 22.5 min in all
    assert "about 0.4 h of training in all" in summary.estimate
    assert "nothing like them measured yet" not in summary.estimate and "time: about" in str(summary)


def test_a_dry_run_times_an_architecture_no_run_trained_from_its_convergence_check(tmp_path, fashion_root):
    # ResNet-110's rows come after its convergence check: before any of its runs, the check's 1x training times
    # the large models and (an upper bound) the pruned runs
    from rethink.convergence import convergence_run_id
    from rethink.experiment import configure
    from rethink.records import FORMAT, write_record
    out = tmp_path / "tiny"
    cfg = configure(method="l1-norm", arch="resnet56", variant="resnet56-a", dataset="fashion-mnist",
                    profile="smoke", device="cpu", seeds=[0], epochs=1, finetune_epochs=1, train_subset=32)
    run_id = convergence_run_id(cfg, 1, 0)
    write_record(dict(format=FORMAT, run_id=run_id, regime="convergence", factor=1, seed=0, config=cfg.to_dict(),
                      metrics=dict(best_acc=50.0, final_acc=50.0, epochs=1, train_time_s=600.0),
                      baseline_tag="unpruned", model=dict(arch="resnet56", widths=[1]),
                      provenance=dict(device="cpu", wall_time_s=600.0)),
                 tmp_path / "convergence" / "records" / f"{run_id}.json")
    summary = sweep(TINY, output_dir=str(out), overrides={"data_root": fashion_root}, dry_run=True)
    n = len(expand(load_grid(TINY), output_dir=str(out), overrides={"data_root": fashion_root}, cwd=ROOT)[0][0].records)
    # each run: its n - 1 pruned trainings at the large model's 10 min per epoch, one epoch each
    assert summary.pending == [f"resnet56-{v} (0 of {n} records, 0 of 1 large models cached; about "
                               f"{(n - 1) * 10 / 60:.1f} h to train)" for v in "ab"]
    assert f"about {(2 * (n - 1) + 1) * 10 / 60:.1f} h of training in all" in summary.estimate
    # without the check nothing is measured
    (tmp_path / "convergence" / "records" / f"{run_id}.json").unlink()
    assert "nothing like them measured yet" in sweep(TINY, output_dir=str(out), dry_run=True,
                                                     overrides={"data_root": fashion_root}).estimate


def test_a_page_the_book_toc_lacks_is_named_before_it_is_written(tmp_path, monkeypatch):
    # a page written into a folder of the book that _toc.yml does not list would be left out of the book (and get
    # the notebook's default title): the sweep names it before training, in a dry run as in a real one
    toy_notebook(tmp_path / "toy.ipynb")
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump(
        {"format": "jb-book", "root": "book/intro", "parts": [{"caption": "Runs", "chapters": [
            {"file": "book/runs/a", "title": "Run A"}]}]}))
    monkeypatch.chdir(tmp_path)
    g = write_grid(tmp_path, notebook="toy.ipynb", output_dir="book/runs", name="{tag}", axes=[{"tag": ["a", "b"]}])
    summary = sweep(g, dry_run=True)
    assert summary.not_in_toc == ["book/runs/b"] and "NOT IN _toc.yml: book/runs/b " in str(summary)
    # a notebook grid trains inside its notebook: no hours are guessed (not "0.0 h")
    assert summary.estimate.startswith("not estimated")
    # a page already written (its run done, skipped by the sweep) stays out of the book too: still named
    run_b = next(r for r in expand(load_grid(g), cwd=tmp_path)[0] if r.name == "b")
    for path in (run_b.notebook_path, run_b.marker_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(), run_b.notebook_path)
    run_b.marker_path.write_text(json.dumps({"run_id": run_b.run_id}))
    summary = sweep(g, dry_run=True)
    assert summary.skipped == ["b"] and summary.not_in_toc == ["book/runs/b"] and "rethink page" in str(summary)
    # pages outside the book's folders are not book pages: nothing to say
    g = write_grid(tmp_path, file="elsewhere", notebook="toy.ipynb", output_dir="out", name="{tag}",
                   axes=[{"tag": ["a", "b"]}])
    assert sweep(g, dry_run=True).not_in_toc == []


def test_invalid_parameters_fail_that_run_only(tmp_path):
    g = write_grid(tmp_path, notebook=str(ROOT / "notebooks" / "scratch_vs_finetune.ipynb"), kind="experiment",
                   name="{arch}", parameters=dict(profile="smoke", dataset="fashion-mnist"),
                   axes=[{"arch": ["resnet56", "no-such-arch"]}])
    runs, baselines = expand(load_grid(g), cwd=tmp_path)
    bad = next(r for r in runs if r.name == "no-such-arch")
    assert "no-such-arch" in bad.error and "resnet56" in bad.error  # the error lists the known archs
    assert next(r for r in runs if r.name == "resnet56").error is None and len(baselines) == 1


# ---------------------------------------------------------------------------------------------------- run state

def _finished(tmp_path: Path, error: bool = False) -> Run:
    """A run whose notebook, records and marker are written by hand."""
    run = Run(run_id="nb-0123456789", grid="g", name="x", notebook="nb.ipynb", kind="experiment", output_dir="out",
              cwd=str(tmp_path), parameters={}, records=["out/records/r.json"])
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1/0" if error else "1")
    if error:
        cell.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero")]
    nb.cells = [cell]
    run.notebook_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, run.notebook_path)
    (tmp_path / "out" / "records").mkdir()
    (tmp_path / "out" / "records" / "r.json").write_text("{}")
    run.state_dir.mkdir(parents=True)
    run.marker_path.write_text(json.dumps({"run_id": run.run_id}))
    return run


def test_a_run_is_done_only_with_marker_clean_notebook_and_records(tmp_path):
    run = _finished(tmp_path / "ok")
    assert is_done(run)
    run.marker_path.unlink()  # killed after the rename, before the marker
    assert not is_done(run)
    run = _finished(tmp_path / "rec")
    (tmp_path / "rec" / "out" / "records" / "r.json").write_text('{"trunc')  # a partial record is not a result
    assert not is_done(run)
    assert not is_done(_finished(tmp_path / "err", error=True))  # finished with an error


def test_a_committed_page_that_papermill_ran_with_the_runs_parameters_is_done_without_a_marker(tmp_path):
    # a fresh clone has the executed pages and records but not the sweep's markers (.sweep/ is not committed):
    # a page papermill ran to its end with the run's very parameters is not executed again
    run = _finished(tmp_path / "clone")
    run.marker_path.unlink()
    nb = json.loads(run.notebook_path.read_text())
    ran = dict(parameters=dict(run.parameters), end_time="2026-11-30T08:49:53+00:00", exception=None)
    for meta, done in [(ran, True), ({**ran, "parameters": {**run.parameters, "profile": "quick"}}, False),
                       ({**ran, "end_time": None}, False), ({**ran, "exception": True}, False)]:
        nb["metadata"]["papermill"] = meta
        run.notebook_path.write_text(json.dumps(nb))
        assert is_done(run) is done, meta


@pytest.mark.slow  # executes notebooks (a kernel start is seconds on a loaded CPU)
def test_partial_notebook_without_marker_is_redone_and_replaced(tmp_path):
    toy_notebook(tmp_path / "toy.ipynb")
    g = write_grid(tmp_path, notebook="toy.ipynb", output_dir="out", name="{tag}", axes=[{"tag": ["a"]}])
    runs, _ = expand(load_grid(g), cwd=tmp_path)
    run = runs[0]
    # what a kill -9 mid-run leaves: papermill's partial output, no final notebook, no marker
    run.state_dir.mkdir(parents=True)
    run.partial_path.write_text('{"cells": [')
    assert not is_done(run)
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        s = sweep(g, progress=False)
        assert (s.done, s.skipped, s.failed) == (["a"], [], {})
        assert not run.partial_path.exists() and is_done(run)
        outputs = [o for c in nbformat.read(run.notebook_path, as_version=4).cells for o in c.get("outputs", [])]
        assert [o.get("text") for o in outputs] == ["ok a\n"]
        s = sweep(g, progress=False)
        assert (s.done, s.skipped) == ([], ["a"])
        assert (tmp_path / "out" / "a.attempts").read_text().count("x") == 1  # the second sweep ran nothing
    finally:
        os.chdir(cwd)


@pytest.mark.slow  # executes notebooks (a kernel start is seconds on a loaded CPU)
def test_failures_are_retried_then_reported_and_the_rest_goes_on(tmp_path):
    toy_notebook(tmp_path / "toy.ipynb")
    g = write_grid(tmp_path, notebook="toy.ipynb", output_dir="out", name="{tag}",
                   axes=[[{"tag": "good", "fail": False}, {"tag": "bad", "fail": True}, {"tag": "ok2"}]])
    proc = cli(g, "--retries", "2", "--jobs", "2", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 done, 0 skipped, 1 failed" in proc.stdout
    assert "FAILED bad after 3 attempt(s): RuntimeError: boom in bad" in proc.stdout
    out = tmp_path / "out"
    assert (out / "bad.attempts").read_text().count("x") == 3 and (out / "good.attempts").read_text().count("x") == 1
    assert (out / "good.ipynb").exists() and (out / "ok2.ipynb").exists() and not (out / "bad.ipynb").exists()
    # the next invocation retries only the failed run
    proc = cli(g, "--retries", "0", cwd=tmp_path)
    assert "0 done, 2 skipped, 1 failed" in proc.stdout
    assert (out / "bad.attempts").read_text().count("x") == 4


# ---------------------------------------------------------------------------------------------------- real runs

def _tiny_args(out: Path, fashion_root: str) -> list:
    return [TINY, "--profile", "smoke", "--output-dir", out, "-p", "data_root", fashion_root]


def _check_tiny_outputs(out: Path) -> None:
    for variant in ("resnet56-a", "resnet56-b"):
        nb = out / f"{variant}.ipynb"
        assert nb.exists() and "smoke" in nb.read_text()
        for regime in ("fine-tune", "scratch-e", "scratch-b"):
            rec = json.loads((out / "records" / f"fashion-mnist-smoke-l1-norm-{variant}-{regime}-s0.json").read_text())
            assert rec["regime"] == regime and rec["config"]["data"]["train_subset"] == 32
    assert (out / "records" / "fashion-mnist-smoke-unpruned-resnet56-baseline-s0.json").exists()
    assert not list(out.rglob("*.part"))


@pytest.mark.slow
def test_the_methods_grid_runs_each_method_through_the_notebook(tmp_path, fashion_root):
    """grids/methods.yaml with the smoke profile: slimming, SFP and magnitude through scratch_vs_finetune.ipynb."""
    out = tmp_path / "methods"
    proc = cli(ROOT / "grids" / "methods.yaml", "--profile", "smoke", "--output-dir", out, "-p", "data_root",
               fashion_root, "-p", "train_subset", 64)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = expand(load_grid(ROOT / "grids" / "methods.yaml"), cwd=ROOT)[0]
    assert f"methods: {len(runs)} done, 0 skipped, 0 failed" in proc.stdout
    for run in runs:
        text = (out / f"{run.name}.ipynb").read_text()
        assert run.parameters["method"] in text and "smoke" in text and '"output_type": "error"' not in text
        regimes = {json.loads(p.read_text())["regime"] for p in (out / "records").glob(f"*-{run.name}-*.json")}
        assert regimes == {"fine-tune", "scratch-e", "scratch-b"}, run.name
    sparse = json.loads(next((out / "records").glob("*-magnitude-*-fine-tune-s0.json")).read_text())["model"]
    assert abs(sparse["sparsity"] - 0.5) < 1e-3 and sparse["flops"] < sparse["dense_flops"]


@pytest.mark.slow
def test_cli_sweep_runs_the_tiny_grid_then_skips_everything(tmp_path, fashion_root):
    out = tmp_path / "out"
    proc = cli(*_tiny_args(out, fashion_root), "--jobs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "tiny: 2 done, 0 skipped, 0 failed" in proc.stdout
    _check_tiny_outputs(out)
    # the shared baseline was trained once, by its own task, before the two runs; then each run's four trainings
    # (three regimes and the control's fine-tuning), each by its own task
    assert len(list((out / ".sweep").glob("baseline-resnet56-*/attempt-*.log"))) == 1
    logs = list((out / ".sweep").glob("*/training-*/attempt-1.log"))
    assert len(logs) == 8
    for log in logs:  # each record written by its training (the log's last line names it), not again by the notebook
        record = out / "records" / f"{log.parent.name.removeprefix('training-')}.json"
        assert log.read_text().splitlines()[-1].endswith(record.name)
        assert record.stat().st_mtime <= log.stat().st_mtime
    mtimes = {p: p.stat().st_mtime for p in out.rglob("*") if p.is_file()}
    proc = cli(*_tiny_args(out, fashion_root), "--jobs", "2")
    assert proc.returncode == 0 and "tiny: 0 done, 2 skipped, 0 failed" in proc.stdout
    assert mtimes == {p: p.stat().st_mtime for p in out.rglob("*") if p.is_file()}  # nothing rewritten


@pytest.mark.slow
def test_a_sweep_killed_mid_run_is_redone_by_the_next_invocation(tmp_path, fashion_root):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rethink", "sweep", *map(str, _tiny_args(out, fashion_root)), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while not list(out.glob(".sweep/scratch_vs_finetune-*/*.part")):  # papermill is executing a run's notebook
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before any run started"
        time.sleep(0.2)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker, kill -9
    proc.wait()
    assert not list(out.glob(".sweep/scratch_vs_finetune-*/done.json")) and not list(out.glob("*.ipynb"))
    done = cli(*_tiny_args(out, fashion_root))
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "tiny: 2 done, 0 skipped, 0 failed" in done.stdout  # the killed run is redone, not skipped
    _check_tiny_outputs(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_tiny_grid_through_a_ray_head_with_two_workers(tmp_path, fashion_root):
    pytest.importorskip("ray", reason="the ray engine needs `pip install .[ray]`")
    ray_cli = Path(sys.executable).with_name("ray")
    port = _free_port()
    # our own head, in its own session, so that we stop exactly the processes we started; its own RAY_TMPDIR (short:
    # unix socket paths live there), so that no file of it (e.g. /tmp/ray/ray_current_cluster) outlives the test
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    # the driver too: it finds this node's Ray there.  No token authentication: Ray 2.5x turns it on for a head when
    # ~/.ray/auth_token exists (a local ray.init writes one), and the driver would then be refused.
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled")
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
                             "--object-store-memory", str(200 * 2**20), "--block"],
                            env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = tmp_path / "out"
        args = [*_tiny_args(out, fashion_root), "--engine", "ray", "--address", f"127.0.0.1:{port}"]
        deadline = time.time() + 180
        while subprocess.run([str(ray_cli), "status", "--address", f"127.0.0.1:{port}"], env=env,
                             capture_output=True).returncode != 0:  # the head takes seconds to come up
            assert head.poll() is None and time.time() < deadline, "the Ray head did not start"
            time.sleep(2)
        proc = cli(*args, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
        assert "tiny: 2 done, 0 skipped, 0 failed" in proc.stdout
        _check_tiny_outputs(out)
        proc = cli(*args, env=env)
        assert proc.returncode == 0 and "tiny: 0 done, 2 skipped, 0 failed" in proc.stdout
    finally:
        # `ray stop` would stop every Ray process of the machine; we stop the head's process group only
        head.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
def test_two_sweeps_at_once_run_every_run_exactly_once(tmp_path):
    """Two real `python -m rethink sweep` processes of one grid and output folder, started together: the per-run
    lock leaves each run to one of them, the other says so, and every run executes once."""
    nb = toy_notebook(tmp_path / "toy.ipynb")
    tags = ["a", "b", "c", "d"]
    g = write_grid(tmp_path, notebook=str(nb), output_dir=str(tmp_path / "out"), name="{tag}",
                   parameters=dict(sleep=3.0), axes=[{"tag": tags}])
    cmd = [sys.executable, "-m", "rethink", "sweep", str(g), "--quiet"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    for tag in tags:  # executed exactly once, by one sweep or the other
        assert (tmp_path / "out" / f"{tag}.attempts").read_text() == "x\n", tag
    done = [int(out.split(" done,")[0].rsplit(" ", 1)[-1]) for out, _ in outs]
    assert sum(done) == len(tags)
    held = [line for out, _ in outs for line in out.splitlines() if line.startswith("  LEFT ")]
    assert held and all("another sweep" in line for line in held)  # the one that skipped a run says so
    runs, _ = expand(load_grid(g), cwd=ROOT)
    assert all(is_done(r) for r in runs)
    # no corrupt marker: every marker is a readable record of its run
    assert all(json.loads(r.marker_path.read_text())["run_id"] == r.run_id for r in runs)


@pytest.mark.slow
def test_a_ray_worker_killed_mid_run_is_retried_and_the_sweep_completes(tmp_path):
    """kill -9 of the Ray worker process that runs a run: its own worker subprocess dies with it (no orphan keeps
    the run's lock), Ray retries the task, and the sweep finishes every run."""
    pytest.importorskip("ray", reason="the ray engine needs `pip install .[ray]`")
    psutil = pytest.importorskip("psutil")
    nb = toy_notebook(tmp_path / "toy.ipynb")
    out = tmp_path / "out"
    g = write_grid(tmp_path, notebook=str(nb), output_dir=str(out), name="{tag}", parameters=dict(sleep=6.0),
                   axes=[{"tag": ["a", "b"]}])
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled")
    proc = subprocess.Popen([sys.executable, "-m", "rethink", "sweep", str(g), "--engine", "ray", "--retries", "2",
                             "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline, killed = time.time() + 300, None
        while killed is None:  # the first `rethink.sweep run` worker that executes a notebook of this grid
            assert proc.poll() is None and time.time() < deadline, "no run started"
            for p in psutil.process_iter(["cmdline"]):
                argv = p.info["cmdline"] or []
                if argv[-3:-1] != ["rethink.sweep", "run"] or str(out) not in argv[-1]:
                    continue
                tag = json.loads(argv[-1])["parameters"]["tag"]
                if (out / f"{tag}.attempts").exists():  # its notebook is executing (sleeping)
                    ray_worker = p.parent()
                    killed = (ray_worker.pid, p.pid)
                    os.kill(ray_worker.pid, signal.SIGKILL)  # the Ray worker, kill -9
                    break
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, stdout + stderr[-3000:]
    assert "2 done, 0 skipped, 0 failed" in stdout and "LEFT" not in stdout
    assert not psutil.pid_exists(killed[1]) or psutil.Process(killed[1]).status() == psutil.STATUS_ZOMBIE
    runs, _ = expand(load_grid(g), cwd=ROOT)
    assert all(is_done(r) for r in runs)
    attempts = sorted((out / f"{t}.attempts").read_text().count("x") for t in ("a", "b"))
    assert attempts == [1, 2]  # the killed run started again; the other ran once
