"""The argument checks every advtrain config, augmenter and callback shares, so that each invalid value gets the same
kind of message: the field's name, what it must be, and the value it got. Light: no torch, no transformers."""

from __future__ import annotations

import numbers
from typing import Any


def is_int(value: Any) -> bool:
    """An integer (Python or NumPy) that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number (Python or NumPy) that is neither a bool nor NaN."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value


def check_value(ok: bool, name: str, expected: str, value: Any, where: str | None = None) -> None:
    """Raises ``ValueError("[where: ]`name` must be <expected>, got <value>.")`` unless `ok`."""
    if not ok:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}`{name}` must be {expected}, got {value!r}.")


def check_field(owner: Any, ok: bool, name: str, expected: str) -> None:
    """`check_value` for the attribute `name` of `owner` (a config dataclass or an augmenter)."""
    check_value(ok, name, expected, getattr(owner, name))


def normalize_name(name: str) -> str:
    """A registry name as advtrain spells it: lower case, ``-`` for ``_`` (``"BERT_Attack"`` → ``"bert-attack"``).
    Attack recipes and augmenters are looked up through it, so that ``_`` and ``-`` are interchangeable."""
    return name.lower().replace("_", "-")
