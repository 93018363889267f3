"""The benchmark scripts run end to end with tiny settings (CPU) and print/write what the book reads.  Only the
shape of their output is checked: timings on a shared CI machine mean nothing."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

THROUGHPUT = ROOT / "benchmarks" / "throughput.py"
PARITY = ROOT / "benchmarks" / "parity.py"
TINY = ["--device", "cpu", "--steps", "2", "--warmup", "1", "--width-mult", "0.125", "--batch", "8",
        "--large-batch", "16", "--n-images", "64", "--threads", "1"]


def tables(text: str) -> list[list[list[str]]]:
    """The markdown tables in ``text``: lists of rows of cells (separator rows dropped)."""
    out, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                current.append(cells)
        elif current:
            out.append(current)
            current = []
    return out


def run(script, *args, timeout=600) -> str:
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_throughput_prints_one_row_per_model_path_and_batch(tmp_path):
    out = run(THROUGHPUT, *TINY, "--json", tmp_path / "t.json", "--markdown", tmp_path / "t.md")
    assert "Device: **cpu" in out and "torch " in out
    (table,) = tables(out)
    header, rows = table[0], table[1:]
    assert header == ["model", "path", "batch", "amp", "channels_last", "compile", "img/s", "vs reference",
                      "s/epoch", "160 epochs (h)"]
    assert [(r[0], r[1], r[2]) for r in rows] == [(m, p, b) for m in ("vgg16", "resnet56")
                                                  for p, b in (("reference", "8"), ("fast", "8"), ("fast", "16"))]
    for r in rows:
        assert len(r) == len(header) and float(r[6]) > 0 and float(r[9]) > 0
        assert r[3:6] == ["off", "False", "off"], "on a CPU both paths stay fp32, contiguous, eager"
    assert [r[7] for r in rows if r[1] == "reference"] == ["1.00", "1.00"]
    result = json.loads((tmp_path / "t.json").read_text())
    assert len(result["rows"]) == 6 and result["pack"] is None
    assert result["environment"]["device"].startswith("cpu") and result["settings"]["steps"] == 2
    assert (tmp_path / "t.md").read_text() == out


@pytest.mark.slow
def test_throughput_ablation_and_packed_runs(tmp_path):
    out = run(THROUGHPUT, *TINY, "--models", "resnet20", "--ablate", "--pack", "2", "--json", tmp_path / "t.json")
    main, pack = tables(out)
    assert [r[1] for r in main[1:]] == ["reference", "device data", "fast", "fast"]
    assert pack[0] == ["runs", "mode", "aggregate img/s", "vs sequential"]
    assert [r[1] for r in pack[1:]] == ["one after another", "at once"]
    p = json.loads((tmp_path / "t.json").read_text())["pack"]
    assert p["sequential"]["images"] == p["packed"]["images"] == 2 * 2 * 8
    assert len(p["packed"]["per_run_img_s"]) == 2 and p["ratio"] > 0


@pytest.mark.slow
def test_parity_writes_its_result(tmp_path, fashion_root):
    out = run(PARITY, "--device", "cpu", "--data-root", fashion_root, "--arch", "resnet20", "--width-mult", "0.125",
              "--epochs", "1", "--train-subset", "128", "--test-subset", "64", "--seeds", "0", "1",
              "--arms", "reference", "fast", "fast-bf16", "--json", tmp_path / "p.json",
              "--markdown", tmp_path / "p.md")
    result = json.loads((tmp_path / "p.json").read_text())
    assert [a["arm"] for a in result["arms"]] == ["reference", "fast", "fast-bf16"]
    for arm in result["arms"]:
        assert [r["seed"] for r in arm["runs"]] == [0, 1]
        assert all(0 <= r["final_acc"] <= 100 for r in arm["runs"])
    assert {c["arm"] for c in result["comparisons"]} == {"fast", "fast-bf16"}
    assert all(isinstance(c["within_noise"], bool) for c in result["comparisons"])
    assert result["arms"][2]["perf"]["amp"] == "bf16" and result["arms"][0]["perf"]["amp"] == "off"
    assert (tmp_path / "p.md").read_text() in out
