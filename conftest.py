"""pytest configuration shared by the unit tests, the nbval notebook run and the browser test.

Two things happen here.

1. nbval waits for each cell's reply with ``--nbval-cell-timeout``, but then waits for
   the cell's output messages with a fixed five seconds per message (``output_timeout``,
   not configurable; see computationalmodelling/nbval#136 and #231). On a busy two-core
   CI machine the kernel's output thread can lag behind a long training cell by more
   than that, and the cell fails although it ran fine. We give the output channel the
   same patience as the cell itself.

2. ``--save-executed DIR`` keeps what nbval executed. ``make test`` runs every notebook
   exactly once, under nbval; the book it then builds for the browser test needs the
   outputs (figures above all) of that run. nbval keeps each cell's outputs, read from
   the kernel's iopub messages and with streams coalesced, in ``item.test_outputs``. At
   the end of the session every notebook whose code cells all ran and passed is written
   to ``DIR/<path of the notebook>`` with those outputs, as a valid nbformat v4
   notebook. A notebook with a failed or unrun cell is not written (and the terminal
   summary says so), so the book build that follows finds it missing and stops.

``--book-html DIR`` tells the browser test (``tests/browser``, run by ``make test`` after
the book build) where that build is.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import nbformat
import pytest
from nbformat.v4 import new_output

#: Seconds nbval waits for each output message once a cell has finished.
NBVAL_OUTPUT_TIMEOUT = 120

#: For each nbval notebook (an ``IPyNbFile``): code cell number -> (passed, outputs).
_EXECUTED: Dict[Any, Dict[int, Tuple[bool, List[Any]]]] = {}
_SAVED: List[str] = []
_NOT_SAVED: List[str] = []


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
            _NOT_SAVED.append(str(relative))
            continue
        out = Path(target) / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out))
        _SAVED.append(str(relative))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    target = config.getoption("save_executed")
    if not target or not (_SAVED or _NOT_SAVED):
        return
    terminalreporter.write_sep("-", f"executed notebooks for the book build (--save-executed {target})")
    for name in _SAVED:
        terminalreporter.write_line(f"saved      {name}")
    for name in _NOT_SAVED:
        terminalreporter.write_line(f"NOT saved  {name} (a cell failed or did not run)")
