"""The one check of integer parameters (counts, sizes, offsets), with one wording for its errors."""

from __future__ import annotations

__all__ = ["INT32_MAX", "checked_int"]

#: The largest value Orchestrator's OData parameters (``top``, ``skip``) accept.
INT32_MAX = 2**31 - 1


def checked_int(
    name: str, value: object, *, minimum: int = 1, maximum: int | None = None, error: type[ValueError] = ValueError
) -> int:
    """
    ``value`` if it is an integer from ``minimum`` (1 unless told) to ``maximum``, else ``error`` naming ``name``.

    ``bool`` is refused although it is an ``int``: ``True`` as a count is a mistake, not 1.

    >>> checked_int("max_attempts", 0)
    Traceback (most recent call last):
    ValueError: max_attempts must be at least 1, got 0

    :param name: the parameter as the caller spells it, e.g. ``"page_size"``.
    :param error: the exception class to raise, a :class:`ValueError` subclass.
    """
    if maximum is not None:
        wrong_type = out_of_range = f"an integer from {minimum} to {maximum}"
    else:
        wrong_type, out_of_range = f"an integer of at least {minimum}", f"at least {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be {wrong_type}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise error(f"{name} must be {out_of_range}, got {value!r}")
    return value
