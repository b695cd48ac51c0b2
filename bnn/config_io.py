"""Reading, overriding and explaining run configs: the file reader, ``--set KEY=VALUE``
overrides checked against the schema, and pydantic errors turned into one line each
(the reading, TOML literals and formatting are :mod:`qsgd.configio`'s; bnn's wording is here).

:class:`bnn.config.RunConfig` uses these; they walk its schema (imported when called, as
``bnn.config`` imports this module).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, get_origin

from pydantic import BaseModel, ValidationError

from qsgd.configio import ErrorWording, models_in, read_config_file, toml_literal
from qsgd.configio import format_validation_error as _format
from qsgd.errors import ConfigError

__all__ = ["parse_override", "apply_overrides", "format_validation_error"]


def _schema_root() -> type[BaseModel]:
    from bnn.config import RunConfig

    return RunConfig


# --------------------------------------------------------------------- reading files
def _read_file(path: Path) -> dict[str, Any]:
    """The tables of a TOML file, or a YAML one when pyyaml is installed."""
    return read_config_file(path)


# --------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """Parse one ``--set KEY=VALUE`` override.

    ``KEY`` is a dotted path (``annealer.backend``); ``VALUE`` is a TOML literal
    (``3``, ``0.5``, ``true``, ``[8, 8]``, ``"text"``, ``{a = 1}``); a value that is not
    a TOML literal is taken as a bare string (``annealer.backend=tabu``).

    Returns:
        The key path and the parsed value.

    Raises:
        ConfigError: no ``=`` or an empty key segment.
    """
    if "=" not in text:
        raise ConfigError(f"override must look like KEY=VALUE, e.g. train.epochs=3 (got {text!r})")
    key, value_text = text.split("=", 1)
    key = key.strip()
    parts = tuple(p.strip() for p in key.split("."))
    if not key or any(not p for p in parts):
        raise ConfigError(f"override key must be a dotted path like train.epochs (got {key!r})")
    return parts, toml_literal(value_text)


def _check_override_path(parts: tuple[str, ...], text: str) -> None:
    """Raise ConfigError if ``parts`` names no key of the schema (free-form tables accept any)."""
    models: list[type[BaseModel]] = [_schema_root()]
    for depth, part in enumerate(parts):
        fields = {name: f for m in models for name, f in m.model_fields.items()}
        if part not in fields:
            where = ".".join(parts[:depth]) or "top level"
            raise ConfigError(
                f"unknown config key {'.'.join(parts[: depth + 1])!r} in override {text!r} "
                f"(keys at {where}: {', '.join(sorted(fields))})"
            )
        models = models_in(fields[part].annotation)
        if not models:  # a scalar or a free-form table: deeper keys belong to it
            annotation = fields[part].annotation
            if depth < len(parts) - 1 and dict not in (annotation, get_origin(annotation)):
                raise ConfigError(
                    f"config key {'.'.join(parts[: depth + 1])!r} is not a table; "
                    f"cannot set {'.'.join(parts)!r} (override {text!r})"
                )
            return


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a deep copy of ``data`` with each ``KEY=VALUE`` override applied in order.

    Raises:
        ConfigError: a malformed override or a key the schema does not know.
    """
    result = _deep_copy(data)
    for text in overrides:
        parts, value = parse_override(text)
        _set_path(result, parts, value, text)
    return result


def _set_path(result: dict[str, Any], parts: tuple[str, ...], value: Any, text: str) -> None:
    _check_override_path(parts, text)
    node = result
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(
                f"config key {'.'.join(parts[: depth + 1])!r} is not a table; "
                f"cannot set {'.'.join(parts)!r} (override {text!r})"
            )
        node = child
    node[parts[-1]] = value


def _drop_empty(data: dict[str, Any], depth: int = 2) -> dict[str, Any]:
    """Leave out empty tables of the schema itself (``[data.options]``), not inside option values."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and depth > 0:
            value = _drop_empty(value, depth - 1)
            if not value:
                continue
        out[key] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


# --------------------------------------------------------------------- error messages
_WORDING = ErrorWording(
    {
        "extra_forbidden": "unknown key {path!r} (known keys here: {keys})",
        "missing": "{path} is required",
        "union_tag_invalid": "{path}.{discriminator} must be one of {expected_tags} (got {tag!r})",
        "union_tag_not_found": "{path}.{discriminator} is required (one of {tags})",
        "should": "{path} must be {must}{got}",
        "*": "{path}: {msg}{got}",
    },
    index="[{}]",
    top="top level",
    sort_keys=True,
    shorten=80,
)


def format_validation_error(exc: ValidationError) -> str:
    """Turn a pydantic error into one line: ``path must be ... (got value)`` per problem."""
    return _format(exc, _schema_root(), _WORDING)
