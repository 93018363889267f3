# Two commands set everything up on a fresh machine:
#   make book   create .venv, install, build the book from the committed executed notebooks
#   make test   create .venv, install, run the whole test suite (unit tests, notebook smoke runs, book build -W)
# Other targets:
#   make runs   the carried checkpoints into the cache (book/checkpoints, if any), the convergence check of
#               every large model (make convergence), then every grid (grids/*.yaml: book profile,
#               Fashion-MNIST) with the sweep, which skips runs already done and redoes failed or
#               interrupted ones; then the results page and the book
#   make labs   the course labs (notebooks/labs): student and instructor versions and autograders in _build/labs
#   make lab-pages  ... and the executed instructor versions as the book's lab pages (book/labs, minutes per lab)
#   make clean  remove the built book

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# One grid file per book chapter; each names its notebook, parameters and where the executed notebooks go.
GRIDS ?= $(wildcard grids/*.yaml)
# Two runs at once with one torch thread each: 2.0x the images/s of one run at a time on the project's 2-core CPU
# (book/perf/throughput-cpu-book.md).  Elsewhere e.g. SWEEP_ARGS="--jobs 4" or "--engine ray --address auto"
SWEEP_ARGS ?= --jobs 2 --threads 1

.PHONY: book test runs convergence load-checkpoints clean install labs lab-pages

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

# The protocol page's convergence check: each large model of the book (seed 0, the one the rows prune) against
# 2x the epochs.  A check with its records is done (a later session, its cache gone, trains only what is missing;
# `--restart` redoes one).  CONVERGE_JOBS checks at once, one torch thread each (as the sweep's --jobs 2
# --threads 1), then the table again from all the records.
CONVERGE ?= "vgg16" "resnet56" "resnet110" "vgg19" "vgg19-slim --method slimming" "densenet40 --method slimming" \
            "resnet56 --method sfp --prune-ratio 0.3" "resnet56 --method sss --prune-ratio 0.3" \
            "resnet20" "vgg11 --method slimming" "resnet18"
CONVERGE_JOBS ?= 2

convergence: $(STAMP)
	printf '%s\n' $(CONVERGE) | xargs -P $(CONVERGE_JOBS) -I{} sh -c 'OMP_NUM_THREADS=1 $(BIN)/python -m rethink \
	  converge --dataset fashion-mnist --profile book --output-dir book/convergence --quiet --arch {} > /dev/null'
	$(BIN)/python -c "from rethink.convergence import write_convergence_markdown as w; \
	  w('book/convergence/records', 'book/convergence/table.md')"

# The large models and training states a session carried to the next (README, "Reproduce every table"): loaded
# into the cache first, so that a training longer than one machine's life continues
CHECKPOINTS ?= book/checkpoints

load-checkpoints: $(STAMP)
	if [ -d $(CHECKPOINTS) ]; then $(BIN)/python -m rethink cache --load $(CHECKPOINTS); fi

runs: $(STAMP) load-checkpoints convergence
	$(BIN)/python -m rethink sweep $(GRIDS) $(SWEEP_ARGS)
	$(BIN)/papermill notebooks/results.ipynb book/results.ipynb --cwd . -p findings_dir book
	$(BIN)/python -m rethink page book/results.ipynb
	$(MAKE) book

# One source per lab (notebooks/labs/*.ipynb, otter-grader's format) -> student version, instructor version and
# autograder zip (otter assign); book/labs/instructor.md says how to hand them out and grade (`otter run`).
labs: $(STAMP)
	$(BIN)/python -m rethink labs --out _build/labs

lab-pages: $(STAMP)
	$(BIN)/python -m rethink labs --out _build/labs --pages

clean:
	rm -rf _build
