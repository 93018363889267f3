"""Packed runs: several small runs (seeds, regimes, architectures) at once on one machine, as separate processes.

A CIFAR ResNet-56 at batch 64 (the papers' protocol) keeps a large GPU busy only a fraction of the time: each
step is a few small kernels.  Runs of different seeds are independent, so N of them side by side as separate
processes fill the GPU without changing what any of them computes (each keeps its own seed, data order and
batch size).  On a CPU the cores are already shared by the threads of one run, so packing gains little there.

    python -m rethink pack --parallel 4 --seeds 0 1 2 3 -- run --arch resnet56 --seeds {seed} --quiet

``run ...`` is short for ``python -m rethink run ...``; any other command runs as given.  ``{seed}`` and ``{i}``
(the run's position) in the command are replaced per run.  ``benchmarks/throughput.py --pack N`` measures the
aggregate throughput of N packed runs against the same runs one after another.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence


@dataclass(frozen=True)
class PackedRun:
    command: tuple          # argv of the run
    returncode: int
    wall_s: float           # seconds from its start to its end
    log: str                # file holding its stdout and stderr


@dataclass(frozen=True)
class PackResult:
    runs: tuple             # PackedRun, in the order of the commands
    parallel: int           # runs at once
    wall_s: float           # seconds from the first start to the last end

    @property
    def ok(self) -> bool:
        return all(r.returncode == 0 for r in self.runs)


def expand(template: Sequence[str], seeds: Sequence[int]) -> list[list[str]]:
    """One command per seed: ``{seed}`` and ``{i}`` in ``template`` replaced; ``run ...`` means
    ``python -m rethink run ...`` with this interpreter."""
    template = list(template)
    if template and template[0] == "run":
        template = [sys.executable, "-m", "rethink"] + template
    return [[a.replace("{seed}", str(s)).replace("{i}", str(i)) for a in template] for i, s in enumerate(seeds)]


def run_packed(commands: Sequence[Sequence[str]], parallel: Optional[int] = None, *,
               threads_per_run: Optional[int] = None, log_dir: Optional[str] = None,
               env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
               poll_s: float = 0.05) -> PackResult:
    """Run ``commands`` as subprocesses, ``parallel`` at once (default: all), and wait for all of them.

    Each run gets ``threads_per_run`` CPU threads (OMP/MKL; default: the CPU count shared evenly among the
    parallel runs, so that N processes do not oversubscribe the cores) unless ``env`` sets them.  Output goes to
    one log file per run in ``log_dir`` (default: a new temporary folder), never to pipes that could fill up.
    """
    commands = [list(map(str, c)) for c in commands]
    parallel = max(1, min(parallel or len(commands), len(commands) or 1))
    threads = threads_per_run or max(1, (os.cpu_count() or 1) // parallel)
    base = dict(os.environ)
    base.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    base.update(env or {})
    logs = Path(log_dir or tempfile.mkdtemp(prefix="rethink-pack-"))
    logs.mkdir(parents=True, exist_ok=True)
    pending = list(enumerate(commands))
    running: dict[int, tuple] = {}  # index -> (Popen, start time, log file)
    done: dict[int, PackedRun] = {}
    t0 = time.perf_counter()
    try:
        while pending or running:
            while pending and len(running) < parallel:
                i, cmd = pending.pop(0)
                log = logs / f"run-{i}.log"
                f = open(log, "w")
                proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=base, cwd=cwd)
                running[i] = (proc, time.perf_counter(), f)
            for i, (proc, start, f) in list(running.items()):
                if proc.poll() is not None:
                    f.close()
                    done[i] = PackedRun(tuple(commands[i]), proc.returncode, time.perf_counter() - start, f.name)
                    del running[i]
            if running:
                time.sleep(poll_s)
    finally:  # interrupted: stop the runs this call started, and only those
        for proc, _, f in running.values():
            proc.terminate()
            proc.wait()
            f.close()
    return PackResult(tuple(done[i] for i in range(len(commands))), parallel, time.perf_counter() - t0)


def summary(result: PackResult) -> str:
    """A plain-text table: one line per run, then the total."""
    lines = [f"{'run':>4} {'rc':>4} {'wall s':>9}  command (log)"]
    for i, r in enumerate(result.runs):
        lines.append(f"{i:>4} {r.returncode:>4} {r.wall_s:>9.1f}  {' '.join(r.command)} ({r.log})")
    lines.append(f"{len(result.runs)} runs, {result.parallel} at once: {result.wall_s:.1f} s in all "
                 f"(sum of run times {sum(r.wall_s for r in result.runs):.1f} s)")
    return "\n".join(lines)


# ---- command line: `python -m rethink pack ...` (rethink/__main__.py adds this subcommand) ----------------------

def add_parser(subparsers) -> None:
    """Register the ``pack`` subcommand on the ``python -m rethink`` argument parser."""
    p = subparsers.add_parser("pack", help="several runs at once as separate processes (seeds on one GPU)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--parallel", type=int, help="runs at once (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed, replacing {seed}")
    p.add_argument("--threads", type=int, help="CPU threads per run (default: CPU count / parallel)")
    p.add_argument("--log-dir", help="one log file per run (default: a temporary folder)")
    p.add_argument("command", nargs="+", help="after --: `run ...` or any command; {seed} and {i} are replaced")
    p.set_defaults(func=_cli)


def _cli(args) -> None:
    result = run_packed(expand(args.command, args.seeds), args.parallel, threads_per_run=args.threads,
                        log_dir=args.log_dir)
    print(summary(result))
    if not result.ok:
        raise SystemExit(1)
