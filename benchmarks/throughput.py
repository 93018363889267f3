#!/usr/bin/env python
"""Training throughput of the papers' loop (reference) and rethink's (fast), measured in the same process.

reference  torchvision DataLoader over PIL images (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
           Normalize), 1 worker, pinned memory on CUDA, fp32, eager, batch 64: the papers' code.
fast       rethink.data.TensorLoader (uint8 set on the device, crop/flip/normalise as tensor ops) and the speed
           settings of rethink.config.PerfConfig resolved for the device (CUDA: bf16 autocast, channels_last,
           cudnn.benchmark; CPU: fp32, eager), at batch 64 (the protocol) and at a larger batch (not the protocol:
           shown for what the device could do).

Both run the library's own training step (rethink.train.train_one_epoch: SGD with momentum and weight decay)
on CIFAR-shaped random uint8 images for ``--warmup`` untimed and ``--steps`` timed steps; images/s counts
training images.  The projected time of the paper protocol is 160 epochs x 50,000 images at that rate
(training steps only; the per-epoch evaluation on 10,000 test images is not included).

    python benchmarks/throughput.py --ablate --pack 4 --json book/perf/throughput-cuda.json \\
        --markdown book/perf/throughput-cuda.md                                  # a GPU
    python benchmarks/throughput.py --device cpu --steps 10 --width-mult 0.5     # a CPU, smaller
    python benchmarks/throughput.py --device cpu --profile book --ablate --compile-row --pack 2 --pack-threads 1 \
        --threads 2 --json book/perf/throughput-cpu-book.json --markdown book/perf/throughput-cpu-book.md

``--profile book`` takes each model's width multiplier from that profile (VGG x0.25, ResNets x0.5); ``--ablate``
adds the row "device data" (rethink's loader, fp32, eager: the CPU default before bf16 was turned on), and the
column "vs fp32 eager" divides by it; ``--compile-row`` adds the fast path with torch.compile.  ``--widths-from``
adds the model of a run record (a pruned one: its widths, channel selections included), named by its run id:

    python benchmarks/throughput.py --device cpu --threads 1 --models densenet40 --profile book --large-batch 0 \
        --widths-from book/runs/records/fashion-mnist-book-slimming-densenet40-p0.4-scratch-e-s0.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from rethink.config import PerfConfig, resolve_perf
from rethink.data import DATASETS, TensorLoader, reference_loader
from rethink.models import default_widths, get_model, scale_widths
from rethink.records import atomic_write_bytes, device_name
from rethink.train import speed_setup, train_one_epoch

CIFAR_TRAIN_IMAGES = 50_000
PAPER_EPOCHS = 160
REFERENCE_PERF = PerfConfig(amp="off", channels_last=False, cudnn_benchmark=False, compile="off")
COLUMNS = ["model", "width", "path", "batch", "amp", "channels_last", "compile", "img/s", "vs reference",
           "vs fp32 eager", "s/epoch", "160 epochs (h)"]


def width_mult(a, arch: str) -> float:
    """The width multiplier of ``arch``: the profile's (with its per-architecture settings) or --width-mult."""
    if not getattr(a, "profile", None):
        return a.width_mult
    from rethink.config import PROFILES, arch_settings
    values = dict(PROFILES[a.profile])
    values.update(arch_settings(values.pop("per_arch", {}), arch))
    return float(values.get("width_mult", 1.0))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda | cpu | auto")
    p.add_argument("--models", nargs="+", default=["vgg16", "resnet56"], help="architectures")
    p.add_argument("--batch", type=int, default=64, help="the protocol's batch size")
    p.add_argument("--large-batch", type=int, default=None,
                   help="a larger batch for the fast path (default 512 on CUDA, 256 on CPU; 0 = none)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per row (default 200 on CUDA, 20 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 20 on CUDA, 3 on CPU)")
    p.add_argument("--repeat", type=int, default=1, help="measure every row this many times; report the median")
    p.add_argument("--width-mult", type=float, default=1.0, help="width multiplier of the models (1 = paper)")
    p.add_argument("--profile", help="take each model's width multiplier from this profile (e.g. book)")
    p.add_argument("--compile-row", action="store_true", help="add a row: the fast path with torch.compile")
    p.add_argument("--pack-threads", type=int, help="CPU threads of each packed run (default: --threads, else "
                                                     "CPU count / N)")
    p.add_argument("--widths-from", nargs="+", default=[], metavar="RECORD",
                   help="also measure the model of these run records (their architecture and pruned widths)")
    p.add_argument("--n-images", type=int, default=CIFAR_TRAIN_IMAGES, help="size of the random training set")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers of the reference path")
    p.add_argument("--threads", type=int, help="torch CPU threads of this process (default: torch's choice)")
    p.add_argument("--amp", default="auto", help="fast path: auto | off | bf16")
    p.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"], help="fast path layout")
    p.add_argument("--compile", default="off", help="fast path: off | default | reduce-overhead | max-autotune")
    p.add_argument("--ablate", action="store_true",
                   help="add a row: device-resident data only (fp32, eager), to split the gain")
    p.add_argument("--pack", type=int, default=0,
                   help="also measure N packed runs (separate processes) against the same N one after another")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--markdown", help="write the table here (the book includes it)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)   # one packed run
    p.add_argument("--barrier", help=argparse.SUPPRESS)                       # folder where packed runs meet
    p.add_argument("--n-workers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = a.device.startswith("cuda")
    a.large_batch = (512 if cuda else 256) if a.large_batch is None else a.large_batch
    a.steps = a.steps or (200 if cuda else 20)
    a.warmup = a.warmup if a.warmup is not None else (20 if cuda else 3)
    return a


def fast_perf(a) -> PerfConfig:
    cl = {"auto": None, "on": True, "off": False}[a.channels_last]
    return resolve_perf(PerfConfig(amp=a.amp, channels_last=cl, compile=a.compile), a.device)


def random_set(n: int, seed: int = 0):
    """CIFAR-shaped uint8 images (N,3,32,32) and labels of 10 classes."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


def endless(loader):
    """Batches over epoch after epoch, as training sees them."""
    while True:
        yield from loader


def record_model(path: str) -> tuple[str, str, list, float]:
    """(name, arch, widths, width multiplier) of the model a run record trained: a pruned model, to be measured beside
    the unpruned ones.  A clear error for a file that is not a run record."""
    try:
        rec = json.loads(Path(path).read_text())
        return rec["run_id"], rec["model"]["arch"], list(rec["model"]["widths"]), rec["config"].get("width_mult", 1.0)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"--widths-from {path}: not a readable run record ({type(e).__name__}: {e}); "
                         f"run records are the JSON files in <output-dir>/records/")


def measure(arch: str, path: str, batch: int, perf: PerfConfig, a, images, labels, barrier=None,
            widths=None) -> dict:
    """Train ``arch`` (unpruned at the width multiplier, or at ``widths``) for warmup + steps batches through
    ``path``; returns img/s of the timed steps."""
    device = torch.device(a.device)
    info = DATASETS["cifar10"]
    n = (len(labels) // batch) * batch  # whole batches only: no odd last batch to re-tune or recompile
    if n == 0:
        raise SystemExit(f"--n-images {len(labels)} is smaller than the batch {batch}")
    if path == "reference":
        loader = reference_loader(images[:n], labels[:n], info, batch, shuffle=True, augment=True, seed=0,
                                  num_workers=a.workers, pin_memory=device.type == "cuda")
    else:
        loader = TensorLoader(images[:n], labels[:n], info, batch, shuffle=True, augment=True, seed=0,
                              device=device)
    torch.manual_seed(0)
    if widths is None:
        widths = scale_widths(default_widths(arch), width_mult(a, arch), arch)
    model = get_model(arch, info.num_classes, widths).to(device)
    # lr 0.01: random labels, and only the time matters; the step is the library's own
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    stream = endless(loader)
    with speed_setup(model, perf) as forward:
        if a.warmup:
            train_one_epoch(model, itertools.islice(stream, a.warmup), opt, perf=perf, forward=forward)
        if barrier is not None:
            barrier()
        start = time.time()
        t = time.perf_counter()
        train_one_epoch(model, itertools.islice(stream, a.steps), opt, perf=perf, forward=forward)  # ends in a sync
        dt = time.perf_counter() - t
    stream.close()  # stops the reference path's worker
    return dict(img_s=a.steps * batch / dt, seconds=dt, images=a.steps * batch, start=start, end=start + dt,
                params=sum(p.numel() for p in model.parameters()))


def row(arch, path, batch, perf, samples, ref_img_s, eager_img_s=None, width=1.0) -> dict:
    img_s = statistics.median(s["img_s"] for s in samples)
    return {"model": arch, "width": width, "path": path,
            "vs fp32 eager": img_s / eager_img_s if eager_img_s else "–", "batch": batch, "amp": perf.amp, "channels_last": perf.channels_last,
            "compile": perf.compile, "img/s": img_s, "vs reference": img_s / ref_img_s if ref_img_s else 1.0,
            "s/epoch": CIFAR_TRAIN_IMAGES / img_s, "160 epochs (h)": PAPER_EPOCHS * CIFAR_TRAIN_IMAGES / img_s / 3600,
            "samples_img_s": [s["img_s"] for s in samples], "params": samples[0]["params"]}


def environment(a) -> dict:
    import torchvision
    cuda = a.device.startswith("cuda")
    return dict(device=device_name(a.device), torch=torch.__version__, torchvision=torchvision.__version__,
                python=platform.python_version(), cuda=torch.version.cuda if cuda else None,
                cudnn=torch.backends.cudnn.version() if cuda else None, cpu_threads=torch.get_num_threads(),
                cpu_count=os.cpu_count())


def packed(a, perf: PerfConfig) -> dict:
    """N runs of the fast path (first model, protocol batch) as separate processes: at once, then one after
    another.  The packed runs start their timed steps together (a file barrier after warm-up), so the
    aggregate rate is all their images over the span from the first start to the last end.  Every run gets the
    same CPU threads in both modes (``--threads``, else CPU count / N), so that only the sharing differs."""
    from rethink.pack import run_packed
    n = a.pack
    threads = a.pack_threads or a.threads or max(1, (os.cpu_count() or 1) // n)
    tmp = Path(tempfile.mkdtemp(prefix="rethink-throughput-"))
    base = [sys.executable, os.path.abspath(__file__), "--worker", "--device", a.device, "--models", a.models[0],
            "--batch", str(a.batch), "--steps", str(a.steps), "--warmup", str(a.warmup),
            "--width-mult", str(width_mult(a, a.models[0])), "--n-images", str(a.n_images), "--amp", perf.amp,
            "--channels-last", "on" if perf.channels_last else "off", "--compile", perf.compile,
            "--threads", str(threads)]
    out = {}
    for mode, parallel in (("sequential", 1), ("packed", n)):
        cmds = [base + ["--barrier", str(tmp / mode if parallel > 1 else tmp / f"{mode}-{i}"),
                        "--n-workers", str(parallel), "--index", str(i)] for i in range(n)]
        res = run_packed(cmds, parallel, threads_per_run=threads, log_dir=str(tmp / f"{mode}-logs"))
        results = []
        for r in res.runs:
            text = Path(r.log).read_text()
            lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
            if r.returncode != 0 or not lines:
                raise SystemExit(f"packed run failed (rc {r.returncode}):\n{text[-3000:]}")
            results.append(json.loads(lines[-1][len("RESULT "):]))
        images = sum(s["images"] for s in results)
        span = (max(s["end"] for s in results) - min(s["start"] for s in results) if parallel > 1
                else sum(s["seconds"] for s in results))
        out[mode] = dict(runs=n, parallel=parallel, images=images, seconds=span, img_s=images / span,
                         per_run_img_s=[s["img_s"] for s in results])
    out["ratio"] = out["packed"]["img_s"] / out["sequential"]["img_s"]
    out.update(model=a.models[0], batch=a.batch, amp=perf.amp, channels_last=perf.channels_last,
               compile=perf.compile, threads_per_run=threads)
    return out


def worker(a) -> None:
    """One packed run: warm up, wait for the others at the barrier, time, print the result."""
    folder = Path(a.barrier)
    folder.mkdir(parents=True, exist_ok=True)

    def barrier():
        (folder / f"ready-{a.index}").touch()
        deadline = time.time() + 600
        while len(list(folder.glob("ready-*"))) < a.n_workers:
            if time.time() > deadline:
                raise SystemExit("the other packed runs never got ready")
            time.sleep(0.01)

    images, labels = random_set(a.n_images, seed=a.index)
    r = measure(a.models[0], "fast", a.batch, fast_perf(a), a, images, labels, barrier)
    print("RESULT " + json.dumps(r), flush=True)


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.2f}" if v < 100 else f"{v:.0f}"
    return str(v)


def markdown(result: dict) -> str:
    env, s = result["environment"], result["settings"]
    lines = [f"Device: **{env['device']}**; torch {env['torch']}, torchvision {env['torchvision']}, "
             f"Python {env['python']}" + (f", CUDA {env['cuda']}, cuDNN {env['cudnn']}" if env["cuda"] else "")
             + f"; {env['cpu_threads']} CPU threads.",
             "",
             f"Settings: width multiplier "
             f"{('of profile ' + s['profile'] + ' per model') if s.get('profile') else s['width_mult']}, {s['steps']} timed steps after {s['warmup']} warm-up "
             f"steps, median of {s['repeat']} measurement(s), random CIFAR-shaped set of {s['n_images']} images, "
             f"reference with {s['workers']} DataLoader worker(s).  Command: `{result['command']}`",
             "",
             "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" if c in ("model", "path") else "---:" for c in COLUMNS) + "|"]
    for r in result["rows"]:
        lines.append("| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |")
    if result.get("pack"):
        p = result["pack"]
        lines += ["", f"Packed runs ({p['model']}, fast path, batch {p['batch']}): {p['sequential']['runs']} runs "
                      f"as separate processes, {p['threads_per_run']} CPU thread(s) each.", "",
                  "| runs | mode | aggregate img/s | vs sequential |", "|---:|---|---:|---:|",
                  f"| {p['sequential']['runs']} | one after another | {fmt(p['sequential']['img_s'])} | 1.00 |",
                  f"| {p['packed']['runs']} | at once | {fmt(p['packed']['img_s'])} | {fmt(p['ratio'])} |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    a = parse(argv)
    if a.worker:
        return worker(a)
    perf = fast_perf(a)
    plan = [("reference", a.batch, REFERENCE_PERF)]
    if a.ablate:
        plan.append(("device data", a.batch, REFERENCE_PERF))
    plan.append(("fast", a.batch, perf))
    if a.compile_row and perf.compile == "off":
        import dataclasses
        plan.append(("fast+compile", a.batch, dataclasses.replace(perf, compile="default")))
    if a.large_batch:
        plan.append(("fast", a.large_batch, perf))
    images, labels = random_set(a.n_images)
    models = [(arch, arch, None, width_mult(a, arch)) for arch in a.models] + [record_model(r) for r in a.widths_from]
    rows = []
    for name, arch, widths, mult in models:
        samples = {i: [] for i in range(len(plan))}
        for _ in range(a.repeat):  # interleaved, so that a slow spell of a shared machine hits every row
            for i, (path, batch, p) in enumerate(plan):
                samples[i].append(measure(arch, "reference" if path == "reference" else "fast", batch, p, a,
                                          images, labels, widths=widths))
        ref = statistics.median(s["img_s"] for s in samples[0])
        eager = statistics.median(s["img_s"] for s in samples[1]) if a.ablate else None
        rows += [row(name, path, batch, p, samples[i], ref, eager, mult) for i, (path, batch, p) in enumerate(plan)]
    result = dict(environment=environment(a),
                  settings=dict(steps=a.steps, warmup=a.warmup, repeat=a.repeat, width_mult=a.width_mult,
                                profile=a.profile, widths_from=a.widths_from,
                                n_images=a.n_images, workers=a.workers, batch=a.batch, large_batch=a.large_batch,
                                fast_perf=vars(perf), reference_perf=vars(REFERENCE_PERF)),
                  command="python benchmarks/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  rows=rows, pack=packed(a, perf) if a.pack else None,
                  finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_outputs(result, markdown(result), a.json, a.markdown)


def write_outputs(result: dict, text: str, json_path: str | None, markdown_path: str | None) -> None:
    """Print the markdown table; write the result as JSON and the table as markdown where asked, atomically."""
    print(text, end="")
    if json_path:
        atomic_write_bytes(Path(json_path), (json.dumps(result, indent=1) + "\n").encode())
    if markdown_path:
        atomic_write_bytes(Path(markdown_path), text.encode())


if __name__ == "__main__":
    main()
