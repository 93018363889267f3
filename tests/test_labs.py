"""The course labs: `python -m rethink labs` (what `make labs` runs) makes each lab's student and instructor versions
with otter assign; the instructor version passes every check, the student version's stubs fail theirs with the
helpful message; `otter run` grades a submission locally; the committed book pages are executed instructor
versions with their solutions behind toggles.  Everything runs with the smoke profile (marked slow; CI runs it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT
from rethink import labs

LABS = labs.lab_names()
# Per lab: text every failing check of its student version shows (the stubs return None: `...`).
STUB_MESSAGE = "the function is not written yet"


def _checks(nb) -> dict:
    """{question: text output of its grader.check cell} of an executed lab."""
    out = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("grader.check("):
            q = cell.source.split('"')[1]
            out[q] = json.dumps(cell.get("outputs", []))
    return out


def _errors(nb) -> list:
    return [(c.source[:80], o.get("ename"), o.get("evalue")) for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("labs")
    proc = subprocess.run([sys.executable, "-m", "rethink", "labs", "--out", str(out)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out


def test_every_lab_has_a_source_and_a_book_page():
    assert len(LABS) >= 1
    toc = (ROOT / "_toc.yml").read_text()
    for lab in LABS:
        assert f"book/labs/{lab}" in toc, f"{lab} is not in _toc.yml"
        assert (labs.PAGES / f"{lab}.ipynb").exists(), f"book/labs/{lab}.ipynb: run `make lab-pages`"


@pytest.mark.parametrize("lab", LABS)
def test_book_page_is_an_executed_instructor_version(lab):
    nb = nbformat.read(labs.PAGES / f"{lab}.ipynb", as_version=4)
    assert not _errors(nb)
    checks = _checks(nb)
    assert checks and all("All test cases passed" in text for text in checks.values()), checks
    assert nb.metadata["papermill"]["parameters"].get("profile", "quick") != "smoke", "the page shows a smoke run"
    solutions = [c for c in nb.cells if labs.SOLUTION_TAG in c.metadata.get("tags", [])]
    assert solutions
    for cell in solutions:
        assert "BEGIN SOLUTION" not in cell.source
        if cell.cell_type == "code":
            assert "hide-input" in cell.metadata.tags, "solutions are behind a toggle on the page"
        else:
            assert ":class: dropdown" in cell.source, "written answers are collapsed on the page"
    assert not any(labs.ANSWER_TAG in c.metadata.get("tags", []) for c in nb.cells)


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_instructor_version_passes_every_check(lab, built, tmp_path, fashion_root, one_thread):
    nb = labs.execute(labs.instructor_notebook(built / lab), tmp_path / f"{lab}.ipynb",
                      dict(profile="smoke", data_root=fashion_root), timeout=600)
    assert not _errors(nb)
    checks = _checks(nb)
    assert len(checks) >= 3
    failed = {q: t[-1500:] for q, t in checks.items() if "All test cases passed" not in t}
    assert not failed, failed
    assert "smoke" in json.dumps([c.get("outputs", []) for c in nb.cells]), "the lab must say its profile"


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_student_version_stubs_fail_their_checks_with_a_message(lab, built, tmp_path, fashion_root, one_thread):
    student = labs.student_notebook(built / lab)
    source = nbformat.read(student, as_version=4)
    assert not any("BEGIN SOLUTION" in c.source for c in source.cells), "a solution leaked into the student version"
    nb = labs.execute(student, tmp_path / f"{lab}.ipynb", dict(profile="smoke", data_root=fashion_root),
                      allow_errors=True, timeout=600)
    checks = _checks(nb)
    assert len(checks) >= 3
    for q, text in checks.items():
        assert "All test cases passed" not in text, f"{q} passes with the stub"
        assert "AssertionError" in text and STUB_MESSAGE in text, f"{q}: {text[-1500:]}"


@pytest.mark.slow
def test_otter_run_grades_locally(built, tmp_path, fashion_root):
    """The autograder zip grades a submission on this machine (no Docker): full marks for the instructor version,
    none for the untouched student version.  RETHINK_LAB_PROFILE=smoke makes the re-execution take seconds."""
    lab = LABS[0]
    env = {**os.environ, "RETHINK_LAB_PROFILE": "smoke", "RETHINK_DATA": fashion_root, "OMP_NUM_THREADS": "1"}
    scores = {}
    for name, nb in (("instructor", labs.instructor_notebook(built / lab)), ("student", labs.student_notebook(built / lab))):
        out = tmp_path / name
        out.mkdir()
        proc = subprocess.run([sys.executable, "-m", "otter", "run", "-a", str(labs.autograder_zip(built / lab)),
                               "-o", str(out), str(nb)], capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        tests = json.loads((out / "results.json").read_text())["tests"]
        scores[name] = [(t["name"], t["score"], t["max_score"]) for t in tests if "max_score" in t]
    assert all(score == top for _, score, top in scores["instructor"]), scores
    assert all(score == 0 for _, score, _ in scores["student"]), scores
