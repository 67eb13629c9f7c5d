"""Trace the shapes that flow through a module and its submodules, as a table.

Chapter 06, "Multi-head attention", uses this to follow a batch through
:class:`attnlib.attention.MultiHeadAttention`; any ``nn.Module`` works.

::

    trace = trace_shapes(mha, x, x, x, need_weights=True)
    trace                       # a table in a notebook, plain text in a terminal

    with ShapeTracer(model, max_depth=1) as trace:   # the same, around any code
        model(tokens)

The tracer registers a forward pre-hook and a forward hook on every submodule, records
each call's inputs and output, and removes every hook when the ``with`` block ends,
also when the forward raises. It records *shapes*, never the tensors themselves.

What it cannot see: hooks fire at module boundaries only. A reshape, a transpose or a
call to a function (``scaled_dot_product_attention``) inside a ``forward`` is not a
module, so it does not appear in the table; chapter 06 draws those steps.

Shape legend: ``B`` batch, ``T`` target length, ``S`` source length, ``D`` width.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type, Union

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ._checks import boolean, optional_non_negative_int

__all__ = ["Shape", "ShapeRecord", "ShapeTrace", "ShapeTracer", "trace_shapes", "describe_shape", "format_shape"]

#: The record the tracer keeps of one value. A tensor becomes its ``torch.Size``,
#: ``None`` stays ``None``, a tuple becomes a tuple of shapes (a list a list, a dict a
#: dict), a number, bool or short string its ``repr``, anything else the name of its
#: type. (The containers hold shapes in turn; the alias is not written recursively.)
Shape = Union[torch.Size, None, str, Tuple[Any, ...], List[Any], Dict[str, Any]]

_MAX_ITEMS = 8  # containers longer than this are summarised, not listed
_MAX_STR = 24  # strings longer than this are shown by type only


def describe_shape(value: Any) -> Shape:
    """What the tracer records of one value (see :data:`Shape`).

    Args:
        value: an input or output of a module: a tensor, ``None``, a tuple, list or
            dict of those, or any other object.

    Returns:
        ``torch.Size`` for a tensor, ``None`` for ``None``, the same container of
        shapes for a tuple, list or dict (up to 8 items; a longer one is summarised
        as ``"list of 100"``), ``repr`` for a number, bool or short string, and the
        type's name for anything else.
    """
    if isinstance(value, Tensor):
        return value.shape
    if value is None:
        return None
    if isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= _MAX_STR):
        return repr(value)
    if isinstance(value, (tuple, list)):
        if len(value) > _MAX_ITEMS:
            return f"{type(value).__name__} of {len(value)}"
        items = [describe_shape(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        if len(value) > _MAX_ITEMS:
            return f"dict of {len(value)}"
        return {str(k): describe_shape(v) for k, v in value.items()}
    return type(value).__name__


def format_shape(shape: Shape) -> str:
    """Write a recorded shape as text: ``(2, 5, 32)`` for a tensor.

    A tuple of outputs is written in parentheses, ``((2, 5, 32), None)``; a list in
    square brackets; a dict in braces.

    Args:
        shape: a value returned by :func:`describe_shape`.

    Returns:
        The text.
    """
    if isinstance(shape, torch.Size):
        dims = ", ".join(str(d) for d in shape)
        return f"({dims},)" if len(shape) == 1 else f"({dims})"
    if shape is None:
        return "None"
    if isinstance(shape, str):
        return shape
    if isinstance(shape, tuple):  # a tuple of shapes (a torch.Size, also a tuple, was handled above)
        items: Tuple[Any, ...] = shape
        inner = ", ".join(format_shape(s) for s in items)
        return f"({inner},)" if len(items) == 1 else f"({inner})"
    if isinstance(shape, list):
        return "[" + ", ".join(format_shape(s) for s in shape) + "]"
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {format_shape(v)}" for k, v in shape.items()) + "}"
    raise TypeError(f"shape must be a value returned by describe_shape (got {type(shape).__name__})")


@dataclass
class ShapeRecord:
    """One call of one module: what went in and what came out.

    Attributes:
        name: the submodule's qualified name in the traced module (``"q_proj"``,
            ``"layers.0.attn"``); ``""`` for the traced module itself.
        module_type: the class name (``"Linear"``).
        depth: 0 for the traced module, 1 for its children, and so on.
        args: the shapes of the positional inputs.
        kwargs: the shapes of the keyword inputs.
        output: the shape of what ``forward`` returned.
        finished: ``False`` when the forward raised before returning (then
            ``output`` is ``None``).
    """

    name: str
    module_type: str
    depth: int
    args: Tuple[Shape, ...]
    kwargs: Dict[str, Shape] = field(default_factory=dict)
    output: Shape = None
    finished: bool = False

    def format_inputs(self) -> str:
        """The inputs as text: positional shapes, then ``name=shape`` for keywords."""
        parts = [format_shape(a) for a in self.args]
        parts += [f"{k}={format_shape(v)}" for k, v in self.kwargs.items()]
        return ", ".join(parts)

    def format_output(self) -> str:
        """The output as text (``"(raised)"`` if the forward did not return)."""
        return format_shape(self.output) if self.finished else "(raised)"


_HEADER = ("module", "type", "inputs", "output")


class ShapeTrace:
    """The records of a traced forward pass, in the order the calls started.

    A parent comes before its children (``mha``, then ``mha.q_proj``, ...); a
    module called twice has two records. Shows as a table: plain text with
    ``print`` or ``str``, an HTML table as the last expression of a notebook cell
    (and a Markdown table from ``_repr_markdown_``).

    Attributes:
        records: the :class:`ShapeRecord` of each call.
    """

    def __init__(self, records: Optional[Sequence[ShapeRecord]] = None) -> None:
        self.records: List[ShapeRecord] = list(records) if records is not None else []

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ShapeRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> ShapeRecord:
        return self.records[index]

    def names(self) -> List[str]:
        """The qualified names of the recorded calls, in order (repeats kept)."""
        return [r.name for r in self.records]

    def find(self, name: str) -> ShapeRecord:
        """The first record of the submodule called ``name`` (``""``: the traced module).

        Raises:
            KeyError: no call of that name was recorded; the message lists the names.
        """
        for record in self.records:
            if record.name == name:
                return record
        raise KeyError(f"no call of a submodule named {name!r} was recorded (recorded: {self.names()})")

    def rows(self) -> List[Tuple[str, str, str, str]]:
        """One ``(module, type, inputs, output)`` row of text per record."""
        return [(r.name or "(root)", r.module_type, r.format_inputs(), r.format_output()) for r in self.records]

    def __str__(self) -> str:
        rows = [_HEADER, *self.rows()]
        widths = [max(len(row[c]) for row in rows) for c in range(len(_HEADER))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self) if self.records else "ShapeTrace(no calls recorded)"

    def _repr_html_(self) -> str:
        def cell(text: str, code: bool) -> str:
            text = html.escape(text)
            return f"<td><code>{text}</code></td>" if code and text else f"<td>{text}</td>"

        head = "".join(f"<th>{h}</th>" for h in _HEADER)
        body = "".join(
            "<tr>" + cell(name, False) + cell(kind, False) + cell(inputs, True) + cell(output, True) + "</tr>"
            for name, kind, inputs, output in self.rows()
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def _repr_markdown_(self) -> str:
        def cell(text: str, code: bool) -> str:
            text = text.replace("|", "\\|")
            return f"`{text.replace('`', chr(39))}`" if code and text else text

        lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
        for name, kind, inputs, output in self.rows():
            cells = (cell(name, False), cell(kind, False), cell(inputs, True), cell(output, True))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


class ShapeTracer:
    """Context manager that records the shapes through ``module``'s submodules.

    ``with ShapeTracer(module) as trace:`` registers the hooks and gives an empty
    :class:`ShapeTrace`, which fills as the code in the block calls ``module``. Every
    hook is removed when the block ends, whether or not it raised.

    Args:
        module: the module to trace, with all its submodules.
        max_depth: record submodules down to this depth only (0: the module itself,
            1: also its children, ...); ``None`` records every depth.
        include_root: also record the call of ``module`` itself.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``, or ``include_root`` is not a bool.
        ValueError: ``max_depth`` is not ``None`` or a non-negative int.
        RuntimeError: the same tracer is entered while already active.

    Chapter 06.
    """

    def __init__(self, module: nn.Module, max_depth: Optional[int] = None, include_root: bool = True) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module (got {type(module).__name__})")
        optional_non_negative_int("max_depth", max_depth)
        boolean("include_root", include_root, got_type=True)
        self.module = module
        self.max_depth = max_depth
        self.include_root = include_root
        self._handles: List[RemovableHandle] = []
        self._trace: Optional[ShapeTrace] = None

    def _hooks_for(self, name: str, depth: int, trace: ShapeTrace) -> Tuple[Any, Any]:
        open_calls: List[ShapeRecord] = []  # a stack: a module may call itself

        def before(module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
            record = ShapeRecord(
                name=name,
                module_type=type(module).__name__,
                depth=depth,
                args=tuple(describe_shape(a) for a in args),
                kwargs={k: describe_shape(v) for k, v in kwargs.items()},
            )
            trace.records.append(record)
            open_calls.append(record)

        def after(module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any], output: Any) -> None:
            if open_calls:
                record = open_calls.pop()
                record.output = describe_shape(output)
                record.finished = True

        return before, after

    def __enter__(self) -> ShapeTrace:
        if self._trace is not None:
            raise RuntimeError("this ShapeTracer is already active; use a new one for a nested trace")
        trace = ShapeTrace()
        try:
            for name, sub in self.module.named_modules():
                depth = 0 if name == "" else name.count(".") + 1
                if (depth == 0 and not self.include_root) or (self.max_depth is not None and depth > self.max_depth):
                    continue
                before, after = self._hooks_for(name, depth, trace)
                self._handles.append(sub.register_forward_pre_hook(before, with_kwargs=True))
                self._handles.append(sub.register_forward_hook(after, with_kwargs=True))
        except BaseException:
            self._remove()
            raise
        self._trace = trace
        return trace

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._trace = None

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._remove()


def trace_shapes(module: nn.Module, *args: Any, **kwargs: Any) -> ShapeTrace:
    """Call ``module(*args, **kwargs)`` once and return the shapes it saw.

    The forward runs as it is (with gradients unless you wrap the call in
    ``torch.no_grad()``); the hooks are removed afterwards, also if it raises. Use
    :class:`ShapeTracer` to limit the depth or to trace more than one call.

    Args:
        module: the module to call and trace.
        *args: positional inputs of ``module``.
        **kwargs: keyword inputs of ``module``.

    Shapes:
        whatever ``module`` takes; the trace records them.

    Returns:
        A :class:`ShapeTrace`; its first record is ``module``'s own call, whose
        ``output`` is the shape of what it returned.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.
    """
    with ShapeTracer(module) as trace:
        module(*args, **kwargs)
    return trace
