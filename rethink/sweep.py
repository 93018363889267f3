"""Experiment grids: one YAML file per book chapter -> runs -> papermill executions, on one machine or on a Ray
cluster, resumable after any failure.

A grid file (``grids/table1.yaml``)::

    notebook: notebooks/scratch_vs_finetune.ipynb  # the papermill template every run executes
    kind: experiment      # experiment: each run is one rethink.experiment.run_experiment, so the sweep trains its
                          #   baselines first and checks its records; notebook: just execute the notebook
    output_dir: book/runs # the notebook's output_dir parameter: records (<output_dir>/records); sweep state (.sweep/)
    executed_dir: book/runs  # where executed notebooks go (default: output_dir)
    name: "{variant}"     # executed notebook <output_dir>/<name>.ipynb, formatted with the run's parameters
    parameters:           # the same for every run
      dataset: fashion-mnist
      profile: quick
    axes:                 # the runs are the product of the axes
      - [{arch: vgg16, variant: vgg16-a}, {arch: resnet56, variant: resnet56-a}]  # a list: values set together
      - {seeds: [[0], [1]]}                                                         # a mapping: one axis per key

Paths in a grid are relative to the folder the sweep runs from (the repository root).

A run's id is the notebook's name and a hash of its parameters (``output_dir`` and ``data_root`` left out: they
say where things are, not what is computed), so it is the same in every invocation.  A run is *done* when its
done-marker exists, its executed notebook holds no error and (``kind: experiment``) every record it must write
is readable; done runs are skipped.  Everything a run writes goes to temporary names first: papermill writes
``<output_dir>/.sweep/<run id>/<name>.ipynb.part``, which is renamed to ``<output_dir>/<name>.ipynb`` after the
notebook finished and its records were checked; then the done-marker is written atomically.  A run killed at
any point (kill -9 included) has no marker, so the next invocation runs it again.  A failed run is retried
``retries`` times, then reported; the rest of the grid goes on.

Baselines: runs of ``kind: experiment`` prune a trained large model, cached per (arch, data, schedule, seed) by
:func:`rethink.experiment.get_baseline`; runs on the same arch share it.  The sweep trains each needed baseline
once, as a task of its own, before the runs that need it (locally: a run starts when its baselines are cached;
on Ray: the baseline tasks' ObjectRefs are arguments of the run tasks, and carry the checkpoint to the node of
the run).  A file lock on the cache entry keeps two sweeps (or two Ray workers of one machine) from training
the same baseline at once.

Trainings: each record an experiment run lacks (one seed's fine-tuning, Scratch-E or Scratch-B, of the method or
of its control) is a task of its own too, after its seed's large model and before the run, whose notebook then
reads the records back and trains nothing.  So ``--jobs 2`` trains two of one row's seeds or regimes at once,
rather than one notebook's nine trainings one after another; tasks are ordered run by run, so rows finish in
order.  With one job, and on Ray, the notebook trains its records itself, in one process.  A lock per record
makes a second sweep wait for the first's training and then find its record.

Each task runs in a subprocess of its own (``python -m rethink.sweep baseline|training|run SPEC``): its torch
threads and ``CUDA_VISIBLE_DEVICES`` are set through its environment, a crash or kill -9 takes only that task
down, and the notebook's kernel (a child of it) exits with it.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from .book_page import make_book_page, papermill_line, toc_entries, toc_titles

ENGINES = ("local", "ray")
KINDS = ("experiment", "notebook")
STATE = ".sweep"            # per-run state folder inside the output folder
ERROR_PREFIX = "SWEEP-ERROR: "  # the worker's last stderr line names the error (one line)
HELD_PREFIX = "SWEEP-HELD: "    # the worker left the run to another sweep (it holds the run's lock, or finished it)
HELD_RC = 75                    # EX_TEMPFAIL: the worker's exit status then
# Parameters that say where things are, not what is computed: not part of a run's id.
LOCATION_PARAMETERS = ("output_dir", "data_root")


class GridError(ValueError):
    """A grid file is malformed or names something that does not exist."""


# ----------------------------------------------------------------------------------------------------------------
# grids and runs

@dataclass
class Grid:
    name: str                      # the file's stem, e.g. "table1"
    notebook: str
    kind: str = "notebook"
    output_dir: str = "runs"
    executed_dir: Optional[str] = None         # None: output_dir
    name_template: Optional[str] = None
    parameters: dict = field(default_factory=dict)
    axes: list = field(default_factory=list)   # each axis: a list of {parameter: value} points


@dataclass
class Run:
    run_id: str                    # <notebook stem>-<hash of the parameters>
    grid: str
    name: str                      # executed notebook: <output_dir>/<name>.ipynb
    notebook: str
    kind: str
    output_dir: str
    cwd: str                       # absolute folder the notebook runs in (relative paths are relative to it)
    parameters: dict               # everything passed to papermill, output_dir included
    executed_dir: Optional[str] = None  # folder of the executed notebook; None: output_dir
    baselines: list = field(default_factory=list)  # names of the baseline tasks this run needs (kind experiment)
    records: list = field(default_factory=list)    # record files the run must leave behind (kind experiment)
    trainings: list = field(default_factory=list)  # one Training (as a dict) per record, in the same order
    control: Optional[str] = None  # the control the notebook runs beside the method (its records are in records)
    error: Optional[str] = None    # the parameters are invalid: the run fails without executing

    @property
    def state_dir(self) -> Path:
        return Path(self.cwd) / self.output_dir / STATE / self.run_id

    @property
    def notebook_path(self) -> Path:
        return Path(self.cwd) / (self.executed_dir or self.output_dir) / f"{self.name}.ipynb"

    @property
    def partial_path(self) -> Path:
        return self.state_dir / f"{self.name}.ipynb.part"

    @property
    def marker_path(self) -> Path:
        return self.state_dir / "done.json"


@dataclass
class Baseline:
    """A large model to train (or find in the cache) before the runs that prune it."""
    name: str                      # cache file name, "<arch>-<key>.pt"
    params: dict                   # keyword arguments of rethink.experiment.configure
    seed: int
    cwd: str


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file."""
    path = Path(path)
    try:
        d = yaml.safe_load(path.read_text())
    except OSError as e:
        raise GridError(f"cannot read grid {path}: {e}") from e
    if not isinstance(d, dict) or "notebook" not in d:
        raise GridError(f"{path}: a grid is a mapping with at least 'notebook' (and 'parameters', 'axes')")
    known_keys = {"notebook", "kind", "output_dir", "executed_dir", "name", "parameters", "axes", "description"}
    unknown = set(d) - known_keys
    if unknown:
        raise GridError(f"{path}: unknown key(s) {sorted(unknown)}; known: {', '.join(sorted(known_keys))}")
    kind = d.get("kind", "notebook")
    if kind not in KINDS:
        raise GridError(f"{path}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    axes = []
    for item in d.get("axes") or []:
        if isinstance(item, dict):      # {param: [values]}: one axis per parameter
            for k, values in item.items():
                if not isinstance(values, list) or not values:
                    raise GridError(f"{path}: axis {k!r} must be a non-empty list of values")
                axes.append([{k: v} for v in values])
        elif isinstance(item, list) and item and all(isinstance(p, dict) for p in item):
            axes.append([dict(p) for p in item])  # points that set several parameters together
        else:
            raise GridError(f"{path}: an axis is a mapping {{parameter: [values]}} or a list of mappings; "
                            f"got {item!r}")
    params = d.get("parameters") or {}
    if not isinstance(params, dict):
        raise GridError(f"{path}: 'parameters' must be a mapping")
    return Grid(name=path.stem, notebook=str(d["notebook"]), kind=kind, output_dir=str(d.get("output_dir", "runs")),
                executed_dir=d.get("executed_dir"), name_template=d.get("name"), parameters=dict(params), axes=axes)


def run_hash(notebook: str, parameters: dict) -> str:
    """Stable id of (notebook, parameters): the order of keys, the folder of the notebook and the location
    parameters do not change it."""
    what = {k: v for k, v in parameters.items() if k not in LOCATION_PARAMETERS}
    blob = json.dumps(dict(notebook=Path(notebook).name, parameters=what), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def notebook_defaults(notebook: str | Path) -> dict:
    """The notebook's parameters cell as {name: default value} (literals only; others are left out)."""
    import papermill as pm
    out = {}
    for name, p in pm.inspect_notebook(str(notebook)).items():
        with contextlib.suppress(ValueError, SyntaxError):
            out[name] = ast.literal_eval(p["default"])
    return out


def sweep_output_dir(grid: Grid, profile: Optional[str], output_dir: Optional[str]) -> str:
    """``output_dir`` when given; the grid's when the profile is the grid's own; else runs/sweeps/<grid>-<profile>,
    so that a smoke check of a book grid never overwrites the book's executed notebooks and records."""
    if output_dir:
        return str(output_dir)
    if profile is None or profile == grid.parameters.get("profile"):
        return grid.output_dir
    return f"runs/sweeps/{grid.name}-{profile}"


def expand(grid: Grid, profile: Optional[str] = None, overrides: Optional[dict] = None,
           output_dir: Optional[str] = None, cwd: str | Path | None = None) -> tuple[list[Run], dict]:
    """The runs of ``grid`` (fixed parameters < axes < ``profile`` and ``overrides``) and, for ``kind:
    experiment``, the baselines they need ({name: Baseline}).  Raises GridError for a malformed grid; a run whose
    parameters are invalid is returned with ``error`` set."""
    cwd = str(Path(cwd or os.getcwd()).resolve())
    notebook = Path(grid.notebook)
    if not (Path(cwd) / notebook).is_file():
        raise GridError(f"grid {grid.name}: notebook {grid.notebook} not found under {cwd} (paths in a grid are "
                        f"relative to the folder the sweep runs from, the repository root)")
    out = sweep_output_dir(grid, profile, output_dir)
    # executed notebooks stay beside the outputs whenever those moved away from the grid's own folder
    executed = grid.executed_dir if out == grid.output_dir else None
    defaults = notebook_defaults(Path(cwd) / notebook) if grid.kind == "experiment" else {}
    runs, baselines, names = [], {}, {}
    for point in itertools.product(*grid.axes):
        params = dict(grid.parameters)
        for p in point:
            params.update(p)
        if profile is not None:
            params["profile"] = profile
        params.update(overrides or {})
        params["output_dir"] = out
        rid = f"{notebook.stem}-{run_hash(grid.notebook, params)}"
        try:
            name = grid.name_template.format(**params) if grid.name_template else rid
        except (KeyError, IndexError) as e:
            raise GridError(f"grid {grid.name}: name {grid.name_template!r} uses a parameter no run sets: {e}") from e
        if name in names and names[name] != rid:
            raise GridError(f"grid {grid.name}: two different runs are both named {name!r}; add the axis that "
                            f"tells them apart to 'name'")
        names[name] = rid
        run = Run(run_id=rid, grid=grid.name, name=name, notebook=str(notebook), kind=grid.kind, output_dir=out,
                  cwd=cwd, parameters=params, executed_dir=executed)
        if grid.kind == "experiment":
            try:
                _plan_experiment(run, {**defaults, **params}, baselines)
            except Exception as e:  # noqa: BLE001 (an invalid configuration fails this run, not the grid)
                run.error = f"{type(e).__name__}: {e}"
        if not any(r.run_id == rid for r in runs):
            runs.append(run)
    return runs, baselines


@dataclass
class Training:
    """One record of an experiment run: a seed's regime (or only its large model's record), trained by a task of
    its own before the run executes its notebook, so that one row's trainings share the sweep's jobs instead of
    running one after another inside the notebook (which then only reads them back)."""
    record: str                    # the record it writes, relative to cwd
    params: dict                   # keyword arguments of rethink.experiment.configure (the run's)
    control: Optional[str]         # None: the run's method; else its control's record
    seed: int
    regime: str                    # fine-tune | scratch-e | scratch-b | baseline (the large model's record only)
    baseline: str                  # cache name of the large model it prunes (its baseline task)
    cwd: str
    label: str

    @property
    def lock_path(self) -> Path:
        record = Path(self.cwd) / self.record  # <output_dir>/records/<id>.json; the lock goes beside the state
        return record.parent.parent / STATE / "trainings" / f"{record.stem}.lock"


def configure_kwargs(params: dict) -> dict:
    """The notebook parameters that rethink.experiment.configure takes (the notebook passes them through)."""
    import inspect

    from .config import DataConfig, PerfConfig, TrainConfig, make_config
    names = set(inspect.signature(make_config).parameters) - {"overrides"}
    names |= {f.name for c in (DataConfig, TrainConfig, PerfConfig) for f in dataclasses.fields(c)}
    names |= {"width_mult"}
    return {k: v for k, v in params.items() if k in names}


def _plan_experiment(run: Run, params: dict, baselines: dict) -> None:
    """Fill ``run.baselines`` and ``run.records`` the way run_experiment will name them."""
    from .experiment import baseline_path, configure, control_config, trainings
    kwargs = configure_kwargs(params)
    cfg = configure(**dict(kwargs))
    for seed in cfg.seeds:
        name = baseline_path(cfg, seed).name
        baselines.setdefault(name, Baseline(name=name, params=kwargs, seed=seed, cwd=run.cwd))
        run.baselines.append(name)
    # the notebook's own runs and those of its control (random filters at the same widths), when it has one
    control = control_config(cfg, params.get("control"))
    run.control = params.get("control") if control is not None else None
    for c in (cfg, control) if control is not None else (cfg,):
        for path, seed, regime in trainings(c):
            if str(path) in run.records:  # the large model's record: the control's is the method's
                continue
            run.records.append(str(path))
            what = regime if c is cfg or regime == "baseline" else f"{c.prune.method} {regime}"
            # the configuration is made again where the training runs (device, bf16: that machine's), as the
            # notebook makes it, so that the notebook finds the record written under its own settings
            run.trainings.append(dataclasses.asdict(Training(
                record=str(path), params=kwargs, control=None if c is cfg else run.control, seed=seed,
                regime=regime, baseline=baseline_path(cfg, seed).name, cwd=run.cwd,
                label=f"{run.name}: {what} seed {seed}")))


# ----------------------------------------------------------------------------------------------------------------
# state of a run

def notebook_error(path: Path) -> Optional[str]:
    """None when the executed notebook at ``path`` holds no error; else what is wrong with it."""
    try:
        nb = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        return f"executed notebook {path} unreadable: {e}"
    if nb.get("metadata", {}).get("papermill", {}).get("exception"):
        return "papermill marked the notebook as failed"
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []) or []:
            if o.get("output_type") == "error":
                return f"{o.get('ename')}: {o.get('evalue')}"
    return None


def missing_records(run: Run) -> list[str]:
    from .records import read_record
    return [r for r in run.records if read_record(Path(run.cwd) / r) is None]


def ran_with(path: Path, parameters: dict) -> bool:
    """Whether the executed notebook at ``path`` ran to its end through papermill with exactly ``parameters`` (its
    own metadata says so: the parameters, an end time, no exception)."""
    try:
        pm = json.loads(Path(path).read_text())["metadata"]["papermill"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return pm.get("parameters") == parameters and pm.get("end_time") is not None and not pm.get("exception")


def is_done(run: Run) -> bool:
    """An executed notebook without error that this run wrote (its done-marker) or that papermill ran with the
    run's very parameters (a committed page in a fresh clone, whose markers are not committed), and every record
    of the run readable.  To run a page again whose notebook changed, delete the executed notebook."""
    from .records import read_record
    marker = read_record(run.marker_path)
    ours = marker is not None and marker.get("run_id") == run.run_id
    return (run.notebook_path.exists() and (ours or ran_with(run.notebook_path, run.parameters))
            and notebook_error(run.notebook_path) is None and not missing_records(run))


# ----------------------------------------------------------------------------------------------------------------
# the two tasks; each runs in a worker subprocess (``python -m rethink.sweep KIND SPEC``)

class Held(Exception):
    """Another process holds the lock (``file_lock(..., wait=False)``)."""


@contextlib.contextmanager
def file_lock(path: Path, wait: bool = True):
    """An exclusive lock held while the block runs (released by the OS if the holder dies, even by kill -9);
    ``wait=False``: raise Held at once when another process holds it."""
    import fcntl
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Held(str(path)) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def train_record(t: Training) -> None:
    """Write ``t``'s record (run_experiment of one seed and regime; its large model is cached by then) unless it
    is there.  The lock makes a second sweep wait for the first's training and then find the record written."""
    from .experiment import configure, control_config, run_experiment
    cfg = configure(**dict(t.params))
    cfg = control_config(cfg, t.control) if t.control else cfg
    with file_lock(t.lock_path):
        run_experiment(dataclasses.replace(cfg, seeds=(t.seed,)), progress=False,
                       regimes=() if t.regime == "baseline" else (t.regime,))
    if not (Path(t.cwd) / t.record).is_file():
        raise RuntimeError(f"the training finished but did not write its record {t.record}")
    print(t.record)  # the log's last line, as the baseline task's is its checkpoint


def train_baseline(b: Baseline) -> Path:
    """Train the baseline into the cache unless it is there; returns the checkpoint's path.  The lock makes a
    second trainer of the same checkpoint wait and then find it cached."""
    from .data import get_loaders
    from .experiment import baseline_path, configure, get_baseline
    cfg = configure(**dict(b.params))
    path = baseline_path(cfg, b.seed)
    with file_lock(path.with_suffix(".lock")):
        if not path.exists():
            train_loader, test_loader, info = get_loaders(cfg.data, cfg.device, seed=0)  # as run_experiment does
            get_baseline(cfg, b.seed, info, train_loader, test_loader, progress=False)
    return path


def _toc_page(run: Run) -> str:
    """The run's executed notebook as _toc.yml names pages: relative to the book's folder (the run's working
    folder), without ``.ipynb``."""
    path = run.notebook_path.with_suffix("")
    with contextlib.suppress(ValueError):  # Windows: another drive has no relative path; it stays absolute
        path = Path(os.path.relpath(path, Path(run.cwd)))
    return path.as_posix()


def page_title(run: Run) -> Optional[str]:
    """The title _toc.yml gives the executed notebook's page, if any: it becomes the page's H1."""
    return toc_titles(Path(run.cwd) / "_toc.yml").get(_toc_page(run))


def missing_from_toc(run: Run) -> Optional[str]:
    """The page (as _toc.yml would name it) of a run that writes into a folder of the book, i.e. one whose other
    pages _toc.yml lists, when the toc does not list it; else None.  jupyter-book (only_build_toc_files) would leave
    it out, and the sweep would give it the notebook's own title: add the entry before the sweep writes the page
    (a page already written gets its title from ``python -m rethink page``)."""
    page = _toc_page(run)
    files = toc_entries(Path(run.cwd) / "_toc.yml")
    if page in files or not any(Path(f).parent == Path(page).parent for f in files):
        return None
    return page


def rerun_commands(run: Run) -> list[str]:
    """The commands that remake this run's page: the sweep of its grid, and the same run by papermill alone."""
    grid = Path("grids") / f"{run.grid}.yaml"
    out = []
    if (Path(run.cwd) / grid).is_file():
        out.append(f"python -m rethink sweep {grid} --only {run.name}")
    out.append(papermill_line(run.notebook, f"{run.name}.ipynb", run.parameters))
    return out


def execute_run(run: Run) -> None:
    """Execute the run's notebook through papermill into a temporary file; check it and its records; rename it to
    its final name; write the done-marker.  Raises RuntimeError (one line) on failure."""
    import papermill as pm

    from .records import write_record
    t0 = time.time()
    state = run.state_dir
    state.mkdir(parents=True, exist_ok=True)
    run.marker_path.unlink(missing_ok=True)
    run.partial_path.unlink(missing_ok=True)
    try:
        with warnings.catch_warnings():  # the .part name is on purpose: never taken for a finished notebook
            warnings.filterwarnings("ignore", "The specified file .* does not end in", UserWarning)
            pm.execute_notebook(str(Path(run.cwd) / run.notebook), str(run.partial_path), parameters=run.parameters,
                                cwd=run.cwd, progress_bar=False, log_output=False)
    except pm.PapermillExecutionError as e:
        raise RuntimeError(f"{e.ename}: {e.evalue} (cell {e.exec_count}; partial notebook {run.partial_path})") \
            from None
    error = notebook_error(run.partial_path)
    if error:
        raise RuntimeError(f"{error} (partial notebook {run.partial_path})")
    missing = missing_records(run)
    if missing:
        raise RuntimeError(f"the notebook finished but did not write the record(s) {missing}")
    make_book_page(run.partial_path, title=page_title(run), commands=rerun_commands(run))
    run.notebook_path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(run.partial_path, run.notebook_path)
    write_record(dict(run_id=run.run_id, grid=run.grid, name=run.name, notebook=run.notebook,
                      parameters=run.parameters, records=run.records, wall_time_s=round(time.time() - t0, 2),
                      host=os.uname().nodename, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds")),
                 run.marker_path)


def die_with_parent() -> None:
    """Linux: this process is killed when the process that started it dies (a Ray worker or a sweep killed by
    kill -9), so that no orphan keeps training, or keeps holding a run's lock, after its task was given up and
    retried elsewhere.  Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before the call above
        os._exit(1)


def _worker_main(argv: list[str]) -> int:
    """``python -m rethink.sweep baseline|training|run SPEC_JSON``: one task; the error goes to stderr's last
    line."""
    die_with_parent()
    kind, spec = argv
    try:
        if kind == "baseline":
            print(train_baseline(Baseline(**json.loads(spec))))
        elif kind == "training":
            train_record(Training(**json.loads(spec)))
        else:
            run = Run(**json.loads(spec))
            # Two sweeps of one grid (two terminals, local beside Ray): the run's lock makes the second leave it
            # to the first, and a run the other finished meanwhile is not executed again.
            with file_lock(run.state_dir / "lock", wait=False):
                if is_done(run):
                    print(f"\n{HELD_PREFIX}done by another sweep", file=sys.stderr)
                    return HELD_RC
                execute_run(run)
    except Held:
        print(f"\n{HELD_PREFIX}running in another sweep", file=sys.stderr)
        return HELD_RC
    except BaseException as e:  # noqa: BLE001 (report any failure, KeyboardInterrupt included, in one line)
        traceback.print_exc()
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"\n{ERROR_PREFIX}{type(e).__name__}: {msg}" if not isinstance(e, RuntimeError) else
              f"\n{ERROR_PREFIX}{msg}", file=sys.stderr)
        return 1
    return 0


def task_env(threads: int, gpu: Optional[str] = None) -> dict:
    """Environment of a worker: torch/OpenMP threads; the GPU it may see (None: leave as is)."""
    from .experiment import cache_dir
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1",
               RETHINK_CACHE=str(cache_dir()))  # absolute: a worker runs in its grid's folder
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def run_worker(kind: str, spec: dict, env: dict, log_dir: Optional[Path] = None) -> Optional[str]:
    """Run one task in a subprocess; None on success, else its error (one line).  Its output streams to
    ``log_dir/attempt-<n>.log`` (n counts every attempt, of every invocation), so a killed task leaves its log."""
    import tempfile
    cmd = [sys.executable, "-m", "rethink.sweep", kind, json.dumps(spec, default=str)]
    if log_dir is not None:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        n = 1 + max([int(p.stem.split("-")[-1]) for p in log_dir.glob("attempt-*.log")] or [0])
        log = open(log_dir / f"attempt-{n}.log", "w+")
    else:
        log = tempfile.TemporaryFile("w+")
    with log:
        rc = subprocess.run(cmd, env=env, cwd=spec["cwd"], stdout=log, stderr=subprocess.STDOUT).returncode
        if rc == 0:
            return None
        log.seek(0)
        lines = log.read().splitlines()
    held = [ln for ln in lines if ln.startswith(HELD_PREFIX)]
    if rc == HELD_RC and held:
        return held[-1]
    errors = [ln for ln in lines if ln.startswith(ERROR_PREFIX)]
    if errors:
        return errors[-1][len(ERROR_PREFIX):]
    if rc < 0:
        return f"worker killed by signal {signal.Signals(-rc).name}"
    tail = [ln for ln in lines if ln.strip()]
    return f"worker exited with {rc}: {tail[-1] if tail else 'no output'}"


# ----------------------------------------------------------------------------------------------------------------
# engines

@dataclass
class Summary:
    grid: str
    output_dir: str
    done: list = field(default_factory=list)       # names of runs executed now
    skipped: list = field(default_factory=list)    # names of runs done before
    failed: dict = field(default_factory=dict)     # name -> (attempts, error)
    held: dict = field(default_factory=dict)       # name -> why another sweep has it (running it, or done it)
    pending: list = field(default_factory=list)    # names of runs a dry run would execute
    estimate: str = ""                              # a dry run's estimate of the training time left
    not_in_toc: list = field(default_factory=list)  # pages of the grid's runs (done or not) that _toc.yml lacks

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        lines = [f"{self.grid}: {len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed"
                 + (f", {len(self.held)} left to another sweep" if self.held else "")
                 + f" (output in {self.output_dir})"]
        for name, why in sorted(self.held.items()):
            lines.append(f"  LEFT {name} to another sweep: {why}")
        if self.pending:
            lines.append(f"  to run ({len(self.pending)}): {', '.join(self.pending)}")
        if self.estimate:
            lines.append(f"  time: {self.estimate}")
        if self.not_in_toc:
            lines.append(f"  NOT IN _toc.yml: {', '.join(self.not_in_toc)} (the book leaves such pages out: add "
                         f"their entries with a title; a page already written then gets its title from `python -m "
                         f"rethink page PAGE.ipynb`)")
        for name, (attempts, error) in sorted(self.failed.items()):
            lines.append(f"  FAILED {name} after {attempts} attempt(s): {error}")
        return "\n".join(lines)


@dataclass
class _Task:
    key: str                       # "baseline:<name>", "training:<record>" or "run:<run id>"
    kind: str                      # baseline | training | run
    spec: dict
    deps: list                     # keys of the tasks that must succeed first
    label: str
    log_dir: Optional[Path] = None
    attempts: int = 0
    status: str = "pending"        # pending | running | done | failed | held (by another sweep)
    error: Optional[str] = None
    cached: bool = False           # a baseline already in this machine's cache (a Ray node may still lack it)


LONGEST_FIRST = {"scratch-b": 0, "scratch-e": 1, "fine-tune": 2}  # a seed's regimes, by the epochs they train


def _tasks(runs: list[Run], baselines: dict, summary: Summary, split: bool = True) -> list[_Task]:
    """Tasks for the runs that are not done, marking the others: for each run, each large model it needs followed
    (``split``) by one training per missing record that prunes it, of this run and of the later runs that prune the
    same large model (Table 1's ResNet-A and -B rows share theirs), longest first, then the run itself (its
    notebook, which trains what is left and reads the rest back).  A free job takes the first task whose
    dependencies are done, so the jobs finish one row (or rows sharing large models) before they start the next,
    one seed before the next: a seed's regimes come before the next seed's large model.  Where the cache does not
    outlive a session, a hard stop then loses the least: records are kept, a large model whose regimes are not all
    written is not."""
    from .experiment import baseline_path, configure
    from .records import read_record
    tasks, by_key, plans = [], {}, []

    def add(task: _Task) -> str:
        if task.key not in by_key:
            by_key[task.key] = task
            tasks.append(task)
        return task.key

    for run in runs:
        if run.error:
            summary.failed[run.name] = (0, f"invalid parameters: {run.error}")
            continue
        if is_done(run):
            summary.skipped.append(run.name)
            continue
        # a run with all its records only remakes its page: it needs no large model
        todo = [Training(**t) for t in run.trainings if read_record(Path(run.cwd) / t["record"]) is None]
        training = {t.seed for t in todo if t.regime != "baseline"}  # these write their seed's large model's record
        plans.append((run, [t for t in todo if t.regime != "baseline" or t.seed not in training]))
    for i, (run, todo) in enumerate(plans):
        deps = []
        for name in dict.fromkeys(t.baseline for t in todo):
            b = baselines[name]
            mine = [(other, t) for other, other_todo in plans[i:] if split for t in other_todo if t.baseline == name]
            # a large model gone from the cache whose trainings left need only its pruned widths (kept by their
            # records, or following from the ratios) is not trained again
            needed = any(_needs_large_model(t) for t in ([t for _, t in mine] if split else
                                                          [t for t in todo if t.baseline == name]))
            if needed:
                task = _Task(f"baseline:{name}", "baseline", dataclasses.asdict(b), [], f"baseline {name}",
                             log_dir=Path(b.cwd) / run.output_dir / STATE / f"baseline-{Path(name).stem}")
                with contextlib.suppress(Exception):  # cached on this machine: the local engine has nothing to train
                    task.cached = baseline_path(configure(**dict(b.params)), b.seed).exists()
                deps.append(add(task))
            # the longest first (Scratch-B trains the most epochs, fine-tuning the fewest), so that the seed's
            # last training does not start late and leave the other job idle
            for other, t in sorted(mine, key=lambda ot: LONGEST_FIRST.get(ot[1].regime, len(LONGEST_FIRST))):
                key = add(_Task(f"training:{t.record}", "training", dataclasses.asdict(t),
                                [f"baseline:{t.baseline}"] if needed else [],
                                t.label, log_dir=other.state_dir / f"training-{Path(t.record).stem}"))
                if other is run:
                    deps.append(key)
        spec = dataclasses.asdict(dataclasses.replace(run, trainings=[]))  # its worker's argument: kept short
        add(_Task(f"run:{run.run_id}", "run", spec, deps, run.name, log_dir=run.state_dir))
    return tasks


def _needs_large_model(t: Training) -> bool:
    """Whether training ``t`` needs its seed's trained large model (:func:`rethink.experiment.large_model_stand_in`
    says where it does not); a large model's own record and a control's fine-tuning always do."""
    from .experiment import configure, large_model_stand_in
    if t.regime == "baseline" or t.control:
        return True
    return large_model_stand_in(configure(**dict(t.params)), t.seed, (t.regime,), cwd=t.cwd) is None


def _how_far(task: _Task, cached: set, left: Optional[dict] = None) -> str:
    """" (5 of 12 records, 1 of 3 large models cached; about 2.3 h to train)" for a dry run's list of what is left
    of a run (``left``: :func:`_trainings_left`, its large models not counted); "" for a run that leaves no records
    (kind notebook)."""
    records = task.spec.get("records") or []
    if not records:
        return ""
    have = sum((Path(task.spec["cwd"]) / r).exists() for r in records)
    deps = [d for d in task.deps if d.startswith("baseline:")]
    minutes = sum(m for m in (left or {}).values() if m is not None)
    unknown = sum(m is None for m in (left or {}).values())
    left = ("" if left is None else "; only its page to make" if not minutes and not unknown else
            "; " + " + ".join(([f"about {minutes / 60:.1f} h to train"] if minutes else [])
                              + ([f"{unknown} training(s) not measured yet"] if unknown else [])))
    if not deps:
        return f" ({have} of {len(records)} records, no large model needed{left})"
    return (f" ({have} of {len(records)} records, {sum(d in cached for d in deps)} of {len(deps)} large models "
            f"cached{left})")


def _minutes_like(done, cfg, regime: str, checks=None) -> Optional[float]:
    """Wall minutes a missing run of ``regime`` under ``cfg`` should take, judged from finished records ``done``
    (:func:`rethink.records.load_records`): those of the same row's other seeds (same method, variant and ratio),
    else any run of the same arch and regime on the same data and profile; None when none is measured.  Their median
    seconds per epoch times the epochs this run trains, so that records of another schedule (a profile whose
    epochs changed) still count: the large model's epochs, the fine-tuning epochs, or for Scratch-B the large
    model's epochs times the measured runs' median ratio of their Scratch-B epochs to their large model's.
    With nothing pruned of this arch measured yet, a pruned run counts as its large model's epochs (an upper bound:
    a pruned model has fewer FLOPs; Scratch-B's budget is the large model's training), and a large model no run
    trained yet as the convergence check of that very model in ``checks`` (:func:`rethink.convergence.book_checks`)."""
    like = done[(done.dataset == cfg.data.dataset) & (done.profile == cfg.profile) & (done.arch == cfg.arch)
                & (done.regime == regime)] if done is not None and not done.empty else []
    if len(like) and regime != "baseline":
        p = cfg.prune
        row = like[(like.method == p.method) & (like.variant.fillna("") == (p.variant or ""))
                   & (like.prune_ratio.fillna(-1) == (p.prune_ratio if p.prune_ratio is not None else -1))]
        like = row if len(row) else like
    if not len(like) and regime != "baseline":
        large = _minutes_like(done, cfg, "baseline", checks)
        return None if large is None else large * (cfg.train.finetune_epochs / cfg.train.epochs
                                                   if regime == "fine-tune" else 1)
    if not len(like):
        from .convergence import convergence_of
        check = None if checks is None or checks.empty else convergence_of(cfg.to_dict(), checks)
        if check is None or check["time_s_x1"] != check["time_s_x1"]:  # NaN: no time recorded
            return None
        return check["time_s_x1"] / max(1, check["epochs_x1"]) * cfg.train.epochs / 60
    epochs = like.epochs.astype(float).clip(lower=1)
    per_epoch_s = float((like.wall_time_s / epochs).median())
    if regime == "fine-tune":
        n = cfg.train.finetune_epochs
    elif regime == "scratch-b":
        n = cfg.train.epochs * float((epochs / like.record.map(lambda r: r["config"]["train"]["epochs"])).median())
    else:
        n = cfg.train.epochs
    return per_epoch_s * n / 60


def _trainings_left(task: _Task, done, checks=None) -> dict:
    """{what: estimated wall minutes, or None when nothing like it is measured} for what ``task`` still has to
    train: a run's missing records, each as :func:`_minutes_like` judges it from ``done`` and ``checks`` (keyed
    by path; a large model's record costs nothing, its baseline task trains it); a baseline task's large model unless
    cached."""
    from .experiment import configure, control_config, trainings
    if task.kind == "baseline":
        return {} if task.cached else {task.key: _minutes_like(done, configure(**dict(task.spec["params"])),
                                                                "baseline", checks)}
    if not task.spec.get("records"):
        return {}
    cfg = configure(**configure_kwargs(task.spec.get("parameters") or {}))
    out = {}
    for c in (cfg, control_config(cfg, task.spec.get("control"))):  # as _plan_experiment lists the records
        for path, _, regime in trainings(c) if c is not None else []:
            if regime != "baseline" and not (Path(task.spec["cwd"]) / path).exists():
                out[str(path)] = _minutes_like(done, c, regime, checks)
    return out


def _gpu_slots(jobs: int, gpus_per_run: Optional[float]) -> tuple[list, int]:
    """(one GPU id per parallel slot or [None]*jobs on CPU, number of slots)."""
    try:
        import torch
        n = torch.cuda.device_count()
    except Exception:  # noqa: BLE001
        n = 0
    if n == 0:
        return [None] * jobs, jobs
    per_gpu = max(1, int(1 / gpus_per_run)) if gpus_per_run else max(1, -(-jobs // n))
    slots = [str(g) for _ in range(per_gpu) for g in range(n)][:jobs]
    return slots, len(slots)


def run_local(tasks: list[_Task], jobs: int = 1, retries: int = 1, gpus_per_run: Optional[float] = None,
              on_finish: Callable[[_Task], None] = lambda t: None, threads: Optional[int] = None) -> None:
    """Run ``tasks`` in at most ``jobs`` worker subprocesses; a task starts when its dependencies succeeded."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
    slots, jobs = _gpu_slots(max(1, jobs), gpus_per_run)
    free = list(range(jobs))
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    by_key = {t.key: t for t in tasks}
    for t in tasks:  # a baseline found in the cache needs no worker
        if t.cached:
            t.status = "done"
    running = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while True:
            for t in tasks:
                if t.status != "pending":
                    continue
                failed = [by_key[d] for d in t.deps if by_key[d].status == "failed"]
                if failed:
                    t.status, t.error = "failed", f"needs {failed[0].label}, which failed: {failed[0].error}"
                    on_finish(t)
                elif free and all(by_key[d].status == "done" for d in t.deps):
                    slot = free.pop(0)
                    t.status, t.attempts = "running", t.attempts + 1
                    fut = pool.submit(run_worker, t.kind, t.spec, task_env(threads, slots[slot]), t.log_dir)
                    running[fut] = (t, slot)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                t, slot = running.pop(fut)
                free.append(slot)
                try:
                    t.error = fut.result()
                except Exception as e:  # noqa: BLE001 (could not even start the worker)
                    t.error = f"{type(e).__name__}: {e}"
                if t.error is None:
                    t.status = "done"
                elif t.error.startswith(HELD_PREFIX):
                    t.status = "held"
                elif t.attempts <= retries:
                    t.status = "pending"  # try again
                    continue
                else:
                    t.status = "failed"
                on_finish(t)


def _ray_baseline(spec: dict, log_dir: Optional[str] = None) -> tuple:
    """Ray task: the baseline checkpoint, trained here unless cached, as (file name, bytes)."""
    error = run_worker("baseline", spec, task_env(_ray_threads()), log_dir)
    if error:
        raise RuntimeError(error)
    from .experiment import baseline_path, configure
    b = Baseline(**spec)
    return b.name, baseline_path(configure(**dict(b.params)), b.seed).read_bytes()


def _ray_run(spec: dict, *checkpoints: tuple) -> str:
    """Ray task: put the baselines this run needs into this node's cache, then execute the run."""
    from .experiment import cache_dir
    from .records import atomic_write_bytes
    for name, data in checkpoints:
        path = cache_dir() / "baselines" / name
        if not path.exists():
            atomic_write_bytes(path, data)
    run = Run(**spec)
    error = run_worker("run", spec, task_env(_ray_threads()), run.state_dir)
    if error and error.startswith(HELD_PREFIX):
        return error  # another sweep has it: not a failure, and not to retry
    if error:
        raise RuntimeError(error)
    return run.name


def _ray_threads() -> int:
    # Ray sets OMP_NUM_THREADS of a worker to the task's num_cpus
    return max(1, int(os.environ.get("OMP_NUM_THREADS") or 1))


def run_ray(tasks: list[_Task], address: Optional[str] = None, retries: int = 1, cpus_per_run: float = 1,
            gpus_per_run: Optional[float] = None, on_finish: Callable[[_Task], None] = lambda t: None) -> None:
    """Each task a Ray task (``num_gpus`` a fraction); a run's baselines are ObjectRef arguments of it, so Ray
    starts the run when they are ready and ships the checkpoints to its node.  ``address`` None starts a local
    Ray; else connects (e.g. "127.0.0.1:6379", "auto"); Ray waits for an unreachable address without end."""
    try:
        import ray
    except ImportError as e:
        raise RuntimeError("the ray engine needs Ray: pip install 'rethink[ray]' (or pip install 'ray[default]')") \
            from e
    env = {k: os.environ[k] for k in ("RETHINK_CACHE", "RETHINK_DATA") if k in os.environ}
    runtime_env = {"env_vars": env} if env else None
    if address is None:  # a new Ray on this machine; "local", not None: None would join a stale cluster's address
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
                 runtime_env=runtime_env)
    else:
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
    try:
        if gpus_per_run is None:
            gpus_per_run = 1.0 if ray.cluster_resources().get("GPU", 0) else 0.0
        opts = dict(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=retries, retry_exceptions=True)
        baseline_fn = ray.remote(_ray_baseline).options(**opts)
        run_fn = ray.remote(_ray_run).options(**opts)
        refs = {}
        for t in tasks:  # baselines come first in ``tasks``
            if t.kind == "baseline":
                refs[t.key] = baseline_fn.remote(t.spec, t.log_dir and str(t.log_dir))
            else:
                refs[t.key] = run_fn.remote(t.spec, *[refs[d] for d in t.deps])
        waiting = {refs[t.key]: t for t in tasks}
        while waiting:
            ready, _ = ray.wait(list(waiting), num_returns=1)
            t = waiting.pop(ready[0])
            try:
                value = ray.get(ready[0])
                held = isinstance(value, str) and value.startswith(HELD_PREFIX)
                t.status, t.error = ("held", value) if held else ("done", None)
            except Exception as e:  # noqa: BLE001 (RayTaskError wraps the task's own error)
                t.status, t.error = "failed", _ray_error(e)
            t.attempts = retries + 1 if t.status == "failed" else max(t.attempts, 1)
            on_finish(t)
    finally:
        ray.shutdown()


def _ray_error(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip().splitlines()
    return " ".join((text[-1] if text else type(cause).__name__).split())


def sweep(grid_path: str | Path, profile: Optional[str] = None, overrides: Optional[dict] = None,
          output_dir: Optional[str] = None, engine: str = "local", jobs: int = 1, retries: int = 1,
          address: Optional[str] = None, gpus_per_run: Optional[float] = None, progress: bool = True,
          dry_run: bool = False, only: Optional[list] = None, threads: Optional[int] = None) -> Summary:
    """Run every run of a grid that is not done yet (``only``: of the runs with these names); see the module
    docstring.  ``threads``: torch threads per local worker (default: the cores shared by ``jobs``).  Returns what
    happened."""
    from tqdm.auto import tqdm
    if engine not in ENGINES:
        raise GridError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    grid = load_grid(grid_path)
    runs, baselines = expand(grid, profile, overrides, output_dir)
    if only:
        unknown = sorted(set(only) - {r.name for r in runs})
        if unknown:
            raise GridError(f"grid {grid.name} has no run named {', '.join(unknown)}; its runs: "
                            f"{', '.join(r.name for r in runs)}")
        runs = [r for r in runs if r.name in only]
    summary = Summary(grid.name, sweep_output_dir(grid, profile, output_dir))
    # One job gains nothing from a task per training (each would start a process and load the data again).  Ray
    # keeps one task per run: a Ray task costs a worker of its own (about 90 s a task for the test grid's
    # seconds-long trainings on the loaded 2-core machine, against 20 s locally).
    tasks = _tasks(runs, baselines, summary, split=engine == "local" and _gpu_slots(max(1, jobs), gpus_per_run)[1] > 1)
    n_runs = sum(t.kind == "run" for t in tasks)
    # every valid run, done or not: a page already written stays out of the book until the toc lists it
    summary.not_in_toc = [p for r in runs if not r.error and (p := missing_from_toc(r))]
    if summary.not_in_toc and not dry_run:  # said before hours of training, and again in the summary
        print(f"{grid.name}: _toc.yml does not list {', '.join(summary.not_in_toc)}: the book will leave "
              f"{'it' if len(summary.not_in_toc) == 1 else 'them'} out", file=sys.stderr)
    if dry_run:
        from .records import load_records
        cached = {t.key for t in tasks if t.kind == "baseline" and t.cached}
        folder = Path(summary.output_dir) / "records"
        with warnings.catch_warnings():  # another version's records are left out of the estimate, not an error
            warnings.simplefilter("ignore")
            done = load_records(sorted(folder.glob("*.json"))) if folder.is_dir() else None
        # the book's convergence checks (beside the grid's output folder) time large models no run has trained yet
        from .convergence import book_checks
        checks = book_checks(Path(summary.output_dir).parent)
        left = {t.key: _trainings_left(t, done, checks) for t in tasks}
        summary.pending = [t.label + _how_far(t, cached, left[t.key]) for t in tasks if t.kind == "run"]
        every = {k: m for d in left.values() for k, m in d.items()}  # a control's records serve two runs: once
        minutes, unknown = sum(m for m in every.values() if m is not None), sum(m is None for m in every.values())
        if tasks and grid.kind != "experiment":  # its trainings happen inside the notebook, out of the sweep's sight
            summary.estimate = ("not estimated: the notebook trains its own models (its records' provenance gives "
                                "the wall time of the seeds done)")
        elif tasks:
            summary.estimate = (f"about {minutes / 60:.1f} h of training in all, large models included, judged "
                                f"from the wall times of the finished runs in {folder} (as they ran: see their "
                                f"provenance; scratch runs that two methods share count twice; a pruned model "
                                f"with nothing like it measured at its large model's epoch time, an upper bound, "
                                f"and a large model no run trained yet at its convergence check's)"
                                + (f"; {unknown} training(s) with nothing like them measured yet, not counted"
                                   if unknown else ""))
        return summary
    from .paths import check_run_paths
    for root in sorted({str(r.parameters.get("data_root") or "") for r in runs}):  # before any training
        check_run_paths(summary.output_dir, root or None, cache=grid.kind == "experiment")
    bar = tqdm(total=len(runs), initial=len(runs) - n_runs, desc=grid.name, unit="run", disable=not progress,
               file=sys.stderr)
    n_trainings, trained = sum(t.kind == "training" for t in tasks), []

    def postfix() -> None:  # a run takes hours: the bar also counts the trainings it is made of
        bar.set_postfix(**({"trainings": f"{len(trained)}/{n_trainings}"} if n_trainings else {}),
                        **({"failed": len(summary.failed)} if summary.failed else {}))
    postfix()

    def on_finish(t: _Task) -> None:
        if t.status == "failed":
            bar.write(f"{grid.name}: {t.label} failed after {t.attempts} attempt(s): {t.error}", file=sys.stderr)
        if t.kind == "training" and t.status == "done":
            trained.append(t.key)
            postfix()
        if t.kind != "run":
            return
        if t.status == "done":
            summary.done.append(t.label)
        elif t.status == "held":
            summary.held[t.label] = t.error[len(HELD_PREFIX):]
        else:
            summary.failed[t.label] = (t.attempts, t.error)
        bar.update(1)
        postfix()

    try:
        if engine == "local":
            run_local(tasks, jobs, retries, gpus_per_run, on_finish, threads)
        elif tasks:
            run_ray(tasks, address, retries, gpus_per_run=gpus_per_run, on_finish=on_finish)
    finally:
        bar.close()
    return summary


def parse_value(text: str) -> Any:
    """A -p value as YAML (``64`` -> 64, ``[0, 1]`` -> list, ``null`` -> None), like papermill's -y."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
