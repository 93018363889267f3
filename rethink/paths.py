"""Fail fast on folders: before any training, check that the output, cache and data folders can be used.

A run that trains for an hour and then cannot write its first record loses that hour; so the command line, the
notebooks (through ``run_experiment``) and the sweep call :func:`check_run_paths` first.  Each problem is one
line naming the folder, what is wrong and how to fix it (a :class:`ConfigError`, exit status 2 on the command
line), never a chain of tracebacks.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .config import ConfigError


def usable_folder(path, what: str, how: str, writable: bool = True) -> Path:
    """``path`` as a folder: created if missing, and (``writable``) a file can be written in it; else ConfigError
    "<what> <path> is not usable: <why>. <how>"."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{what} {path} is not usable: it exists and is not a folder. {how}") from None
    except OSError as e:
        raise ConfigError(f"{what} {path} is not usable: cannot create it ({e.strerror or e}). {how}") from None
    if not path.is_dir():
        raise ConfigError(f"{what} {path} is not usable: it is not a folder. {how}")
    if writable:
        try:
            fd, probe = tempfile.mkstemp(dir=path, prefix=".rethink-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise ConfigError(f"{what} {path} is not usable: cannot write in it ({e.strerror or e}). {how}") from None
    return path


def check_run_paths(output_dir=None, data_root=None, cache=True) -> None:
    """The folders a run writes to or reads from: ``<output_dir>/records``, the checkpoint cache, the data root."""
    from .data import data_root as resolve_data_root
    from .experiment import cache_dir
    if output_dir is not None:
        usable_folder(Path(output_dir) / "records", "output folder",
                      "Choose a writable folder: --output-dir DIR (notebooks: output_dir=...).")
    if cache:
        usable_folder(cache_dir() / "baselines", "checkpoint cache",
                      "Set RETHINK_CACHE to a writable folder (default ~/.cache/rethink).")
    # the data root is read, and written only to unpack or download a dataset into it: it must be a folder
    usable_folder(resolve_data_root(data_root), "data folder",
                  "Pass an existing folder: --data-root DIR (notebooks: data_root=...), or set RETHINK_DATA.",
                  writable=False)
