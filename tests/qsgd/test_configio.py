"""The shared config plumbing: file reader, TOML literals and the one pydantic error formatter."""

from __future__ import annotations

from typing import Annotated, Literal, Union

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qsgd.config import AnnealerConfig
from qsgd.configio import (
    PLAIN,
    ErrorWording,
    FileWording,
    format_validation_error,
    read_config_file,
    toml_literal,
)
from qsgd.distributed import DaskConfig
from qsgd.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _A(_Strict):
    kind: Literal["a"]
    rate: float = Field(1.0, gt=0)


class _B(_Strict):
    kind: Literal["b"]
    depth: int = 1


class _Root(_Strict):
    name: str = "x"
    part: Annotated[Union[_A, _B], Field(discriminator="kind")]  # noqa: UP007
    sizes: list[Annotated[int, Field(gt=0)]] = [1]


def _error(data: dict) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Root.model_validate(data)
    return info.value


def test_toml_literal_parses_values_and_keeps_bare_words():
    assert toml_literal(" [8, 4] ") == [8, 4]
    assert toml_literal("0.5") == 0.5 and toml_literal("true") is True
    assert toml_literal('"a b"') == "a b" and toml_literal("{a = 1}") == {"a": 1}
    assert toml_literal(" tabu ") == "tabu"


def test_reader_uses_the_callers_wording(tmp_path):
    words = FileWording(
        missing="no {path}", not_a_file="dir {path}", invalid="bad {fmt} {path}: {detail}"
    )
    with pytest.raises(ConfigError, match=r"^no '.*nope\.toml'$"):
        read_config_file(tmp_path / "nope.toml", wording=words)
    with pytest.raises(ConfigError, match=r"^dir '"):
        read_config_file(tmp_path, wording=words)
    (tmp_path / "bad.toml").write_text("a = [")
    with pytest.raises(ConfigError, match=r"^bad TOML '.*bad\.toml': .*at end of document"):
        read_config_file(tmp_path / "bad.toml", wording=words)
    (tmp_path / "x.yaml").write_text("a: 1\n")
    with pytest.raises(ConfigError, match=r"bad TOML"):  # yaml=False: every file is TOML
        read_config_file(tmp_path / "x.yaml", wording=words, yaml=False)


def test_reader_reads_yaml_mappings_only(tmp_path):
    pytest.importorskip("yaml")
    (tmp_path / "ok.yml").write_text("a: {b: 2}\n")
    assert read_config_file(tmp_path / "ok.yml") == {"a": {"b": 2}}
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"must be a mapping at top level \(got list\)"):
        read_config_file(tmp_path / "list.yaml")


def test_plain_wording_prefixes_paths_and_lists_keys_in_order():
    exc = _error({"part": {"kind": "a", "rate": 0}, "extra": 1})
    assert format_validation_error(exc, _Root, PLAIN, prefix="root") == (
        "root.part.rate: Input should be greater than 0 (got 0); "
        "root.extra: unknown key 'extra'; allowed keys: name, part, sizes (got 1)"
    )


def test_wording_hides_union_tags_sorts_keys_and_shortens_values():
    words = ErrorWording(
        {
            "extra_forbidden": "unknown key {path!r} (known: {keys})",
            "union_tag_not_found": "{path}.{discriminator} is required (one of {tags})",
            "should": "{path} must be {must}{got}",
            "*": "{path}: {msg}{got}",
        },
        index="[{}]",
        sort_keys=True,
        shorten=12,
    )
    exc = _error({"part": {"kind": "b", "zz": 1}, "sizes": [1, 0], "name": 3})
    assert format_validation_error(exc, _Root, words) == (
        "name must be a valid string (got 3); unknown key 'part.zz' (known: depth, kind); "
        "sizes[1] must be greater than 0 (got 0)"
    )
    exc = _error({"part": {"rate": 1}, "name": "n" * 40})
    assert format_validation_error(exc, _Root, words) == "part.kind is required (one of 'a', 'b')"
    exc = _error({"part": {"kind": "a", "rate": "r" * 40}})
    assert "(got 'rrrrrrrr...)" in format_validation_error(exc, _Root, words)


def test_annealer_and_dask_tables_share_the_plain_wording(tmp_path):
    with pytest.raises(ConfigError, match=r"^dask\.foo: unknown key 'foo'; allowed keys: "):
        DaskConfig.coerce({"foo": 1})
    with pytest.raises(
        ConfigError, match=r"^annealer\.dask\.foo: unknown key 'foo'; allowed keys: "
    ):
        AnnealerConfig.from_dict({"dask": {"foo": 1}})
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(
        ConfigError, match=r"cannot read annealer config file '.*bin\.toml': 'utf-8'"
    ):
        AnnealerConfig.from_toml(binary)
