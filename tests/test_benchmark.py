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
    assert header == ["model", "width", "path", "batch", "amp", "channels_last", "compile", "img/s", "vs reference",
                      "vs fp32 eager", "s/epoch", "160 epochs (h)"]
    assert [(r[0], r[2], r[3]) for r in rows] == [(m, p, b) for m in ("vgg16", "resnet56")
                                                  for p, b in (("reference", "8"), ("fast", "8"), ("fast", "16"))]
    from rethink.config import cpu_has_bf16
    fast = ["bf16", "True", "off"] if cpu_has_bf16() else ["off", "False", "off"]
    for r in rows:
        assert len(r) == len(header) and float(r[7]) > 0 and float(r[10]) > 0 and r[1] == "0.12"
        # the reference is the papers' fp32 loop; the fast path takes the CPU default (bf16 where it is in hardware)
        assert r[4:7] == (["off", "False", "off"] if r[2] == "reference" else fast)
        assert r[9] == "–"  # no fp32-eager row to divide by without --ablate
    assert [r[8] for r in rows if r[2] == "reference"] == ["1.00", "1.00"]
    result = json.loads((tmp_path / "t.json").read_text())
    assert len(result["rows"]) == 6 and result["pack"] is None
    assert result["environment"]["device"].startswith("cpu") and result["settings"]["steps"] == 2
    assert (tmp_path / "t.md").read_text() == out


@pytest.mark.slow
def test_throughput_ablation_and_packed_runs(tmp_path):
    out = run(THROUGHPUT, *TINY, "--models", "resnet20", "--ablate", "--pack", "2", "--json", tmp_path / "t.json")
    main, pack = tables(out)
    assert [r[2] for r in main[1:]] == ["reference", "device data", "fast", "fast"]
    assert main[2][9] == "1.00"  # the fp32-eager row divided by itself
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


@pytest.mark.slow
def test_parity_on_a_profile_in_separate_processes_then_merged(tmp_path, fashion_root):
    # the book's parity check: each arm (and seed) in its own process on its own core, then compared in one table
    common = ["--device", "cpu", "--threads", "1", "--data-root", fashion_root, "--profile", "smoke", "--arch",
              "resnet20"]
    run(PARITY, *common, "--arms", "reference", "--seeds", "0", "1", "--json", tmp_path / "ref.json")
    for seed in (0, 1):
        run(PARITY, *common, "--arms", "profile", "--seeds", seed, "--json", tmp_path / f"fast{seed}.json")
    out = run(PARITY, "--merge", tmp_path / "ref.json", tmp_path / "fast0.json", tmp_path / "fast1.json",
              "--json", tmp_path / "m.json")
    result = json.loads((tmp_path / "m.json").read_text())
    s = result["settings"]
    # the smoke profile's large model: its epochs, batch, subsets and width, not the script's own defaults
    assert (s["profile"], s["epochs"], s["batch"], s["train_images"], s["width_mult"]) == ("smoke", 2, 32, 128, 0.125)
    assert [a["arm"] for a in result["arms"]] == ["reference", "profile"] and s["seeds"] == [0, 1]
    assert [r["seed"] for r in result["arms"][1]["runs"]] == [0, 1]  # the two processes' seeds joined
    assert [c["arm"] for c in result["comparisons"]] == ["profile"] and len(result["commands"]) == 3
    assert out.count("`python benchmarks/parity.py") == 3  # every command that made it
    # results of other settings are not compared
    run(PARITY, *common[:-1], "vgg11", "--arms", "profile", "--seeds", "0", "--epochs", "1", "--json",
        tmp_path / "other.json")
    proc = subprocess.run([sys.executable, str(PARITY), "--merge", str(tmp_path / "ref.json"),
                           str(tmp_path / "other.json")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and "other settings" in proc.stderr


@pytest.mark.slow
def test_throughput_takes_widths_from_the_profile_and_adds_a_compile_row(tmp_path):
    args = [a for a in TINY if a not in ("--width-mult", "0.125")]
    out = run(THROUGHPUT, *args, "--models", "vgg16", "resnet20", "--profile", "book", "--large-batch", "0",
              "--steps", "1")
    (table,) = tables(out)
    assert {(r[0], r[1]) for r in table[1:]} == {("vgg16", "0.25"), ("resnet20", "0.50")}  # book: VGG x0.25, else x0.5
    # compiling takes a while on CI's CPU: one small model
    out = run(THROUGHPUT, *args, "--models", "resnet20", "--profile", "smoke", "--ablate", "--compile-row",
              "--large-batch", "0", "--steps", "1")
    (table,) = tables(out)
    assert [r[2] for r in table[1:]] == ["reference", "device data", "fast", "fast+compile"]
    assert [r[6] for r in table[1:]] == ["off", "off", "off", "default"]


def test_throughput_measures_the_pruned_model_of_a_run_record(tmp_path):
    record = ROOT / "book" / "runs" / "records" / "fashion-mnist-book-l1-norm-vgg16-a-fine-tune-s0.json"
    rec = json.loads(record.read_text())
    out = run(THROUGHPUT, *TINY, "--models", "vgg16", "--large-batch", "0", "--widths-from", record,
              "--json", tmp_path / "t.json")
    (table,) = tables(out)
    assert [(r[0], r[1], r[2]) for r in table[1:]] == [("vgg16", "0.12", "reference"), ("vgg16", "0.12", "fast"),
                                                       (rec["run_id"], "0.25", "reference"), (rec["run_id"], "0.25", "fast")]
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["settings"]["widths_from"] == [str(record)]
    # the record's pruned widths were trained, not x0.25's unpruned ones (VGG-16-A prunes layers: the two differ)
    from rethink.models import default_widths, get_model, scale_widths
    params = {tuple(w): sum(p.numel() for p in get_model("vgg16", 10, w).parameters())
              for w in (rec["model"]["widths"], scale_widths(default_widths("vgg16"), 0.25, "vgg16"))}
    pruned, unpruned = params.values()
    assert pruned < unpruned and [r["params"] for r in result["rows"][2:]] == [pruned, pruned]
    (tmp_path / "bad.json").write_text("{}")
    proc = subprocess.run([sys.executable, str(THROUGHPUT), *TINY, "--widths-from", str(tmp_path / "bad.json")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and "not a readable run record" in proc.stderr
