"""``qkernels sweep``: a grid of experiment configs x data sets x ansätze x seeds as Dask tasks.

The base is an :class:`~qkernels.config.ExperimentConfig` file; each grid point sets dotted
keys of it (``kernel.bandwidth``, ``training.lr``, ``training.steps``, ``datasets.0.n_train``,
...) and every point is validated before any task starts. One task is one
:func:`qkernels.experiment.run_one` call (one data set, one ansatz, one seed, no plots), run
where ``scheduler`` says (:mod:`qsgd.distributed`). Results are gathered into one table:
``OUT/sweep.{json,csv,md}`` with one row per run (grid values, data set, ansatz, seed,
test/train accuracy before and after training, alignment before and after, training time),
and ``OUT/summary.md`` with the mean ± std over seeds per (grid point, data set, ansatz)
as :func:`qkernels.experiment.markdown_table` prints it. ``OUT`` must be new or empty unless
``--overwrite`` is given; it is checked before any task starts.

Example::

    qkernels sweep examples/configs/kernels_checkerboard.toml \\
        --grid kernel.bandwidth=[0.5,1.0] --seeds 0-4 --scheduler processes --out runs/kq
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qkernels.config import ExperimentConfig
from qsgd.distributed import DaskConfig, DaskEngine, check_scheduler, resolve_engine
from qsgd.errors import QSGDError
from qsgd.sweep import (
    expand_grid,
    markdown_rows,
    parse_grid,
    parse_seeds,
    point_label,
    set_dotted,
    sweep_dask_options,
    sweep_parser,
    write_table,
)

__all__ = ["plan_sweep", "run_sweep", "main_sweep"]

_RESULT_COLUMNS = (
    "dataset",
    "ansatz",
    "seed",
    "test_before",
    "test_after",
    "train_after",
    "alignment_before",
    "alignment_after",
    "train_seconds",
)


def plan_sweep(
    base: str | Path | Mapping[str, Any] | ExperimentConfig,
    grid: Mapping[str, Sequence[Any]],
    seeds: Sequence[int] | None = None,
) -> list[tuple[dict[str, Any], dict[str, Any], int, int, int]]:
    """Validate every grid point and list the tasks.

    Args:
        base: Base experiment config (file, mapping or :class:`ExperimentConfig`).
        grid: ``{dotted key: [values]}``.
        seeds: Seeds (``None``: the config's ``seeds``).

    Returns:
        Tasks ``(point, config dict, dataset index, ansatz index, seed)``.

    Raises:
        ConfigError: a key or value the schema rejects, or bad seeds.
    """
    if isinstance(base, ExperimentConfig):
        cfg0 = base
    elif isinstance(base, Mapping):
        cfg0 = ExperimentConfig.from_dict(dict(base))
    else:
        cfg0 = ExperimentConfig.from_file(base)
    seeds = parse_seeds(list(seeds)) if seeds is not None else list(cfg0.seeds)
    raw = cfg0.model_dump()
    tasks = []
    for point in expand_grid(grid):
        data = copy.deepcopy(raw)
        for key, value in point.items():
            set_dotted(data, key, value)
        data["seeds"] = list(seeds)
        data["plots"] = False
        cfg = ExperimentConfig.from_dict(data)
        dumped = cfg.model_dump()
        for d in range(len(cfg.datasets)):
            for a in range(len(cfg.ansatze)):
                for seed in seeds:
                    tasks.append((dict(point), dumped, d, a, int(seed)))
    return tasks


def _run_task(
    point: dict[str, Any], config: dict[str, Any], d: int, a: int, seed: int
) -> dict[str, Any]:
    """Task body (runs on a worker): one :func:`run_one` record plus the grid values."""
    from qkernels.experiment import run_one

    cfg = ExperimentConfig.from_dict(config)
    record = run_one(cfg, cfg.datasets[d], cfg.ansatze[a], seed, None)
    return {"point": point, "record": record}


def _row(point: Mapping[str, Any], r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **point,
        "dataset": r["dataset"],
        "ansatz": r["ansatz"],
        "seed": r["seed"],
        "test_before": r["before"]["accuracy"]["test"],
        "test_after": r["after"]["accuracy"]["test"],
        "train_after": r["after"]["accuracy"]["train"],
        "alignment_before": r["before"]["alignment"],
        "alignment_after": r["after"]["alignment"],
        "train_seconds": r["train_seconds"],
    }


def run_sweep(
    base: str | Path | Mapping[str, Any] | ExperimentConfig,
    grid: Mapping[str, Sequence[Any]],
    seeds: Sequence[int] | None,
    out_dir: str | Path,
    *,
    scheduler: str = "local",
    engine: DaskEngine | None = None,
    overwrite: bool = False,
    client: Any = None,
    dask: DaskConfig | Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run the sweep and write its tables.

    Args:
        base, grid, seeds: As in :func:`plan_sweep`.
        out_dir: Output folder; must be new or empty unless ``overwrite``.
        scheduler: Where tasks run (:mod:`qsgd.distributed`), unless ``engine`` is given.
        engine: A ready :class:`~qsgd.distributed.DaskEngine`.
        client: An existing ``distributed.Client`` to run the tasks on (left open).
        dask: Cluster settings (:class:`~qsgd.distributed.DaskConfig` or a mapping of its keys:
            ``scheduler_file``, ``connect_timeout``, ``worker_timeout``, TLS files); its
            ``timeout`` is not used, see ``timeout``.
        timeout: Seconds for the whole sweep (``None``: no limit; reaching the scheduler and
            having workers stay bounded).
        overwrite: Allow an output folder that already holds files (the tables are replaced).

    Returns:
        ``{"rows": [...], "records": [...], "summary": [...]}``: table rows, the full
        :func:`run_one` records (with ``"point"``), and per (point, data set, ansatz) the
        :func:`qkernels.experiment.summarize` entry with the point's values.

    Raises:
        ConfigError: bad grid key or value, bad seeds or scheduler, or an output folder that is
            a file or not empty (without ``overwrite``); all checked before any task starts.
        ProblemError: a data set of some grid point holds NaN or inf (checked before any task).
    """
    from qkernels.experiment import check_datasets, markdown_table, prepare_output_dir, summarize

    tasks = plan_sweep(base, grid, seeds)
    for config in {id(t[1]): t[1] for t in tasks}.values():  # one config per grid point
        check_datasets(ExperimentConfig.from_dict(config))
    prepare_output_dir(out_dir, overwrite=overwrite)
    if engine is None:
        engine = resolve_engine(check_scheduler(scheduler), client=client, dask=dask)
    t0 = time.perf_counter()
    results = engine.map(
        _run_task, *zip(*tasks, strict=True), key="qkernels sweep", timeout=timeout
    )
    rows = [_row(res["point"], res["record"]) for res in results]
    summary, md = [], []
    for point in expand_grid(grid):
        mine = [res["record"] for res in results if res["point"] == point]
        part = summarize(mine)
        summary += [{**point, **s} for s in part]
        md.append(f"## {point_label(point)}\n\n" + markdown_table(part))
    out = Path(out_dir)
    write_table(
        rows,
        out,
        [*grid, *_RESULT_COLUMNS],
        extra={
            "grid": {k: list(v) for k, v in grid.items()},
            "scheduler": engine.scheduler,
            "wall_time": time.perf_counter() - t0,
            "summary": summary,
        },
    )
    (out / "summary.md").write_text("\n".join(md))
    return {"rows": rows, "records": [r["record"] for r in results], "summary": summary}


def main_sweep(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``qkernels sweep`` (the CLI passes its remaining arguments).

    Usage::

        qkernels sweep CONFIG [--grid KEY=VALUES ...] [--seeds 0-4] [--scheduler S] [--out DIR]
                       [--scheduler-file PATH] [--timeout S] [--connect-timeout S]
                       [--worker-timeout S] [--tls-ca-file PEM --tls-cert PEM [--tls-key PEM]]
                       [--overwrite]

    Returns:
        0 on success, 2 on bad input.
    """
    parser = sweep_parser(
        "qkernels sweep",
        "Run a grid of experiment configs x seeds and gather one table.",
        "base experiment config (TOML)",
        "kernel.bandwidth=[0.5,1.0]",
        None,
    )
    if "--overwrite" not in parser._option_string_actions:  # the shared parser may add it
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="allow an output folder that already holds files (the tables are replaced)",
        )
    args = parser.parse_args(argv)
    try:
        grid = parse_grid(args.grid)
        seeds = None if args.seeds is None else parse_seeds(args.seeds)
        scheduler = check_scheduler(args.scheduler)
        dask, timeout = sweep_dask_options(args)
        base = ExperimentConfig.from_file(args.config)
        out = args.out or f"runs/sweep-{base.name}"
        result = run_sweep(
            base,
            grid,
            seeds,
            out,
            scheduler=scheduler,
            overwrite=args.overwrite,
            dask=dask,
            timeout=timeout,
        )
    except QSGDError as exc:
        print(f"qkernels sweep: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions while writing the tables
        print(f"qkernels sweep: error: cannot write the tables: {exc}", file=sys.stderr)
        return 2
    cols = [*grid, "dataset", "ansatz", "seed", "test_before", "test_after", "alignment_after"]
    print(markdown_rows(result["rows"], cols), end="")
    print(
        f"{len(result['rows'])} runs; tables in {Path(out) / 'sweep.md'}, {Path(out) / 'summary.md'}"
    )
    return 0
