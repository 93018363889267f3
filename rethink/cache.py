"""What the cache (:func:`rethink.experiment.cache_dir`) holds, and the removal of what is left over.

It holds the trained large models (``baselines/<arch>-<key>.pt``), the training states of trainings under way or
cut off (``baselines/<arch>-<key>.state.pt`` for a large model, ``training-states/*.state.pt`` for a regime, a
lottery or architecture-search training; :class:`rethink.train.TrainingState`), and the ``.part`` files of writes
that a kill interrupted (:func:`rethink.records.atomic_write_bytes`).  A long sweep run with ``--quiet`` shows
nothing while it trains; ``python -m rethink cache`` says how far each training got.

Leftovers: a state is removed by its caller once the record or checkpoint it leads to is written, so a state stays
behind only when a training was cut off and never resumed, or was killed between those two writes.  ``--clean``
removes the ``.part`` files, the states of large models whose checkpoint exists, and the states not written for
``--older-than`` days (a training that runs writes its state at least every epoch or 30 s).

Carrying: where the cache does not outlive a session (a fresh machine each time) but a folder does (a commit), a
training longer than one session still ends: ``--save DIR`` copies the large models and the training states worth
keeping into DIR, and ``--load DIR`` at the start of the next session copies them back (a state only where the
cache has none that got as far).  A state carried either way whose training has since ended here (its caller
removed it from the cache once the record or checkpoint was written; ``--clean`` counts as that) is removed from
DIR by the next ``--save``, and not loaded again; large models stay.  The book keeps its own in
``book/checkpoints`` (README, "Reproduce every table").
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .experiment import cache_dir
from .records import atomic_write_bytes
from .train import TrainingState

DAY_S = 86400.0
DAYS_KEPT = 7.0  # --older-than's default: a state not written for longer was abandoned


@dataclass
class Entry:
    path: Path
    kind: str                      # large model | training state | partial write
    size_mb: float
    age_s: float                   # since it was last written
    epochs: Optional[str] = None   # "24/120" for a training state
    acc: Optional[float] = None    # best test accuracy of a large model; last epoch's of a training state
    trained_s: Optional[float] = None
    stale: Optional[str] = None    # why --clean would remove it


def _entry(path: Path, now: float, older_than_days: float) -> Entry:
    st = path.stat()
    e = Entry(path, "large model", st.st_size / 2 ** 20, now - st.st_mtime)
    if path.name.endswith(".part"):
        e.kind = "partial write"
        # a write takes seconds; one older than an hour was cut off, not under way
        e.stale = "an interrupted write" if e.age_s > 3600 else None
        return e
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (truncated or foreign: show it, do not stop the listing)
        e.stale = f"unreadable ({type(exc).__name__})"
        return e
    if path.name.endswith(".state.pt"):
        e.kind = "training state"
        curve = d.get("curve") or []
        e.epochs = f"{len(curve)}/{(d.get('schedule') or {}).get('epochs', '?')}"
        e.acc = curve[-1].get("test_acc") if curve else None
        e.trained_s = d.get("elapsed_s")
        if path.parent.name == "baselines" and path.with_name(path.name[:-len(".state.pt")] + ".pt").exists():
            e.stale = "its large model is cached"
        elif e.age_s > older_than_days * DAY_S:
            e.stale = f"not written for {e.age_s / DAY_S:.1f} days"
    else:
        e.acc = (d.get("metrics") or {}).get("best_acc")
    return e


def cache_entries(root: Optional[Path] = None, older_than_days: float = DAYS_KEPT) -> list[Entry]:
    """The large models, training states and partial writes under ``root`` (default: the cache), oldest first."""
    root = Path(root) if root is not None else cache_dir()
    now = time.time()
    paths = [p for p in root.rglob("*") if p.is_file() and (p.suffix == ".pt" or p.name.endswith(".part"))]
    return sorted((_entry(p, now, older_than_days) for p in paths), key=lambda e: -e.age_s)


def _age(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h" \
        if s < 2 * DAY_S else f"{s / DAY_S:.1f} days"


def format_entries(entries: list[Entry], root: Path) -> str:
    if not entries:
        return f"{root}: empty"
    lines = [f"{root}:", "| file | kind | epochs | test acc % | trained | written | MB | --clean |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for e in entries:
        acc = "" if e.acc is None else f"{e.acc:.2f}"
        trained = "" if e.trained_s is None else _age(e.trained_s)
        lines.append(f"| {e.path.relative_to(root)} | {e.kind} | {e.epochs or ''} | {acc} | {trained} | "
                     f"{_age(e.age_s)} ago | {e.size_mb:.1f} | {'removes: ' + e.stale if e.stale else 'keeps'} |")
    return "\n".join(lines)


def clean(entries: list[Entry]) -> list[Entry]:
    """Remove the stale entries; returns those removed."""
    removed = []
    for e in entries:
        if e.stale:
            e.path.unlink(missing_ok=True)
            removed.append(e)
    return removed


CARRIED = "carried-states.json"  # in the cache: the states --load or --save carried, so --save knows which ended


def _carried(root: Path) -> set:
    try:
        return set(json.loads((root / CARRIED).read_text()))
    except (OSError, ValueError):  # none yet, or a write cut off: nothing is taken for ended
        return set()


def _ended(root: Path) -> set:
    """The carried states whose training ended here: their caller removed them from the cache."""
    return {r for r in _carried(root) if not (root / r).exists()}


def _remember(root: Path, states) -> None:
    atomic_write_bytes(root / CARRIED, json.dumps(sorted(_carried(root) | set(states)), indent=1).encode())


def _epochs_done(e: Entry) -> int:
    return int(e.epochs.split("/")[0]) if e.epochs else -1


def _identity(path: Path) -> Optional[dict]:
    """What a state must share with a training to continue it (rethink.train.TrainingState)."""
    try:
        s = torch.load(path, map_location="cpu", weights_only=True)
        return {k: s.get(k) for k in TrainingState.IDENTITY}
    except Exception:  # noqa: BLE001
        return None


def _kept(folder: Path, older_than_days: float = float("inf")) -> dict:
    """The large models and states that ``--clean`` keeps in ``folder``, by relative path (a carried folder's file
    dates mean nothing: a checkout's)."""
    entries = cache_entries(folder, older_than_days) if folder.exists() else []
    return {str(e.path.relative_to(folder)): e for e in entries if e.kind != "partial write" and not e.stale}


def load(src: Path, root: Path) -> list[str]:
    """Copy the large models and training states of ``src`` into the cache ``root`` where it has no large model of
    that name, or no state that got as far, and the training did not end here already; returns what it copied."""
    have = _kept(root)
    ended = _ended(root)
    copied = []
    for rel, e in _kept(src).items():
        mine = have.get(rel)
        if rel in ended or mine is not None and (e.kind == "large model" or _epochs_done(mine) >= _epochs_done(e)):
            continue
        atomic_write_bytes(root / rel, e.path.read_bytes())
        copied.append(rel)
    _remember(root, [r for r in copied if r.endswith(".state.pt")])
    return copied


def save(dst: Path, root: Path) -> tuple[list[str], list[str]]:
    """Copy into ``dst`` the cache's large models and the training states that ``--clean`` keeps, unless ``dst``
    has the same bytes or a state of the same training (schedule, speed settings, device) that got further;
    remove from ``dst`` the states of trainings that ended (carried by this cache and since removed from it by
    their caller, or whose large model is now in ``dst``).  Returns (copied, removed)."""
    theirs = _kept(dst)
    copied = []
    for rel, e in _kept(root, DAYS_KEPT).items():
        other = theirs.get(rel)
        data = e.path.read_bytes()
        if other is not None and (other.path.read_bytes() == data or _epochs_done(other) > _epochs_done(e)
                                  and _identity(other.path) == _identity(e.path)):
            continue  # the same, or the same training further along (one this cache could not use is replaced)
        atomic_write_bytes(dst / rel, data)
        copied.append(rel)
    _remember(root, [r for r in copied if r.endswith(".state.pt")])
    ended = _ended(root)
    removed = []
    for e in cache_entries(dst, older_than_days=float("inf")) if dst.exists() else []:
        rel = str(e.path.relative_to(dst))
        if e.kind == "training state" and (rel in ended or e.stale == "its large model is cached"):
            e.path.unlink()
            removed.append(rel)
    return copied, removed


def add_parser(sub) -> None:
    p = sub.add_parser("cache", help="the cached large models and training states, how far each training got; "
                                     "--clean removes leftovers")
    p.add_argument("--clean", action="store_true", help="remove partial writes, states of cached large models and "
                                                        "states not written for --older-than days")
    p.add_argument("--older-than", type=float, default=DAYS_KEPT, metavar="DAYS",
                   help="a training state not written for this many days counts as abandoned (default 7)")
    p.add_argument("--save", metavar="DIR", help="copy the large models and training states worth keeping into DIR "
                                                 "(e.g. book/checkpoints, committed), for a later session's --load")
    p.add_argument("--load", metavar="DIR", help="copy DIR's large models and training states into the cache where "
                                                 "it has none that got as far")
    p.set_defaults(func=_main)


def _main(args) -> int:
    root = cache_dir()
    if args.load:
        if not Path(args.load).is_dir():
            raise SystemExit(f"rethink cache --load: no folder {args.load}")
        copied = load(Path(args.load), root)
        print(f"loaded {len(copied)} file(s) from {args.load} into {root}" + "".join(f"\n  {r}" for r in copied))
    entries = cache_entries(root, args.older_than) if root.exists() else []
    print(format_entries(entries, root))
    if args.clean:
        removed = clean(entries)
        print(f"removed {len(removed)} file(s), {sum(e.size_mb for e in removed):.1f} MB"
              + "".join(f"\n  {e.path.relative_to(root)} ({e.stale})" for e in removed))
    if args.save:
        copied, removed = save(Path(args.save), root)
        print(f"saved {len(copied)} file(s) to {args.save}" + "".join(f"\n  {r}" for r in copied)
              + f"\nremoved {len(removed)} state(s) of trainings that ended" + "".join(f"\n  {r}" for r in removed))
    return 0
