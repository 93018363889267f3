from __future__ import annotations

import nbformat

from rethink.book_page import make_book_page, toc_entries, toc_titles


def _notebook(path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("arch = 'vgg16'")
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell("arch = 'resnet56'")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Scratch vs fine-tune\n\nWhat this is."), params, injected,
                nbformat.v4.new_code_cell("print(1)")]
    nbformat.write(nb, str(path))
    return path


def test_a_page_gets_its_title_a_rerun_box_and_hidden_code(tmp_path):
    path = _notebook(tmp_path / "page.ipynb")
    make_book_page(path, "Table 1 run: ResNet-56-A", ["python -m rethink sweep grids/table1.yaml --only resnet56-a"])
    make_book_page(path, "Table 1 run: ResNet-56-A", ["python -m rethink sweep grids/table1.yaml --only resnet56-a"])
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[0].source.splitlines()[0] == "# Table 1 run: ResNet-56-A"
    assert "What this is." in nb.cells[0].source
    boxes = [c for c in nb.cells if "Re-run this page" in c.source]
    assert len(boxes) == 1 and "--only resnet56-a" in boxes[0].source  # a second call replaced, not added
    assert "reused from their records" in boxes[0].source  # the sweep trains: say what it reuses
    assert nb.cells.index(boxes[0]) == 1
    tags = [c.metadata["tags"] for c in nb.cells if c.cell_type == "code"]
    assert tags == [["parameters", "hide-cell"], ["injected-parameters", "hide-cell"], ["hide-input"]]


def test_re_paging_an_unchanged_page_leaves_its_file_as_it_was(tmp_path):
    # a box re-made with a new cell id would show every re-paged notebook as changed in git
    path = _notebook(tmp_path / "page.ipynb")
    cmd = ["python -m rethink sweep grids/table1.yaml --only resnet56-a"]
    make_book_page(path, "Table 1 run: ResNet-56-A", cmd)
    before = path.read_bytes()
    make_book_page(path, "Table 1 run: ResNet-56-A", cmd)
    assert path.read_bytes() == before
    make_book_page(path, "Table 1 run: ResNet-56-A", ["python -m rethink sweep grids/table1.yaml --only vgg16-a"])
    assert path.read_bytes() != before  # a changed box is written


def test_figure_labels_are_made_unique_per_page(tmp_path):
    # every run page is an execution of the same notebook: its figure labels would clash across the book
    pages = []
    for name in ("vgg16-a.ipynb", "thinet-vgg16-p0.5.ipynb.part"):
        path = _notebook(tmp_path / name)
        nb = nbformat.read(str(path), as_version=4)
        nb.cells[3].metadata["mystnb"] = {"figure": {"name": "fig-widths", "caption": "Widths"}}
        nb.cells[0].source += "\n\nSee {numref}`fig-widths`."
        nbformat.write(nb, str(path))
        make_book_page(path, "A page")
        make_book_page(path, "A page")  # twice: prefixed once
        pages.append(nbformat.read(str(path), as_version=4))
    names = [nb.cells[-1].metadata["mystnb"]["figure"]["name"] for nb in pages]
    assert names == ["vgg16-a-fig-widths", "thinet-vgg16-p0-5-fig-widths"]
    assert "{numref}`vgg16-a-fig-widths`" in pages[0].cells[0].source


def test_titles_come_from_the_toc(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nparts:\n  - caption: A\n    chapters:\n"
                   "      - file: book/runs/vgg16-a\n        title: 'Table 1 run: VGG-16-A'\n"
                   "      - file: book/runs/slimming-vgg19-slim-p0.7\n        title: 'Slimming: VGG-19, 70%'\n"
                   "      - file: book/results\n")
    assert toc_titles(toc) == {"book/runs/vgg16-a": "Table 1 run: VGG-16-A",
                               "book/runs/slimming-vgg19-slim-p0.7": "Slimming: VGG-19, 70%"}
    assert toc_titles(tmp_path / "missing.yml") == {}
    assert toc_entries(toc)["book/results"] is None and len(toc_entries(toc)) == 3  # untitled entries too


def test_a_page_made_by_papermill_alone_gets_papermill_s_command(tmp_path, monkeypatch):
    # the results page: `papermill notebooks/results.ipynb book/results.ipynb ...`, run from the repository root
    monkeypatch.chdir(tmp_path)
    (tmp_path / "book").mkdir()
    path = _notebook(tmp_path / "book" / "results.ipynb")
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["papermill"] = {"input_path": str(tmp_path / "notebooks" / "results.ipynb"),
                                "parameters": {"findings_dir": "book"}}
    nbformat.write(nb, str(path))
    make_book_page("book/results.ipynb")
    box = next(c for c in nbformat.read(str(path), as_version=4).cells if "Re-run this page" in c.source)
    assert "papermill notebooks/results.ipynb book/results.ipynb -p findings_dir book" in box.source
    assert "reused" not in box.source  # it trains nothing


def test_a_short_profile_page_says_it_is_not_evidence(tmp_path):
    path = _notebook(tmp_path / "page.ipynb")
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["papermill"] = {"parameters": {"profile": "quick"}}
    nbformat.write(nb, str(path))
    make_book_page(path, "A page", ["python -m rethink sweep grids/table1.yaml --only resnet110-a"])
    make_book_page(path, "A page", ["python -m rethink sweep grids/table1.yaml --only resnet110-a"])
    nb = nbformat.read(str(path), as_version=4)
    notes = [i for i, c in enumerate(nb.cells) if "A short run, not evidence" in c.source]
    assert notes == [1]  # once, right under the title, above the re-run box
    make_book_page(path)  # as `python -m rethink page` does: the sweep's re-run box stays
    nb = nbformat.read(str(path), as_version=4)
    assert [c.source for c in nb.cells if "Re-run this page" in c.source][0].count("--only resnet110-a") == 1
    assert "`quick` profile: 10 epochs on 3,000 training images and a 1,000-image test set." in \
        nb.cells[1].source  # from the profile's settings
    for profile in ("book", None):  # converged profiles (and pages without one) get none
        nb.metadata["papermill"] = {"parameters": {"profile": profile}}
        nbformat.write(nb, str(path))
        make_book_page(path, "A page")
        assert not [c for c in nbformat.read(str(path), as_version=4).cells if "A short run" in c.source]


def test_the_rerun_line_gives_papermill_the_very_parameters(tmp_path):
    # the re-run box's papermill line, split by a shell and parsed by papermill's own command line: every value
    # arrives as the run had it (a list through -p would arrive as the string "[0, 1, 2]")
    import shlex

    from click.testing import CliRunner
    from papermill.cli import papermill

    from rethink.book_page import papermill_line
    params = dict(dataset="fashion-mnist", seeds=[0, 1, 2], lr=0.1, epochs=30, flag=True, tag="0.5", quote="it's",
                  mapping={"a": 1}, skipped=None)
    line = papermill_line(str(_notebook(tmp_path / "in.ipynb")), str(tmp_path / "out.ipynb"), params)
    args = shlex.split(line)
    assert args[0] == "papermill"
    result = CliRunner().invoke(papermill, args[1:] + ["--prepare-only", "-k", "python3", "--language", "python"])
    assert result.exit_code == 0, result.output
    got = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4).metadata.papermill.parameters
    assert got == {k: v for k, v in params.items() if v is not None}


def test_a_page_whose_large_model_failed_the_convergence_check_says_so(tmp_path):
    import dataclasses

    from rethink.book_page import CONVERGENCE_MARK, set_convergence_note
    from rethink.config import make_config
    from rethink.experiment import baseline_tag
    from rethink.records import write_record
    cfg = make_config(arch="resnet20", method="magnitude", prune_ratio=0.8, dataset="fashion-mnist", profile="book",
                      device="cpu", epochs=30)
    # the page's record (a lottery record: its config is what counts), and another arch's beside it
    out = tmp_path / "lottery"
    write_record(dict(kind="lottery-ticket", seed=0, config=cfg.to_dict()), out / "records" / "a-s0.json")
    other = make_config(arch="vgg16", dataset="fashion-mnist", profile="book", device="cpu")
    write_record(dict(kind="lottery-ticket", seed=0, config=other.to_dict()), out / "records" / "b-s0.json")

    def check(gain):  # the convergence records of the page's large model: 30 epochs vs 60
        for factor, acc in ((1, 90.0), (2, 90.0 + gain)):
            c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=30 * factor))
            write_record(dict(regime="convergence", factor=factor, seed=0, config=c.to_dict(),
                              baseline_tag=baseline_tag(cfg), metrics=dict(epochs=30 * factor, best_acc=acc),
                              provenance=dict(device="cpu", wall_time_s=1.0)),
                         tmp_path / "book" / "convergence" / "records" / f"c-x{factor}.json")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Lottery")]
    nb.metadata["papermill"] = {"parameters": {"profile": "book", "output_dir": str(out)},
                                "input_path": "notebooks/lottery_ticket.ipynb"}
    boxes = lambda: [c.source for c in nb.cells if CONVERGENCE_MARK in c.metadata.get("tags", [])]  # noqa: E731
    set_convergence_note(nb, tmp_path / "book")
    assert boxes() == []  # not checked: no box
    check(1.2)
    set_convergence_note(nb, tmp_path / "book")
    assert len(boxes()) == 1 and "resnet20 (unpruned) at 30 epochs: 90.00 %, 91.20 % at 60 (+1.20 points)" in boxes()[0]
    check(0.5)  # converged after all (or re-run): the box goes
    set_convergence_note(nb, tmp_path / "book")
    assert boxes() == []
    check(1.2)
    nb.metadata["papermill"]["input_path"] = "notebooks/weight_distribution.ipynb"  # another notebook's records
    set_convergence_note(nb, tmp_path / "book")
    assert boxes() == []
    nb.metadata["papermill"]["input_path"] = "notebooks/lottery_ticket.ipynb"
    nb.metadata["papermill"]["parameters"]["arch"] = "vgg16"  # a page of another arch is not flagged
    set_convergence_note(nb, tmp_path / "book")
    assert boxes() == []
    (out / "records" / "broken.json").write_text("{")  # an unreadable record is skipped, not a crash
    del nb.metadata["papermill"]["parameters"]["arch"]
    set_convergence_note(nb, tmp_path / "book")
    assert len(boxes()) == 1
    # the sweep makes pages without a _toc.yml: the book's folder is found above the page all the same
    page = tmp_path / "book" / "page.ipynb"
    nb.cells = [c for c in nb.cells if CONVERGENCE_MARK not in c.metadata.get("tags", [])]
    nbformat.write(nb, str(page))
    make_book_page(page)
    nb = nbformat.read(str(page), as_version=4)
    assert len(boxes()) == 1
