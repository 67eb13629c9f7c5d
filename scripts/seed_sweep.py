#!/usr/bin/env python3
"""Run one chapter notebook over several seeds (and parameter settings) and record the results.

A check cell in a notebook asserts on the one seed its run uses; the thresholds in it come
from the spread over several seeds, which is more compute than a chapter's budget. This
script produces that spread: it executes the notebook once per seed, with ``SEED = s``
(and any ``--set NAME=VALUE``) substituted in the notebook's parameters cell (the code
cell that starts with ``# Parameters``), and records for each run whether every cell
passed, the first error, the values of the variables named by ``--report``, and the run's
time. The JSON file it writes holds the command that made it, so a figure quoted from it
can be reproduced.

Example (the sweep behind chapter 08's threshold)::

    OMP_NUM_THREADS=1 python scripts/seed_sweep.py notebooks/08_transformer.ipynb \\
        --seeds 0 1 2 --report accuracy --out results/seeds/08_transformer.json

The notebook runs in the test run's kernel (``attnlib-strict``: warnings are errors) when
``JUPYTER_PATH`` includes ``.ci/jupyter``, as ``make seeds`` sets it; otherwise in
``python3``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def set_parameters(source: str, values: dict[str, str]) -> str:
    """Replace ``NAME = ...`` assignments at the start of a line, keeping trailing comments."""
    for name, value in values.items():
        pattern = rf"^({re.escape(name)}\s*=\s*)([^#\n]*?)(\s*#.*)?$"
        source, count = re.subn(pattern, lambda m: m.group(1) + value + (m.group(3) or ""), source, flags=re.M)
        if count != 1:
            raise SystemExit(f"--set {name}: expected one assignment of {name} in the parameters cell, found {count}")
    return source


def run_once(path: Path, values: dict[str, str], report: list[str], kernel: str, timeout: int) -> dict[str, Any]:
    nb = nbformat.read(path, as_version=4)
    params = [c for c in nb.cells if c.cell_type == "code" and c.source.lstrip().startswith("# Parameters")]
    if len(params) != 1:
        raise SystemExit(f"{path}: expected one code cell starting with '# Parameters', found {len(params)}")
    params[0].source = set_parameters(params[0].source, values)
    names = json.dumps(report)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json as _json\n"
        "def _plain(o):\n"
        "    # pandas objects as nested dicts (string keys), numpy scalars and arrays as numbers and lists\n"
        "    if hasattr(o, 'to_dict'):\n"
        "        return {str(k): v for k, v in o.to_dict().items()}\n"
        "    return o.tolist() if hasattr(o, 'tolist') else float(o)\n"
        f"print('SWEEP-REPORT', _json.dumps({{n: globals().get(n) for n in {names}}}, default=_plain))"
    ))
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    error, reported = None, {}
    code = [c for c in nb.cells if c.cell_type == "code"]
    for index, cell in enumerate(code):
        for output in cell.get("outputs", []):
            if output.output_type == "error" and error is None:
                error = {"cell": index, "error": f"{output.ename}: {output.evalue}"[:500],
                         "source": cell.source.splitlines()[:3]}
            if output.output_type == "stream" and output.text.startswith("SWEEP-REPORT "):
                reported = json.loads(output.text.split(" ", 1)[1])
    return {"passed": error is None, "first_error": error, "values": reported, "seconds": round(seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter to override in the parameters cell (repeatable)")
    parser.add_argument("--report", nargs="*", default=[], help="variables whose values to record")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default %(default)s)")
    args = parser.parse_args()
    values = {}
    for setting in args.settings:
        if "=" not in setting:
            parser.error(f"--set expects NAME=VALUE (got {setting!r})")
        name, value = setting.split("=", 1)
        values[name.strip()] = value.strip()
    kernel = "attnlib-strict" if "attnlib-strict" in KernelSpecManager().find_kernel_specs() else "python3"
    import torch

    import attnlib

    runs = []
    for seed in args.seeds:
        result = run_once(args.notebook.resolve(), {**values, "SEED": str(seed)}, args.report, kernel, args.timeout)
        runs.append({"seed": seed, **result})
        status = "passed" if result["passed"] else f"FAILED in code cell {result['first_error']['cell']}"
        print(f"seed {seed}: {status}, {result['values']}, {result['seconds']:.0f} s", flush=True)
    record = {
        "command": shlex.join(["python", "scripts/seed_sweep.py", *sys.argv[1:]]),
        "notebook": str(args.notebook),
        "settings": values,
        "kernel": kernel,
        "attnlib": attnlib.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0 if all(r["passed"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
