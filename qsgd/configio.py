"""Config plumbing shared by qsgd, bnn and qkernels: reading a file, TOML literals, error lines.

Each package words its messages its own way (tests and users rely on that wording), so the
functions here take the wording as data: :class:`FileWording` for the file reader,
:class:`ErrorWording` for the pydantic error formatter. Only pydantic and :mod:`qsgd.errors`
are imported (``import qkernels`` must not pull in dimod).

Example:
    >>> toml_literal("[8, 4]"), toml_literal("tabu")
    ([8, 4], 'tabu')
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from qsgd.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "ErrorWording",
    "FileWording",
    "PLAIN",
    "format_validation_error",
    "models_in",
    "parse_config_text",
    "read_config_file",
    "toml_literal",
]


# --------------------------------------------------------------------- files and literals
@dataclass(frozen=True)
class FileWording:
    """The reader's error messages: ``str.format`` templates over ``path`` (quoted) and ``detail``.

    ``invalid`` also gets ``fmt`` (``TOML`` or ``YAML``). The defaults are bnn's.
    """

    missing: str = "config file not found: {path}"
    not_a_file: str = "config path is not a file: {path}"
    unreadable: str = "cannot read config file {path}: {detail}"
    invalid: str = "invalid {fmt} in {path}: {detail}"


def read_config_file(
    path: str | Path, *, wording: FileWording = FileWording(), yaml: bool = True
) -> dict[str, Any]:
    """The top-level table of a TOML file (or a YAML one, ``.yaml``/``.yml``, when ``yaml``).

    Args:
        path: The file.
        wording: How the errors read.
        yaml: Read ``.yaml``/``.yml`` files as YAML (needs pyyaml); otherwise every file is TOML.

    Raises:
        ConfigError: missing path, a folder, undecodable bytes, invalid TOML/YAML (with line
            and column) or a YAML document that is not a mapping.
    """
    p = Path(path)
    quoted = repr(str(p))
    if not p.exists():
        raise ConfigError(wording.missing.format(path=quoted))
    if not p.is_file():
        raise ConfigError(wording.not_a_file.format(path=quoted))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(wording.unreadable.format(path=quoted, detail=exc)) from None
    fmt = "yaml" if yaml and p.suffix.lower() in (".yaml", ".yml") else "toml"
    return parse_config_text(text, source=quoted, fmt=fmt, wording=wording)


def parse_config_text(
    text: str,
    *,
    source: str,
    fmt: Literal["toml", "yaml"] = "toml",
    wording: FileWording = FileWording(),
) -> dict[str, Any]:
    """Parse config text; ``source`` is the ``{path}`` of the messages.

    Raises:
        ConfigError: invalid TOML/YAML, a YAML document that is not a mapping, or YAML without
            pyyaml installed.
    """
    if fmt == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(
                wording.invalid.format(fmt="TOML", path=source, detail=detail)
            ) from None
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            f"config {source} is YAML, which needs pyyaml (pip install pyyaml); or use TOML"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(wording.invalid.format(fmt="YAML", path=source, detail=detail)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config {source} must be a mapping at top level (got {type(data).__name__})"
        )
    return data


def toml_literal(text: str) -> Any:
    """``text`` as a TOML value (``3``, ``0.5``, ``true``, ``[8, 8]``, ``"a b"``, ``{a = 1}``),
    or the stripped text itself when it is none (a bare word such as ``tabu``)."""
    text = text.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# --------------------------------------------------------------------- the schema
def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field annotation holds: one, the members of a (tagged) union,
    or the item model of a list or tuple; ``[]`` for scalars and free-form tables."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return models_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple) or (
        origin is not None and type(None) in get_args(annotation)
    ):
        return [m for arg in get_args(annotation) for m in models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _literals(model: type[BaseModel], key: str | None = None) -> list[Any]:
    """The values of ``model``'s ``Literal`` fields (only field ``key``'s when given): its tags."""
    return [
        value
        for name, f in model.model_fields.items()
        if (key is None or name == key) and get_origin(f.annotation) is Literal
        for value in get_args(f.annotation)
    ]


def _walk(schema: type[BaseModel], loc: Sequence[Any]) -> tuple[list[Any], list[type[BaseModel]]]:
    """``loc`` without the tags pydantic inserts for tagged unions, and the models at its end.

    List indices are kept; once ``loc`` leaves the models (a free-form table, a scalar), the
    rest is kept as is and the models are those reached last.
    """
    shown: list[Any] = []
    models: list[type[BaseModel]] = [schema]
    inside = True
    for item in loc:
        if not inside or isinstance(item, int):
            shown.append(item)
            continue
        fields = {name: f for m in models for name, f in m.model_fields.items()}
        if item in fields:
            shown.append(item)
            inner = models_in(fields[item].annotation)
            models, inside = inner or models, bool(inner)
            continue
        member = [m for m in models if item in _literals(m)] if len(models) > 1 else []
        if member:  # the tag pydantic puts after a tagged union: hidden in the path
            models = member
            continue
        shown.append(item)
        inside = False
    return shown, models


# --------------------------------------------------------------------- error messages
@dataclass(frozen=True)
class ErrorWording:
    """How a family of configs words pydantic's errors.

    ``templates`` maps a pydantic error type to a ``str.format`` template; ``"should"`` is
    used for the other messages that start with ``Input should be``, ``"*"`` for the rest.
    Template fields:

    - ``path``: the dotted location (``top`` at the top level); ``at``: ``"path: "``, or
      ``""`` at the top level;
    - ``key``: the last location item; ``keys``: the keys allowed at the location
      (``extra_forbidden``); ``tags``: a tagged union's tags (``union_tag_not_found``);
    - ``msg``: pydantic's message without ``Value error,``/``Assertion failed,``;
      ``must``: ``msg`` after ``Input should be``;
    - ``value``: the input's repr (shortened to ``shorten`` characters); ``type``: its TOML
      type name (``string``, ``integer``, ``table``, ...); ``got``: ``" (got VALUE)"``, or
      ``""`` when ``msg`` already shows the value;
    - pydantic's ``ctx`` entries (``discriminator`` without quotes, ``tag``, ``expected_tags``).

    Attributes:
        templates: As above; ``"*"`` is required.
        index: How a list index joins the path (``".{}"``: ``seeds.1``; ``"[{}]"``: ``hidden[1]``).
        top: ``path`` at the top level.
        sort_keys: List allowed keys sorted (else in declaration order).
        shorten: Longest value repr, longer ones end in ``...`` (``None``: whole).
    """

    templates: Mapping[str, str]
    index: str = ".{}"
    top: str = ""
    sort_keys: bool = False
    shorten: int | None = None


PLAIN = ErrorWording(
    {
        "extra_forbidden": "{at}unknown key {key!r}; allowed keys: {keys}{got}",
        "*": "{at}{msg}{got}",
    }
)
"""pydantic's own words, ``path: message (got value)``: the ``[annealer]`` and ``dask`` tables."""

_TOML_TYPES = {
    str: "string",
    int: "integer",
    float: "float",
    bool: "boolean",
    dict: "table",
    list: "array",
}


def _short(value: Any, limit: int | None) -> str:
    text = repr(value)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def format_validation_error(
    exc: ValidationError,
    schema: type[BaseModel],
    wording: ErrorWording = PLAIN,
    *,
    prefix: str = "",
) -> str:
    """One line for a pydantic error: one message per problem, joined by ``; ``.

    Args:
        exc: The error of validating ``schema``.
        schema: The model validated (its fields name the allowed keys).
        wording: How the messages read.
        prefix: Put before every path (``"annealer"``: ``annealer.num_reads``).

    Example:
        >>> from pydantic import BaseModel, ConfigDict
        >>> class Point(BaseModel):
        ...     model_config = ConfigDict(extra="forbid")
        ...     x: int = 0
        >>> try:
        ...     Point(x=[1], z=1)
        ... except ValidationError as exc:
        ...     print(format_validation_error(exc, Point, prefix="point"))
        point.x: Input should be a valid integer (got [1]); point.z: unknown key 'z'; allowed keys: x (got 1)
    """
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        shown, models = _walk(schema, loc)
        parts = [prefix] if prefix else []
        for item in shown:
            if isinstance(item, int) and parts:
                parts[-1] += wording.index.format(item)
            else:
                parts.append(wording.index.format(item) if isinstance(item, int) else str(item))
        dotted = ".".join(parts)
        kind = str(err.get("type", ""))
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        msg = msg.removeprefix("Assertion failed, ")
        value = err.get("input")
        shortened = _short(value, wording.shorten)
        ctx = {
            k: str(v).strip("'") if k == "discriminator" else v
            for k, v in (err.get("ctx") or {}).items()
        }
        fields: dict[str, Any] = {
            **ctx,
            "path": dotted or wording.top,
            "at": f"{dotted}: " if dotted else "",
            "key": loc[-1] if loc else "",
            "msg": msg,
            "must": msg.removeprefix("Input should be "),
            "value": shortened,
            "type": _TOML_TYPES.get(type(value), type(value).__name__),
            "got": "" if "(got" in msg else f" (got {shortened})",
        }
        if kind == "extra_forbidden":
            keys = dict.fromkeys(k for m in _walk(schema, loc[:-1])[1] for k in m.model_fields)
            fields["keys"] = ", ".join(sorted(keys) if wording.sort_keys else keys)
        if kind == "union_tag_not_found":
            tags = [t for m in models for t in _literals(m, str(ctx.get("discriminator")))]
            fields["tags"] = ", ".join(map(repr, tags))
        template = wording.templates.get(kind)
        if template is None and msg.startswith("Input should be "):
            template = wording.templates.get("should")
        lines.append((template or wording.templates["*"]).format(**fields))
    return "; ".join(lines)
