from __future__ import annotations

import nbformat

from rethink.book_page import make_book_page, toc_titles


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
    assert nb.cells.index(boxes[0]) == 1
    tags = [c.metadata["tags"] for c in nb.cells if c.cell_type == "code"]
    assert tags == [["parameters", "hide-cell"], ["injected-parameters", "hide-cell"], ["hide-input"]]


def test_titles_come_from_the_toc(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nparts:\n  - caption: A\n    chapters:\n"
                   "      - file: book/runs/vgg16-a\n        title: 'Table 1 run: VGG-16-A'\n"
                   "      - file: book/runs/slimming-vgg19-slim-p0.7\n        title: 'Slimming: VGG-19, 70%'\n"
                   "      - file: book/results\n")
    assert toc_titles(toc) == {"book/runs/vgg16-a": "Table 1 run: VGG-16-A",
                               "book/runs/slimming-vgg19-slim-p0.7": "Slimming: VGG-19, 70%"}
    assert toc_titles(tmp_path / "missing.yml") == {}
