from __future__ import annotations

import pytest

from rethink.config import PROFILES, ConfigError, RunConfig, make_config, resolve_profile


def test_auto_profile_follows_the_device():
    assert resolve_profile("auto", "cuda") == "paper"
    assert resolve_profile("auto", "cuda:1") == "paper"
    assert resolve_profile("auto", "cpu") == "quick"
    with pytest.raises(ConfigError, match="unknown profile 'fast'.*quick.*smoke"):
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
