#!/usr/bin/env python
"""Accuracy parity: the fast path reaches the reference path's test accuracy (same seeds, same schedule).

Arms (every one trains the same architecture from the same seeded initialisation with the same schedule):
  reference   torchvision DataLoader over PIL images (RandomCrop(32, padding=4), RandomHorizontalFlip,
              ToTensor, Normalize), 1 worker, fp32, eager: the papers' pipeline
  fast        rethink.data.TensorLoader + the speed settings resolved for the device (CUDA: bf16 autocast,
              channels_last, cudnn.benchmark; CPU: fp32, eager)
  fast-bf16   TensorLoader + bf16 autocast + channels_last on any device (on a CPU: to test bf16 there)
  profile     TensorLoader + the speed settings of ``--profile`` for the arch, resolved for the device (the book
              profile on this CPU: bf16 + channels_last, and torch.compile for the CIFAR ResNets): what its runs use

With ``--profile`` (e.g. ``book``) the data, widths, schedule (warm-up included) and initialisation are those of
that profile's large model of each seed, as the book's runs train it; ``--epochs`` and the other settings given
override the profile's.  ``--merge A.json B.json`` compares arms (or seeds) run by separate invocations, e.g. one
process per arm with one thread each, side by side on two cores, without training anything.

The two pipelines draw different random crops and orders, so the runs differ as two seeds do; "within noise"
means |mean final accuracy difference| <= 2 x the larger of (a) its standard error from the seed-to-seed spread
and (b) its binomial standard error from the size of the test set.

    python benchmarks/parity.py --json book/perf/parity-cpu.json --markdown book/perf/parity-cpu.md
    python benchmarks/parity.py --profile book --arch vgg16 --arms reference --threads 1 --json ref.json &
    python benchmarks/parity.py --profile book --arch vgg16 --arms profile --threads 1 --json fast.json
    python benchmarks/parity.py --merge ref.json fast.json --markdown book/perf/parity-cpu-book.md
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from rethink.config import DataConfig, PerfConfig, make_config, resolve_perf
from rethink.data import get_loaders, get_reference_loaders
from rethink.experiment import initial_model, schedule_for
from rethink.models import default_widths, get_model, scale_widths
from rethink.records import device_name
from rethink.train import Schedule, train
from throughput import write_outputs  # benchmarks/ is on sys.path when run as a script

REFERENCE_PERF = PerfConfig(amp="off", channels_last=False, cudnn_benchmark=False, compile="off")
ARMS = ("reference", "fast", "fast-bf16", "profile")
# without --profile: a small setting, minutes per run on a CPU
DEFAULTS = dict(width_mult=0.5, epochs=6, lr=0.1, batch=64, train_subset=5000, test_subset=2000)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist | cifar10 | cifar100")
    p.add_argument("--data-root", help="dataset folder (default $RETHINK_DATA or ./.data)")
    p.add_argument("--arch", default="resnet20", help="architecture")
    p.add_argument("--profile", help="take data, widths, schedule and initialisation from this profile's large "
                                     "model (book, quick, paper, smoke); the options below override it")
    p.add_argument("--width-mult", type=float, help="width multiplier (default 0.5)")
    p.add_argument("--epochs", type=int, help="epochs (lr /10 at 50%% and 75%%; default 6)")
    p.add_argument("--lr", type=float, help="initial learning rate (default 0.1)")
    p.add_argument("--batch", type=int, help="training batch (test batch 256; default 64)")
    p.add_argument("--train-subset", type=int, help="training images (default 5000)")
    p.add_argument("--test-subset", type=int, help="test images (default 2000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds, the same for every arm")
    p.add_argument("--arms", nargs="+", default=["reference", "fast"], choices=ARMS, help="what to compare")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers of the reference path")
    p.add_argument("--device", default="auto", help="cuda | cpu | auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", help="write the result here")
    p.add_argument("--markdown", help="write the tables here (the book includes them)")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="compare the arms of these results (written by "
                                                               "--json with the same settings); trains nothing")
    a = p.parse_args(argv)
    if a.profile is None:
        for k, v in DEFAULTS.items():
            if getattr(a, k) is None:
                setattr(a, k, v)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    return a


def arm_setup(arm: str, a, data: DataConfig, profile_perf: PerfConfig | None):
    if arm == "reference":
        train_loader, test_loader, info = get_reference_loaders(data, a.device, num_workers=a.workers)
        return train_loader, test_loader, info, REFERENCE_PERF, "torchvision DataLoader + PIL transforms"
    train_loader, test_loader, info = get_loaders(data, a.device)
    if arm == "profile":
        if profile_perf is None:
            raise SystemExit("the arm 'profile' needs --profile")
        return train_loader, test_loader, info, profile_perf, "TensorLoader (on the device)"
    perf = PerfConfig() if arm == "fast" else PerfConfig(amp="bf16", channels_last=True)
    return train_loader, test_loader, info, resolve_perf(perf, a.device), "TensorLoader (on the device)"


def setting(a):
    """(data config, schedule, model factory(info, seed), profile's perf or None) of the run: from ``--profile``
    where given (the large model of each seed as the profile's runs train it), else from the options alone."""
    if a.profile:
        cfg = make_config(arch=a.arch, profile=a.profile, device=a.device, dataset=a.dataset, data_root=a.data_root,
                          epochs=a.epochs, lr=a.lr, batch_size=a.batch, train_subset=a.train_subset,
                          test_subset=a.test_subset, width_mult=a.width_mult)
        a.epochs, a.lr, a.batch, a.width_mult = cfg.train.epochs, cfg.train.lr, cfg.data.batch_size, cfg.width_mult
        return (cfg.data, schedule_for(cfg, cfg.train.epochs),
                lambda info, seed: initial_model(cfg, info, seed), cfg.perf)
    data = DataConfig(dataset=a.dataset, root=a.data_root, train_subset=a.train_subset, test_subset=a.test_subset,
                      batch_size=a.batch, test_batch_size=256)

    def model(info, seed):
        torch.manual_seed(seed)
        return get_model(a.arch, info.num_classes, scale_widths(default_widths(a.arch), a.width_mult),
                         info.in_channels).to(a.device)
    return data, Schedule(a.epochs, a.lr, (0.5, 0.75)), model, None


def commands_of(result: dict) -> list:
    """The commands that made a result: one, or (a merge) every one of its parts'."""
    return result.get("commands") or [result["command"]]


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
    profile = f", the `{s['profile']}` profile's large model" if s.get("profile") else ""
    warmup = f", {s['warmup_epochs']} warm-up epoch(s) at lr / 10" if s.get("warmup_epochs") else ""
    commands = commands_of(result)
    lines = [f"Device: **{result['device']}**; torch {result['torch']}.  {s['dataset']}, {s['train_images']} "
             f"training / {s['test_images']} test images, {s['arch']} at width multiplier {s['width_mult']}"
             f"{profile}, {s['epochs']} epochs (lr {s['lr']}, /10 at 50% and 75%{warmup}), batch {s['batch']}, "
             f"seeds {s['seeds']}.  Command{'s' if len(commands) > 1 else ''}: "
             + "; ".join(f"`{c}`" for c in commands), "",
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


def comparisons(arms: list) -> list:
    """Every arm against the reference arm (final accuracy), if there is one."""
    ref = next((x for x in arms if x["arm"] == "reference"), None)
    return [] if ref is None else [
        dict(arm=x["arm"], metric="final_acc", **compare([r["final_acc"] for r in ref["runs"]],
                                                         [r["final_acc"] for r in x["runs"]], ref["n_test"]))
        for x in arms if x is not ref]


def merge(paths: list) -> dict:
    """One result from several written with the same settings (seeds aside): runs of the same arm joined, in
    seed order; the device and every command kept."""
    results = [json.loads(Path(p).read_text()) for p in paths]
    strip = lambda s: {k: v for k, v in s.items() if k != "seeds"}  # noqa: E731
    first = results[0]
    for p, r in zip(paths[1:], results[1:]):
        if strip(r["settings"]) != strip(first["settings"]) or r["device"] != first["device"]:
            raise SystemExit(f"{p} was run with other settings or on another device than {paths[0]}: "
                             f"{r['device']}, {strip(r['settings'])} vs {first['device']}, {strip(first['settings'])}")
    arms = {}
    for r in results:
        for arm in r["arms"]:
            if arm["arm"] in arms:
                have = arms[arm["arm"]]
                seeds = {x["seed"] for x in have["runs"]}
                have["runs"] = sorted(have["runs"] + [x for x in arm["runs"] if x["seed"] not in seeds],
                                      key=lambda x: x["seed"])
            else:
                arms[arm["arm"]] = arm
    arms = [arms[k] for k in sorted(arms, key=lambda k: ARMS.index(k) if k in ARMS else len(ARMS))]
    seeds = sorted({x["seed"] for arm in arms for x in arm["runs"]})
    commands = [c for r in results for c in commands_of(r)]
    return dict(first, settings={**first["settings"], "seeds": seeds}, arms=arms, comparisons=comparisons(arms),
                command=commands[0], commands=commands, finished_at=max(r["finished_at"] for r in results))


def main(argv=None) -> None:
    a = parse(argv)
    if a.merge:
        result = merge(a.merge)
        write_outputs(result, markdown(result), a.json, a.markdown)
        return
    data, schedule, make_model, profile_perf = setting(a)
    arms = []
    for arm in a.arms:
        train_loader, test_loader, info, perf, pipeline = arm_setup(arm, a, data, profile_perf)
        runs = []
        for seed in a.seeds:
            model = make_model(info, seed)
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
    result = dict(device=device_name(a.device), torch=torch.__version__,
                  settings=dict(dataset=a.dataset, arch=a.arch, profile=a.profile, width_mult=a.width_mult,
                                epochs=a.epochs, lr=a.lr, warmup_epochs=schedule.warmup_epochs, batch=a.batch,
                                seeds=a.seeds, train_images=arms[0]["n_train"], test_images=arms[0]["n_test"],
                                workers=a.workers),
                  command="python benchmarks/parity.py " + " ".join(map(str, argv if argv is not None
                                                                         else sys.argv[1:])),
                  arms=arms, comparisons=comparisons(arms), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_outputs(result, markdown(result), a.json, a.markdown)


if __name__ == "__main__":
    main()
