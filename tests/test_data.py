"""Dataset loading through the real code paths: torchvision's readers on files the tests make, Debian's
recompressed Fashion-MNIST folder, and clear errors for what is missing."""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from conftest import make_fashion_folder
from rethink import data
from rethink.config import ConfigError, DataConfig
from rethink.data import DatasetNotFoundError, get_dataset_info, get_loaders


@pytest.fixture
def no_download(monkeypatch):
    """Make any download attempt fail as it does on a machine without internet."""
    def fail(*a, **k):
        raise OSError("network unreachable (test)")
    monkeypatch.setattr(torchvision.datasets.utils, "download_url", fail)
    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", fail)
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", fail)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", fail)


def test_fashion_mnist_from_a_recompressed_system_folder(tmp_path, monkeypatch, no_download):
    system = make_fashion_folder(tmp_path / "system", n_train=50, n_test=20, gz=True)
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", (str(system),))
    root = tmp_path / "root"
    train, test, info = get_loaders(DataConfig(dataset="fashion-mnist", root=str(root), batch_size=16))
    assert (root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists()  # decompressed copy
    assert not list((root / "FashionMNIST" / "raw").glob("*.part"))
    x, y = next(iter(train))
    assert x.shape == (16, 1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(train.labels) == 50 and len(test.labels) == 20
    # 28x28 padded to 32x32 with a zero border: unaugmented test images have the normalised zero there
    xt, _ = next(iter(test))
    zero = (0 - info.mean[0]) / info.std[0]
    assert torch.allclose(xt[:, :, :2, :], torch.full_like(xt[:, :, :2, :], zero), atol=1e-5)


def test_two_jobs_decompress_the_system_folder_at_once(tmp_path, monkeypatch, no_download):
    """The sweep's jobs start together on a fresh machine: both find the idx files missing and decompress them;
    neither may trip over the other's half-written file."""
    import gzip
    import threading
    system = make_fashion_folder(tmp_path / "system", n_train=50, n_test=20, gz=True)
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", (str(system),))
    together = threading.Barrier(2, timeout=20)
    real_open = gzip.open

    class Together:  # both jobs read each file at the same moment, their output files already open
        def __init__(self, *a, **k):
            self.f, self.waited = real_open(*a, **k), False

        def read(self, *a):
            if not self.waited:
                self.waited = True
                together.wait()
            return self.f.read(*a)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(data.gzip, "open", Together)
    errors, labels = [], []

    def job():
        try:
            labels.append(len(data._fashion_mnist(tmp_path / "root", True)[1]))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and labels == [50, 50]
    assert not list((tmp_path / "root" / "FashionMNIST" / "raw").glob("*.part"))


def test_missing_fashion_mnist_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch, no_download):
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", (str(tmp_path / "nowhere"),))
    with pytest.raises(DatasetNotFoundError) as e:
        get_loaders(DataConfig(dataset="fashion-mnist", root=str(tmp_path / "root")))
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg and str(tmp_path / "root") in msg and "apt-get install" in msg


def test_missing_cifar_says_where_and_how(tmp_path, no_download):
    with pytest.raises(DatasetNotFoundError, match=f"CIFAR10 not found under {tmp_path}.*cifar-10-batches-py"):
        get_loaders(DataConfig(dataset="cifar10", root=str(tmp_path)))


def test_unknown_dataset_lists_known():
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'.*cifar10.*fashion-mnist"):
        get_dataset_info("mnist")


def _write_cifar(folder: Path, cls, n: int):
    """Batches in the CIFAR python format; returns the (file, md5) lists torchvision checks."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lists = {}
    for attr in ("train_list", "test_list"):
        entries = []
        for fname, _ in getattr(cls, attr):
            label_key = "labels" if cls is torchvision.datasets.CIFAR10 else "fine_labels"
            batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                     label_key: rng.integers(0, 10, n).tolist()}
            p = folder / fname
            p.write_bytes(pickle.dumps(batch))
            entries.append([fname, hashlib.md5(p.read_bytes()).hexdigest()])
        lists[attr] = entries
    meta = folder / cls.meta["filename"]
    meta.write_bytes(pickle.dumps({cls.meta["key"]: [f"c{i}" for i in range(10)]}))
    lists["meta"] = dict(cls.meta, md5=hashlib.md5(meta.read_bytes()).hexdigest())
    return lists


@pytest.mark.parametrize("name,cls", [("cifar10", torchvision.datasets.CIFAR10),
                                      ("cifar100", torchvision.datasets.CIFAR100)])
def test_cifar_through_torchvision_reader(tmp_path, monkeypatch, name, cls, no_download):
    lists = _write_cifar(tmp_path / cls.base_folder, cls, n=8)
    for attr, value in lists.items():  # our files' checksums instead of the real ones
        monkeypatch.setattr(cls, attr, value)
    train, test, info = get_loaders(DataConfig(dataset=name, root=str(tmp_path), batch_size=4, train_subset=6),
                                    seed=1)
    n_batches = len(cls.train_list)
    assert len(train.labels) == 6 and len(test.labels) == 8 * len(cls.test_list)
    assert train.images.shape[1:] == (3, 32, 32) and info.in_channels == 3
    assert n_batches >= 1
    # the images are the pickled rows, reshaped as CIFAR stores them (channel planes of 32x32)
    raw = pickle.loads((tmp_path / cls.base_folder / cls.test_list[0][0]).read_bytes())["data"]
    assert torch.equal(test.images[0], torch.as_tensor(raw[0]).view(3, 32, 32))


def test_training_order_is_seeded():
    x = torch.randint(0, 256, (40, 1, 32, 32), dtype=torch.uint8)
    y = torch.arange(40)
    info = get_dataset_info("fashion-mnist")
    a = [b for _, b in data.TensorLoader(x, y, info, 8, shuffle=True, augment=True, seed=3)]
    b = [b for _, b in data.TensorLoader(x, y, info, 8, shuffle=True, augment=True, seed=3)]
    c = [b for _, b in data.TensorLoader(x, y, info, 8, shuffle=True, augment=True, seed=4)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))
    assert sorted(torch.cat(a).tolist()) == list(range(40))  # every image once per epoch


def test_real_fashion_mnist_when_installed(fashion_root):
    if not any(Path(f).is_dir() for f in data.SYSTEM_FASHION_MNIST):
        pytest.skip("Debian's dataset-fashion-mnist is not installed (CI installs it)")
    train, test, _ = get_loaders(DataConfig(dataset="fashion-mnist", root=fashion_root))
    assert train.images.shape == (60000, 1, 32, 32) and test.images.shape == (10000, 1, 32, 32)
    assert sorted(train.labels.unique().tolist()) == list(range(10))
