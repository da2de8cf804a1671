"""Reading one setting's text as a boolean or a whole number, naming the setting on refusal."""

from __future__ import annotations

from typing import Any

from app.errors import ConfigError


def parse_bool(name: str, value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "t", "y"):
        return True
    if text in ("0", "false", "no", "off", "f", "n", ""):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def parse_int(name: str, value: Any, *, minimum: int = 0) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {number}")
    return number
