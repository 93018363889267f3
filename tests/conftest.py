"""Shared fixtures: a data root with real Fashion-MNIST when the machine has it, tiny made-up datasets
otherwise, and a private checkpoint cache per test session."""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from rethink.data import SYSTEM_FASHION_MNIST

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never read or write the user's checkpoint cache."""
    os.environ["RETHINK_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file as in (Fashion-)MNIST: magic, dims, uint8 data; gzip-compressed when path ends in .gz."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_fashion_folder(folder: Path, n_train: int = 256, n_test: int = 128, gz: bool = True, seed: int = 0):
    """A Fashion-MNIST-shaped folder whose labels are learnable (class = brightness band)."""
    rng = np.random.default_rng(seed)
    sfx = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n)
        x = (rng.random((n, 28, 28)) * 40 + y[:, None, None] * 20).clip(0, 255)
        write_idx(folder / f"{split}-images-idx3-ubyte{sfx}", x)
        write_idx(folder / f"{split}-labels-idx1-ubyte{sfx}", y)
    return folder


def smoke_config(tmp_path, fashion_root, **kw):
    """``configure`` for a run of seconds: Fashion-MNIST, smoke profile, CPU, seed 0, 64 images, 2 epochs, records
    under <tmp_path>/runs; ``kw`` sets the arch, method and anything else."""
    from rethink.experiment import configure
    params = dict(dataset="fashion-mnist", profile="smoke", device="cpu", data_root=fashion_root,
                  output_dir=str(tmp_path / "runs"), seeds=[0], train_subset=64, epochs=2)
    return configure(**{**params, **kw})


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny models train faster without thread hand-offs."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory) -> str:
    """A data root holding Fashion-MNIST: the real images (Debian's package) when installed, else made-up ones."""
    root = tmp_path_factory.mktemp("data")
    if not any(Path(f).is_dir() for f in SYSTEM_FASHION_MNIST):
        make_fashion_folder(root / "FashionMNIST" / "raw", gz=False)
    return str(root)


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """The book built once per test session with warnings as errors (-W): the html folder."""
    import subprocess
    import sys
    out = tmp_path_factory.mktemp("book")
    proc = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT), "-W",
                           "--path-output", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "_build" / "html"
