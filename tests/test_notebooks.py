"""Every notebook template runs end to end through papermill with the smoke profile on Fashion-MNIST, and the
book builds with warnings as errors.  Marked slow; CI runs them."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_templates_are_stripped_and_parameterised():
    assert NOTEBOOKS, "no notebook templates found"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell must be 'parameters'"
        assert not any(c.get("outputs") for c in code), f"{path.name}: template holds outputs"
        params = pm.inspect_notebook(str(path))
        for name in ("dataset", "profile", "data_root", "output_dir", "device"):
            assert name in params, f"{path.name} lacks the common parameter {name!r}"
        for name, p in params.items():
            assert p["help"].strip(), f"{path.name}: parameter {name!r} has no comment for --help-notebook"
        # papermill skips a line holding two '=' (one in its comment), so that parameter would vanish from the help
        assigned = {t.id for node in ast.parse(code[0].source).body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
        assert assigned == set(params), (f"{path.name}: --help-notebook lists {sorted(set(params))}, the cell assigns "
                                         f"{sorted(assigned)}")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_smoke_run(path, tmp_path, fashion_root):
    out = tmp_path / path.name
    pm.execute_notebook(str(path), str(out), cwd=str(tmp_path), progress_bar=False, kernel_name="python3",
                        parameters=dict(profile="smoke", dataset="fashion-mnist", device="cpu",
                                        data_root=fashion_root, output_dir=str(tmp_path / "runs")))
    nb = nbformat.read(out, as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "smoke" in text, "outputs must name the profile they were made with"
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.slow
def test_book_builds_without_warnings(built_book):
    # -W: every warning (a missing toc entry, a broken reference, a bad notebook) fails the build (the fixture)
    assert (built_book / "book" / "intro.html").exists()
    assert (built_book / "book" / "results.html").exists()
