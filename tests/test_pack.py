"""Packed runs: N commands as separate processes, at most ``parallel`` at once, each with its own log."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from rethink.pack import expand, run_packed, summary

# A run that records when it ran and with how many threads, then exits with the code it is given.
SCRIPT = ("import json, os, sys, time; t = time.time(); time.sleep(0.4); "
          "print(json.dumps(dict(start=t, end=time.time(), threads=os.environ['OMP_NUM_THREADS'], "
          "arg=sys.argv[1]))); sys.exit(int(sys.argv[2]))")


def test_expand_replaces_seed_and_index_and_knows_run():
    cmds = expand(["python", "x.py", "--seed", "{seed}", "--out", "o{i}"], [5, 7])
    assert cmds == [["python", "x.py", "--seed", "5", "--out", "o0"], ["python", "x.py", "--seed", "7", "--out", "o1"]]
    (run,) = expand(["run", "--arch", "vgg16", "--seeds", "{seed}"], [3])
    assert run == [sys.executable, "-m", "rethink", "run", "--arch", "vgg16", "--seeds", "3"]


def test_run_packed_limits_concurrency_and_keeps_each_result(tmp_path):
    cmds = [[sys.executable, "-c", SCRIPT, f"run{i}", "3" if i == 2 else "0"] for i in range(4)]
    result = run_packed(cmds, parallel=2, threads_per_run=1, log_dir=str(tmp_path))
    assert [r.returncode for r in result.runs] == [0, 0, 3, 0] and not result.ok
    rows = [json.loads(Path(r.log).read_text()) for r in result.runs]
    assert [r["arg"] for r in rows] == ["run0", "run1", "run2", "run3"]
    assert {r["threads"] for r in rows} == {"1"}
    for r in rows:  # never more than two running at any moment
        assert sum(o["start"] <= r["start"] < o["end"] for o in rows) <= 2
    assert max(r["start"] for r in rows) >= min(r["end"] for r in rows), "the later runs waited for a free slot"
    text = summary(result)
    assert "4 runs, 2 at once" in text and text.count("\n") == 5


def test_default_threads_share_the_cpus(tmp_path):
    result = run_packed([[sys.executable, "-c", SCRIPT, "a", "0"]] * 2, log_dir=str(tmp_path))
    assert result.parallel == 2 and result.ok
    want = str(max(1, (os.cpu_count() or 1) // 2))
    assert all(json.loads(Path(r.log).read_text())["threads"] == want for r in result.runs)


def test_pack_subcommand(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rethink", "pack", "--parallel", "2", "--seeds", "1", "2",
                           "--log-dir", str(tmp_path), "--", sys.executable, "-c", SCRIPT, "s{seed}", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "2 runs, 2 at once" in proc.stdout
    assert [json.loads((tmp_path / f"run-{i}.log").read_text())["arg"] for i in range(2)] == ["s1", "s2"]
