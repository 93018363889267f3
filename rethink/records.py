"""One JSON record per run (config, metrics, model size, provenance), written atomically; records -> pandas."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import torch


class WriteError(OSError):
    """A result could not be written (full disk, quota, I/O error); the previous file at that path is unchanged."""

    def __str__(self) -> str:  # the message alone, not "[Errno 28] ..."
        return str(self.strerror)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: a reader never sees half a file.  When the write
    fails part-way (ENOSPC, EDQUOT, EIO, ...), the temporary file is removed, the previous file stays as it was, and
    a WriteError names the path and the reason."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as e:
        raise WriteError(e.errno, f"could not write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the result
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            name = errno.errorcode.get(e.errno, "")
            raise WriteError(e.errno, f"could not write {path}: {e.strerror or e}{f' ({name})' if name else ''}; "
                                      f"the previous file, if any, is unchanged") from None
        raise


def atomic_torch_save(obj, path: Path) -> None:
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


# Format of records and cached checkpoints.  Raise it when a change makes older files mean something else; list
# in READABLE_FORMATS the older ones this code still reads correctly (files from before versions existed are 1).
FORMAT = 2
READABLE_FORMATS = (1, 2)


def file_format(d: dict) -> int:
    return int(d.get("format", 1))


def write_record(record: dict, path: Path) -> Path:
    """Stamp ``record`` with this version's format (in place, so the caller holds what is on disk) and write it
    atomically."""
    record["format"] = FORMAT
    atomic_write_bytes(Path(path), json.dumps(record, indent=1, sort_keys=True).encode())
    return Path(path)


def read_record(path: Path) -> dict | None:
    """The record at ``path``, or None when it is missing or unreadable (a partial file is not a result)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    # The thread count is recorded apart (provenance.threads): runs on the same machine stay one table row.
    return f"cpu ({platform.processor() or platform.machine()})"


def run_time_note(seconds: float, device, what: str) -> str:
    """The sentence a page gives about what its runs cost: "The runs behind this page took **1.2 h** of wall time
    on <device>: <what>." (threads per run are in each record's provenance)"""
    span = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
    return f"The runs behind this page took **{span}** of wall time on {device_name(device)}: {what}."


def records_wall_s(paths) -> float:
    """The wall time of the runs behind a page: the sum of its records' ``provenance.wall_time_s`` (a page that
    reuses records written earlier costs what they cost, not the seconds it took to read them); missing or
    unreadable records count 0."""
    return sum((read_record(p) or {}).get("provenance", {}).get("wall_time_s", 0.0) for p in paths)


def earlier_train_s(metrics) -> float:
    """Seconds that earlier, interrupted attempts spent on trainings that a run then resumed (``metrics`` of
    ``rethink.train.train``, one per training): a run's wall time counts them too."""
    return sum(m.get("earlier_train_s", 0) for m in metrics)


def provenance(device, wall_time_s: float) -> dict:
    import torchvision
    return dict(git_sha=git_sha(), torch=torch.__version__, torchvision=torchvision.__version__,
                python=platform.python_version(), device=device_name(device), threads=torch.get_num_threads(), wall_time_s=round(wall_time_s, 2),
                finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), host=platform.node())


def settings_key(config: dict, prune: bool = True) -> str:
    """What the seeds of one row (or study setting) must share to be pooled: the architecture, the data (not its
    folder), the schedule, the width and the profile, and (``prune``) what of the pruning does not name the row:
    its scope and sparsity penalty.  Not the seed list, the output folder, the device or the speed settings (shown
    within noise by the parity benchmark).  Read through RunConfig, so a field added since reads as its default."""
    from .config import RunConfig
    try:
        config = json.loads(json.dumps(RunConfig.from_dict(config).to_dict()))
    except TypeError:  # a partial config (a hand-made record): as written
        pass
    key = dict(arch=config.get("arch"), data={k: v for k, v in config.get("data", {}).items() if k != "root"},
               train=config.get("train"), profile=config.get("profile"), width_mult=config.get("width_mult"))
    if prune:
        key["prune"] = {k: (config.get("prune") or {}).get(k) for k in ("scope", "sparsity_lambda")}
    return json.dumps(key, sort_keys=True)


def newest_settings(records: list[dict], prune: bool = True) -> tuple[list[dict], list[dict]]:
    """(current, older) records of one row: those written under the settings (:func:`settings_key`) of the most
    recently finished record, and the rest.  A row re-run under a new schedule (more epochs) replaces its seeds'
    records one by one; until the last one lands, the older seeds are a different experiment, not more seeds of
    this one.  (A record of the older settings finished after the new ones would be taken as the newest.)"""
    if not records:
        return [], []
    keys = [settings_key(r["config"], prune) for r in records]
    newest = keys[max(range(len(records)), key=lambda i: records[i]["provenance"].get("finished_at") or "")]
    return ([r for r, k in zip(records, keys) if k == newest], [r for r, k in zip(records, keys) if k != newest])


def settings_change(old: dict, new: dict) -> str:
    """How two records' settings (:func:`settings_key`) differ, e.g. "train.epochs 30, now 60"."""
    def flat(d, prefix=""):
        for k, v in d.items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    a, b = dict(flat(json.loads(settings_key(old)))), dict(flat(json.loads(settings_key(new))))
    return "; ".join(f"{k} {a.get(k)}, now {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def load_records(paths: Iterable[Path] | Path | str):
    """A DataFrame with one row per record: flat columns for the fields tables need, plus ``record``."""
    import pandas as pd
    if isinstance(paths, (str, Path)):
        paths = sorted(Path(paths).rglob("*.json"))
    rows, unreadable = [], []
    for p in paths:
        r = read_record(p)
        if r is None or "regime" not in r:
            continue
        if file_format(r) not in READABLE_FORMATS:  # another version's record: reported, never mixed in
            unreadable.append(f"{p} (format {file_format(r)}; this version reads {list(READABLE_FORMATS)})")
            continue
        c = r["config"]
        rows.append(dict(
            run_id=r["run_id"], regime=r["regime"], arch=c["arch"], method=c["prune"]["method"],
            variant=c["prune"]["variant"], prune_ratio=c["prune"]["prune_ratio"], dataset=c["data"]["dataset"],
            profile=c["profile"], seed=r["seed"], best_acc=r["metrics"]["best_acc"],
            final_acc=r["metrics"]["final_acc"], epochs=r["metrics"]["epochs"], params=r["model"]["params"],
            flops=r["model"]["flops"], widths=r["model"]["widths"], device=r["provenance"]["device"],
            wall_time_s=r["provenance"]["wall_time_s"], sparsity=r["model"].get("sparsity"),
            # which large model: "unpruned" (plain training) or a method's own training, e.g. "slimming-l1e-05"
            baseline_tag=r.get("baseline_tag", "unpruned"),
            # a scratch run trained once for two methods of the same widths: the run whose training this is
            shared_from=r.get("shared_from"), record=r))
    df = pd.DataFrame(rows)
    df.attrs["unreadable"] = unreadable
    if unreadable:
        import warnings
        warnings.warn(f"{len(unreadable)} record(s) of another format left out: {'; '.join(unreadable)}")
    return df
