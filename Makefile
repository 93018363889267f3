# Two commands set everything up on a fresh machine:
#   make book   create .venv, install, build the book from the committed executed notebooks
#   make test   create .venv, install, run the whole test suite (unit tests, notebook smoke runs, book build -W)
# Other targets:
#   make runs   re-execute every book notebook through papermill (quick profile, Fashion-MNIST), then the book
#   make clean  remove the built book

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Executed notebooks of the book: <name>:<arch>
L1_RUNS := vgg16-a:vgg16 resnet56-a:resnet56 resnet56-b:resnet56 resnet110-a:resnet110 resnet110-b:resnet110
RUN_ARGS ?= -p dataset fashion-mnist -p profile quick

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
	@for r in $(L1_RUNS); do \
	  name=$${r%%:*}; arch=$${r##*:}; \
	  $(BIN)/papermill notebooks/scratch_vs_finetune.ipynb book/runs/$$name.ipynb --cwd . \
	    -p arch $$arch -p variant $$name -p output_dir book/runs $(RUN_ARGS) || exit 1; \
	done
	$(BIN)/papermill notebooks/results.ipynb book/results.ipynb --cwd . -p output_dir book/runs
	$(MAKE) book

clean:
	rm -rf _build
