"""torchvision's ImageNet weights for the criteria notebook (Huang et al.'s Figure 1), without the network: a
random state_dict put where torchvision looks ($TORCH_HOME/hub/checkpoints) is what the loader reads, and a missing
file gives the clear error naming the weights and the cache folder."""
from __future__ import annotations

import pytest
import torch
import torchvision

from rethink.criteria_study import trained_and_random
from rethink.experiment import configure
from rethink.models import get_model
from rethink.models.pretrained import WeightsNotFoundError, imagenet_pretrained, weights_cache_dir


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache in tmp_path, and downloads that fail as they do without internet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def fail(*a, **k):
        raise OSError("network unreachable (test)")
    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    return tmp_path / "torch"


def put_random_resnet18(torch_home) -> dict:
    """A randomly initialised torchvision ResNet-18 state_dict saved under the file name torchvision expects."""
    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None).state_dict()
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(state, folder / "resnet18-f37072fd.pth")  # the file name of ResNet18_Weights.IMAGENET1K_V1's url
    return state


def test_the_loader_reads_torchvisions_cache_file(torch_home):
    assert weights_cache_dir() == torch_home / "hub" / "checkpoints"
    state = put_random_resnet18(torch_home)
    model = imagenet_pretrained("resnet18")
    assert model.arch == "resnet18-imagenet" and model.num_classes == 1000
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_missing_weights_name_the_file_and_the_cache(torch_home):
    with pytest.raises(WeightsNotFoundError) as e:
        imagenet_pretrained("vgg16")
    msg = str(e.value)
    assert "VGG16_Weights.IMAGENET1K_V1" in msg and str(torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth") in msg
    assert "~/.cache/torch/hub/checkpoints" in msg and "network unreachable" in msg


def test_criteria_study_takes_imagenet_weights_without_data(torch_home):
    state = put_random_resnet18(torch_home)
    cfg = configure(arch="resnet18", prune_ratio=0.5, dataset="cifar10", profile="smoke", device="cpu",
                    data_root=str(torch_home / "no-data-here"))
    r = trained_and_random(cfg, 0, progress=False, weights="imagenet")
    assert torch.equal(r["trained"].get_submodule("layer3.1.conv1").weight, state["layer3.1.conv1.weight"])
    assert r["random"].arch == "resnet18-imagenet" and not torch.equal(r["random"].conv1.weight, state["conv1.weight"])
    assert r["metrics"]["best_acc"] == pytest.approx(69.758) and r["loaders"] == (None, None)
    torch.manual_seed(0)
    assert torch.equal(r["random"].conv1.weight, get_model("resnet18-imagenet").conv1.weight)  # seeded control


@pytest.mark.slow
def test_criteria_notebook_runs_on_imagenet_weights(torch_home, tmp_path):
    import json

    import nbformat
    import papermill as pm

    from conftest import ROOT
    put_random_resnet18(torch_home)  # the kernel inherits TORCH_HOME; VGG16's file (528 MB) is left out
    out = tmp_path / "criteria.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "criteria_similarity.ipynb"), str(out), cwd=str(tmp_path),
                        progress_bar=False, kernel_name="python3",
                        parameters=dict(archs=["resnet18"], weights="imagenet", profile="smoke", device="cpu",
                                        data_root=str(tmp_path / "no-data"), output_dir=str(tmp_path / "runs")))
    nb = nbformat.read(out, as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "torchvision ImageNet-1K weights" in text and "69.758" in text
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    (record,) = (tmp_path / "runs" / "records").glob("*criteria-similarity-imagenet-resnet18*.json")
    assert json.loads(record.read_text())["results"]["weights"] == "imagenet"
