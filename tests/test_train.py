"""The training loop survives an interruption: a training that stops part-way continues from its last saved epoch
and ends with the very weights of an uninterrupted one."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from conftest import smoke_config
from rethink import experiment, train as train_module
from rethink.config import PerfConfig, resolve_perf
from rethink.data import DATASETS, TensorLoader
from rethink.experiment import cache_dir, run_experiment
from rethink.models import default_widths, get_model, scale_widths
from rethink.train import Schedule, train

CIFAR = DATASETS["cifar10"]
PERF = PerfConfig(amp="bf16", channels_last=True)  # the book's CPU settings


class Stop(Exception):
    """Stands for a killed process."""


def setup():
    """A fresh start, as a new process would make it: the same initialisation and loader seed."""
    torch.manual_seed(0)
    model = get_model("resnet20", 10, scale_widths(default_widths("resnet20"), 0.25), 3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 3, 32, 32, generator=g), torch.randint(0, 10, (96,), generator=g)
    return (model, TensorLoader(x, y, CIFAR, 32, shuffle=True, augment=True, seed=0),
            TensorLoader(x, y, CIFAR, 48, shuffle=False, augment=False))


def stop_after(epoch: int):
    def hook(model, e):
        if e == epoch:
            raise Stop
    return hook


@pytest.fixture
def every_epoch(monkeypatch):
    monkeypatch.setattr(train_module, "STATE_EVERY_S", 0.0)


@pytest.mark.parametrize("compile", ["off", pytest.param("default", marks=pytest.mark.slow)])
def test_an_interrupted_training_ends_as_an_uninterrupted_one(tmp_path, every_epoch, compile):
    schedule, perf = Schedule(4, 0.05), dataclasses.replace(PERF, compile=compile)
    model, tr, te = setup()
    straight = train(model, tr, te, schedule, perf=perf, progress=False)
    state = tmp_path / "t.state.pt"
    model2, tr, te = setup()
    with pytest.raises(Stop):  # stopped during epoch 3: epochs 1-2 are saved, epoch 3's work is lost
        train(model2, tr, te, schedule, perf=perf, progress=False, state_path=state, on_epoch_end=[stop_after(2)])
    assert state.exists()
    model3, tr, te = setup()
    resumed = train(model3, tr, te, schedule, perf=perf, progress=False, state_path=state)
    assert resumed["resumed_at_epoch"] == 2 and resumed["earlier_train_s"] > 0
    assert resumed["curve"] == straight["curve"]
    for k, v in model.state_dict().items():
        assert torch.equal(model3.state_dict()[k], v), k
    # the last epoch is saved too, until the caller has kept the result: a finished training is not redone
    model4, tr, te = setup()
    again = train(model4, tr, te, schedule, perf=perf, progress=False, state_path=state,
                  on_epoch_end=[lambda m, e: pytest.fail("a finished training trained again")])
    assert again["resumed_at_epoch"] == 4 and again["curve"] == straight["curve"]
    assert all(torch.equal(model4.state_dict()[k], v) for k, v in model.state_dict().items())


def test_a_state_of_another_training_is_reported_and_the_training_starts_over(tmp_path, every_epoch, monkeypatch):
    # a machine whose own choice is bf16, so that fp32 below is asked for (test_a_state_carried_... has the other)
    monkeypatch.setenv("RETHINK_CPU_BF16", "1")
    state, schedule = tmp_path / "t.state.pt", Schedule(3, 0.05)
    model, tr, te = setup()
    straight = train(model, tr, te, schedule, perf=PERF, progress=False)
    with pytest.raises(Stop):
        train(*setup(), schedule, perf=PERF, progress=False, state_path=state, on_epoch_end=[stop_after(1)])
    saved = torch.load(state, weights_only=True)

    def broken(change, match, schedule=schedule, perf=PERF):
        s = copy.deepcopy(saved)
        change(s)
        torch.save(s, state)
        m, tr, te = setup()
        with pytest.warns(UserWarning, match=f"unusable.*{match}.*starting over"):
            metrics = train(m, tr, te, schedule, perf=perf, progress=False, state_path=state)
        assert "resumed_at_epoch" not in metrics and len(metrics["curve"]) == schedule.epochs
        return metrics, m

    broken(lambda s: None, "another schedule", schedule=Schedule(3, 0.01))
    broken(lambda s: None, "another perf", perf=PerfConfig(amp="off", channels_last=False))
    # everything is checked before anything changes: a state that is wrong in one part leaves the model as it was
    for change, match in ((lambda s: s["optimizer"]["state"][0].update(momentum_buffer=torch.zeros(1)), "optimizer"),
                          (lambda s: s.update(loader_rng=torch.zeros(16, dtype=torch.uint8)), "random stream")):
        metrics, m = broken(change, match)
        assert metrics["curve"] == straight["curve"]
        assert all(torch.equal(m.state_dict()[k], v) for k, v in model.state_dict().items())
    state.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="unusable"):
        train(*setup(), schedule, perf=PERF, progress=False, state_path=state)


def test_a_state_carried_to_a_cpu_with_bf16_continues_in_fp32(tmp_path, every_epoch, monkeypatch):
    """Speed settings that are the machine's own defaults follow the state: a training begun in fp32 on a CPU
    without bf16 continues in fp32 on one with bf16 (as the run's resolved config asks for bf16 there), ending as
    the uninterrupted fp32 training; a setting asked for against the machine's default does not."""
    schedule, state = Schedule(3, 0.05), tmp_path / "t.state.pt"
    monkeypatch.setenv("RETHINK_CPU_BF16", "0")
    model, tr, te = setup()
    straight = train(model, tr, te, schedule, progress=False)
    assert straight["perf"]["amp"] == "off"
    with pytest.raises(Stop):
        train(*setup(), schedule, progress=False, state_path=state, on_epoch_end=[stop_after(1)])
    monkeypatch.setenv("RETHINK_CPU_BF16", "1")  # the next machine
    with pytest.warns(UserWarning, match="written under amp=off.*continues"):
        resumed = train(*setup(), schedule, perf=resolve_perf(PerfConfig(), "cpu"), progress=False, state_path=state)
    assert resumed["resumed_at_epoch"] == 1 and resumed["perf"]["amp"] == "off"
    assert resumed["curve"] == straight["curve"]
    # bf16 asked for by name where the machine's own choice is fp32: not the state's settings, so it starts over
    monkeypatch.setenv("RETHINK_CPU_BF16", "0")
    with pytest.warns(UserWarning, match="another perf.*starting over"):
        again = train(*setup(), schedule, perf=PerfConfig(amp="bf16"), progress=False, state_path=state)
    assert "resumed_at_epoch" not in again and again["perf"]["amp"] == "bf16"


def test_a_run_killed_mid_training_continues_that_training(tmp_path, fashion_root, monkeypatch, every_epoch):
    """... also on the next machine, whose CPU has bf16 where this one's had none (its state carried there)."""
    monkeypatch.setenv("RETHINK_CPU_BF16", "0")
    cfg = smoke_config(tmp_path, fashion_root, arch="vgg11", method="l1-norm", prune_ratio=0.5, epochs=3)
    real_train = experiment.train

    def killed_in_scratch_e(model, *a, desc="", on_epoch_end=(), **k):
        if desc.startswith("scratch-e"):
            on_epoch_end = (*on_epoch_end, stop_after(1))
        return real_train(model, *a, desc=desc, on_epoch_end=on_epoch_end, **k)
    monkeypatch.setattr(experiment, "train", killed_in_scratch_e)
    with pytest.raises(Stop):
        run_experiment(cfg, progress=False, regimes=("scratch-e",))
    states = list((cache_dir() / "training-states").glob("*scratch-e-s0-*.state.pt"))
    assert len(states) == 1
    monkeypatch.setattr(experiment, "train", real_train)
    monkeypatch.setenv("RETHINK_CPU_BF16", "1")
    there = smoke_config(tmp_path, fashion_root, arch="vgg11", method="l1-norm", prune_ratio=0.5, epochs=3)
    assert there.perf.amp == "bf16"
    with pytest.warns(UserWarning, match="written under amp=off"):
        rec = run_experiment(there, progress=False, regimes=("scratch-e",))[-1]
    assert rec["regime"] == "scratch-e" and rec["metrics"]["resumed_at_epoch"] == 1
    assert len(rec["metrics"]["curve"]) == 3 and not states[0].exists()
    assert rec["metrics"]["perf"]["amp"] == rec["config"]["perf"]["amp"] == "off"  # the record names what it used
