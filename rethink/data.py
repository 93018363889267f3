"""Datasets by name, held as uint8 tensors on the training device, augmented there per batch.

The whole training set of CIFAR or Fashion-MNIST is small (150 MB as uint8), so it is loaded once and kept on
the device; normalisation, pad-4 random crop and horizontal flip run as tensor ops on each batch, seeded.  On a
CPU this is faster than PIL transforms in a DataLoader, and on a GPU it keeps the device busy.  The batches are
the same ``(images, labels)`` a DataLoader gives.

ImageNet (``imagenet``) is too large for that: it is read from ``<data root>/imagenet/{train,val}`` as torchvision
``ImageFolder`` datasets (one folder per class) through a DataLoader with the papers' transforms
(:func:`imagenet_transform`).
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn.functional as F

from .config import DataConfig, known

# Debian's dataset-fashion-mnist package puts the (recompressed) idx files here.
SYSTEM_FASHION_MNIST = ("/usr/share/datasets/fashion-mnist",)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk and could not be downloaded."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    mean: tuple
    std: tuple
    # in memory: (root, train) -> (uint8 images N,C,32,32, int64 labels N); a folder dataset: (root, train) -> a
    # torchvision Dataset of (normalised image tensor, label)
    load: Callable[[Path, bool], Any]
    image_size: int = 32   # side of the square training input (FLOPs are counted at this size)
    folder: bool = False   # read from image files through a DataLoader, not held in memory as a tensor


def data_root(root: Optional[str] = None) -> Path:
    """``root``, else $RETHINK_DATA, else ./.data."""
    return Path(root or os.environ.get("RETHINK_DATA") or ".data").expanduser()


def _torchvision_cifar(cls_name: str, how: str):
    def load(root: Path, train: bool):
        import torchvision
        cls = getattr(torchvision.datasets, cls_name)
        try:
            ds = cls(str(root), train=train, download=False)
        except RuntimeError:
            try:  # not on disk: download where the network allows it
                ds = cls(str(root), train=train, download=True)
            except Exception as e:  # noqa: BLE001 (URLError, OSError, RuntimeError all mean "not available")
                raise DatasetNotFoundError(
                    f"{cls_name} not found under {root.resolve()} and the download failed ({e}). {how}") from None
        x = torch.as_tensor(ds.data).permute(0, 3, 1, 2).contiguous()  # N,32,32,3 -> N,3,32,32
        return x, torch.as_tensor(ds.targets, dtype=torch.int64)
    return load


def _fashion_mnist(root: Path, train: bool):
    import torchvision
    raw = root / "FashionMNIST" / "raw"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    looked = [str(raw.resolve())]
    if not all((raw / n).exists() for n in names):
        for folder in SYSTEM_FASHION_MNIST:
            looked.append(folder)
            if all((Path(folder) / (n + ".gz")).exists() for n in names):
                # Debian recompressed the .gz files, so torchvision's md5 check of the archives fails; the idx
                # files inside are the originals, and torchvision reads decompressed idx files without a check.
                # Written atomically under a name of its own: the sweep's jobs may all find the files missing
                # and decompress them at once.
                from .records import atomic_write_bytes
                for n in names:
                    with gzip.open(Path(folder) / (n + ".gz")) as src:
                        atomic_write_bytes(raw / n, src.read())
                break
    try:
        ds = torchvision.datasets.FashionMNIST(str(root), train=train, download=False)
    except RuntimeError:
        try:
            ds = torchvision.datasets.FashionMNIST(str(root), train=train, download=True)
        except Exception as e:  # noqa: BLE001
            raise DatasetNotFoundError(
                f"Fashion-MNIST not found (looked in {', '.join(looked)}) and the download failed ({e}). "
                "Get it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four idx files "
                f"in {raw.resolve()}, or run where torchvision can download it.") from None
    x = F.pad(ds.data, (2, 2, 2, 2)).unsqueeze(1)  # 28x28 -> 32x32 (zero border), one channel
    return x.contiguous(), ds.targets.to(torch.int64)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def imagenet_transform(train: bool):
    """The papers' ImageNet transforms (torchvision's ImageNet example, used by Liu et al.'s code): training
    RandomResizedCrop(224) + RandomHorizontalFlip; test Resize(256) + CenterCrop(224); then ToTensor and Normalize
    with the ImageNet mean and std."""
    import torchvision.transforms as T
    aug = [T.RandomResizedCrop(224), T.RandomHorizontalFlip()] if train else [T.Resize(256), T.CenterCrop(224)]
    return T.Compose(aug + [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


IMAGENET_HOW = ("ImageNet cannot be downloaded automatically (its licence asks for a registration): get ILSVRC-2012 "
                "from https://image-net.org and arrange it as <data root>/imagenet/train/<class>/<image> and "
                "<data root>/imagenet/val/<class>/<image>, one folder per class with the same class folders in both "
                "(e.g. the validation images sorted into class folders by the valprep.sh script of PyTorch's ImageNet "
                "example), or set RETHINK_DATA / the data root parameter to the folder that holds imagenet/.")


def _imagenet(root: Path, train: bool):
    import torchvision
    split = root / "imagenet" / ("train" if train else "val")
    if not split.is_dir():
        raise DatasetNotFoundError(f"ImageNet not found: looked for the folder {split.resolve()}. {IMAGENET_HOW}")
    try:
        ds = torchvision.datasets.ImageFolder(str(split), transform=imagenet_transform(train))
    except FileNotFoundError as e:  # no class folders, or class folders without images
        raise DatasetNotFoundError(f"ImageNet folder {split.resolve()} holds no images in class folders ({e}). "
                                   f"{IMAGENET_HOW}") from None
    other = root / "imagenet" / ("val" if train else "train")
    if other.is_dir():  # labels are indices of the sorted class folders: both splits must have the same ones
        classes = sorted(d.name for d in other.iterdir() if d.is_dir())
        if classes != ds.classes:
            raise DatasetNotFoundError(
                f"the class folders of {split.resolve()} and {other.resolve()} differ ({len(ds.classes)} vs "
                f"{len(classes)}, first difference: "
                f"{next((a, b) for a, b in zip(ds.classes + [None], classes + [None]) if a != b)}); the labels would "
                f"not match. {IMAGENET_HOW}")
    return ds


_CIFAR_HOW = ("Download it on a machine with internet (torchvision does it on first use) and copy the folder "
              "{folder} under the data root, or set RETHINK_DATA / the data root parameter to where it is.")

DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", 10, 3, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010),
                           _torchvision_cifar("CIFAR10", _CIFAR_HOW.format(folder="cifar-10-batches-py"))),
    "cifar100": DatasetInfo("cifar100", 100, 3, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                            _torchvision_cifar("CIFAR100", _CIFAR_HOW.format(folder="cifar-100-python"))),
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, (0.2860,), (0.3530,), _fashion_mnist),
    "imagenet": DatasetInfo("imagenet", 1000, 3, IMAGENET_MEAN, IMAGENET_STD, _imagenet, image_size=224, folder=True),
}


def get_dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise known("dataset", name, DATASETS)
    return DATASETS[name]


def list_datasets() -> list[str]:
    return sorted(DATASETS)


class TensorLoader:
    """Batches of a uint8 image tensor, normalised (and augmented when ``augment``) on its device.

    Augmentation is the papers' CIFAR one: zero-pad 4, random 32x32 crop, horizontal flip with p=0.5.  Order
    and augmentation come from a generator seeded with ``seed`` and advanced every epoch.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, batch_size: int,
                 shuffle: bool, augment: bool, seed: int = 0, device="cpu"):
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(info.mean, device=self.device).view(shape) * 255
        self.std = torch.tensor(info.std, device=self.device).view(shape) * 255
        self.generator = torch.Generator(device=self.device)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the order/augmentation stream, so that each training run sees the same batches."""
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        padded = F.pad(x, (4, 4, 4, 4)).view(b, c, (h + 8) * (w + 8))  # zero border of 4, flattened spatially
        dy = torch.randint(0, 9, (b,), device=self.device, generator=self.generator)  # window offsets 0..8
        dx = torch.randint(0, 9, (b,), device=self.device, generator=self.generator)
        flip = torch.rand(b, device=self.device, generator=self.generator) < 0.5
        # Crop and flip as one gather: output pixel (r, q) of image i reads padded pixel
        # (dy_i + r, dx_i + q), or (dy_i + r, dx_i + w-1-q) when flipped.  One pass over the batch (4x faster on
        # a CPU than indexing then flipping; the same random draws, so the same batches).
        q = torch.arange(w, device=self.device)
        cols = dx[:, None] + torch.where(flip[:, None], w - 1 - q, q)                   # b,w
        rows = dy[:, None] + torch.arange(h, device=self.device)                         # b,h
        index = (rows[:, :, None] * (w + 8) + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
        return padded.gather(2, index).view(b, c, h, w)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = (torch.randperm(n, device=self.device, generator=self.generator) if self.shuffle
                 else torch.arange(n, device=self.device))
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            x = self.images.index_select(0, idx)
            if self.augment:
                x = self._augment(x)
            yield (x.float() - self.mean) / self.std, self.labels[idx]


class _PILDataset(torch.utils.data.Dataset):
    """uint8 images served one by one as PIL images through torchvision transforms, as torchvision's CIFAR10
    dataset does (``Image.fromarray`` of an HWC uint8 array; mode 'L' for one channel)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        x = images.cpu().permute(0, 2, 3, 1).contiguous().numpy()  # N,C,H,W -> N,H,W,C
        self.data = x[..., 0] if x.shape[-1] == 1 else x
        self.targets = labels.cpu().tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def reference_transform(info: DatasetInfo, augment: bool):
    """The papers' CIFAR transforms: RandomCrop(32, padding=4) + RandomHorizontalFlip (when ``augment``), then
    ToTensor + Normalize(mean, std)."""
    import torchvision.transforms as T
    aug = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
    return T.Compose(aug + [T.ToTensor(), T.Normalize(info.mean, info.std)])


class ReferenceLoader(torch.utils.data.DataLoader):
    """A torchvision DataLoader with PIL transforms, as in the papers' code (1 worker, pinned memory on CUDA).
    Kept to compare against :class:`TensorLoader`: the throughput benchmark and the accuracy parity check."""

    def reseed(self, seed: int) -> None:
        """Restart the order/augmentation stream (workers draw their seeds from this generator)."""
        self.generator.manual_seed(seed)


def reference_loader(images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, batch_size: int,
                     shuffle: bool, augment: bool, seed: int = 0, num_workers: int = 1,
                     pin_memory: bool = False) -> ReferenceLoader:
    """The reference input pipeline over the same uint8 images (N,C,32,32) a :class:`TensorLoader` takes; batches
    are CPU ``(images, labels)``, moved to the device by the training loop.  Seeded through the DataLoader's
    generator, which seeds the worker processes, so the same seed gives the same batches (with workers >= 1)."""
    ds = _PILDataset(images, labels, reference_transform(info, augment))
    return ReferenceLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                           pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))


def _subset(x: torch.Tensor, y: torch.Tensor, n: Optional[int]):
    """The first n of a fixed permutation (seed 0): every run seed sees the same images."""
    if n is None or n >= len(y):
        return x, y
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:n]
    return x[idx], y[idx]


def _arrays(cfg: DataConfig):
    """(dataset info, (train images, labels), (test images, labels)) of ``cfg``, subsets applied."""
    info = get_dataset_info(cfg.dataset)
    root = data_root(cfg.root)
    return (info, _subset(*info.load(root, True), cfg.train_subset),
            _subset(*info.load(root, False), cfg.test_subset))


def _folder_subset(ds, n: Optional[int]):
    """The first n of a fixed permutation (seed 0) of a folder dataset, as :func:`_subset` does for tensors."""
    if n is None or n >= len(ds):
        return ds
    return torch.utils.data.Subset(ds, torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n].tolist())


def default_workers() -> int:
    """DataLoader worker processes for a folder dataset: the CPU cores, at most 8 ($RETHINK_WORKERS overrides)."""
    env = os.environ.get("RETHINK_WORKERS")
    return int(env) if env else min(8, os.cpu_count() or 1)


def folder_loaders(cfg: DataConfig, device="cpu", seed: int = 0, num_workers: Optional[int] = None):
    """(train loader, test loader, dataset info) of a folder dataset (ImageNet): DataLoaders over its files with
    the papers' transforms, subsets applied; CPU batches, which the training loop moves to the device.  The
    training order and augmentation are seeded through the loader's generator (``reseed``), which seeds the worker
    processes; with ``num_workers=0`` the transforms draw from torch's global generator instead."""
    info = get_dataset_info(cfg.dataset)
    root = data_root(cfg.root)
    train_ds = _folder_subset(info.load(root, True), cfg.train_subset)
    test_ds = _folder_subset(info.load(root, False), cfg.test_subset)
    workers = default_workers() if num_workers is None else num_workers
    pin = str(device).startswith("cuda")
    train = ReferenceLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, num_workers=workers, pin_memory=pin,
                            generator=torch.Generator().manual_seed(seed))
    test = ReferenceLoader(test_ds, batch_size=cfg.test_batch_size, shuffle=False, num_workers=workers,
                           pin_memory=pin, generator=torch.Generator().manual_seed(seed))
    return train, test, info


def get_loaders(cfg: DataConfig, device="cpu", seed: int = 0, num_workers: Optional[int] = None
                ) -> tuple[TensorLoader, TensorLoader, DatasetInfo]:
    """(train loader, test loader, dataset info) for ``cfg``; the training order is seeded by ``seed``.  A folder
    dataset (ImageNet) gets DataLoaders (:func:`folder_loaders`, ``num_workers`` processes), the others a
    :class:`TensorLoader` over the whole set on ``device``."""
    if get_dataset_info(cfg.dataset).folder:
        return folder_loaders(cfg, device, seed, num_workers)
    info, (xtr, ytr), (xte, yte) = _arrays(cfg)
    train = TensorLoader(xtr, ytr, info, cfg.batch_size, shuffle=True, augment=True, seed=seed, device=device)
    test = TensorLoader(xte, yte, info, cfg.test_batch_size, shuffle=False, augment=False, device=device)
    return train, test, info


def get_reference_loaders(cfg: DataConfig, device="cpu", seed: int = 0, num_workers: int = 1):
    """:func:`get_loaders` with the reference pipeline (:func:`reference_loader`) over the same images (a folder
    dataset has only that pipeline)."""
    if get_dataset_info(cfg.dataset).folder:
        return folder_loaders(cfg, device, seed, num_workers)
    info, (xtr, ytr), (xte, yte) = _arrays(cfg)
    pin = str(device).startswith("cuda")
    train = reference_loader(xtr, ytr, info, cfg.batch_size, shuffle=True, augment=True, seed=seed,
                             num_workers=num_workers, pin_memory=pin)
    test = reference_loader(xte, yte, info, cfg.test_batch_size, shuffle=False, augment=False,
                            num_workers=num_workers, pin_memory=pin)
    return train, test, info
