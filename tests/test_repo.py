"""Repository hygiene: clean notebooks, one list of dependencies, pins that agree."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

import attnlib
from attnlib._install_cell import install_cell

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_there_are_notebooks():
    assert NOTEBOOKS, "no chapter notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them with jupyter nbconvert --clear-output --inplace"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_conventions(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    first_code = next(c for c in cells if c["cell_type"] == "code")
    source = "".join(first_code["source"])
    assert source == install_cell(path.name), (
        f"{path.name}: the first code cell must be attnlib._install_cell's template for version "
        f"{attnlib.__version__}; rewrite it with python -m attnlib._install_cell notebooks/*.ipynb")
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in cells]
    assert any("parameters" in t for t in tags), f"{path.name}: no cell tagged 'parameters'"
    checks = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).lstrip().startswith("# Check:")]
    assert checks, f"{path.name}: no check cells"
    assert all("assert" in "".join(c["source"]) for c in checks), f"{path.name}: a check cell asserts nothing"
    untagged = [i for i, c in enumerate(cells) if c in checks
                and not {"hide-cell", "remove-cell", "remove-input"} & set(c.get("metadata", {}).get("tags", []))]
    assert not untagged, f"{path.name}: check cells {untagged} must be tagged hide-cell (collapsed in the page)"
    assert "get_device()" in "".join("".join(c["source"]) for c in cells), f"{path.name}: device must come from attnlib.get_device()"
    # tqdm.auto's notebook bar ignores TQDM_DISABLE and floods a kernel nobody reads (see
    # conftest.py); progress goes through attnlib.train.fit or attnlib.progress.
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "tqdm" not in code, f"{path.name}: use attnlib.progress (or fit's progress) instead of tqdm"


def test_environment_yml_declares_the_same_packages_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for requirements in project["optional-dependencies"].values():
        declared |= {_name(r) for r in requirements}
    env_text = (ROOT / "environment.yml").read_text()
    pip_lines = re.findall(r"^\s+- (?!-)(\S+)\s*$", env_text.split("- pip:", 1)[1], flags=re.M)
    in_env = {_name(r) for r in pip_lines}
    assert in_env == declared, f"only in environment.yml: {in_env - declared}; only in pyproject.toml: {declared - in_env}"
    assert re.search(r"^\s+- python=3\.11\s*$", env_text, flags=re.M)


def test_torch_pin_agrees_between_constraints_and_environment():
    constraints = (ROOT / "constraints.txt").read_text()
    env_text = (ROOT / "environment.yml").read_text()
    pin = re.search(r"^torch==(\S+)", constraints, flags=re.M)
    assert pin, "constraints.txt must pin torch"
    assert f"- torch=={pin.group(1)}" in env_text


def test_every_toc_entry_exists_and_every_notebook_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"(?:root|file):\s*(\S+)", toc)
    for f in files:
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f"_toc.yml lists missing page {f}"
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}" in files, f"{nb.name} is not in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_ends_with_exercises_and_hidden_solutions(path):
    cells = json.loads(path.read_text())["cells"]
    starts = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
              and re.search(r"^## Exercises\s*$", "".join(c["source"]), flags=re.M)]
    assert starts, f"{path.name}: no '## Exercises' section"
    after = cells[starts[0] + 1:]
    end = next((i for i, c in enumerate(after) if c["cell_type"] == "markdown"
                and re.search(r"^## ", "".join(c["source"]), flags=re.M)), len(after))
    section = after[:end]
    solutions = [c for c in section if c["cell_type"] == "code"
                 and "".join(c["source"]).lstrip().startswith("# Solution")]
    assert len(solutions) >= 2, f"{path.name}: {len(solutions)} solution cells in '## Exercises' (want >= 2, each starting '# Solution')"
    hidden = [c for c in solutions if "hide-cell" in c.get("metadata", {}).get("tags", [])]
    assert len(hidden) == len(solutions), f"{path.name}: solution cells must be tagged hide-cell (revealed on click)"


def test_licences_are_declared_shipped_and_stated():
    """MIT for the code (an SPDX expression, with the file), CC BY 4.0 for the book, both said where readers look."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in project["classifiers"]), "the SPDX expression replaces licence classifiers"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "Creative Commons Attribution 4.0" in (ROOT / "LICENSE-BOOK.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "## Licence" in readme and "CC BY 4.0" in readme and "MIT" in readme
    footer = yaml.safe_load((ROOT / "_config.yml").read_text())["html"]["extra_footer"]
    assert "CC BY 4.0" in footer and "MIT" in footer
    intro = (ROOT / "book" / "intro.md").read_text()
    assert "## How to cite" in intro and "CC BY 4.0" in intro


def test_citation_changelog_and_classifiers_follow_the_version():
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^cff-version: 1\.2\.0$", citation, flags=re.M)
    versions = re.findall(r"^\s*(?:version|edition): \"?([^\"\s]+)\"?$", citation, flags=re.M)
    assert versions == [attnlib.__version__] * 2, f"CITATION.cff says {versions}, attnlib is {attnlib.__version__}"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{attnlib.__version__}]" in changelog
    classifiers = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["classifiers"]
    tested = f"Programming Language :: Python :: {sys.version_info.major}.{sys.version_info.minor}"
    if sys.version_info[:2] == (3, 11):  # the version the test command runs on
        assert tested in classifiers


def test_the_sdist_leaves_the_tests_out():
    """The tests need the whole repository (conftest.py, notebooks/, scripts/, benchmarks/); make dist checks the archives."""
    assert re.search(r"^prune tests$", (ROOT / "MANIFEST.in").read_text(), flags=re.M)


BASE_PYTHON = Path("/root/.pyenv/versions/3.11.7/bin/python")


@pytest.mark.skipif(not BASE_PYTHON.is_file(), reason="needs a Python without attnlib installed")
def test_install_cell_says_what_to_do_when_the_install_fails(tmp_path):
    """The first cell, where attnlib is missing and ATTNLIB_SOURCE names nothing: one message, no traceback."""
    import os
    import subprocess

    env = {**os.environ, "ATTNLIB_SOURCE": str(tmp_path / "does-not-exist")}
    run = subprocess.run([str(BASE_PYTHON), "-I", "-c", install_cell("04_self_attention.ipynb")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    version = attnlib.__version__
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == (f"attnlib {version} could not be installed from {tmp_path / 'does-not-exist'}; if it is "
                          f"not on PyPI yet, install it from a wheel or a clone: set ATTNLIB_SOURCE=/path/to/"
                          f"attnlib-{version}-py3-none-any.whl (or a directory, or a VCS URL) and rerun this cell\n")


@pytest.mark.parametrize("path", NOTEBOOKS + sorted((ROOT / "book").glob("*.md")), ids=lambda p: p.name)
def test_text_has_no_stray_control_characters(path):
    """A TAB or another control character in prose or math renders wrong (a JSON "\\t" in
    "$3 \\times 10^{-3}$" once rendered as "3 imes"); only newlines belong there."""
    if path.suffix == ".ipynb":
        texts = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]
    else:
        texts = [path.read_text()]
    bad = sorted({repr(ch) for text in texts for ch in text if ord(ch) < 32 and ch != "\n"})
    assert not bad, f"{path.name}: control characters {bad} in the text"
