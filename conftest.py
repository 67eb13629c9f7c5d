"""pytest configuration shared by the unit tests and the nbval notebook run.

nbval waits for each cell's reply with ``--nbval-cell-timeout``, but then waits for
the cell's output messages with a fixed five seconds per message (``output_timeout``,
not configurable; see computationalmodelling/nbval#136 and #231). On a busy two-core
CI machine the kernel's output thread can lag behind a long training cell by more
than that, and the cell fails although it ran fine. We give the output channel the
same patience as the cell itself.
"""

from __future__ import annotations

import pytest

#: Seconds nbval waits for each output message once a cell has finished.
NBVAL_OUTPUT_TIMEOUT = 120


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cells
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT
