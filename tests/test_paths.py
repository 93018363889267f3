"""Fail fast on unusable folders: one clear line before any training (real paths: /proc refuses new folders even
to root, a file stands where a folder should be)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conftest import ROOT
from rethink.config import ConfigError
from rethink.paths import check_run_paths, usable_folder


def test_usable_folder_creates_missing_folders(tmp_path):
    assert usable_folder(tmp_path / "a" / "b", "output folder", "fix").is_dir()


@pytest.mark.parametrize("bad, why", [("/proc/rethink-out", "cannot create it"), ("FILE", "(not a folder|Not a directory)")])
def test_unusable_folders_get_one_line(tmp_path, bad, why):
    if bad == "FILE":
        bad = tmp_path / "file"
        bad.write_text("x")
    with pytest.raises(ConfigError, match=f"output folder {bad}.* is not usable: .*{why}.*--output-dir") as e:
        check_run_paths(bad, tmp_path)
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no chain of tracebacks


def test_cache_and_data_folders_are_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("RETHINK_CACHE", "/proc/rethink-cache")
    with pytest.raises(ConfigError, match="checkpoint cache /proc/rethink-cache/baselines .*RETHINK_CACHE"):
        check_run_paths(tmp_path)
    monkeypatch.setenv("RETHINK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="data folder /proc/rethink-data is not usable.*--data-root"):
        check_run_paths(tmp_path, "/proc/rethink-data")


@pytest.mark.parametrize("args", [
    ["run", "--arch", "vgg16", "--dataset", "fashion-mnist", "--profile", "smoke", "--output-dir", "/proc/ro-out"],
    ["converge", "--arch", "vgg16", "--dataset", "fashion-mnist", "--profile", "smoke", "--output-dir", "/proc/ro"],
    ["sweep", "grids/table1.yaml", "--profile", "smoke", "--output-dir", "/proc/ro-sweep"],
])
def test_the_commands_stop_before_training(args, tmp_path):
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "rethink", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**__import__("os").environ, "RETHINK_CACHE": str(tmp_path)})
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "is not usable" in errors[0] and "Traceback" not in proc.stderr
    assert time.time() - t0 < 60  # seconds (import time), not a training
    assert not list(tmp_path.glob("baselines/*.pt"))  # nothing was trained
