"""The argument checks that every attnlib module shares, with one wording for each.

Internal (not part of the public API; see the README's "API stability"). Each check
raises the error that attnlib's style asks for: it names the argument, says what
was expected and what was given, e.g. ``ValueError: num_heads must be a positive int
(got 0)``. The tests pin these messages, module by module.

A Python ``bool`` is an ``int`` (``True == 1``), so ``isinstance(True, int)`` holds;
every integer check here rejects bools, so that ``num_layers=True`` is an error rather
than a one-layer model.

``name`` is the argument as the caller knows it, and may be qualified
(``"TransformerConfig.d_model"``). The checks that pass return the value, so that a
call can also narrow its type: ``block = positive_int("block_size", block_size)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:  # typing_extensions comes with torch; only the type checker needs it here
    from typing_extensions import TypeGuard

__all__ = [
    "is_int",
    "is_number",
    "int_type",
    "positive_int",
    "non_negative_int",
    "optional_positive_int",
    "optional_non_negative_int",
    "int_in_range",
    "positive_number",
    "fraction",
    "boolean",
]

Number = Union[int, float]


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_index(value: object) -> bool:
    """Whether ``value`` can stand for an int index (``operator.index``) and is not a ``bool``:
    an ``int``, or a one-element integer tensor or NumPy integer."""
    return hasattr(value, "__index__") and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[Number]:
    """Whether ``value`` is an ``int`` or a ``float`` and not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def int_type(name: str, value: object) -> int:
    """Return ``value`` if it is an int (not a bool); else ``TypeError: {name} must be an int (got float)``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int (got {type(value).__name__})")
    return value


def positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1; else ``ValueError: {name} must be a positive int (got 0)``."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int (got {value!r})")
    return value


def non_negative_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 0; else ``ValueError: {name} must be a non-negative int (got -1)``."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative int (got {value!r})")
    return value


def optional_positive_int(name: str, value: object) -> Optional[int]:
    """Return ``value`` if it is ``None`` or an int >= 1; else ``ValueError: {name} must be None or a positive int (got 0)``."""
    if value is not None and (not is_int(value) or value < 1):
        raise ValueError(f"{name} must be None or a positive int (got {value!r})")
    return value


def optional_non_negative_int(name: str, value: object) -> Optional[int]:
    """Return ``value`` if it is ``None`` or an int >= 0; else ``ValueError: {name} must be None or a non-negative int (got -1)``."""
    if value is not None and (not is_int(value) or value < 0):
        raise ValueError(f"{name} must be None or a non-negative int (got {value!r})")
    return value


def int_in_range(name: str, value: object, low: int, high: int, *, high_name: Optional[str] = None) -> int:
    """Return ``value`` if it is an int in ``[low, high)``.

    Otherwise ``ValueError: {name} must be an int in [0, 4) (got 4)``; with
    ``high_name="world_size"`` the bound reads ``[0, world_size=4)``.
    """
    if not is_int(value) or not low <= value < high:
        upper = f"{high_name}={high}" if high_name is not None else f"{high}"
        raise ValueError(f"{name} must be an int in [{low}, {upper}) (got {value!r})")
    return value


def positive_number(name: str, value: object) -> Number:
    """Return ``value`` if it is a number > 0; else ``ValueError: {name} must be a positive number (got 0.0)``."""
    if not is_number(value) or not value > 0:
        raise ValueError(f"{name} must be a positive number (got {value!r})")
    return value


def fraction(
    name: str, value: object, *, open_low: bool = False, open_high: bool = True, or_none: bool = False
) -> Optional[Number]:
    """Return ``value`` if it is a number between 0 and 1 (or ``None``, with ``or_none``).

    The interval is ``[0, 1)`` by default (a dropout rate); ``open_low`` excludes 0 and
    ``open_high=False`` includes 1. Otherwise ``ValueError: {name} must be a number in
    [0, 1) (got 1.0)``, with ``None or`` before ``a number`` when ``or_none``.
    """
    if value is None and or_none:
        return None
    if is_number(value):
        above = value > 0 if open_low else value >= 0
        below = value < 1 if open_high else value <= 1
        if above and below:  # both False for NaN
            return value
    interval = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
    what = "None or a number" if or_none else "a number"
    raise ValueError(f"{name} must be {what} in {interval} (got {value!r})")


def boolean(name: str, value: object, *, or_none: bool = False, got_type: bool = False) -> Optional[bool]:
    """Return ``value`` if it is a ``bool`` (or ``None``, with ``or_none``).

    Otherwise ``TypeError: {name} must be a bool (got 1)``, or ``... must be a bool or
    None ...`` with ``or_none``; ``got_type`` shows the type's name (``got int``)
    instead of the value.
    """
    if isinstance(value, bool) or (or_none and value is None):
        return value
    what = "a bool or None" if or_none else "a bool"
    got = type(value).__name__ if got_type else repr(value)
    raise TypeError(f"{name} must be {what} (got {got})")
