"""pytest configuration shared by the unit tests, the nbval notebook run and the browser test.

Two things happen here.

1. nbval waits for each cell's reply with ``--nbval-cell-timeout``, and only then reads
   the cell's output messages, with a fixed five seconds per message (``output_timeout``,
   not configurable; see computationalmodelling/nbval#136 and #231). Everything the
   kernel publishes during the cell waits meanwhile in ZeroMQ's queues, which hold a
   bounded number of messages and drop the rest. A cell that sends many messages (a
   ``tqdm.notebook`` widget bar sends dozens a second) loses its last ones, the final
   "idle" status among them, and nbval then waits for a message that never comes:
   "Timeout ... exceeded waiting for output". attnlib's progress display sends nothing
   when ``TQDM_DISABLE`` is set, which removes that cause; ``NBVAL_OUTPUT_TIMEOUT``
   only allows for a slow machine between the reply and the last output.

2. ``--save-executed DIR`` keeps what nbval executed. ``make test`` runs every notebook
   exactly once, under nbval; the book it then builds for the browser test needs the
   outputs (figures above all) of that run. nbval keeps each cell's outputs, read from
   the kernel's iopub messages and with streams coalesced, in ``item.test_outputs``. At
   the end of the session every notebook whose code cells all ran and passed is written
   to ``DIR/<path of the notebook>`` with those outputs, as a valid nbformat v4
   notebook. A notebook with a failed or unrun cell is not written (and the terminal
   summary says so), so the book build that follows finds it missing and stops.

3. Time. Every notebook's run time (the sum of its cells') is printed at the end, with
   the same time scaled to the budget's reference machine when ``--machine-speed FILE``
   (written by ``benchmarks/gflops.py --json``) gives this machine's speed, and written
   to ``--notebook-times FILE`` as JSON. Under pytest-xdist this happens in the
   controlling process, from the reports the workers send.

``--book-html DIR`` tells the browser test (``tests/browser``, run by ``make test`` after
the book build) where that build is.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import nbformat
import pytest
from nbformat.v4 import new_output

#: Seconds nbval waits for each output message once a cell has finished.
NBVAL_OUTPUT_TIMEOUT = 120

#: The budget (README, CONTRIBUTING.md): seconds a notebook may take on one thread of the
#: reference machine, whose float32 matmul speed on one thread is REFERENCE_GFLOPS.
NOTEBOOK_BUDGET_S = 240.0
REFERENCE_GFLOPS = 55.0

#: Notebook path -> seconds spent in its cells (filled from test reports), and per cell.
_NOTEBOOK_SECONDS: Dict[str, float] = {}
_CELL_SECONDS: Dict[str, Dict[str, float]] = {}

#: For each nbval notebook (an ``IPyNbFile``): code cell number -> (passed, outputs).
_EXECUTED: Dict[Any, Dict[int, Tuple[bool, List[Any]]]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--book-html",
        metavar="DIR",
        default="_build/test-html",
        help="the built HTML book that tests/browser checks (make test builds it; default %(default)s)",
    )
    parser.addoption(
        "--save-executed",
        metavar="DIR",
        default=None,
        help="write every notebook that nbval ran without a failure, with its outputs, under DIR",
    )
    parser.addoption(
        "--machine-speed",
        metavar="FILE",
        default=None,
        help="JSON from benchmarks/gflops.py --json: scale notebook times to the budget's reference machine",
    )
    parser.addoption(
        "--notebook-times",
        metavar="FILE",
        default=None,
        help="write every notebook's run time (seconds, the sum of its cells') to FILE as JSON",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cells
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    if call.when == "call" and hasattr(item, "test_outputs") and hasattr(item, "cell_num"):
        outputs = item.test_outputs if item.test_outputs is not None else []
        # nbval marks the cells after a timeout xfail: those did not run as written.
        ran = (report.passed or report.skipped) and not hasattr(report, "wasxfail")
        _EXECUTED.setdefault(item.parent, {})[item.cell_num] = (ran, outputs)
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # In the controlling process under xdist too: the workers forward their reports.
    path, _, cell = report.nodeid.partition("::")
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] = _NOTEBOOK_SECONDS.get(path, 0.0) + report.duration
        cells = _CELL_SECONDS.setdefault(path, {})
        cells[cell] = cells.get(cell, 0.0) + report.duration


def _v4_output(out: Any, execution_count: int) -> nbformat.NotebookNode:
    """One nbval output (a NotebookNode built from an iopub message) as an nbformat v4 output."""
    kind = out["output_type"]
    if kind == "stream":
        return new_output("stream", name=out["name"], text=out["text"])
    if kind == "display_data":
        return new_output("display_data", data=out["data"], metadata=out.get("metadata", {}))
    if kind == "execute_result":
        return new_output("execute_result", data=out["data"], metadata=out.get("metadata", {}),
                          execution_count=execution_count)
    if kind == "error":
        return new_output("error", ename=out["ename"], evalue=out["evalue"], traceback=out["traceback"])
    raise ValueError(f"output_type {kind!r} is not an nbformat v4 output type")


def _executed_notebook(nbfile: Any, cells: Dict[int, Tuple[bool, List[Any]]]) -> Optional[nbformat.NotebookNode]:
    nb = copy.deepcopy(nbfile.nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if sorted(cells) != list(range(len(code))) or not all(ok for ok, _ in cells.values()):
        return None
    for number, cell in enumerate(code):
        cell.execution_count = number + 1
        cell.outputs = [_v4_output(out, number + 1) for out in cells[number][1]]
    nbformat.validate(nb)
    return nb


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = session.config.getoption("save_executed")
    if not target:
        return
    root = Path(session.config.rootpath)
    for nbfile, cells in _EXECUTED.items():
        path = Path(nbfile.path).resolve()
        relative = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
        nb = _executed_notebook(nbfile, cells)
        if nb is None:
            continue
        out = Path(target) / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out))


def _report_times(terminalreporter: Any, config: pytest.Config) -> None:
    speed_file = config.getoption("machine_speed")
    gflops = None
    if speed_file and Path(speed_file).is_file():
        gflops = float(json.loads(Path(speed_file).read_text())["gflops_1_thread"])
    times_file = config.getoption("notebook_times")
    if times_file:
        Path(times_file).parent.mkdir(parents=True, exist_ok=True)
        Path(times_file).write_text(json.dumps(
            {"gflops_1_thread": gflops, "seconds": dict(sorted(_NOTEBOOK_SECONDS.items())),
             "cells": {name: {c: round(t, 2) for c, t in cells.items()} for name, cells in sorted(_CELL_SECONDS.items())}},
            indent=1) + "\n")
    scale = gflops / REFERENCE_GFLOPS if gflops else None
    head = "notebook times (sum of cell times)"
    if scale:
        head += f"; at {REFERENCE_GFLOPS:.0f} GFLOP/s = here x {scale:.2f} (this machine: {gflops:.1f} GFLOP/s, 1 thread)"
    terminalreporter.write_sep("-", head)
    for name, seconds in sorted(_NOTEBOOK_SECONDS.items()):
        line = f"{seconds:7.1f} s  {name}"
        if scale:
            ref = seconds * scale
            over = "  OVER the budget" if ref > NOTEBOOK_BUDGET_S else ""
            line = f"{seconds:7.1f} s here, {ref:6.1f} s at reference{over}  {name}"
        terminalreporter.write_line(line)
    total = sum(_NOTEBOOK_SECONDS.values())
    terminalreporter.write_line(f"{total:7.1f} s in all" + (f", {total * scale:.1f} s at reference" if scale else ""))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _NOTEBOOK_SECONDS:
        _report_times(terminalreporter, config)
    target = config.getoption("save_executed")
    if not target or not _NOTEBOOK_SECONDS:
        return
    # Under xdist each worker saved its own notebooks: report from what is on disk.
    terminalreporter.write_sep("-", f"executed notebooks for the book build (--save-executed {target})")
    for name in sorted(_NOTEBOOK_SECONDS):
        saved = (Path(target) / name).is_file()
        terminalreporter.write_line(f"{'saved    ' if saved else 'NOT saved'}  {name}"
                                    + ("" if saved else " (a cell failed or did not run)"))
