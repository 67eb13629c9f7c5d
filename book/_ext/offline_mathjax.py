"""Serve MathJax from the built book, so equations render with no network.

MathJax 3 comes from the PyPI wheel ``django-static-mathjax`` (pure static files, no
dependencies; installed by attnlib's ``book`` extra). Its ``es5`` bundle is copied into
``<html output>/_mathjax/``, a folder of its own: Jupyter Book adds every script in
``_static/`` to every page, which would load all of MathJax's components at once.
``mathjax_path`` is then pointed at the copy.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any, Dict

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

FOLDER = "_mathjax"
ENTRY = "tex-mml-chtml.js"


def _bundle() -> Path:
    spec = importlib.util.find_spec("mathjax")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        es5 = Path(location) / "static" / "mathjax" / "es5"
        if (es5 / ENTRY).is_file():
            return es5
    raise ExtensionError(
        "offline MathJax needs the package django-static-mathjax (attnlib's [book] extra); "
        f"no static/mathjax/es5/{ENTRY} found in the 'mathjax' package (got {locations or 'no package'})"
    )


def _point_mathjax_at_copy(app: Sphinx, config: Config) -> None:
    # A relative mathjax_path is taken relative to _static/; step out of it.
    config.mathjax_path = f"../{FOLDER}/{ENTRY}"


def _copy_bundle(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    target = Path(app.outdir) / FOLDER
    source = _bundle()
    if (target / ENTRY).is_file() and (target / ENTRY).stat().st_size == (source / ENTRY).stat().st_size:
        return
    def skip(folder: str, names: list) -> set:
        # Other combined entry points and the SVG output are never loaded by ENTRY.
        if Path(folder) == source:
            return {n for n in names if n.endswith(".js") and n != ENTRY}
        if Path(folder) == source / "output":
            return {n for n in names if n != "chtml"}
        return set()

    shutil.copytree(source, target, ignore=skip, dirs_exist_ok=True)


def setup(app: Sphinx) -> Dict[str, Any]:
    app.connect("config-inited", _point_mathjax_at_copy, priority=900)
    app.connect("builder-inited", _copy_bundle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
