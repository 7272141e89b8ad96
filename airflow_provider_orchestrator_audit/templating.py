"""Reading operator arguments after Jinja rendering."""

from __future__ import annotations

from typing import Any

__all__ = ["unset_to_none"]


def unset_to_none(value: Any) -> Any:
    """
    The value, or None when it is unset.

    A template of an unset value (``"{{ params.window_start }}"`` with no such param given) renders as
    the text ``"None"``, and an empty form field as ``""``: both mean "not set".
    """
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    return value
