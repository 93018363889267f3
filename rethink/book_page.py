"""An executed notebook made into a page of the book: its own title, a "re-run this page" box, code behind toggles.

The sweep calls :func:`make_book_page` on every executed notebook before it takes its final name, so that the nine
run pages of one template do not share one H1, and a reader sees results first and code only on demand
(jupyter-book's ``hide-input`` / ``hide-cell`` tags: a toggle button per cell).
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Optional

import nbformat
import yaml

from .records import atomic_write_bytes

HIDE_INPUT = "hide-input"   # output shown, code behind a toggle
HIDE_CELL = "hide-cell"     # the whole cell behind a toggle (parameters: no output)
RERUN_MARK = "rethink-rerun"  # tag of the box this module inserts, so that a second call replaces it


def _page_name(file) -> str:
    """A toc entry's file without its .ipynb/.md suffix (only those: "slimming-vgg19-slim-p0.7" keeps its ".7")."""
    text = str(file)
    for suffix in (".ipynb", ".md"):
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


def toc_entries(toc_path: str | Path) -> dict[str, Optional[str]]:
    """{file (as in _toc.yml, no suffix): its title, or None} of every entry of a jupyter-book 1.x toc; {} when
    the toc is missing or not YAML."""
    try:
        toc = yaml.safe_load(Path(toc_path).read_text()) or {}
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8
        return {}
    entries = {}

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                entries[_page_name(node["file"])] = None if node.get("title") is None else str(node["title"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(toc)
    return entries


def toc_titles(toc_path: str | Path) -> dict[str, str]:
    """{file (as in _toc.yml, no suffix): title} of every entry of a jupyter-book 1.x toc that sets a title."""
    return {f: t for f, t in toc_entries(toc_path).items() if t is not None}


def hide_code(nb) -> None:
    """Tag every code cell: parameter cells (the template's and papermill's injected one) hidden whole, the others'
    code behind a toggle with their output shown."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if any(t.startswith("remove") for t in tags):
            continue
        want = HIDE_CELL if {"parameters", "injected-parameters"} & set(tags) else HIDE_INPUT
        if want not in tags:
            tags.append(want)


def set_title(nb, title: str) -> None:
    """Make ``title`` the page's H1: replace the first markdown cell's leading '# ' line (or add one)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines = cell.source.splitlines()
            if lines and lines[0].startswith("# "):
                lines[0] = f"# {title}"
            else:
                lines = [f"# {title}", ""] + lines
            cell.source = "\n".join(lines)
            return
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {title}"))


def _tagged(cell, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def _set_box(nb, tag: str, source: Optional[str]) -> None:
    """Replace the cell tagged ``tag`` (a box this module inserts) by a markdown cell of ``source`` right after the
    title cell; None: remove it only."""
    old = [c for c in nb.cells if _tagged(c, tag)]
    nb.cells = [c for c in nb.cells if not _tagged(c, tag)]
    if source is None:
        return
    cell = nbformat.v4.new_markdown_cell(source)
    cell.metadata["tags"] = [tag]
    if old and "id" in old[0]:  # the box keeps its cell id, so re-paging a page changes its diff only where it changed
        cell["id"] = old[0]["id"]
    first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    nb.cells.insert(first_md + 1, cell)


def set_rerun_box(nb, commands: list[str]) -> None:
    """A tip box after the title cell with the exact commands that remake this page."""
    body = "\n".join(commands)
    # a page the sweep made trains models; one that only reads records (the results page) has nothing to reuse
    reuse = ("Finished runs are reused from their records; deleting them retrains.\n"
             if any(" rethink sweep " in c for c in commands) else "")
    _set_box(nb, RERUN_MARK, f":::{{tip}} Re-run this page\n```bash\n{body}\n```\n{reuse}:::")


PROFILE_MARK = "rethink-profile-note"


def set_profile_note(nb) -> None:
    """A warning box after the title of a page that ran with a short profile (its papermill ``profile``): what
    that profile trains, that its large models had not converged, and that the findings leave it out; none for
    the ``book`` and ``paper`` profiles.  A second call replaces the box."""
    from .config import PROFILES, SHORT_PROFILES
    params = nb.metadata.get("papermill", {}).get("parameters", {})
    profile = params.get("profile")
    if profile not in SHORT_PROFILES:
        _set_box(nb, PROFILE_MARK, None)
        return
    # the profile's settings, where the run did not set its own (-p epochs 30)
    p = {**PROFILES[profile], **{k: params[k] for k in ("epochs", "train_subset", "test_subset")
                                 if params.get(k) is not None}}
    text = (
        f":::{{warning}} A short run, not evidence\nThis page ran with the `{profile}` profile: {p['epochs']} epochs "
        f"on {p['train_subset']:,} training images and a {p['test_subset']:,}-image test set. Its large models had "
        f"not converged, so read it as a check of the pipeline, not as evidence for or against the paper; the "
        f"findings on the first page leave it out. It may also predate the flagging of failed seeds, so a mean "
        f"here can include a seed that did not train. The `book` profile re-runs it: the results page shows each of "
        f"its rows' book-profile seeds as they land and lists a row with none yet as waiting, and the findings "
        f"name what they do not count yet.\n:::")
    _set_box(nb, PROFILE_MARK, text)


CONVERGENCE_MARK = "rethink-convergence-note"


def set_convergence_note(nb, book_dir: str | Path) -> None:
    """A warning box under the title of a page whose runs pruned a large model that the convergence check found
    not converged at its epochs (``book_dir/convergence``): the page's records are those under its papermill
    ``output_dir`` with its ``profile`` (and ``dataset``, ``arch`` and ``method``, where it sets them), of the
    notebook's kind where records name one (``notebooks/lottery_ticket.ipynb`` writes ``lottery-ticket``).  A
    re-run of the page on a longer schedule drops the box (once every seed is re-run: until then a seed of the
    earlier schedule keeps it); none where the page's large models passed or were not checked."""
    from .convergence import book_checks, failed_check
    from .records import read_record
    papermill = nb.metadata.get("papermill", {})
    params = papermill.get("parameters", {})
    out = params.get("output_dir")
    kind = Path(papermill.get("input_path") or "").stem.replace("_", "-")
    notes = {}
    if out and params.get("profile"):
        table = book_checks(book_dir)
        for p in sorted(Path(out, "records").glob("*.json")) if not table.empty else []:
            rec = read_record(p) or {}
            c = rec.get("config", {})
            # the page's own records: the output folder may hold other rows' (book/runs); a parameter the run did
            # not set (the notebook's default, e.g. the lottery's arch) does not filter
            if c.get("profile") != params["profile"] or (rec.get("kind") and rec["kind"] != kind) or any(
                    params.get(k) and v != params[k] for k, v in (
                        ("arch", c.get("arch")), ("method", c.get("prune", {}).get("method")),
                        ("dataset", c.get("data", {}).get("dataset")))):
                continue
            check = failed_check(c, table)
            if check is not None:
                notes[(check["large_model"], check["arch"], check["epochs_x1"])] = check
    text = None
    if notes:
        what = "; ".join(f"{c['arch']} ({c['large_model']}) at {c['epochs_x1']:.0f} epochs: {c['best_acc_x1']:.2f} %, "
                         f"{c['best_acc_x2']:.2f} % at {c['epochs_x2']:.0f} ({c['gain_x2']:+.2f} points)"
                         for c in notes.values())
        text = (":::{warning} Its large model had not converged\nThe convergence check on the protocol page found "
                f"the large model of this page's runs not converged: {what}. The page shows its runs as they "
                "are; the findings on the first page do not count them, and the page is to be re-run on a longer "
                "schedule.\n:::")
    _set_box(nb, CONVERGENCE_MARK, text)


def unique_figure_names(nb, page: str) -> None:
    """Prefix every figure label (``mystnb.figure.name``) with the page's name, and references to it in the page's
    markdown: each run page is an execution of the same notebook, and Sphinx wants a label once per book."""
    renamed = {}
    for cell in nb.cells:
        fig = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        name = fig.get("name")
        if name and not name.startswith(f"{page}-"):
            renamed[name] = fig["name"] = f"{page}-{name}"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for old, new in renamed.items():
                cell.source = cell.source.replace(f"`{old}`", f"`{new}`")


def papermill_command(nb, path: Path) -> Optional[str]:
    """The papermill command that made an executed notebook, from the parameters papermill stored in it."""
    pm = nb.metadata.get("papermill", {})
    source, params = pm.get("input_path"), pm.get("parameters")
    if not source or params is None:
        return None
    output = path.name
    with contextlib.suppress(ValueError):  # paths under the working folder, as a reader would type them
        source = str(Path(source).resolve().relative_to(Path.cwd()))
        output = str(path.resolve().relative_to(Path.cwd()))
    return papermill_line(source, output, params)


def papermill_line(notebook, output, params: dict) -> str:
    """``papermill NOTEBOOK OUTPUT -p name value ...`` that a shell passes to papermill as the very values (None left
    out): ``-p`` for numbers, booleans and strings papermill keeps as they are; ``-r`` (raw) for a string papermill
    would turn into a number or a boolean; ``-y 'name: [...]'`` for lists and mappings, which ``-p`` would pass as
    a string."""
    import json
    import shlex

    from papermill.cli import _resolve_type
    args = []
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, bool):
            args.append(f"-p {k} {v}")
        elif isinstance(v, (int, float)):
            args.append(f"-p {k} {json.dumps(v)}")
        elif isinstance(v, str):
            args.append(f"{'-p' if _resolve_type(v) == v else '-r'} {k} {shlex.quote(v)}")
        else:
            args.append(f"-y {shlex.quote(f'{k}: {json.dumps(v)}')}")
    return f"papermill {notebook} {output} {' '.join(args)}".rstrip()


def make_book_page(path: str | Path, title: Optional[str] = None, commands: Optional[list[str]] = None,
                   toc: str | Path | None = None) -> None:
    """Rewrite the executed notebook at ``path`` in place (atomically) as a book page.  Without ``title``, the
    title ``toc`` (a _toc.yml) gives the page, if any; without ``commands``, the page's re-run box as it is, or
    papermill's own command where it has none."""
    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    if title is None and toc is not None:
        page = _page_name(path.resolve().relative_to(Path(toc).resolve().parent))
        title = toc_titles(toc).get(page)
    has_box = any(_tagged(c, RERUN_MARK) for c in nb.cells)
    if commands is None and not has_box:  # a box already there (e.g. the sweep's commands) stays as it is
        command = papermill_command(nb, path)
        commands = [command] if command else None
    hide_code(nb)
    # the page's name (the sweep writes "<name>.ipynb.part" first), as a label prefix: letters, digits, hyphens
    unique_figure_names(nb, re.sub(r"[^A-Za-z0-9-]", "-", path.name.removesuffix(".part").removesuffix(".ipynb")))
    if title:
        set_title(nb, title)
    if commands:
        set_rerun_box(nb, commands)
    # the book's folder: the nearest one above the page with the convergence checks (book/ for book/runs/x.ipynb)
    book_dir = next((d for d in path.resolve().parents if (d / "convergence").is_dir()), None)
    if book_dir is not None:
        set_convergence_note(nb, book_dir)
    set_profile_note(nb)  # after the rerun box: it goes first, right under the title
    atomic_write_bytes(path, nbformat.writes(nb).encode())
