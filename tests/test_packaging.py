"""The set-up the README promises: dependency lists in step, the two commands, CI calling the test command,
docs that match the code."""
from __future__ import annotations

import re
import tomllib

import yaml

from conftest import ROOT
from rethink.config import PROFILES


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {_name(d) for d in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = {_name(d) for d in env if isinstance(d, str)} - {"python", "pip"}
    conda_names = {"pytorch": "torch", "ray-default": "ray"}  # conda's names for the same packages
    conda = {conda_names.get(d, d) for d in conda}
    assert conda == deps


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\n\t\$\(BIN\)/python -m pytest", makefile, re.M)


def test_protocol_page_profile_table_matches_the_code():
    page = (ROOT / "book" / "protocol.md").read_text()
    for name, p in PROFILES.items():
        row = next(line for line in page.splitlines() if line.startswith(f"| `{name}` |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        epochs, train, test, width, warmup, seeds = cells[2:8]
        assert f"{p['epochs']} ({p['finetune_epochs']})" in epochs
        assert train == ("all" if p["train_subset"] is None else f"{p['train_subset']:,}")
        assert test.startswith("all") if p["test_subset"] is None else test == f"{p['test_subset']:,}"
        assert f"{p['width_mult']:g}" in width and int(seeds) == p["n_seeds"]
        for settings in p.get("per_arch", {}).values():  # e.g. book: VGG 60 (15), x0.25; ResNet-110 warm-up
            if "epochs" in settings:
                assert f"{settings['epochs']} ({settings['finetune_epochs']})" in epochs
            if "width_mult" in settings:
                assert f"x{settings['width_mult']:g}" in width
            if "warmup_epochs" in settings:
                assert f"{settings['warmup_epochs']} epoch" in warmup
        if not any("warmup_epochs" in s for s in p.get("per_arch", {}).values()):
            assert warmup == "none"


def test_every_run_page_is_in_the_toc_under_its_own_title():
    """Run pages are executions of one notebook and share its heading: the toc names each, so that the sidebar
    tells them apart (and a run left out of the toc would fail the -W book build)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = {c["file"]: c.get("title") for part in toc["parts"] for c in part["chapters"]}
    runs = sorted(f"book/runs/{p.stem}" for p in (ROOT / "book" / "runs").glob("*.ipynb"))
    assert runs and all(r in entries for r in runs), set(runs) - set(entries)
    titles = [entries[r] for r in runs]
    assert all(titles) and len(set(titles)) == len(titles)
    assert all((ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists() for f in entries)
