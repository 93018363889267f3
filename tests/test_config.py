from __future__ import annotations

import pytest

from rethink.config import PROFILES, ConfigError, RunConfig, make_config, resolve_profile


def test_auto_profile_follows_the_device():
    assert resolve_profile("auto", "cuda") == "paper"
    assert resolve_profile("auto", "cuda:1") == "paper"
    assert resolve_profile("auto", "cpu") == "quick"
    with pytest.raises(ConfigError, match="unknown profile 'fast'.*book.*quick.*smoke"):
        resolve_profile("fast", "cpu")


def test_paper_profile_is_the_papers_protocol():
    cfg = make_config(arch="vgg16", profile="paper", device="cpu")
    assert (cfg.train.epochs, cfg.train.finetune_epochs, cfg.train.lr, cfg.train.finetune_lr) == (160, 40, 0.1, 0.001)
    assert (cfg.data.batch_size, cfg.data.test_batch_size, cfg.train.momentum, cfg.train.weight_decay) == \
        (64, 256, 0.9, 1e-4)
    assert cfg.train.milestones == (0.5, 0.75) and cfg.data.train_subset is None and cfg.width_mult == 1.0
    assert cfg.seeds == (0, 1, 2, 3, 4)


def test_overrides_beat_the_profile_and_none_keeps_it():
    cfg = make_config(arch="vgg16", profile="quick", device="cpu", epochs=3, train_subset=None, seeds=[7])
    assert cfg.train.epochs == 3 and cfg.data.train_subset == PROFILES["quick"]["train_subset"]
    assert cfg.seeds == (7,)
    with pytest.raises(ConfigError, match="unknown setting.*epochz"):
        make_config(arch="vgg16", profile="quick", device="cpu", epochz=3)


def test_round_trip_through_dict():
    cfg = make_config(arch="resnet56", profile="smoke", device="cpu", variant="resnet56-b")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    import json
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # as read back from a record


@pytest.mark.parametrize("ratio", [-0.5, 1.0])
def test_prune_ratio_range(ratio):
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        make_config(arch="vgg16", profile="smoke", device="cpu", prune_ratio=ratio)


def test_book_profile_settings_per_architecture():
    vgg = make_config(arch="vgg16", profile="book", device="cpu")
    r56 = make_config(arch="resnet56", profile="book", device="cpu")
    r110 = make_config(arch="resnet110", profile="book", device="cpu", width_mult=0.75)
    assert vgg.width_mult == 0.25 and r56.width_mult == 0.5 and r110.width_mult == 0.75  # an override still wins
    assert (vgg.train.epochs, vgg.train.finetune_epochs, r56.train.epochs, r56.train.finetune_epochs) == (60, 15, 30, 8)
    assert (r56.train.warmup_epochs, r110.train.warmup_epochs, vgg.train.warmup_epochs) == (0, 1, 0)
    assert vgg.data.test_subset is None and len(vgg.seeds) >= 3  # the full test set, 3+ seeds
    assert make_config(arch="resnet110", profile="paper", device="cpu").train.warmup_epochs == 0  # the papers' code


def test_arch_settings_longer_keys_win():
    from rethink.config import arch_settings
    table = {"resnet": dict(a=1, b=1), "resnet110": dict(b=2)}
    assert arch_settings(table, "resnet110") == dict(a=1, b=2)
    assert arch_settings(table, "resnet56") == dict(a=1, b=1)
    assert arch_settings(table, "vgg16") == {}


def test_cpu_speed_settings_follow_bf16_support(monkeypatch):
    from rethink.config import PerfConfig, resolve_perf
    monkeypatch.setenv("RETHINK_CPU_BF16", "1")
    fast = resolve_perf(PerfConfig(), "cpu")
    assert (fast.amp, fast.channels_last, fast.cudnn_benchmark) == ("bf16", True, False)
    assert resolve_perf(PerfConfig(amp="off", channels_last=False), "cpu").amp == "off"  # explicit values win
    monkeypatch.setenv("RETHINK_CPU_BF16", "0")
    slow = resolve_perf(PerfConfig(), "cpu")
    assert (slow.amp, slow.channels_last) == ("off", False)
    assert resolve_perf(PerfConfig(), "cuda").amp == "bf16"


def test_cpu_bf16_detection_asks_torch(monkeypatch):
    import torch
    from rethink.config import cpu_has_bf16
    monkeypatch.delenv("RETHINK_CPU_BF16", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_has_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_bf16() is True


def test_the_book_profile_trains_sfp_longer_and_only_sfp():
    # SFP's large model was not converged at 30 or 60 epochs (book/convergence/): its runs train 120, fine-tune 30;
    # the plain ResNet-56 rows (and SSS's) keep 30 and 8
    from rethink.experiment import configure
    cfg = {m: configure(method=m, arch="resnet56", prune_ratio=0.3, profile="book", device="cpu",
                        dataset="fashion-mnist") for m in ("sfp", "l1-norm", "sss")}
    assert (cfg["sfp"].train.epochs, cfg["sfp"].train.finetune_epochs) == (120, 30)
    assert all((cfg[m].train.epochs, cfg[m].train.finetune_epochs) == (30, 8) for m in ("l1-norm", "sss"))
    # ResNet-20 (the lottery's large model) and ResNet-110 were not converged at 30 epochs: 60; ResNet-56 keeps 30
    from rethink.config import make_config
    cfgs = [make_config(arch=a, dataset="fashion-mnist", profile="book", device="cpu")
            for a in ("resnet20", "resnet56", "resnet110")]
    assert [(c.train.epochs, c.train.finetune_epochs, c.train.warmup_epochs) for c in cfgs] == [
        (60, 15, 0), (30, 8, 0), (60, 15, 1)]
    assert cfgs[2].perf.compile == "default"  # ResNet-110 keeps every "resnet" setting beside its own
    # an explicit setting still wins
    assert configure(method="sfp", arch="resnet56", prune_ratio=0.3, profile="book", device="cpu",
                     dataset="fashion-mnist", epochs=10).train.epochs == 10
