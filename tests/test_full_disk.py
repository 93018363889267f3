"""A full disk loses nothing: a write that fails part-way leaves the previous file intact, removes its temporary
file and says which path and why (records, checkpoints, executed notebooks all go through one writer)."""
from __future__ import annotations

import errno
import io
import os

import pytest

from rethink.records import FORMAT, WriteError, atomic_torch_save, read_record, write_record


class _FullDisk(io.BufferedWriter):
    """A file that takes the first 10 bytes, then fails as a full disk does."""

    def __init__(self, raw, err):
        super().__init__(raw)
        self.err = err

    def write(self, data):
        super().write(bytes(data)[:10])
        raise OSError(self.err, os.strerror(self.err))


@pytest.fixture
def full_disk(monkeypatch):
    def use(err=errno.ENOSPC):
        real = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: _FullDisk(real(fd, "wb", buffering=0), err))
    return use


@pytest.mark.parametrize("err, name", [(errno.ENOSPC, "ENOSPC"), (errno.EDQUOT, "EDQUOT"), (errno.EIO, "EIO")])
def test_a_failed_record_write_keeps_the_previous_record(tmp_path, full_disk, err, name):
    path = tmp_path / "records" / "r.json"
    write_record({"run_id": "r", "best_acc": 91.0}, path)
    full_disk(err)
    with pytest.raises(WriteError, match=f"could not write {path}: .*{name}.*previous file.*unchanged") as e:
        write_record({"run_id": "r", "best_acc": 12.0}, path)
    assert e.value.errno == err
    assert read_record(path) == {"run_id": "r", "best_acc": 91.0, "format": FORMAT}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary file left behind


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, full_disk):
    import torch
    path = tmp_path / "baselines" / "vgg16-x.pt"
    atomic_torch_save({"w": torch.ones(3)}, path)
    full_disk()
    with pytest.raises(WriteError, match="vgg16-x.pt.*ENOSPC"):
        atomic_torch_save({"w": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["w"].tolist() == [1.0, 1.0, 1.0]
    assert [p.name for p in path.parent.iterdir()] == ["vgg16-x.pt"]


def test_a_failed_page_write_keeps_the_executed_notebook(tmp_path, full_disk):
    import nbformat

    from rethink.book_page import make_book_page
    path = tmp_path / "page.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A page")]
    nbformat.write(nb, str(path))
    before = path.read_bytes()
    full_disk()
    with pytest.raises(WriteError, match="page.ipynb"):
        make_book_page(path, "Another title")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["page.ipynb"]


def test_the_command_line_reports_a_full_disk_in_one_line(tmp_path, monkeypatch, capsys):
    import rethink.__main__ as cli

    def fail(args):
        raise WriteError(errno.ENOSPC, f"could not write {tmp_path}/r.json: No space left on device (ENOSPC)")
    monkeypatch.setattr(cli, "_list", fail)
    assert cli.main(["list"]) == 2
    assert capsys.readouterr().err.strip() == f"error: could not write {tmp_path}/r.json: No space left on device (ENOSPC)"
