"""Command line: the notebooks' experiments without Jupyter.

    python -m rethink list
    python -m rethink run --arch vgg16 --variant vgg16-a --dataset fashion-mnist --profile quick
    python -m rethink converge --arch vgg16 --dataset fashion-mnist --profile book --output-dir book/convergence
    python -m rethink sweep grids/table1.yaml [--profile smoke] [--engine local|ray] [--jobs N]
    python -m rethink labs [--pages]   # the course labs: student/instructor versions, autograders (otter assign)
"""
from __future__ import annotations

import argparse
import sys

from . import list_methods, list_models
from .config import PROFILES, ConfigError
from .data import DatasetNotFoundError, list_datasets
from .prune.l1_norm import list_variants
from .records import WriteError


def _list(_args) -> None:
    print("architectures:", ", ".join(list_models()))
    print("methods:      ", ", ".join(list_methods()))
    print("variants:     ", ", ".join(list_variants()))
    print("datasets:     ", ", ".join(list_datasets()))
    print("profiles:     ", ", ".join(list(PROFILES) + ["auto"]))


def _config(args, prune: bool = True):
    """The RunConfig of the command line's settings; ``prune=False``: no pruned model is needed (the large model
    alone), so an arch without a published variant needs no prune ratio."""
    from .config import make_config
    from .experiment import configure
    return (configure if prune else make_config)(method=args.method, arch=args.arch, variant=args.variant, prune_ratio=args.prune_ratio,
                    sparsity_lambda=args.sparsity_lambda, scope=args.scope, dataset=args.dataset, profile=args.profile, seeds=args.seeds, device=args.device,
                    data_root=args.data_root, output_dir=args.output_dir, epochs=args.epochs,
                    finetune_epochs=args.finetune_epochs, train_subset=args.train_subset, width_mult=args.width_mult,
                    amp=args.amp, compile=args.compile, warmup_epochs=args.warmup_epochs)


def _run(args) -> None:
    from .experiment import run_experiment
    from .records import load_records
    from .report import result_table
    cfg = _config(args)
    print(f"profile {cfg.profile}, dataset {cfg.data.dataset}, device {cfg.device}, seeds {list(cfg.seeds)}, "
          f"{cfg.train.epochs} epochs", file=sys.stderr)
    records = run_experiment(cfg, progress=not args.quiet, resume=not args.restart,
                             regimes=tuple(args.regimes) if args.regimes else None)
    paths = [f"{cfg.output_dir}/records/{r['run_id']}.json" for r in records]
    table = result_table(load_records(paths))
    print(table.attrs.get("caption", ""))
    print(table.to_string())


def _page(args) -> None:
    from .book_page import make_book_page
    for path in args.notebooks:
        make_book_page(path, args.title, toc="_toc.yml")


def _converge(args) -> None:
    from .convergence import check_convergence, convergence_table, write_convergence_markdown
    cfg = _config(args, prune=False)
    print(f"profile {cfg.profile}, dataset {cfg.data.dataset}, device {cfg.device}: {cfg.arch} for "
          f"{cfg.train.epochs} and {2 * cfg.train.epochs} epochs", file=sys.stderr)
    check_convergence(cfg, seed=(cfg.seeds or (0,))[0], progress=not args.quiet, redo=args.restart)
    print(convergence_table(f"{cfg.output_dir}/records").to_string())
    # the protocol page includes this table (book/convergence/table.md)
    write_convergence_markdown(f"{cfg.output_dir}/records", f"{cfg.output_dir}/table.md")


def _sweep(args) -> int:
    from .sweep import parse_value, sweep
    overrides = {k: parse_value(v) for k, v in args.parameter or []}
    ok = True
    for grid in args.grids:
        summary = sweep(grid, profile=args.profile, overrides=overrides, output_dir=args.output_dir,
                        engine=args.engine, jobs=args.jobs, retries=args.retries, address=args.address,
                        gpus_per_run=args.gpus_per_run, progress=not args.quiet, dry_run=args.dry_run,
                        only=args.only, threads=args.threads)
        print(summary)
        ok = ok and summary.ok
    return 0 if ok else 1


def _add_config_args(run) -> None:
    """The settings of one experiment, shared by `run` and `converge`."""
    run.add_argument("--arch", required=True, help="architecture (see `list`)")
    run.add_argument("--method", default="l1-norm", help="pruning method (default l1-norm; see `list`)")
    run.add_argument("--variant", help="published variant, e.g. vgg16-a (l1-norm, thinet, channel-pruning); "
                     "default for l1-norm: the arch's first one")
    run.add_argument("--prune-ratio", type=float, help="fraction removed, [0, 1): filters per prunable layer "
                     "(sss: residual blocks)")
    run.add_argument("--sparsity-lambda", type=float, help="slimming: L1 penalty on BN scales (default 1e-4 VGG, "
                     "1e-5 others); sss: on the residual blocks' factors (default 1e-2)")
    run.add_argument("--scope", choices=("global", "layer"), help="magnitude: one threshold over all conv weights "
                     "(global, default) or per layer")
    run.add_argument("--dataset", default="cifar10", help="cifar10 | cifar100 | fashion-mnist")
    run.add_argument("--profile", default="auto", help="paper | book | quick | smoke | auto (paper on CUDA, else quick)")
    run.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the profile's)")
    run.add_argument("--epochs", type=int, help="epochs of the large model and Scratch-E")
    run.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs (constant lr 0.001)")
    run.add_argument("--train-subset", type=int, help="number of training images")
    run.add_argument("--width-mult", type=float, help="one width multiplier for original and pruned widths")
    run.add_argument("--device", default="auto", help="cuda | cpu | auto")
    run.add_argument("--data-root", help="dataset folder (default $RETHINK_DATA or ./.data)")
    run.add_argument("--output-dir", default="runs", help="records go to OUTPUT_DIR/records")
    run.add_argument("--restart", action="store_true", help="retrain regimes that already have a record")
    run.add_argument("--regimes", nargs="+", metavar="REGIME",
                     help="only these regimes (fine-tune scratch-e scratch-b), e.g. fine-tune while the large "
                          "models are in the cache; default: all")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--amp", help="auto | off | bf16: autocast of forward passes (auto: bf16 on CUDA and on CPUs with bf16 instructions, AVX-512 BF16 or AMX; else off)")
    run.add_argument("--warmup-epochs", type=int, help="first epochs at lr / 10 (He et al.'s ResNet-110 warm-up)")
    run.add_argument("--compile", help="off | default | reduce-overhead | max-autotune: torch.compile (default off)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rethink", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="known architectures, methods, variants, datasets, profiles").set_defaults(func=_list)
    run = sub.add_parser("run", help="baseline -> prune -> fine-tune | Scratch-E | Scratch-B, per seed")
    _add_config_args(run)
    run.set_defaults(func=_run)
    conv = sub.add_parser("converge", help="the large model of seed 0 under a profile vs 2x the epochs (records for "
                                            "the protocol page's convergence table)")
    _add_config_args(conv)
    conv.set_defaults(func=_converge)
    page = sub.add_parser("page", help="make an executed notebook a book page: code behind toggles, a title")
    page.add_argument("notebooks", nargs="+", help="executed notebooks, rewritten in place")
    page.add_argument("--title", help="the page's H1 (default: its title in _toc.yml, else the notebook's own)")
    page.set_defaults(func=_page)
    from .pack import add_parser as add_pack_parser
    add_pack_parser(sub)  # `pack`: several runs at once as separate processes
    from .cache import add_parser as add_cache_parser
    add_cache_parser(sub)  # `cache`: the cached large models and training states; --clean removes leftovers
    from .labs import add_parser as add_labs_parser
    add_labs_parser(sub)  # `labs`: student and instructor versions of the course labs (otter assign)
    sw = sub.add_parser("sweep", help="run every run of grid files (grids/*.yaml) not done yet; resumable")
    sw.add_argument("grids", nargs="+", metavar="GRID", help="grid file(s), e.g. grids/table1.yaml")
    sw.add_argument("--profile", help="override the grid's profile (outputs then go to runs/sweeps/<grid>-<profile>"
                                      " unless --output-dir is given)")
    sw.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="override a notebook parameter in every run (VALUE read as YAML), e.g. -p train_subset 64")
    sw.add_argument("--output-dir", help="folder of executed notebooks, records and sweep state (default: grid's)")
    sw.add_argument("--engine", choices=("local", "ray"), default="local", help="local processes or a Ray cluster")
    sw.add_argument("--address", help="ray: address of a running cluster (e.g. 127.0.0.1:6379, auto); "
                                      "default: start a local one")
    sw.add_argument("--jobs", type=int, default=1, help="local: runs at once (GPUs shared round-robin)")
    sw.add_argument("--only", nargs="+", metavar="NAME", help="only the runs with these names (e.g. vgg16-a); the "
                                                              "others are left as they are")
    sw.add_argument("--threads", type=int, help="local: torch threads per run (default: cores / jobs)")
    sw.add_argument("--gpus-per-run", type=float, help="fraction of a GPU per run (default: local 1/runs per GPU,"
                                                       " ray 1 when the cluster has GPUs)")
    sw.add_argument("--retries", type=int, default=1, help="times a failed run is retried before it is reported")
    sw.add_argument("--dry-run", action="store_true", help="list what would run; run nothing")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=_sweep)
    args = parser.parse_args(argv)
    from .sweep import GridError
    try:
        rc = args.func(args)
    except (ConfigError, DatasetNotFoundError, GridError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
