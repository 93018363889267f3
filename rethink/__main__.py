"""Command line: the notebooks' experiments without Jupyter.

    python -m rethink list
    python -m rethink run --arch vgg16 --variant vgg16-a --dataset fashion-mnist --profile quick
"""
from __future__ import annotations

import argparse
import sys

from . import list_methods, list_models
from .config import PROFILES, ConfigError
from .data import DatasetNotFoundError, list_datasets
from .prune.l1_norm import list_variants


def _list(_args) -> None:
    print("architectures:", ", ".join(list_models()))
    print("methods:      ", ", ".join(list_methods()))
    print("variants:     ", ", ".join(list_variants()))
    print("datasets:     ", ", ".join(list_datasets()))
    print("profiles:     ", ", ".join(list(PROFILES) + ["auto"]))


def _run(args) -> None:
    from .experiment import configure, run_experiment
    from .records import load_records
    from .report import result_table
    cfg = configure(method=args.method, arch=args.arch, variant=args.variant, prune_ratio=args.prune_ratio,
                    dataset=args.dataset, profile=args.profile, seeds=args.seeds, device=args.device,
                    data_root=args.data_root, output_dir=args.output_dir, epochs=args.epochs,
                    finetune_epochs=args.finetune_epochs, train_subset=args.train_subset, width_mult=args.width_mult,
                    amp=args.amp, compile=args.compile)
    print(f"profile {cfg.profile}, dataset {cfg.data.dataset}, device {cfg.device}, seeds {list(cfg.seeds)}, "
          f"{cfg.train.epochs} epochs", file=sys.stderr)
    records = run_experiment(cfg, progress=not args.quiet, resume=not args.restart)
    paths = [f"{cfg.output_dir}/records/{r['run_id']}.json" for r in records]
    print(result_table(load_records(paths)).to_string())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rethink", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="known architectures, methods, variants, datasets, profiles").set_defaults(func=_list)
    run = sub.add_parser("run", help="baseline -> prune -> fine-tune | Scratch-E | Scratch-B, per seed")
    run.add_argument("--arch", required=True, help="architecture (see `list`)")
    run.add_argument("--method", default="l1-norm", help="pruning method (default l1-norm)")
    run.add_argument("--variant", help="published variant, e.g. vgg16-a; default: the arch's first one")
    run.add_argument("--prune-ratio", type=float, help="fraction of filters removed per prunable layer, [0, 1)")
    run.add_argument("--dataset", default="cifar10", help="cifar10 | cifar100 | fashion-mnist")
    run.add_argument("--profile", default="auto", help="paper | quick | smoke | auto (paper on CUDA, else quick)")
    run.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the profile's)")
    run.add_argument("--epochs", type=int, help="epochs of the large model and Scratch-E")
    run.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs (constant lr 0.001)")
    run.add_argument("--train-subset", type=int, help="number of training images")
    run.add_argument("--width-mult", type=float, help="one width multiplier for original and pruned widths")
    run.add_argument("--device", default="auto", help="cuda | cpu | auto")
    run.add_argument("--data-root", help="dataset folder (default $RETHINK_DATA or ./.data)")
    run.add_argument("--output-dir", default="runs", help="records go to OUTPUT_DIR/records")
    run.add_argument("--restart", action="store_true", help="retrain regimes that already have a record")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--amp", help="auto | off | bf16: autocast of forward passes (auto: bf16 on CUDA, off on CPU)")
    run.add_argument("--compile", help="off | default | reduce-overhead | max-autotune: torch.compile (default off)")
    run.set_defaults(func=_run)
    from .pack import add_parser as add_pack_parser
    add_pack_parser(sub)  # `pack`: several runs at once as separate processes
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, DatasetNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
