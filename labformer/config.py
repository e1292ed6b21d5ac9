"""Validation shared by every config and constructor: one message per kind of bad value."""

from __future__ import annotations

from dataclasses import asdict, field, fields
from typing import Any, TypeVar

__all__ = ["JsonConfig", "require_non_negative", "require_positive_ints", "setting"]

T = TypeVar("T", bound="JsonConfig")


def setting(default: Any, help: str) -> Any:
    """A config field with its one-line help: the command line's flags are generated from these."""
    return field(default=default, metadata={"help": help})


def require_positive_ints(**values: Any) -> None:
    """ValueError naming the first value that is not a positive integer (booleans are not integers here)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")


def require_non_negative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0; got {value!r}")


class JsonConfig:
    """A dataclass that round-trips through JSON, refusing keys it does not know."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)
