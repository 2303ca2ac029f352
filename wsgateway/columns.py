"""Keys a client sends, checked against the column they are looked up in."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Field


def fits_column(field: Field[Any, Any], value: Any) -> bool:
    """Whether ``value``, as ``field`` reads it (``"12"`` is 12 for an integer key), is a value of its column.

    A key beyond an integer column's range names no row, and SQLite raises
    OverflowError on it in a lookup: the field's validators bound the range.
    """
    try:
        field.run_validators(field.to_python(value))
    except ValidationError:
        return False
    return True
