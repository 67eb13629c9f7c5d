"""Small helpers every chapter uses: the device, seeding, timing, showing source code, publishing figures."""

from __future__ import annotations

import inspect
import math
import os
import random
import statistics
import sys
import textwrap
import time
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Mapping, Optional, TypeVar

import numpy as np
import torch

from ._checks import non_negative_int, positive_int

__all__ = ["get_device", "seed_everything", "measure_time", "measure_times", "show_source", "Source", "bars_hidden", "progress", "glue"]

T_ = TypeVar("T_")


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
    non_negative_int("seed", seed)
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
    positive_int("repeats", repeats)
    non_negative_int("warmup", warmup)
    for _ in range(warmup):
        fn()
    return statistics.median(_timed_call(fn, device) for _ in range(repeats))


def _timed_call(fn: Callable[[], Any], device: Optional[torch.device]) -> float:
    _synchronize(device)
    start = time.perf_counter()
    fn()
    _synchronize(device)
    return time.perf_counter() - start


K = TypeVar("K", bound=Hashable)


def measure_times(
    fns: Mapping[K, Callable[[], Any]],
    repeats: int = 5,
    warmup: int = 1,
    device: Optional[torch.device] = None,
    generator: Optional[torch.Generator] = None,
) -> Dict[K, List[float]]:
    """Wall-clock seconds of several functions, timed in rounds, for comparing them.

    Each round calls every function once, in a new random order. Whatever else the
    machine does during a round (another process, a busy spell) then slows all of them
    alike, and no function always runs right after the same neighbour (which may have
    filled the memory caches with its own data). Compare the medians, or the ratio of
    two functions' times round by round.

    Args:
        fns: the code to time, by name; each is called with no arguments.
        repeats: timed rounds (at least 1).
        warmup: untimed rounds first, in the mapping's order.
        device: the device the functions run on, to synchronise (as :func:`measure_time`).
        generator: draws the order of each round; ``None`` uses a generator seeded 0,
            so that timing never moves the global random state.

    Returns:
        ``{name: [seconds of round 1, ..., seconds of round repeats]}``.
    """
    if not isinstance(fns, Mapping) or not fns or not all(callable(fn) for fn in fns.values()):
        raise TypeError(f"fns must be a non-empty mapping of names to functions (got {fns!r})")
    positive_int("repeats", repeats)
    non_negative_int("warmup", warmup)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None (got {type(generator).__name__})")
    order = generator if generator is not None else torch.Generator().manual_seed(0)
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: Dict[K, List[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for i in torch.randperm(len(names), generator=order).tolist():
            times[names[i]].append(_timed_call(fns[names[i]], device))
    return times


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


def bars_hidden() -> bool:
    """Whether the environment asks to hide progress bars (``TQDM_DISABLE`` set and not 0/false).

    ``tqdm`` reads ``TQDM_DISABLE`` itself, but ``tqdm.notebook`` (what ``tqdm.auto``
    picks inside Jupyter) passes ``disable=False`` explicitly and so ignores it. The book
    build and the tests set the variable; attnlib checks it here and passes
    ``disable=True`` itself.
    """
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def progress(
    iterable: Iterable[T_],
    total: Optional[int] = None,
    desc: str = "progress",
    lines: int = 10,
) -> Iterator[T_]:
    """Iterate with a progress display: a ``tqdm`` bar for a person, short lines otherwise.

    With bars shown (the default) this is ``tqdm.auto.tqdm``: a widget in Jupyter, a
    text bar in a terminal. When bars are hidden (:func:`bars_hidden`, as in the book
    build and the tests) it prints one plain line on standard output about every
    ``1/lines`` of the way, with the elapsed time, so that a long cell still says what
    it is doing, in the rendered book too, and a hidden bar sends no widget messages.

    Args:
        iterable: what to iterate over.
        total: its length, when ``len(iterable)`` does not work.
        desc: the label of the bar or of each line.
        lines: how many lines at most when bars are hidden (0: none).

    Yields:
        The items of ``iterable``.
    """
    non_negative_int("lines", lines)
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if not bars_hidden():
        from tqdm.auto import tqdm

        yield from tqdm(iterable, total=total, desc=desc, leave=True)
        return
    if lines == 0 or not total:
        yield from iterable
        return
    every = max(1, math.ceil(total / lines))
    start = time.perf_counter()
    for done, item in enumerate(iterable, start=1):
        yield item
        if done % every == 0 or done == total:
            print(f"{desc}: {done}/{total} ({100 * done // total}%), {time.perf_counter() - start:.0f} s",
                  file=sys.stdout, flush=True)


# The mime-type prefix under which MyST-NB (Jupyter Book) finds glued values without
# showing them in the notebook.
GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value: Any) -> None:
    """Publish a figure of this run under ``name``, for the book to quote.

    The book never types a measured figure by hand: a chapter publishes it here, and the
    claims ledger pastes it from the executed notebook with MyST-NB's role,
    ``{glue:text}`../notebooks/08_transformer.ipynb::c11_peek_exact:.2f```. The output
    has MyST-NB's ``glue`` format (a hidden display output named in its ``scrapbook``
    metadata), so the notebook needs neither MyST-NB nor Jupyter Book: in Jupyter nothing
    shows, and outside IPython (a plain script) the call does nothing.

    Args:
        name: the key, a Python identifier, unique in its notebook.
        value: a real number (stored as its ``repr``, so that a format such as ``.2f``
            applies) or a short text.

    Raises:
        ValueError: ``name`` is not an identifier, or a number is not finite.
        TypeError: ``value`` is neither a real number nor a string.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Python identifier (got {name!r})")
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating, torch.Tensor)):
        raise TypeError(f"value must be a real number or a string (got {type(value).__name__})")
    else:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
                raise TypeError(f"value must be a real number or a string (got a tensor of shape {tuple(value.shape)})")
            value = value.item()
        if isinstance(value, (int, np.integer)):
            text = str(int(value))
        else:
            if not math.isfinite(float(value)):
                raise ValueError(f"value must be finite (got {value!r} for {name!r})")
            text = repr(float(value))
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # no IPython: nothing to publish to
        return
    if get_ipython() is None:
        return
    display({GLUE_PREFIX + "text/plain": text}, raw=True, metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})
