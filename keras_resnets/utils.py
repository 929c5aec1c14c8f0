"""Small argument-checking helpers shared by builders and layers."""

from __future__ import annotations

from collections.abc import Iterable


def check_choice(argument: str, value, allowed: Iterable) -> None:
    """Raise `ValueError` naming `argument` unless `value` is one of `allowed`."""
    allowed = tuple(allowed)
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"Unknown `{argument}` {value!r}: allowed values are {listed}.")


def check_int(argument: str, value, minimum: int = 1) -> int:
    """Raise `ValueError` naming `argument` unless `value` is an int >= `minimum`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{argument}` must be an integer >= {minimum}, got {value!r}.")
    return value


def check_fraction(argument: str, value, *, low: float, high: float, closed_high=False) -> float:
    """Raise `ValueError` unless `low <= value < high` (or `<= high` if `closed_high`)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = low <= value <= high if closed_high else low <= value < high
    if not ok:
        bracket = "]" if closed_high else ")"
        raise ValueError(f"`{argument}` must be in [{low}, {high}{bracket}, got {value!r}.")
    return float(value)
