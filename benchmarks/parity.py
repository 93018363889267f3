#!/usr/bin/env python
"""Accuracy parity: the fast path reaches the reference path's test accuracy (same seeds, same schedule).

Arms (every one trains the same architecture from the same seeded initialisation with the same schedule):
  reference   torchvision DataLoader over PIL images (RandomCrop(32, padding=4), RandomHorizontalFlip,
              ToTensor, Normalize), 1 worker, fp32, eager: the papers' pipeline
  fast        rethink.data.TensorLoader + the speed settings resolved for the device (CUDA: bf16 autocast,
              channels_last, cudnn.benchmark; CPU: fp32, eager)
  fast-bf16   TensorLoader + bf16 autocast + channels_last on any device (on a CPU: to test bf16 there)

The two pipelines draw different random crops and orders, so the runs differ as two seeds do; "within noise"
means |mean final accuracy difference| <= 2 x the larger of (a) its standard error from the seed-to-seed spread
and (b) its binomial standard error from the size of the test set.

    python benchmarks/parity.py --json book/perf/parity-cpu.json --markdown book/perf/parity-cpu.md
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch

from rethink.config import DataConfig, PerfConfig, resolve_perf
from rethink.data import get_loaders, get_reference_loaders
from rethink.models import default_widths, get_model, scale_widths
from rethink.records import device_name
from rethink.train import Schedule, train
from throughput import write_outputs  # benchmarks/ is on sys.path when run as a script

REFERENCE_PERF = PerfConfig(amp="off", channels_last=False, cudnn_benchmark=False, compile="off")
ARMS = ("reference", "fast", "fast-bf16")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist | cifar10 | cifar100")
    p.add_argument("--data-root", help="dataset folder (default $RETHINK_DATA or ./.data)")
    p.add_argument("--arch", default="resnet20", help="architecture")
    p.add_argument("--width-mult", type=float, default=0.5, help="width multiplier")
    p.add_argument("--epochs", type=int, default=6, help="epochs (lr /10 at 50%% and 75%%)")
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate")
    p.add_argument("--batch", type=int, default=64, help="training batch (test batch 256)")
    p.add_argument("--train-subset", type=int, default=5000, help="training images (None: all)")
    p.add_argument("--test-subset", type=int, default=2000, help="test images")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds, the same for every arm")
    p.add_argument("--arms", nargs="+", default=["reference", "fast"], choices=ARMS, help="what to compare")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers of the reference path")
    p.add_argument("--device", default="auto", help="cuda | cpu | auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", help="write the result here")
    p.add_argument("--markdown", help="write the tables here (the book includes them)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    return a


def arm_setup(arm: str, a, data: DataConfig):
    if arm == "reference":
        train_loader, test_loader, info = get_reference_loaders(data, a.device, num_workers=a.workers)
        return train_loader, test_loader, info, REFERENCE_PERF, "torchvision DataLoader + PIL transforms"
    train_loader, test_loader, info = get_loaders(data, a.device)
    perf = PerfConfig() if arm == "fast" else PerfConfig(amp="bf16", channels_last=True)
    return train_loader, test_loader, info, resolve_perf(perf, a.device), "TensorLoader (on the device)"


def mean_std(v):
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def compare(ref: list, other: list, n_test: int) -> dict:
    (m_r, s_r), (m_o, s_o) = mean_std(ref), mean_std(other)
    n = len(ref)
    se_seeds = math.sqrt(s_r ** 2 / n + s_o ** 2 / len(other))
    p = (m_r + m_o) / 200
    se_binomial = 100 * math.sqrt(p * (1 - p) / n_test * (1 / n + 1 / len(other)))
    noise = max(se_seeds, se_binomial)
    diff = m_o - m_r
    return dict(diff=diff, se_seeds=se_seeds, se_binomial=se_binomial, threshold=2 * noise,
                within_noise=bool(abs(diff) <= 2 * noise))


def fmt_ms(v) -> str:
    m, s = mean_std(v)
    return f"{m:.2f} ± {s:.2f} (n={len(v)})"


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"Device: **{result['device']}**; torch {result['torch']}.  {s['dataset']}, {s['train_images']} "
             f"training / {s['test_images']} test images, {s['arch']} at width multiplier {s['width_mult']}, "
             f"{s['epochs']} epochs (lr {s['lr']}, /10 at 50% and 75%), batch {s['batch']}, seeds {s['seeds']}.  "
             f"Command: `{result['command']}`", "",
             "| arm | data pipeline | amp | channels_last | final test acc % | best test acc % | s per run |",
             "|---|---|---|---|---:|---:|---:|"]
    for arm in result["arms"]:
        runs = arm["runs"]
        lines.append(f"| {arm['arm']} | {arm['pipeline']} | {arm['perf']['amp']} | {arm['perf']['channels_last']} | "
                     f"{fmt_ms([r['final_acc'] for r in runs])} | {fmt_ms([r['best_acc'] for r in runs])} | "
                     f"{statistics.mean(r['wall_s'] for r in runs):.0f} |")
    lines += ["", "| arm | Δ final acc vs reference (points) | 2 × noise | within noise |", "|---|---:|---:|---|"]
    for c in result["comparisons"]:
        lines.append(f"| {c['arm']} | {c['diff']:+.2f} | {c['threshold']:.2f} | {'yes' if c['within_noise'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    a = parse(argv)
    data = DataConfig(dataset=a.dataset, root=a.data_root, train_subset=a.train_subset, test_subset=a.test_subset,
                      batch_size=a.batch, test_batch_size=256)
    schedule = Schedule(a.epochs, a.lr, (0.5, 0.75))
    arms = []
    for arm in a.arms:
        train_loader, test_loader, info, perf, pipeline = arm_setup(arm, a, data)
        runs = []
        for seed in a.seeds:
            torch.manual_seed(seed)
            model = get_model(a.arch, info.num_classes, scale_widths(default_widths(a.arch), a.width_mult),
                              info.in_channels).to(a.device)
            train_loader.reseed(seed)
            t = time.perf_counter()
            m = train(model, train_loader, test_loader, schedule, perf=perf, progress=False)
            runs.append(dict(seed=seed, final_acc=m["final_acc"], best_acc=m["best_acc"],
                             wall_s=time.perf_counter() - t, curve=[c["test_acc"] for c in m["curve"]]))
            print(f"{arm:>10} seed {seed}: final {m['final_acc']:.2f}%  best {m['best_acc']:.2f}%  "
                  f"({runs[-1]['wall_s']:.0f} s)", file=sys.stderr, flush=True)
        arms.append(dict(arm=arm, pipeline=pipeline, perf=vars(perf), runs=runs,
                         n_train=len(train_loader.dataset) if hasattr(train_loader, "dataset")
                         else len(train_loader.labels),
                         n_test=len(test_loader.dataset) if hasattr(test_loader, "dataset")
                         else len(test_loader.labels)))
    ref = next((x for x in arms if x["arm"] == "reference"), None)
    comparisons = []
    if ref is not None:
        for x in arms:
            if x is not ref:
                comparisons.append(dict(arm=x["arm"], metric="final_acc",
                                        **compare([r["final_acc"] for r in ref["runs"]],
                                                  [r["final_acc"] for r in x["runs"]], ref["n_test"])))
    result = dict(device=device_name(a.device), torch=torch.__version__,
                  settings=dict(dataset=a.dataset, arch=a.arch, width_mult=a.width_mult, epochs=a.epochs, lr=a.lr,
                                batch=a.batch, seeds=a.seeds, train_images=arms[0]["n_train"],
                                test_images=arms[0]["n_test"], workers=a.workers),
                  command="python benchmarks/parity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  arms=arms, comparisons=comparisons, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_outputs(result, markdown(result), a.json, a.markdown)


if __name__ == "__main__":
    main()
