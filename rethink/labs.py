"""The course labs, built from one source each.

A lab's source (``notebooks/labs/<lab>.ipynb``) is an otter-assign master notebook: explanation, questions, the
solution code and the checks (calls of :mod:`rethink.labcheck`) in one file.  ``otter assign`` turns it into

- ``<out>/<lab>/student/``: the student version, every solution replaced by a stub (``...``), with the checks
  (``grader.check("q1")``) and their test files in ``tests/``;
- ``<out>/<lab>/autograder/``: the instructor version (solutions kept, same checks) and ``<lab>-autograder_*.zip``,
  which ``otter run -a <zip> <submission.ipynb>`` grades with locally, without Docker.

:func:`execute_page` runs an instructor version through papermill and makes it a book page (``book/labs/``):
solutions behind toggles, the written answers in collapsed boxes, otter's own cells removed.

    python -m rethink labs                   # every lab -> _build/labs
    python -m rethink labs --pages           # ... and execute each instructor version into book/labs/
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

import nbformat

from .book_page import HIDE_CELL, HIDE_INPUT

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "notebooks" / "labs"
PAGES = ROOT / "book" / "labs"
SOLUTION_TAG = "otter_assign_solution_cell"  # what otter assign tags a solution cell with
ANSWER_TAG = "otter_answer_cell"             # the "type your answer here" cell of a written question


def lab_sources(folder: Path = SOURCES) -> list[Path]:
    """The lab source notebooks, in order (their names start with lab1_, lab2_, ...)."""
    return sorted(Path(folder).glob("lab*.ipynb"))


def lab_names(folder: Path = SOURCES) -> list[str]:
    return [p.stem for p in lab_sources(folder)]


def assign(source: Path, out: Path) -> Path:
    """``otter assign`` one lab source into ``out/<lab>/`` (replaced when it exists); returns that folder."""
    dest = Path(out) / Path(source).stem
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "otter", "assign", str(source), str(dest)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"otter assign {source} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return dest


def build_labs(out: Path, only: Optional[Iterable[str]] = None) -> dict[str, Path]:
    """Every lab (or those named in ``only``) assigned into ``out``; {lab: its folder}."""
    names = set(only) if only else None
    sources = [s for s in lab_sources() if names is None or s.stem in names]
    if names and len(sources) != len(names):
        from .config import known
        raise known("lab", sorted(names - {s.stem for s in sources})[0], lab_names())
    return {s.stem: assign(s, out) for s in sources}


def student_notebook(folder: Path) -> Path:
    return Path(folder) / "student" / f"{Path(folder).name}.ipynb"


def instructor_notebook(folder: Path) -> Path:
    return Path(folder) / "autograder" / f"{Path(folder).name}.ipynb"


def autograder_zip(folder: Path) -> Path:
    return next((Path(folder) / "autograder").glob("*-autograder_*.zip"))


def _strip_markers(source: str) -> str:
    """Solution code without otter's ``# BEGIN/END SOLUTION`` comment lines (the page shows the solution only)."""
    keep = [line for line in source.splitlines() if line.strip() not in ("# BEGIN SOLUTION", "# END SOLUTION")]
    return "\n".join(line.replace("  # SOLUTION", "") for line in keep)


def make_page(nb) -> None:
    """An executed instructor version as a book page (in place): solution code behind a toggle (its output shown),
    written answers in a collapsed box, the parameters cell hidden whole, otter's set-up cell and the students'
    answer placeholders removed."""
    cells = []
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if ANSWER_TAG in tags:
            continue  # "_Type your answer here_": the instructor version shows the answer instead
        if cell.cell_type == "code":
            if "import otter" in cell.source:
                tags.append("remove-cell")
            elif {"parameters", "injected-parameters"} & set(tags):
                tags.append(HIDE_CELL)
            elif SOLUTION_TAG in tags:
                cell.source = _strip_markers(cell.source)
                tags.append(HIDE_INPUT)
        elif cell.cell_type == "markdown" and SOLUTION_TAG in tags:
            cell.source = f":::{{admonition}} A model answer\n:class: dropdown\n{cell.source.strip()}\n:::"
        cells.append(cell)
    nb.cells = cells


def execute(notebook: Path, output: Path, parameters: Optional[dict] = None, allow_errors: bool = False,
            timeout: Optional[int] = None):
    """Run ``notebook`` in its own folder (where otter finds ``tests/``) with ``parameters`` injected as papermill
    does, write it to ``output`` and return it.  ``allow_errors``: keep going after a failing cell (a student
    version, whose stubs make later cells fail), recording the error in that cell's outputs."""
    import nbclient
    from papermill.parameterize import parameterize_notebook

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:  # papermill reads every cell's tags
        cell.setdefault("metadata", {}).setdefault("tags", [])
    nb.metadata.setdefault("papermill", {})
    nb = parameterize_notebook(nb, parameters or {})
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                                     resources={"metadata": {"path": str(Path(notebook).parent)}})
    t0 = time.time()
    client.execute()
    nb.metadata.setdefault("rethink", {})["lab_wall_time_s"] = round(time.time() - t0, 1)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(output))
    return nb


def execute_page(folder: Path, dest: Path = PAGES, parameters: Optional[dict] = None) -> Path:
    """The instructor version of an assigned lab (``folder``, from :func:`assign`) executed and made a book page
    ``dest/<lab>.ipynb``; the wall time of the run is kept in the notebook's metadata (``rethink.lab_wall_time_s``)."""
    out = Path(dest) / f"{Path(folder).name}.ipynb"
    nb = execute(instructor_notebook(folder), out, parameters)
    make_page(nb)
    nbformat.write(nb, str(out))
    return out


def add_parser(sub) -> None:
    p = sub.add_parser("labs", help="the course labs: student and instructor versions and autograders (otter "
                                    "assign), optionally executed as book pages")
    p.add_argument("--out", default="_build/labs", help="folder of the generated versions (default _build/labs)")
    p.add_argument("--only", nargs="+", metavar="LAB", help="only these labs (names of notebooks/labs/*.ipynb)")
    p.add_argument("--pages", action="store_true", help="also execute each instructor version into book/labs/ "
                                                        "(minutes per lab)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="--pages: a lab parameter (VALUE read as YAML), e.g. -p profile smoke")
    p.set_defaults(func=_main)


def _main(args) -> int:
    import yaml
    built = build_labs(Path(args.out), args.only)
    for lab, folder in built.items():
        print(f"{lab}: student {student_notebook(folder)}, instructor {instructor_notebook(folder)}, "
              f"autograder {autograder_zip(folder)}")
    if args.pages:
        params = {k: yaml.safe_load(v) for k, v in (args.parameter or [])}
        for lab, folder in built.items():
            print(f"executing {lab} ...", file=sys.stderr, flush=True)
            out = execute_page(folder, PAGES, params)
            wall = nbformat.read(str(out), as_version=4).metadata["rethink"]["lab_wall_time_s"]
            print(f"{lab}: {out} ({wall / 60:.1f} min, {os.cpu_count()} cores)")
    return 0
