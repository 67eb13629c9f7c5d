"""attnlib._checks: the shared argument checks, their messages, and that no module writes them out again."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from attnlib import _checks
from attnlib._checks import (
    boolean,
    fraction,
    int_in_range,
    int_type,
    is_int,
    is_number,
    non_negative_int,
    optional_non_negative_int,
    optional_positive_int,
    positive_int,
    positive_number,
)

PACKAGE = Path(_checks.__file__).resolve().parent


def test_predicates_reject_bools():
    assert is_int(3) and is_int(-1) and is_int(0)
    assert not is_int(True) and not is_int(2.0) and not is_int("3") and not is_int(None)
    assert is_number(1) and is_number(0.5) and is_number(math.nan)
    assert not is_number(False) and not is_number("0.5") and not is_number(None)


@pytest.mark.parametrize("check, good", [
    (positive_int, (1, 7)),
    (non_negative_int, (0, 7)),
    (int_type, (-3, 0, 7)),
])
def test_int_checks_return_what_they_accept(check, good):
    for value in good:
        assert check("n", value) == value


@pytest.mark.parametrize("check, bad, error, message", [
    (positive_int, 0, ValueError, "n must be a positive int (got 0)"),
    (positive_int, True, ValueError, "n must be a positive int (got True)"),
    (positive_int, 2.0, ValueError, "n must be a positive int (got 2.0)"),
    (positive_int, "3", ValueError, "n must be a positive int (got '3')"),
    (non_negative_int, -1, ValueError, "n must be a non-negative int (got -1)"),
    (non_negative_int, False, ValueError, "n must be a non-negative int (got False)"),
    (optional_positive_int, 0, ValueError, "n must be None or a positive int (got 0)"),
    (optional_non_negative_int, -1, ValueError, "n must be None or a non-negative int (got -1)"),
    (int_type, 1.5, TypeError, "n must be an int (got float)"),
    (int_type, True, TypeError, "n must be an int (got bool)"),
    (positive_number, 0.0, ValueError, "n must be a positive number (got 0.0)"),
    (positive_number, math.nan, ValueError, "n must be a positive number (got nan)"),
    (positive_number, True, ValueError, "n must be a positive number (got True)"),
])
def test_int_and_number_messages(check, bad, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        check("n", bad)


def test_optional_checks_accept_none():
    assert optional_positive_int("n", None) is None and optional_positive_int("n", 2) == 2
    assert optional_non_negative_int("n", None) is None and optional_non_negative_int("n", 0) == 0
    assert fraction("p", None, or_none=True) is None
    assert boolean("b", None, or_none=True) is None


def test_int_in_range_names_its_bound():
    assert int_in_range("rank", 1, 0, 2) == 1
    assert int_in_range("layer", -2, -2, 2) == -2
    with pytest.raises(ValueError, match=r"^rank must be an int in \[0, world_size=2\) \(got 2\)$"):
        int_in_range("rank", 2, 0, 2, high_name="world_size")
    with pytest.raises(ValueError, match=r"^layer must be an int in \[-2, 2\) \(got True\)$"):
        int_in_range("layer", True, -2, 2)


@pytest.mark.parametrize("kwargs, good, bad, interval", [
    (dict(), (0, 0.0, 0.5), (1, 1.0, -0.1), "[0, 1)"),
    (dict(open_low=True), (0.5,), (0, 1), "(0, 1)"),
    (dict(open_low=True, open_high=False), (0.5, 1), (0, 1.5), "(0, 1]"),
])
def test_fraction_intervals(kwargs, good, bad, interval):
    for value in good:
        assert fraction("p", value, **kwargs) == value
    for value in bad + (math.nan, True, "0.5", None):
        with pytest.raises(ValueError, match=f"^{re.escape(f'p must be a number in {interval} (got {value!r})')}$"):
            fraction("p", value, **kwargs)


def test_fraction_or_none_says_so():
    with pytest.raises(ValueError, match=r"^top_p must be None or a number in \(0, 1\] \(got 1.5\)$"):
        fraction("top_p", 1.5, open_low=True, open_high=False, or_none=True)


def test_boolean_messages():
    assert boolean("b", True) is True and boolean("b", False) is False
    with pytest.raises(TypeError, match=r"^b must be a bool \(got 1\)$"):
        boolean("b", 1)
    with pytest.raises(TypeError, match=r"^b must be a bool or None \(got 'yes'\)$"):
        boolean("b", "yes", or_none=True)
    with pytest.raises(TypeError, match=r"^b must be a bool \(got str\)$"):
        boolean("b", "yes", got_type=True)


# The checks module itself is the only place with inline checks.
_INLINE_ALLOWED = {"_checks.py": None}


def test_no_module_writes_the_int_but_not_bool_check_again():
    """Every "an int but not a bool" test lives in attnlib._checks (grep-able: isinstance(..., bool))."""
    pattern = re.compile(r"isinstance\([^)]*,\s*bool\)")
    for path in sorted(PACKAGE.glob("*.py")):
        count = len(pattern.findall(path.read_text(encoding="utf-8")))
        allowed = _INLINE_ALLOWED.get(path.name, 0)
        if allowed is None:
            continue
        assert count <= allowed, f"{path.name}: {count} inline bool checks; use attnlib._checks instead"
