"""Reading, overriding and explaining run configs: the file reader, ``--set KEY=VALUE``
overrides checked against the schema, and pydantic errors turned into one line each.

:class:`bnn.config.RunConfig` uses these; they walk its schema (imported when called, as
``bnn.config`` imports this module).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from qsgd.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["parse_override", "apply_overrides", "format_validation_error"]


def _schema_root() -> type[BaseModel]:
    from bnn.config import RunConfig

    return RunConfig


def _known_optimizers() -> tuple[str, ...]:
    from bnn.config import KNOWN_OPTIMIZERS

    return KNOWN_OPTIMIZERS


# --------------------------------------------------------------------- reading files
def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file not found: {str(path)!r}")
    if not path.is_file():
        raise ConfigError(f"config path is not a file: {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(
                f"config {str(path)!r} is YAML, which needs pyyaml (pip install pyyaml); "
                "or use TOML"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"invalid YAML in {str(path)!r}: {' '.join(str(exc).split())}"
            ) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"config {str(path)!r} must be a mapping at top level (got {type(data).__name__})"
            )
        return data
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {str(path)!r}: {exc}") from None


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
    value_text = value_text.strip()
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text
    return parts, value


def _model_for(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic model classes an annotation may hold (several for a tagged union)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _model_for(get_args(annotation)[0])
    if origin is Union or (origin is not None and type(None) in get_args(annotation)):
        models: list[type[BaseModel]] = []
        for arg in get_args(annotation):
            models.extend(_model_for(arg))
        return models
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


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
        models = _model_for(fields[part].annotation)
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


def _dotted(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        # drop the tag pydantic inserts for a discriminated union (optimizer.<name>.lr)
        if i == 1 and str(loc[0]) == "optimizer" and item in _known_optimizers():
            continue
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts) or "top level"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    models: list[type[BaseModel]] = [_schema_root()]
    for i, item in enumerate(loc):
        if i == 1 and str(loc[0]) == "optimizer" and item in _known_optimizers():
            models = [m for m in models if item in str(m.model_fields.get("name"))] or models
            continue
        fields = {name: f for m in models for name, f in m.model_fields.items()}
        if item not in fields:
            break
        models = _model_for(fields[item].annotation) or models
    return sorted({name for m in models for name in m.model_fields})


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_validation_error(exc: ValidationError) -> str:
    """Turn a pydantic error into one line: ``path must be ... (got value)`` per problem."""
    messages = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        kind = err.get("type", "")
        path = _dotted(loc)
        value = err.get("input")
        ctx = err.get("ctx") or {}
        msg = str(err.get("msg", ""))
        if kind == "extra_forbidden":
            known = _fields_at(loc[:-1])
            messages.append(f"unknown key {path!r} (known keys here: {', '.join(known)})")
        elif kind == "missing":
            messages.append(f"{path} is required")
        elif kind == "union_tag_invalid":
            expected = ctx.get("expected_tags", ", ".join(map(repr, _known_optimizers())))
            messages.append(
                f"{path}.{ctx.get('discriminator', 'name').strip(chr(39))} must be one of "
                f"{expected} (got {ctx.get('tag')!r})"
            )
        elif kind == "union_tag_not_found":
            messages.append(
                f"{path}.{str(ctx.get('discriminator', 'name')).strip(chr(39))} is required "
                f"(one of {', '.join(map(repr, _known_optimizers()))})"
            )
        elif kind in ("value_error", "assertion_error"):
            detail = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
            if "(got" not in detail:
                detail = f"{detail} (got {_short(value)})"
            messages.append(f"{path}: {detail}")
        else:
            detail = msg.removeprefix("Input should be ")
            if detail != msg:
                messages.append(f"{path} must be {detail} (got {_short(value)})")
            else:
                messages.append(f"{path}: {msg} (got {_short(value)})")
    return "; ".join(messages)
