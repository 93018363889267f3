"""Regression-based channel pruning (He et al. 2017): the LASSO solver against its closed form and its optimality
conditions, recovery of a planted sparse set of channels, the least-squares reconstruction, and the whole method
(widths, per-layer errors in the record)."""
from __future__ import annotations

import pytest
import torch

from conftest import smoke_config
from rethink import get_method, get_model
from rethink.experiment import run_experiment
from rethink.models import default_widths, scale_widths
from rethink.prune.reconstruct import lasso, least_squares, relative_error
from rethink.prune.regression import gram, select_channels
from rethink.prune.select import n_keep

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small models run faster on one thread


def test_lasso_equals_the_closed_form_of_an_orthogonal_design():
    # G = diag(d): beta_i = soft(c_i, lam) / d_i
    d = torch.tensor([1.0, 2.0, 0.5, 4.0, 3.0], dtype=torch.float64)
    c = torch.tensor([3.0, -0.5, 1.2, -6.0, 0.9], dtype=torch.float64)
    lam = 1.0
    want = torch.sign(c) * (c.abs() - lam).clamp_min(0) / d
    assert torch.allclose(lasso(torch.diag(d), c, lam), want, atol=1e-8)


def test_lasso_meets_its_optimality_conditions():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(60, 12, generator=g, dtype=torch.float64)
    y = torch.randn(60, generator=g, dtype=torch.float64)
    gm, c = a.T @ a, a.T @ y
    lam = 0.3 * float(c.abs().max())
    beta = lasso(gm, c, lam, max_iter=20000, tol=1e-12)
    grad = c - gm @ beta  # KKT: grad_i = lam sign(beta_i) where beta_i != 0, |grad_i| <= lam where beta_i == 0
    nz = beta != 0
    assert 0 < int(nz.sum()) < 12
    assert torch.allclose(grad[nz], lam * torch.sign(beta[nz]), atol=1e-6 * lam)
    assert bool((grad[~nz].abs() <= lam * (1 + 1e-6)).all())


def test_gram_is_that_of_the_channels_terms():
    g = torch.Generator().manual_seed(0)
    patches, weight, y = torch.randn(30, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g), torch.randn(30, 3, generator=g)
    a = torch.einsum("sck,ock->cso", patches.double(), weight.double()).reshape(5, -1).T  # column c: Z_c flattened
    gm, corr = gram(patches, weight, y)
    assert torch.allclose(gm, a.T @ a) and torch.allclose(corr, a.T @ y.double().flatten())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lasso_recovers_a_planted_sparse_set_of_channels(seed):
    g = torch.Generator().manual_seed(seed)
    s, c, kk, o = 400, 12, 9, 6
    patches = torch.randn(s, c, kk, generator=g)
    weight = torch.randn(o, c, kk, generator=g)
    planted = torch.randperm(c, generator=g)[:4].sort().values
    y = torch.einsum("sck,ock->so", patches[:, planted], weight[:, planted])  # only the planted channels matter
    gm, corr = gram(patches, weight, y)
    kept, lam = select_channels(gm, corr, 4)
    assert kept.tolist() == planted.tolist() and lam >= 0
    # and least squares on the kept channels reconstructs y exactly
    xk = patches[:, kept].flatten(1)
    assert relative_error(y, xk.double() @ least_squares(xk, y)) < 1e-10


def narrow(arch, mult=0.25):
    torch.manual_seed(0)
    return get_model(arch, widths=scale_widths(default_widths(arch), mult))


def batches(n=2, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("arch,ratio", [("vgg11", 0.5), ("resnet20", 0.5)])
def test_prunes_to_the_asked_widths_and_reconstruction_lowers_each_layers_error(arch, ratio):
    model = narrow(arch, 0.5)
    result = get_method("channel-pruning")(model, prune_ratio=ratio, loader=batches(4), n_batches=4, n_locations=8)
    mods = dict(model.named_modules())
    for layer in model.conv_layers():
        c = mods[layer.conv].out_channels
        assert result.widths[layer.width_index] == (n_keep(c, ratio)[0] if layer.prunable else c)
    assert result.model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    report = result.report
    assert report[0]["error_unpruned"] == pytest.approx(0.0, abs=1e-10)  # nothing pruned before the first layer
    for r in report:
        assert r["error_reconstructed"] <= r["error_pruned"] + 1e-12
    assert all(r["error_reconstructed"] < r["error_pruned"] for r in report)
    # the pruned model's next layer holds the least-squares weights, not the sliced original ones
    layer = next(layer for layer in model.conv_layers() if layer.id == report[-1]["layer"])  # its consumer keeps
    # every output channel (the classifier, or a block's second conv)
    consumer = layer.consumers[0]
    sliced = mods[consumer].weight[:, result.keep[layer.id]]
    assert not torch.allclose(dict(result.model.named_modules())[consumer].weight, sliced)


def test_experiment_records_the_errors(tmp_path, fashion_root):
    cfg = smoke_config(tmp_path, fashion_root, arch="resnet20", method="channel-pruning", prune_ratio=0.5,
                       epochs=1, width_mult=0.5)
    records = run_experiment(cfg, progress=False)
    report = records[1]["prune"]["report"]
    assert len(report) == 9 and {"error_pruned", "error_reconstructed", "error_unpruned"} <= set(report[0])
