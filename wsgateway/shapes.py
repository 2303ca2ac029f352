"""What a key of ``WSGATEWAY`` may hold: its :class:`Shape`, and the :class:`Key` that declares it.

Apart from :mod:`wsgateway.conf`'s table so that the table is the keys and nothing else; the checks
(:mod:`wsgateway.checks`) read both.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Shape(enum.Enum):
    """What a key's value must be; the value is how a check message names it."""

    POSITIVE_INTEGER = "a positive integer"
    BOOLEAN = "True or False"
    STRING = "a string"
    LIST_OF_STRINGS = "a list of strings"
    DOTTED_PATH = "a dotted path"
    LIST_OF_DOTTED_PATHS = "a list of dotted paths"
    BADGE_COUNT = '"unread" or "unseen"'
    #: Its contents are checked apart (wsgateway.E016), by the module that reads it.
    DICT = "a dict"

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has this shape (``None`` is the table's business, not the shape's)."""
        if self is Shape.POSITIVE_INTEGER:
            return type(value) is int and value >= 1  # not True, which is an int
        if self is Shape.BOOLEAN:
            return type(value) is bool  # not 0 or 1, nor "False", which is true
        if self is Shape.BADGE_COUNT:
            return value in ("unread", "unseen")
        if self is Shape.DICT:
            return isinstance(value, dict)
        if self in (Shape.LIST_OF_STRINGS, Shape.LIST_OF_DOTTED_PATHS):
            # A string where a list belongs would be read character by character.
            return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)
        return isinstance(value, str)

    @property
    def imports(self) -> bool:
        return self in (Shape.DOTTED_PATH, Shape.LIST_OF_DOTTED_PATHS)


@dataclass(frozen=True)
class Key:
    """One key of ``WSGATEWAY``."""

    default: Any
    shape: Shape
    doc: str
    #: ``None`` is a meaningful value, not a mistake.
    nullable: bool = False
    #: Largest value of an integer, longest string; ``None``: no bound beyond the shape.
    most: int | None = None
    #: Least value of an integer; ``None``: 1, as the shape says.
    least: int | None = None
