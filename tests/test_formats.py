"""Records and checkpoints of another format version: a checkpoint is retrained, a record is reported and left
out of every table, never mixed in."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import smoke_config
from rethink.experiment import baseline_path, run_experiment
from rethink.records import FORMAT, load_records


def test_records_and_checkpoints_carry_their_format(tmp_path, fashion_root, one_thread):
    cfg = smoke_config(tmp_path, fashion_root, arch="vgg16", variant="vgg16-a")
    run_experiment(cfg, progress=False)
    files = sorted((tmp_path / "runs" / "records").glob("*.json"))
    assert len(files) == 4 and {json.loads(p.read_text())["format"] for p in files} == {FORMAT}
    assert torch.load(baseline_path(cfg, 0), weights_only=True)["format"] == FORMAT


def test_a_record_of_another_format_is_reported_not_mixed_in(tmp_path, fashion_root, one_thread):
    cfg = smoke_config(tmp_path, fashion_root, arch="vgg16", variant="vgg16-a")
    run_experiment(cfg, progress=False)
    folder = tmp_path / "runs" / "records"
    path = sorted(folder.glob("*scratch-b*.json"))[0]
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "format": 99}))
    with pytest.warns(UserWarning, match=r"1 record\(s\) of another format left out: .*scratch-b.*format 99"):
        df = load_records(folder)
    assert "scratch-b" not in set(df.regime) and len(df.attrs["unreadable"]) == 1
    # the experiment does not take it for a finished run: it is run again, in this version's format
    run_experiment(cfg, progress=False)
    assert json.loads(path.read_text())["format"] == FORMAT


def test_a_checkpoint_of_another_format_is_retrained(tmp_path, fashion_root, one_thread):
    cfg = smoke_config(tmp_path, fashion_root, arch="vgg16", variant="vgg16-a")
    run_experiment(cfg, progress=False)
    path = baseline_path(cfg, 0)
    ckpt = torch.load(path, weights_only=True)
    torch.save({**ckpt, "format": 99}, path)
    with pytest.warns(UserWarning, match="unusable .*format 99.*retraining"):
        run_experiment(cfg, progress=False, resume=False)  # with its records kept, no run would need the model
    assert torch.load(path, weights_only=True)["format"] == FORMAT
