# Two commands set everything up on a fresh machine:
#   make book   create .venv, install, build the book from the committed executed notebooks
#   make test   create .venv, install, run the whole test suite (unit tests, notebook smoke runs, book build -W)
# Other targets:
#   make runs   run every grid (grids/*.yaml: quick profile, Fashion-MNIST) with the sweep, which skips runs already
#               done and redoes failed or interrupted ones; then the results page and the book
#   make clean  remove the built book

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# One grid file per book chapter; each names its notebook, parameters and where the executed notebooks go.
GRIDS ?= $(wildcard grids/*.yaml)
# e.g. SWEEP_ARGS="--jobs 4" or "--engine ray --address auto"
SWEEP_ARGS ?=

.PHONY: book test runs clean install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W --keep-going
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest -q

runs: $(STAMP)
	$(BIN)/python -m rethink sweep $(GRIDS) $(SWEEP_ARGS)
	$(BIN)/papermill notebooks/results.ipynb book/results.ipynb --cwd . -p findings_dir book
	$(BIN)/python -m rethink page book/results.ipynb
	$(MAKE) book

clean:
	rm -rf _build
