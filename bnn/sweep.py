"""``bnn sweep``: a grid of run configs x seeds as Dask tasks, gathered into one table.

Each (grid point, seed) is one task: the base config with the point's dotted keys set,
``train.seed`` set to the seed and ``output.run_dir`` set to ``OUT/<label>``, trained with
:func:`bnn.training.train_from_config`. Every point is validated before any task starts, so a
bad key or value fails at once with its name. Tasks run where ``scheduler`` says
(:mod:`qsgd.distributed`): ``local`` (one after the other, in this process), ``processes``
(a local Dask cluster) or the address of an existing Dask scheduler (workers must see the data
files and ``OUT`` at the same paths, e.g. a shared file system).

Writes ``OUT/sweep.json``, ``OUT/sweep.csv`` and ``OUT/sweep.md``: one row per run with the
grid values, seed, status, final train/val/test accuracy, best validation accuracy, steps and
wall time.

Example::

    bnn sweep examples/configs/default.toml --grid optimizer.lr=[0.01,0.05] --seeds 0,1 \\
        --scheduler processes --out runs/sweep-lr
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bnn.config import RunConfig
from qsgd.distributed import DaskEngine, check_scheduler, get_engine
from qsgd.errors import QSGDError
from qsgd.sweep import (
    expand_grid,
    markdown_rows,
    parse_grid,
    parse_seeds,
    point_label,
    set_dotted,
    sweep_parser,
    write_table,
)

__all__ = ["SweepTask", "plan_sweep", "run_sweep", "main_sweep"]

_RESULT_COLUMNS = (
    "seed",
    "status",
    "epochs_completed",
    "steps",
    "train_accuracy",
    "val_accuracy",
    "test_accuracy",
    "best_val_accuracy",
    "wall_time",
    "run_dir",
)

SweepTask = tuple[dict[str, Any], int, dict[str, Any]]
"""``(grid point, seed, validated config as a plain dict)``."""


def plan_sweep(
    base: str | Path | Mapping[str, Any] | RunConfig,
    grid: Mapping[str, Sequence[Any]],
    seeds: Sequence[int],
    out_dir: str | Path,
) -> list[SweepTask]:
    """Validate every (point, seed) config up front and return the tasks.

    Raises:
        ConfigError: a grid key or value the schema rejects (names the key and the point).
    """
    if isinstance(base, RunConfig):
        raw = base.to_dict()
    elif isinstance(base, Mapping):
        raw = RunConfig.from_dict(base).to_dict()
    else:
        raw = RunConfig.from_file(base).to_dict()  # resolves data.root against the file
    seeds = parse_seeds(list(seeds))
    out = Path(out_dir).resolve()
    tasks = []
    for point in expand_grid(grid):
        for seed in seeds:
            data = copy.deepcopy(raw)
            for key, value in point.items():
                set_dotted(data, key, value)
            set_dotted(data, "train.seed", seed)
            set_dotted(data, "output.run_dir", str(out / point_label(point, seed)))
            cfg = RunConfig.from_dict(data, source=f"for grid point {point} seed {seed}")
            tasks.append((dict(point), int(seed), cfg.to_dict()))
    return tasks


def _run_task(point: dict[str, Any], seed: int, config: dict[str, Any]) -> dict[str, Any]:
    """Task body (runs on a worker): train one config and return its table row."""
    from bnn.training import train_from_config

    t0 = time.perf_counter()
    cfg = RunConfig.from_dict(config)
    row: dict[str, Any] = {**point, "seed": seed, "run_dir": cfg.output.run_dir}
    try:
        summary = train_from_config(cfg, quiet=True, handle_signals=False)
    except QSGDError as exc:  # a config that fails at run time is a row, not a lost sweep
        row.update(
            status=f"failed: {type(exc).__name__}: {exc}", wall_time=time.perf_counter() - t0
        )
        return row
    final = summary.get("final") or {}
    row.update(
        status=summary.get("status"),
        epochs_completed=summary.get("epochs_completed"),
        steps=summary.get("steps"),
        train_accuracy=final.get("train_accuracy"),
        val_accuracy=final.get("val_accuracy"),
        test_accuracy=final.get("test_accuracy"),
        best_val_accuracy=summary.get("best_val_accuracy"),
        wall_time=time.perf_counter() - t0,
    )
    return row


def run_sweep(
    base: str | Path | Mapping[str, Any] | RunConfig,
    grid: Mapping[str, Sequence[Any]],
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    scheduler: str = "local",
    engine: DaskEngine | None = None,
) -> list[dict[str, Any]]:
    """Run the sweep and write its table; returns the rows (grid order, then seed order).

    Args:
        base: Base config (file path, mapping or :class:`RunConfig`).
        grid: ``{dotted key: [values]}`` (see :func:`qsgd.sweep.parse_grid`).
        seeds: Seeds; each point runs once per seed.
        out_dir: Sweep folder: one run directory per task, plus ``sweep.{json,csv,md}``.
        scheduler: ``"local"``, ``"processes"`` or a Dask scheduler address.
        engine: An explicit engine (overrides ``scheduler``).

    Raises:
        ConfigError: bad grid key or value, bad seeds or scheduler.
    """
    tasks = plan_sweep(base, grid, seeds, out_dir)
    engine = engine if engine is not None else get_engine(check_scheduler(scheduler))
    t0 = time.perf_counter()
    rows = engine.map(_run_task, *zip(*tasks, strict=True), key="bnn sweep")
    columns = [*grid, *_RESULT_COLUMNS]
    write_table(
        rows,
        out_dir,
        columns,
        extra={
            "grid": {k: list(v) for k, v in grid.items()},
            "seeds": parse_seeds(list(seeds)),
            "scheduler": engine.scheduler,
            "wall_time": time.perf_counter() - t0,
        },
    )
    return rows


def main_sweep(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bnn sweep`` (the CLI passes its remaining arguments).

    Usage::

        bnn sweep CONFIG [--grid KEY=VALUES ...] [--seeds 0,1,2] [--scheduler S] [--out DIR]

    Returns:
        0 when every run completed, 1 when some failed (their rows say why), 2 on bad input.
    """
    parser = sweep_parser(
        "bnn sweep",
        "Run a grid of configs x seeds and gather one table.",
        "base run config (TOML)",
        "optimizer.lr=[0.01,0.1]",
        "0",
    )
    args = parser.parse_args(argv)
    try:
        grid = parse_grid(args.grid)
        seeds = parse_seeds(args.seeds)
        scheduler = check_scheduler(args.scheduler)
        base = RunConfig.from_file(args.config)
        out = args.out or f"runs/sweep-{base.name}"
        rows = run_sweep(base, grid, seeds, out, scheduler=scheduler)
    except QSGDError as exc:
        print(f"bnn sweep: error: {exc}", file=sys.stderr)
        return 2
    columns = [*grid, "seed", "status", "val_accuracy", "test_accuracy", "wall_time"]
    print(markdown_rows(rows, columns), end="")
    print(f"{len(rows)} runs; table in {Path(out) / 'sweep.md'}")
    return 0 if all(r.get("status") == "completed" for r in rows) else 1
