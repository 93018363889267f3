"""`python -m rethink cache`: how far each training in the cache got, and --clean removes only leftovers."""
from __future__ import annotations

import os
import time

import pytest
import torch

from rethink import train as train_module
from rethink.__main__ import main
from rethink.cache import cache_entries
from rethink.data import DATASETS, TensorLoader
from rethink.models import default_widths, get_model, scale_widths
from rethink.train import Schedule, train


class Stop(Exception):
    pass


def interrupted_state(path, after_epoch: int, epochs: int = 3) -> None:
    """A real state file: a training of ``epochs`` killed after ``after_epoch``."""
    torch.manual_seed(0)
    model = get_model("resnet20", 10, scale_widths(default_widths("resnet20"), 0.25), 3)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    tr = TensorLoader(x, y, DATASETS["cifar10"], 16, shuffle=True, augment=False, seed=0)
    te = TensorLoader(x, y, DATASETS["cifar10"], 32, shuffle=False, augment=False)

    def stop(m, e):
        if e == after_epoch:
            raise Stop

    with pytest.raises(Stop):
        train(model, tr, te, Schedule(epochs, 0.05), progress=False, state_path=path, on_epoch_end=[stop])


def age(path, days: float) -> None:
    t = time.time() - days * 86400
    os.utime(path, (t, t))


def test_cache_lists_progress_and_clean_removes_only_leftovers(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_module, "STATE_EVERY_S", 0.0)
    monkeypatch.setenv("RETHINK_CACHE", str(tmp_path))
    base, states = tmp_path / "baselines", tmp_path / "training-states"
    under_way = base / "vgg19-aaaa.state.pt"                 # a large model cut off at epoch 2 of 3: kept
    interrupted_state(under_way, 2)
    done_state = base / "vgg19-bbbb.state.pt"                # its large model was cached: a leftover
    interrupted_state(done_state, 1)
    torch.save(dict(format=2, metrics=dict(best_acc=91.5), state_dict={}, widths=[]), base / "vgg19-bbbb.pt")
    abandoned = states / "run-fine-tune-s0-cccc.state.pt"   # not written for 8 days: a leftover
    interrupted_state(abandoned, 1)
    age(abandoned, 8)
    old_part, new_part = base / ".vgg19-dddd.pt.x.part", base / ".vgg19-eeee.pt.y.part"
    old_part.write_bytes(b"half"), new_part.write_bytes(b"half")
    age(old_part, 0.5)                                       # a write cut off hours ago; the new one may be under way

    rows = {e.path.name: e for e in cache_entries(tmp_path)}
    assert rows[under_way.name].epochs == "2/3" and rows[under_way.name].kind == "training state"
    assert rows[under_way.name].trained_s > 0 and rows[under_way.name].stale is None
    assert rows["vgg19-bbbb.pt"].kind == "large model" and rows["vgg19-bbbb.pt"].acc == 91.5
    assert rows[done_state.name].stale == "its large model is cached"
    assert rows[abandoned.name].stale.startswith("not written for 8.0 days")
    assert rows[old_part.name].stale and rows[new_part.name].stale is None

    assert main(["cache"]) == 0
    listing = capsys.readouterr().out
    assert "| baselines/vgg19-aaaa.state.pt | training state | 2/3 |" in listing and "removes: " in listing
    assert all(p.exists() for p in (done_state, abandoned, old_part))  # listing alone removes nothing

    assert main(["cache", "--clean"]) == 0
    assert "removed 3 file(s)" in capsys.readouterr().out
    assert not any(p.exists() for p in (done_state, abandoned, old_part))
    assert under_way.exists() and new_part.exists() and (base / "vgg19-bbbb.pt").exists()
    # the kept state still resumes its training
    assert torch.load(under_way, weights_only=True)["curve"][-1]["epoch"] == 2


def test_cache_of_a_missing_folder_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RETHINK_CACHE", str(tmp_path / "none"))
    assert main(["cache", "--clean"]) == 0
    assert "empty" in capsys.readouterr().out


def test_save_and_load_carry_a_training_to_the_next_session(tmp_path, monkeypatch, capsys):
    """A session's cache is gone by the next one; a committed folder is not: --save, then --load on a fresh cache,
    carries the large models and the states under way, and the next --save drops the states whose training ended."""
    monkeypatch.setattr(train_module, "STATE_EVERY_S", 0.0)
    carry, first, second = tmp_path / "carry", tmp_path / "cache1", tmp_path / "cache2"
    monkeypatch.setenv("RETHINK_CACHE", str(first))
    under_way = first / "baselines" / "resnet110-aaaa.state.pt"
    interrupted_state(under_way, 2)
    regime = first / "training-states" / "run-scratch-b-s0-bbbb.state.pt"
    interrupted_state(regime, 1)
    done = first / "baselines" / "vgg19-cccc.state.pt"      # its large model is cached: not worth carrying
    interrupted_state(done, 1)
    torch.save(dict(format=2, metrics=dict(best_acc=91.5), state_dict={}, widths=[]),
               first / "baselines" / "vgg19-cccc.pt")
    (first / "baselines" / ".x.pt.y.part").write_bytes(b"half")

    assert main(["cache", "--save", str(carry)]) == 0
    assert "saved 3 file(s)" in capsys.readouterr().out
    carried = sorted(str(p.relative_to(carry)) for p in carry.rglob("*") if p.is_file())
    assert carried == ["baselines/resnet110-aaaa.state.pt", "baselines/vgg19-cccc.pt",
                       "training-states/run-scratch-b-s0-bbbb.state.pt"]
    assert main(["cache", "--save", str(carry)]) == 0            # nothing changed: nothing rewritten
    assert "saved 0 file(s)" in capsys.readouterr().out

    for p in carry.rglob("*.pt"):                                # a checkout's file dates mean nothing
        age(p, 30)
    monkeypatch.setenv("RETHINK_CACHE", str(second))            # the next session: an empty cache
    (second / "training-states").mkdir(parents=True)
    further = second / "training-states" / "run-scratch-b-s0-bbbb.state.pt"
    interrupted_state(further, 2)                                # this cache got further: it is kept
    assert main(["cache", "--load", str(carry)]) == 0
    assert "loaded 2 file(s)" in capsys.readouterr().out
    assert (second / "baselines" / "resnet110-aaaa.state.pt").read_bytes() == under_way.read_bytes()
    assert torch.load(further, weights_only=True)["curve"][-1]["epoch"] == 2

    # the large model's training ends here: its caller writes the checkpoint and removes the state
    (second / "baselines" / "resnet110-aaaa.state.pt").unlink()
    torch.save(dict(format=2, metrics=dict(best_acc=90.3), state_dict={}, widths=[]),
               second / "baselines" / "resnet110-aaaa.pt")
    assert main(["cache", "--save", str(carry)]) == 0
    out = capsys.readouterr().out
    assert "removed 1 state(s)" in out and "baselines/resnet110-aaaa.state.pt" in out
    assert (carry / "baselines" / "resnet110-aaaa.pt").exists() and (carry / "baselines" / "vgg19-cccc.pt").exists()
    assert not (carry / "baselines" / "resnet110-aaaa.state.pt").exists()
    # the regime state got further here: the carried one is replaced, not removed
    assert torch.load(carry / "training-states" / "run-scratch-b-s0-bbbb.state.pt",
                      weights_only=True)["curve"][-1]["epoch"] == 2

    # loading again (a second `make runs`) does not bring back the state of the training that ended
    assert main(["cache", "--load", str(carry)]) == 0
    assert "loaded 0 file(s)" in capsys.readouterr().out

    # a state this cache never carried (another session's, not loaded here) is not taken for one that ended, and a
    # cache that got less far does not overwrite it
    third = tmp_path / "cache3"
    monkeypatch.setenv("RETHINK_CACHE", str(third))
    interrupted_state(third / "training-states" / "run-scratch-b-s0-bbbb.state.pt", 1)
    assert main(["cache", "--save", str(carry)]) == 0
    assert "saved 0 file(s)" in capsys.readouterr().out
    assert torch.load(carry / "training-states" / "run-scratch-b-s0-bbbb.state.pt",
                      weights_only=True)["curve"][-1]["epoch"] == 2

    # but one this cache could not continue (another schedule: it started over) does not hold its state back
    (third / "training-states" / "run-scratch-b-s0-bbbb.state.pt").unlink()
    interrupted_state(third / "training-states" / "run-scratch-b-s0-bbbb.state.pt", 1, epochs=4)
    assert main(["cache", "--save", str(carry)]) == 0
    assert "saved 1 file(s)" in capsys.readouterr().out
    assert torch.load(carry / "training-states" / "run-scratch-b-s0-bbbb.state.pt",
                      weights_only=True)["schedule"]["epochs"] == 4

    # a state saved, whose training then ends in the same session, leaves the folder at the next save
    monkeypatch.setenv("RETHINK_CACHE", str(second))
    (second / "training-states" / "run-scratch-b-s0-bbbb.state.pt").unlink()
    assert main(["cache", "--save", str(carry)]) == 0
    assert "training-states/run-scratch-b-s0-bbbb.state.pt" in capsys.readouterr().out
    assert not (carry / "training-states" / "run-scratch-b-s0-bbbb.state.pt").exists()


def test_load_from_a_missing_folder_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("RETHINK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit, match="no folder"):
        main(["cache", "--load", str(tmp_path / "none")])
