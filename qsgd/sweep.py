"""Grid sweeps shared by ``bnn sweep`` and ``qkernels sweep``: grid specs, seeds, result tables.

A grid is a mapping from dotted config keys to lists of values; its points are the cartesian
product in the order the keys were given. On the command line each key is one
``--grid KEY=VALUES`` with ``VALUES`` a TOML literal (``[0.01, 0.1]``, ``["neal", "tabu"]``;
a scalar is a one-value list).

Example:
    >>> grid = parse_grid(["optimizer.lr=[0.01, 0.1]", "annealer.backend=neal"])
    >>> expand_grid(grid)
    [{'optimizer.lr': 0.01, 'annealer.backend': 'neal'}, {'optimizer.lr': 0.1, 'annealer.backend': 'neal'}]
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qsgd.configio import toml_literal
from qsgd.errors import ConfigError

__all__ = [
    "sweep_parser",
    "sweep_dask_options",
    "parse_grid",
    "expand_grid",
    "parse_seeds",
    "set_dotted",
    "point_label",
    "write_table",
    "markdown_rows",
]


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """Parse ``KEY=VALUES`` strings into a grid ``{key: [values]}``.

    Raises:
        ConfigError: no ``=``, an empty key segment, an empty list, or a key given twice.
    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        if not isinstance(spec, str) or "=" not in spec:
            raise ConfigError(
                f"grid entry must look like KEY=VALUES, e.g. optimizer.lr=[0.01, 0.1] (got {spec!r})"
            )
        key, text = (s.strip() for s in spec.split("=", 1))
        if not key or any(not p.strip() for p in key.split(".")):
            raise ConfigError(f"grid key must be a dotted path like optimizer.lr (got {key!r})")
        if key in grid:
            raise ConfigError(f"grid key {key!r} is given twice")
        value = toml_literal(text)
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ConfigError(f"grid key {key!r} has no values (got {text!r})")
        grid[key] = values
    return grid


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All points of ``grid`` (cartesian product; the last key varies fastest). ``{}`` -> ``[{}]``."""
    keys = list(grid)
    for k in keys:
        if isinstance(grid[k], (str, bytes)) or not isinstance(grid[k], Sequence) or not grid[k]:
            raise ConfigError(f"grid[{k!r}] must be a non-empty list of values (got {grid[k]!r})")
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def parse_seeds(value: str | Sequence[int]) -> list[int]:
    """Seeds from ``"0,1,2"``, ``"[0, 1]"``, ``"0-4"`` (inclusive range) or a list of ints.

    Raises:
        ConfigError: not a list of distinct non-negative ints.
    """
    seeds: Any = value
    if isinstance(value, str):
        text = value.strip()
        if "-" in text and not text.startswith("["):
            lo, _, hi = text.partition("-")
            try:
                seeds = list(range(int(lo), int(hi) + 1))
            except ValueError:
                seeds = None
        elif text.startswith("["):
            seeds = toml_literal(text)
        else:
            try:
                seeds = [int(s) for s in text.split(",") if s.strip()]
            except ValueError:
                seeds = None
    ok = (
        isinstance(seeds, list)
        and seeds
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        and len(set(seeds)) == len(seeds)
    )
    if not ok:
        raise ConfigError(
            f"seeds must be distinct non-negative ints such as 0,1,2 or 0-4 (got {value!r})"
        )
    return list(seeds)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b]... = value`` for ``key = "a.b..."``; integer segments index lists.

    Raises:
        ConfigError: a segment runs into a value that is not a table or list (names the key).
    """
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ConfigError(
                f"grid key {key!r}: {'.'.join(parts[: i + 1])!r} is not a table or list index"
            )
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"grid key {key!r}: {'.'.join(parts[:-1])!r} is not a table")


def point_label(point: Mapping[str, Any], seed: int | None = None) -> str:
    """A file-system-safe label of a grid point, e.g. ``optimizer.lr=0.1_seed0``."""
    parts = [f"{k}={v}" for k, v in point.items()]
    if seed is not None:
        parts.append(f"seed{seed}")
    text = "_".join(parts) or "base"
    return "".join(c if c.isalnum() or c in "._=-" else "-" for c in text)


def markdown_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A markdown table of ``rows`` restricted to ``columns`` (floats with 4 significant digits)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |\n" for r in rows)


def write_table(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    columns: Sequence[str],
    *,
    stem: str = "sweep",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``STEM.json`` (rows and ``extra``), ``STEM.csv`` and ``STEM.md`` into ``out_dir``.

    Returns:
        ``{"json": path, "csv": path, "md": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "csv": out / f"{stem}.csv", "md": out / f"{stem}.md"}
    payload = {**(extra or {}), "columns": list(columns), "rows": list(rows)}
    paths["json"].write_text(json.dumps(payload, indent=1, default=str) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    paths["csv"].write_text(buf.getvalue())
    paths["md"].write_text(markdown_rows(rows, columns))
    return paths


def sweep_parser(
    prog: str, description: str, config_help: str, grid_example: str, seeds_default: str | None
) -> argparse.ArgumentParser:
    """The argument parser shared by ``bnn sweep`` and ``qkernels sweep``.

    Arguments: ``CONFIG``, repeatable ``--grid KEY=VALUES``, ``--seeds``, ``--scheduler``,
    ``--out``, and the Dask cluster options (``--scheduler-file``, ``--timeout``,
    ``--connect-timeout``, ``--worker-timeout``, ``--tls-ca-file``, ``--tls-cert``,
    ``--tls-key``; read them with :func:`sweep_dask_options`).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("config", help=config_help)
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=VALUES",
        help=f"dotted key and a TOML list of values, e.g. {grid_example} (repeatable)",
    )
    seeds_help = "the config's" if seeds_default is None else seeds_default
    parser.add_argument(
        "--seeds", default=seeds_default, help=f"seeds: 0,1,2 or 0-4 (default {seeds_help})"
    )
    parser.add_argument(
        "--scheduler",
        default="local",
        help="local | processes | a Dask scheduler address such as tcp://host:8786",
    )
    parser.add_argument("--out", default=None, help="sweep folder (default runs/sweep-<name>)")
    dask = parser.add_argument_group("Dask cluster (where the sweep's tasks run)")
    dask.add_argument(
        "--scheduler-file",
        default=None,
        metavar="PATH",
        help="JSON file written by `dask scheduler --scheduler-file PATH` (instead of --scheduler)",
    )
    dask.add_argument(
        "--timeout",
        default=None,
        metavar="SECONDS",
        help="give up when the whole sweep has not finished after this long (default: no limit)",
    )
    dask.add_argument(
        "--connect-timeout",
        default=None,
        metavar="SECONDS",
        help="seconds to reach the scheduler and get its handshake (default 10)",
    )
    dask.add_argument(
        "--worker-timeout",
        default=None,
        metavar="SECONDS",
        help="seconds the cluster may have no worker while runs wait (default 60)",
    )
    for flag, what in (
        ("--tls-ca-file", "CA certificate"),
        ("--tls-cert", "client certificate"),
        ("--tls-key", "client private key"),
    ):
        dask.add_argument(flag, default=None, metavar="PEM", help=f"{what} for a tls:// scheduler")
    return parser


def sweep_dask_options(args: argparse.Namespace) -> tuple[dict[str, Any], float | None]:
    """``(engine options, sweep timeout)`` from the Dask options of :func:`sweep_parser`.

    Returns:
        :class:`qsgd.distributed.DaskEngine` keywords for the options given, and the
        ``--timeout`` in seconds (``None``: no limit on the whole sweep).

    Raises:
        ConfigError: a value that is not a positive number of seconds, a missing PEM file, or
            both ``--scheduler`` (other than local) and ``--scheduler-file``; the message names
            the option.
    """
    from qsgd.distributed import _check_file

    options: dict[str, Any] = {}
    timeout = None
    for flag in ("--timeout", "--connect-timeout", "--worker-timeout"):
        text = getattr(args, flag[2:].replace("-", "_"))
        if text is None:
            continue
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 < value < float("inf"):
            raise ConfigError(f"{flag} must be a positive number of seconds (got {text!r})")
        if flag == "--timeout":
            timeout = value
        else:
            options[flag[2:].replace("-", "_")] = value
    if args.scheduler_file is not None:
        if args.scheduler != "local":
            raise ConfigError(
                "give either --scheduler or --scheduler-file "
                f"(got --scheduler {args.scheduler} and --scheduler-file {args.scheduler_file})"
            )
        options["scheduler_file"] = args.scheduler_file
    tls = {
        flag: _check_file(flag, getattr(args, flag[2:].replace("-", "_")))
        for flag in ("--tls-ca-file", "--tls-cert", "--tls-key")
    }
    if any(tls.values()):
        if not (tls["--tls-ca-file"] and tls["--tls-cert"]):
            raise ConfigError(
                "a tls:// scheduler needs --tls-ca-file and --tls-cert (and --tls-key unless the "
                f"certificate holds the key) (got {', '.join(f for f, v in tls.items() if v)})"
            )
        if not (args.scheduler.startswith("tls://") or args.scheduler_file is not None):
            raise ConfigError(
                "--tls-ca-file, --tls-cert and --tls-key are for a tls:// scheduler or a "
                f"--scheduler-file (got --scheduler {args.scheduler})"
            )
        options.update(tls_ca_file=tls["--tls-ca-file"], tls_cert=tls["--tls-cert"])
        options["tls_key"] = tls["--tls-key"]
    return options, timeout
