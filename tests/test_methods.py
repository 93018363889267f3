"""Every registered pruning method, automatically: at a prune_ratio it returns a smaller (or sparser) model that
runs, whose widths rebuild it, and whose training hooks and scratch initialisation are usable."""
from __future__ import annotations

import warnings

import pytest
import torch

from rethink import count_flops, get_method, get_model, list_methods
from rethink.config import PruneConfig
from rethink.models import default_widths, scale_widths
from rethink.config import ConfigError
from rethink.prune import Hooks, applies_to, baseline_training, method_kwargs, needs_data


def batches(n=2, size=8):
    """A stand-in training loader: (images, labels) batches (methods that sample activations read it)."""
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("arch", ["vgg11", "resnet20"])
@pytest.mark.parametrize("method", list_methods())
def test_method_prunes_at_a_ratio(method, arch):
    torch.manual_seed(0)
    model = get_model(arch, widths=scale_widths(default_widths(arch), 0.5))
    prune = PruneConfig(method=method, prune_ratio=0.5)
    if not applies_to(method, model):  # a method for some families only says so, and refuses the others early
        with pytest.raises(ConfigError):
            baseline_training(method, arch, prune)
            get_method(method)(model, **method_kwargs(method, prune, loader=batches()))
        pytest.skip(f"{method} does not apply to {arch}")
    training = baseline_training(method, arch, prune)
    if training is not None:  # a method that trains the large model its own way says how, with hooks
        assert isinstance(training.hooks, Hooks) and training.tag and training.settings
        if training.prepare is not None:  # and changes the large model before training (SSS's block factors)
            model = training.prepare(model)
    if needs_data(method):  # a method that samples activations refuses to run without data
        with pytest.raises(ConfigError):
            method_kwargs(method, prune)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = get_method(method)(model, **method_kwargs(method, prune, loader=batches()))
    x = torch.randn(2, 3, 32, 32)
    assert result.model.eval()(x).shape == (2, 10)
    sparse = bool(result.masks)
    assert count_flops(result.model, nonzero=sparse) < count_flops(model)
    rebuilt = get_model(arch, widths=result.widths)
    rebuilt.load_state_dict(result.model.state_dict())
    assert torch.allclose(rebuilt.eval()(x), result.model(x))
    hooks = result.hooks()
    assert isinstance(hooks, Hooks) and (len(hooks.after_backward) > 0) == sparse
    fresh = result.init_scratch(get_model(arch, widths=result.widths))
    assert fresh(x).shape == (2, 10)
