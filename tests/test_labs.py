"""The course labs: `python -m rethink labs` (what `make labs` runs) makes each lab's student and instructor versions
with otter assign; the instructor version passes every check, the student version's stubs fail theirs with the
helpful message; `otter run` grades a submission locally; the committed book pages are executed instructor
versions with their solutions behind toggles.  Everything runs with the smoke profile (marked slow; CI runs it)."""
from __future__ import annotations

import json
import os
import re
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


def test_instructor_page_states_the_measured_time_of_each_lab():
    """The time table of book/labs/instructor.md is the wall time stored in each executed lab page."""
    page = (labs.PAGES / "instructor.md").read_text()
    for i, lab in enumerate(LABS, 1):
        nb = nbformat.read(labs.PAGES / f"{lab}.ipynb", as_version=4)
        minutes = nb.metadata["rethink"]["lab_wall_time_s"] / 60
        row = next(line for line in page.splitlines() if line.startswith(f"| Lab {i} |"))
        assert row.rstrip(" |").endswith(f"{minutes:.1f} min"), (row, minutes)
        assert f"{{doc}}`{lab}`" in page


# A typical wrong answer per lab and question, and what its check must say about it (not just "wrong").
MISTAKES = {
    "lab1_filters_surgery": {
        "q1": ("l1_scores = criteria.l2", "16 of 16 filters differ"),
        "q3": ("def filters_to_keep(scores, p):\n    return select.keep_top(-scores, select.n_keep(len(scores), p)[0])",
               "should not be there and filters"),
        "q4": ("def prune_conv(conv, bn, nxt, keep):\n    c, b, n = _solution(conv, bn, nxt, keep)\n    return c, bn, n",
               "the BatchNorm: weight has shape (64,), the reference's has (7,)"),
    },
    "lab2_scratch_vs_finetune": {
        "q1": ("def conv_macs(conv, hw):\n    return conv.out_channels * conv.in_channels * conv.kernel_size[0] * "
               "conv.kernel_size[1] * hw[0] * hw[1]", "is 4718592, expected 1179648 (off by +3538944, 4 times it)"),
        "q5": ("def regime_schedule(regime, cfg, fl, fp):\n    return schedule_for(cfg, cfg.train.finetune_epochs) if "
               "regime == 'fine-tune' else _solution(regime, cfg, fl, fp)", "milestones is (0.5, 0.75), expected ()"),
    },
    "lab3_criteria_agree": {
        "q1": ("def weiszfeld(points, tol=1e-7, max_iter=1000):\n    return points.double().mean(0)",
               "coordinates differ"),
        "q6": ("def global_widths(s, p):\n    return {k: select.n_keep(len(v), p)[0] for k, v in s.items()}",
               "expected"),
    },
    "lab4_network_slimming": {
        "q1": ("def bn_l1_hook(lam):\n    return _solution(1.0)", "the gradient of features.1.weight: 16 of 16 channels"),
        "q3": ("def slim_keep(g, p):\n    return select.select_layer(g, p)[0]", "layer 1"),
    },
    "lab5_lottery_ticket": {
        "q1": ("def global_magnitude_masks(model, p):\n    return masks_ref.magnitude_masks(model, p, scope='layer')",
               "weights differ"),
        "q3": ("def round_ratios(p, rounds):\n    return [p * (r + 1) / rounds for r in range(rounds)]", "round_ratios"),
    },
}


def _questions(source: Path) -> tuple[str, dict]:
    """(set-up code, {question: (solution code, [test code])}) of a lab source, from otter's marker cells."""
    nb = nbformat.read(source, as_version=4)
    setup, questions, q, mode = [], {}, None, None
    for cell in nb.cells:
        text = cell.source.strip()
        if cell.cell_type == "raw":
            if text.startswith("# BEGIN QUESTION"):
                q = text.split("name:")[1].split()[0]
                questions[q] = ("", [])
            mode = {"# BEGIN SOLUTION": "solution", "# BEGIN TESTS": "tests"}.get(text)
            continue
        if cell.cell_type != "code":
            continue
        if mode == "solution":
            questions[q] = (cell.source, questions[q][1])
        elif mode == "tests":
            questions[q][1].append(cell.source)
        elif q is None:
            setup.append(cell.source)
    return "\n".join(setup), questions


@pytest.mark.parametrize("lab", sorted(MISTAKES))
def test_a_wrong_answer_gets_a_message_that_says_what_differs(lab, monkeypatch, one_thread):
    monkeypatch.setenv("RETHINK_LAB_PROFILE", "smoke")
    setup, questions = _questions(labs.SOURCES / f"{lab}.ipynb")
    ns: dict = {}
    exec(setup, ns)
    for solution, _ in questions.values():
        exec(solution, ns)
    for q, (wrong, expected) in MISTAKES[lab].items():
        solution, tests = questions[q]
        name = re.match(r"(?:def\s+)?(\w+)", wrong).group(1)
        space = dict(ns, _solution=ns[name])
        exec(wrong, space)
        with pytest.raises(AssertionError) as e:
            for t in tests:
                exec(t, space)
        assert expected in str(e.value), f"{lab} {q}: {e.value}"
        print(f"{lab} {q}: {e.value}")
