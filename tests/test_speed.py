"""Issue 5, fast on a GPU without changing what is computed: the device-resident loader against the papers'
torchvision pipeline, and the speed settings (bf16 autocast, channels_last, torch.compile) on a CPU."""
from __future__ import annotations

import copy

import pytest
import torch

from rethink.config import ConfigError, PerfConfig, RunConfig, make_config, resolve_perf
from rethink.data import DATASETS, DatasetInfo, TensorLoader, reference_loader, reference_transform
from rethink.models import default_widths, get_model, scale_widths
from rethink.train import Schedule, train, train_one_epoch

CIFAR = DATASETS["cifar10"]
GREY = DATASETS["fashion-mnist"]


def images(n: int, c: int = 3, seed: int = 0) -> torch.Tensor:
    """Random uint8 images: every 32x32 window of one is distinct from its other windows and their mirrors."""
    return torch.randint(0, 256, (n, c, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def to_uint8(batch: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """Undo ToTensor + Normalize: back to the 0..255 integers."""
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return (batch * std * 255 + mean * 255).round().to(torch.uint8)


def find_windows(source: torch.Tensor, out: torch.Tensor):
    """For each output image, the (dy, dx, flipped) with out == window (dy, dx) of the 4-zero-padded source,
    mirrored when flipped; fails when there is none.  source, out: N,C,32,32 uint8."""
    padded = torch.nn.functional.pad(source, (4, 4, 4, 4))
    windows = padded.unfold(2, 32, 1).unfold(3, 32, 1)  # N,C,9,9,32,32
    found = []
    for i in range(len(out)):
        for flipped, o in ((False, out[i]), (True, out[i].flip(-1))):
            eq = (windows[i] == o[:, None, None]).flatten(3).all(3).all(0)  # 9,9
            if eq.any():
                dy, dx = (int(v) for v in eq.nonzero()[0])
                found.append((dy, dx, flipped))
                break
        else:
            raise AssertionError(f"output image {i} is no padded-crop window of its source, flipped or not")
    return found


# ---- the device-resident loader -------------------------------------------------------------------------------

def test_tensor_loader_crops_real_windows_and_flips_half():
    x = images(1200, c=1)
    y = torch.arange(len(x))  # labels = source index, to find each output's source
    loader = TensorLoader(x, y, GREY, batch_size=400, shuffle=True, augment=True, seed=3)
    outs, labels = zip(*loader)
    out, idx = to_uint8(torch.cat(outs), GREY), torch.cat(labels)
    found = find_windows(x[idx], out)
    flip_rate = sum(f for _, _, f in found) / len(found)
    assert 0.44 < flip_rate < 0.56  # binomial sd 0.014 at n=1200
    assert {dy for dy, _, _ in found} == set(range(9)) and {dx for _, dx, _ in found} == set(range(9))
    assert any(dy != 4 or dx != 4 for dy, dx, _ in found)


def test_reference_loader_crops_real_windows_too():
    x = images(64)
    loader = reference_loader(x, torch.arange(64), CIFAR, batch_size=64, shuffle=True, augment=True, seed=0,
                              num_workers=0)
    out, idx = next(iter(loader))
    find_windows(x[idx], to_uint8(out, CIFAR))


def test_tensor_loader_same_seed_same_batches():
    x, y = images(300), torch.arange(300)
    a = [b for b in TensorLoader(x, y, CIFAR, 64, shuffle=True, augment=True, seed=7)]
    b = [b for b in TensorLoader(x, y, CIFAR, 64, shuffle=True, augment=True, seed=7)]
    c = [b for b in TensorLoader(x, y, CIFAR, 64, shuffle=True, augment=True, seed=8)]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][1], c[0][1])
    loader = TensorLoader(x, y, CIFAR, 64, shuffle=True, augment=True, seed=7)
    first, second = list(loader), list(loader)
    assert not torch.equal(first[0][1], second[0][1]), "each epoch must draw a new order"
    loader.reseed(7)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, loader)), "reseed restarts the stream"


def test_reference_loader_same_seed_same_batches():
    x, y = images(96), torch.arange(96)
    runs = [[b for b in reference_loader(x, y, CIFAR, 32, shuffle=True, augment=True, seed=s, num_workers=1)]
            for s in (4, 4, 5)]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(runs[0], runs[1]))
    assert not torch.equal(runs[0][0][0], runs[2][0][0])


@pytest.mark.parametrize("info", [CIFAR, GREY], ids=["3-channel", "1-channel"])
def test_normalisation_matches_torchvision(info):
    from PIL import Image
    x = images(10, c=info.in_channels)
    ours = torch.cat([b for b, _ in TensorLoader(x, torch.zeros(10, dtype=torch.int64), info, 4, shuffle=False,
                                                 augment=False)])
    t = reference_transform(info, augment=False)
    hwc = x.permute(0, 2, 3, 1).numpy()
    theirs = torch.stack([t(Image.fromarray(a[..., 0] if info.in_channels == 1 else a)) for a in hwc])
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_loader_interface_matches_a_dataloader():
    x, y = images(150), torch.randint(0, 10, (150,))
    for loader in (TensorLoader(x, y, CIFAR, 64, shuffle=True, augment=True),
                   reference_loader(x, y, CIFAR, 64, shuffle=True, augment=True, num_workers=0)):
        batches = list(loader)
        assert len(loader) == len(batches) == 3
        assert [len(b[1]) for b in batches] == [64, 64, 22]
        for xb, yb in batches:
            assert xb.dtype == torch.float32 and xb.shape[1:] == (3, 32, 32) and yb.dtype == torch.int64
        assert sorted(torch.cat([b[1] for b in batches]).tolist()) == sorted(y.tolist())


# ---- speed settings -------------------------------------------------------------------------------------------

def test_perf_auto_resolves_by_device(monkeypatch):
    monkeypatch.setenv("RETHINK_CPU_BF16", "0")  # a CPU without bf16 instructions: fp32, contiguous, eager
    assert resolve_perf(PerfConfig(), "cpu") == PerfConfig("off", False, False, "off")
    monkeypatch.setenv("RETHINK_CPU_BF16", "1")  # one with them (AVX-512 BF16, AMX): bf16 and channels_last
    assert resolve_perf(PerfConfig(), "cpu") == PerfConfig("bf16", True, False, "off")
    assert resolve_perf(PerfConfig(), "cuda:0") == PerfConfig("bf16", True, True, "off")
    assert resolve_perf(PerfConfig(amp="off", channels_last=False), "cuda") == PerfConfig("off", False, True, "off")
    with pytest.raises(ConfigError, match="bf16"):
        resolve_perf(PerfConfig(amp="fp8"), "cpu")
    with pytest.raises(ConfigError, match="reduce-overhead"):
        resolve_perf(PerfConfig(compile="fast"), "cpu")


def test_perf_settings_are_part_of_the_config(monkeypatch):
    monkeypatch.setenv("RETHINK_CPU_BF16", "0")
    cfg = make_config(arch="vgg16", profile="smoke", device="cpu", amp="bf16", compile="default")
    d = cfg.to_dict()
    assert d["perf"] == dict(amp="bf16", channels_last=False, cudnn_benchmark=False, compile="default")
    assert RunConfig.from_dict(d) == cfg
    assert make_config(arch="vgg16", profile="smoke", device="cpu").perf.amp == "off"
    old = {k: v for k, v in d.items() if k != "perf"}  # a record written before PerfConfig existed
    assert RunConfig.from_dict(old).perf == PerfConfig()


def small(arch: str, in_channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model(arch, 10, scale_widths(default_widths(arch), 0.25), in_channels)


@pytest.mark.parametrize("arch", ["vgg16", "resnet20"])
def test_bf16_autocast_on_cpu_keeps_predictions(arch):
    model = small(arch).eval()
    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    diff = (low.float() - ref).abs().max()
    assert diff <= 0.05 * ref.abs().max(), "bf16 logits must stay close to fp32 ones"
    top2 = ref.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * diff  # predictions bf16 rounding cannot flip
    assert clear.sum() > len(x) // 2
    assert torch.equal(low.argmax(1)[clear], ref.argmax(1)[clear])


@pytest.mark.parametrize("arch", ["vgg16", "resnet20"])
def test_channels_last_gives_the_same_outputs(arch):
    model = small(arch).eval()
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(nhwc(x.contiguous(memory_format=torch.channels_last)), model(x),
                                   atol=1e-4, rtol=1e-4)


def test_channels_last_training_step_matches_contiguous():
    x, y = images(128), torch.randint(0, 10, (128,), generator=torch.Generator().manual_seed(0))
    states, losses = [], []
    for channels_last in (False, True):
        model = small("resnet20")
        loader = TensorLoader(x, y, CIFAR, 64, shuffle=True, augment=True, seed=0)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        perf = PerfConfig(amp="off", channels_last=channels_last)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        losses.append(train_one_epoch(model, loader, opt, perf=perf)[0])
        states.append({k: v.contiguous() for k, v in model.state_dict().items()})
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    # two SGD steps at lr 0.1 amplify the rounding differences of the two conv layouts (~1e-6) to ~5e-4
    for k in states[0]:
        torch.testing.assert_close(states[1][k], states[0][k], atol=3e-3, rtol=1e-2, msg=k)


def test_train_with_speed_settings_keeps_hooks_and_fp32_grads():
    x, y = images(96), torch.randint(0, 10, (96,), generator=torch.Generator().manual_seed(0))
    train_loader = TensorLoader(x, y, CIFAR, 32, shuffle=True, augment=True, seed=0)
    test_loader = TensorLoader(x, y, CIFAR, 48, shuffle=False, augment=False)
    model = small("vgg16")
    seen, epochs = [], []

    def after_backward(m):
        assert m is model, "hooks get the plain model"
        seen.extend(p.grad.dtype for p in m.parameters())

    perf = PerfConfig(amp="bf16", channels_last=True)
    metrics = train(model, train_loader, test_loader, Schedule(2, 0.05), perf=perf, progress=False,
                    after_backward=[after_backward], on_epoch_end=[lambda m, e: epochs.append((m is model, e))])
    assert seen and set(seen) == {torch.float32}
    assert epochs == [(True, 0), (True, 1)]
    assert metrics["perf"] == dict(amp="bf16", channels_last=True, cudnn_benchmark=False, compile="off")
    assert metrics["threads"] == torch.get_num_threads()  # the training's own, kept with a cached large model
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in model.parameters())
    assert all(0 <= c["test_acc"] <= 100 and c["train_loss"] == c["train_loss"] for c in metrics["curve"])


def test_compile_setting_routes_forward_through_the_compiled_module(monkeypatch):
    compiled = []

    def fake_compile(model, mode=None):  # torch.compile's contract: a callable computing model's outputs
        compiled.append(mode)
        calls = []

        def forward(x):
            calls.append(len(x))
            return model(x)
        forward.calls = calls
        compiled.append(forward)
        return forward

    monkeypatch.setattr(torch, "compile", fake_compile)
    x, y = images(64), torch.randint(0, 10, (64,))
    loader = TensorLoader(x, y, CIFAR, 32, shuffle=True, augment=True)
    model = small("resnet20")
    hooked = []
    metrics = train(model, loader, loader, Schedule(1, 0.05), perf=PerfConfig(compile="reduce-overhead"),
                    progress=False, after_backward=[lambda m: hooked.append(m is model)])
    assert compiled[0] == "reduce-overhead"
    assert compiled[1].calls == [32, 32, 32, 32], "train and evaluate batches both go through the compiled forward"
    assert hooked == [True, True]
    assert metrics["perf"]["compile"] == "reduce-overhead"


def test_speed_settings_land_in_records(tmp_path, fashion_root):
    from rethink.experiment import configure, run_experiment
    cfg = configure(arch="resnet20", prune_ratio=0.5, profile="smoke", dataset="fashion-mnist", device="cpu",
                    data_root=fashion_root, output_dir=str(tmp_path), amp="bf16", channels_last=True, epochs=1,
                    finetune_epochs=1)
    records = run_experiment(cfg, progress=False)
    assert {r["regime"] for r in records} == {"baseline", "fine-tune", "scratch-e", "scratch-b"}
    want = dict(amp="bf16", channels_last=True, cudnn_benchmark=False, compile="off")
    for r in records:
        assert r["config"]["perf"] == want
        assert r["metrics"]["perf"] == want
