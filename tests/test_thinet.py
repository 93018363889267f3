"""ThiNet: the greedy rule against brute force on a real conv, the least-squares rescaling, layer-by-layer pruning
to the asked widths, and the method through the experiment (it gets the training loader)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from conftest import smoke_config
from rethink import count_flops, get_method, get_model
from rethink.config import ConfigError
from rethink.experiment import run_experiment
from rethink.models import default_widths, scale_widths
from rethink.prune.reconstruct import consumer_patches, consumer_weight
from rethink.prune.select import n_keep
from rethink.prune.surgery import mask_filters
from rethink.prune.thinet import greedy_remove, scale_kept

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small models run faster on one thread


def batches(n=2, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def all_contributions(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """z (every (image, position, output channel), input channels) through the method's own sampling path, with
    every position taken."""
    layer = nn.Sequential(conv)
    patches = consumer_patches(layer, "0", [x], n_locations=10 ** 6, generator=torch.Generator().manual_seed(0))
    w = consumer_weight(conv).detach()
    return torch.einsum("sck,ock->soc", patches, w).reshape(-1, conv.in_channels)


def brute_force_greedy(conv: nn.Conv2d, x: torch.Tensor, n_remove: int) -> list[int]:
    """The paper's Algorithm 1 evaluated literally: at each step try every remaining channel, zero the channels
    T + {i} of the input, run the conv and measure the squared change of its whole output."""
    with torch.no_grad():
        y = conv(x).double()
        removed = []
        for _ in range(n_remove):
            best, best_cost = None, float("inf")
            for i in range(conv.in_channels):
                if i in removed:
                    continue
                xz = x.clone()
                xz[:, removed + [i]] = 0
                cost = float(((y - conv(xz).double()) ** 2).sum())
                if best is None or cost < best_cost - 1e-9 * best_cost:  # ties: the lowest index
                    best, best_cost = i, cost
            removed.append(best)
    return removed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_choice_equals_brute_force_on_a_tiny_layer(seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(6, 3, 3, padding=1, bias=False)
    x = torch.randn(2, 6, 5, 5) * torch.linspace(0.2, 2.0, 6).view(1, 6, 1, 1)  # channels of unequal weight
    with torch.no_grad():  # channels 0 and 1 add up (the same input, the same weights), channel 2 is independent
        conv.weight[:, 1] = conv.weight[:, 0]  # and a little larger: removing 0 then 2 changes the output less
        conv.weight[:, 2] = conv.weight[:, 0]  # than 0 then 1, which a rule scoring channels one by one misses
    x[:, 0] = 0.3 * torch.randn(2, 5, 5)
    x[:, 1] = x[:, 0] + 0.01 * torch.randn(2, 5, 5)
    x[:, 2] = 0.4 * torch.randn(2, 5, 5)
    z = all_contributions(conv, x)
    with torch.no_grad():  # the contributions add up to the conv's output: y = sum_c z_c
        assert torch.allclose(z.sum(1), conv(x).permute(0, 2, 3, 1).reshape(-1), atol=1e-5)
    for n_remove in (1, 3, 5):
        assert greedy_remove(z, n_remove) == brute_force_greedy(conv, x, n_remove)


def test_least_squares_rescaling_recovers_a_removed_channel_proportional_to_a_kept_one():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 4, generator=g)
    z[:, 3] = 2 * z[:, 1]  # channel 3 carries what channel 1 does, twice
    keep = torch.tensor([0, 1, 2])
    w = scale_kept(z, keep)
    assert torch.allclose(w, torch.tensor([1.0, 3.0, 1.0], dtype=w.dtype), atol=1e-6)
    assert greedy_remove(torch.randn(50, 3, generator=g), 0) == []


def narrow(arch, mult=0.25):
    torch.manual_seed(0)
    return get_model(arch, widths=scale_widths(default_widths(arch), mult))


@pytest.mark.parametrize("arch,ratio", [("vgg11", 0.5), ("resnet20", 0.3)])
def test_prunes_every_layer_to_the_asked_width_and_least_squares_lowers_the_error(arch, ratio):
    model = narrow(arch)
    result = get_method("thinet")(model, prune_ratio=ratio, loader=batches(), n_batches=2, n_locations=4)
    mods = dict(model.named_modules())
    prunable = [layer for layer in model.conv_layers() if layer.prunable]
    for layer in model.conv_layers():
        c = mods[layer.conv].out_channels
        want = n_keep(c, ratio)[0] if layer.prunable else c
        assert result.widths[layer.width_index] == want
    assert result.model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert count_flops(result.model) < count_flops(model)
    assert [r["layer"] for r in result.report] == [layer.id for layer in prunable]  # layer by layer, in order
    for r in result.report:
        assert r["kept"] == len(result.keep[r["layer"]]) and 0 <= r["error_reconstructed"] <= r["error_pruned"] + 1e-12
    assert any(r["error_reconstructed"] < 0.99 * r["error_pruned"] for r in result.report)


@pytest.mark.parametrize("method", ["thinet", "channel-pruning"])
@pytest.mark.parametrize("arch,lid", [("vgg11", 3), ("vgg11", 8), ("resnet20", 4)])
def test_the_pruned_model_is_the_masked_model_with_the_refitted_next_layer(method, arch, lid):
    # surgery equivalence (DESIGN rule 2): the removed filters zeroed in the large model and the next layer's kept
    # input channels set to the method's refitted weights give the pruned model's outputs
    model = narrow(arch, 0.5).eval()
    result = get_method(method)(model, ratios={lid: 0.5}, loader=batches(), n_batches=2, n_locations=4)
    consumer = next(layer for layer in model.conv_layers() if layer.id == lid).consumers[0]
    masked = mask_filters(copy.deepcopy(model), result.keep)
    with torch.no_grad():
        dict(masked.named_modules())[consumer].weight[:, result.keep[lid]] = dict(
            result.model.named_modules())[consumer].weight
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(result.model.eval()(x), masked(x), atol=1e-5)
    assert not torch.allclose(result.model(x), mask_filters(copy.deepcopy(model), result.keep)(x), atol=1e-5)


def test_a_variant_gives_its_widths_and_the_method_needs_data():
    model = narrow("resnet56", 0.5)
    result = get_method("thinet")(model, variant="resnet56-a", loader=batches(1), n_batches=1, n_locations=2)
    assert result.widths == get_method("l1-norm")(model, variant="resnet56-a").widths
    with pytest.raises(ConfigError, match="loader"):
        get_method("thinet")(model, prune_ratio=0.5)
    # or a ratio per layer: only those layers change
    one = get_method("thinet")(model, ratios={4: 0.5, 30: 0.25}, loader=batches(1), n_batches=1, n_locations=2)
    changed = {i for i, (a, b) in enumerate(zip(model.widths, one.widths)) if a != b}
    assert changed == {3, 29} and one.widths[3] == 4 and one.widths[29] == 12
    with pytest.raises(ConfigError, match="not prunable"):
        get_method("thinet")(model, ratios={3: 0.5}, loader=batches(1))


def test_experiment_gives_the_method_the_training_loader(tmp_path, fashion_root):
    cfg = smoke_config(tmp_path, fashion_root, arch="vgg11", method="thinet", prune_ratio=0.5, epochs=1,
                       width_mult=0.25)
    records = run_experiment(cfg, progress=False)
    base, ft = records[0], records[1]
    assert ft["model"]["flops"] < base["model"]["flops"]
    report = ft["prune"]["report"]
    assert len(report) == 8 and all(r["error_reconstructed"] <= r["error_pruned"] + 1e-12 for r in report)
