"""Small helpers every chapter uses: the device, seeding, timing, and showing source code."""

from __future__ import annotations

import inspect
import os
import random
import statistics
import textwrap
import time
from typing import Any, Callable, Optional

import numpy as np
import torch

__all__ = ["get_device", "seed_everything", "measure_time", "show_source", "Source"]


def get_device(prefer: Optional[str] = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    Args:
        prefer: force a device (``"cpu"``, ``"cuda"``, ``"mps"``); the environment
            variable ``ATTNLIB_DEVICE`` does the same for a whole notebook run.

    Returns:
        A :class:`torch.device`.
    """
    choice = prefer or os.environ.get("ATTNLIB_DEVICE")
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"prefer={choice!r} but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"prefer={choice!r} but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and PyTorch's generators (all devices).

    Args:
        seed: a non-negative integer.

    Returns:
        A :class:`torch.Generator` seeded with ``seed``, for code that wants its own
        stream (data generation, say) independent of model initialisation.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int (got {seed!r})")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _synchronize(device: Optional[torch.device]) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device is not None and device.type == "mps":
        torch.mps.synchronize()


def measure_time(
    fn: Callable[[], Any],
    repeats: int = 5,
    warmup: int = 1,
    device: Optional[torch.device] = None,
) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs, after ``warmup`` runs.

    The median, not the mean, because a shared machine has slow outliers. On CUDA
    and MPS the device is synchronised around each run, since kernels run
    asynchronously.

    Args:
        fn: the code to time, called with no arguments.
        repeats: timed runs (at least 1).
        warmup: untimed runs first (caches, lazy initialisation, allocator).
        device: the device ``fn`` runs on, to synchronise.

    Returns:
        The median time of one call, in seconds.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int (got {repeats!r})")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative int (got {warmup!r})")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Source:
    """Python source code that displays as a highlighted code block in a notebook.

    Made by :func:`show_source`; ``str(source)`` is the plain text.
    """

    def __init__(self, code: str, title: str) -> None:
        self.code = code
        self.title = title

    def __str__(self) -> str:
        return self.code

    def __repr__(self) -> str:
        return f"# {self.title}\n{self.code}"

    def _repr_markdown_(self) -> str:
        fence = "````" if "```" in self.code else "```"
        return f"**`{self.title}`**\n\n{fence}python\n{self.code.rstrip()}\n{fence}\n"


def show_source(obj: Any) -> Source:
    """Return the real source of an attnlib function, class or method for display.

    The chapters use this to show the package's code instead of pasting a copy, so
    the book always shows the code that runs.

    Args:
        obj: a function, class, method or module.

    Returns:
        A :class:`Source`; as the last expression of a notebook cell it renders as
        a highlighted code block.
    """
    try:
        code = inspect.getsource(obj)
    except (TypeError, OSError) as err:
        raise TypeError(f"obj must be a Python function, class, method or module with source (got {obj!r})") from err
    module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
    name = getattr(obj, "__qualname__", None)
    title = f"{module}.{name}" if name and not inspect.ismodule(obj) else str(module)
    return Source(textwrap.dedent(code), title)
