#!/usr/bin/env python3
"""The figures executed notebooks published with ``attnlib.glue``, side by side.

Each chapter publishes the figures the claims ledger quotes (``attnlib.glue``, MyST-NB's
glue format). This script reads them back from executed notebooks and prints one table:
one row per figure, one column per folder given. With two folders it also marks the
figures that differ, e.g. the book's own run against the Colab-like run::

    python scripts/glued_figures.py _build/executed/notebooks _build/colab-executed \\
        --notebooks 10_gpt 11_bert

Exit status 0; it reports, it does not judge.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict

GLUE_PREFIX = "application/papermill.record/"


def glued(path: Path) -> Dict[str, str]:
    """{name: text} of every glued value in an executed notebook."""
    values: Dict[str, str] = {}
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if meta:
                text = output.get("data", {}).get(meta.get("mime_prefix", "") + "text/plain")
                if text is not None:
                    values[meta["name"]] = "".join(text) if isinstance(text, list) else text
    return values


def show(text: str) -> str:
    try:
        number = float(text)
    except ValueError:
        return text
    return f"{number:.4g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="folders of executed notebooks")
    parser.add_argument("--notebooks", nargs="*", help="notebook names (default: every one in the first folder)")
    args = parser.parse_args()
    names = args.notebooks or sorted(p.stem for p in args.folders[0].glob("*.ipynb"))
    for name in names:
        tables = [glued(folder / f"{name}.ipynb") if (folder / f"{name}.ipynb").is_file() else {}
                  for folder in args.folders]
        keys = sorted(set().union(*tables))
        if not keys:
            continue
        print(f"{name}:")
        for key in keys:
            cells = [show(t[key]) if key in t else "-" for t in tables]
            mark = "  (differs)" if len(args.folders) > 1 and len(set(cells)) > 1 else ""
            print(f"  {key:32s} " + "  ".join(f"{c:>12s}" for c in cells) + mark)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
