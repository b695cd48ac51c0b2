"""``bnn sweep``: a grid of run configs x seeds as Dask tasks, gathered into one table.

Each (grid point, seed) is one task: the base config with the point's dotted keys set,
``train.seed`` set to the seed and ``output.run_dir`` set to ``OUT/<label>``, trained with
:func:`bnn.training.train_from_config`. Every point is validated before any task starts, so a
bad key or value fails at once with its name. Tasks run where ``scheduler`` says
(:mod:`qsgd.distributed`): ``local`` (one after the other, in this process), ``processes``
(a local Dask cluster) or the address of an existing Dask scheduler (workers must see the data
files and ``OUT`` at the same paths, e.g. a shared file system).

Writes ``OUT/sweep.json``, ``OUT/sweep.csv`` and ``OUT/sweep.md``: one row per run with the
grid values, seed, status, final train/val/test accuracy, best validation accuracy, steps, wall
time and a note.

A lost worker loses no row. Dask reruns the task of a worker that died, and the rerun finds
the run folder its first attempt left behind:

* a **completed** run (``summary.json`` says ``completed``) of the same config: its summary is
  the row, and nothing in the folder is touched (also when a sweep is rerun into the same
  ``OUT``);
* a **partial** run (no completed summary) with a checkpoint: it is resumed from the
  checkpoint, which gives the same result as an uninterrupted run;
* a partial run without a usable checkpoint (cut short in its first epoch): it is cleared and
  started again;
* a run folder of a **different** config: refused (a failed row naming the differing keys);
  it is never touched.

Only one attempt works in a run folder at a time: each holds an exclusive lock
(``OUT/.locks/<label>.lock``, ``flock``; the kernel releases it when its process dies), so an
attempt Dask started while the first one is still alive waits for it and then reuses its run.

Example::

    bnn sweep examples/configs/default.toml --grid optimizer.lr=[0.01,0.05] --seeds 0,1 \\
        --scheduler processes --out runs/sweep-lr
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from bnn.config import RunConfig
from qsgd.distributed import DaskConfig, DaskEngine, check_scheduler, resolve_engine
from qsgd.errors import ConfigError, QSGDError
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
    "note",
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


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _differences(saved: RunConfig, cfg: RunConfig) -> list[str]:
    """Dotted keys where two configs differ, ``output.*`` aside (where files go, not results)."""
    a, b = _flat(saved.to_dict()), _flat(cfg.to_dict())
    return sorted(
        k for k in set(a) | set(b) if a.get(k) != b.get(k) and not k.startswith("output.")
    )


@contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` (``RUN_DIR/../.locks/NAME.lock``) while inside.

    ``flock`` locks vanish with the process that holds them, so a dead worker leaves none.
    Waits (polling) while another live process holds the lock. No lock where ``fcntl`` is
    missing (Windows) or the file system refuses ``flock`` (e.g. Lustre without its ``flock``
    mount option).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock_dir = run_dir.parent / ".locks"
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_dir / f"{run_dir.name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot create the run lock in {str(lock_dir)!r}: {exc}") from None
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # another live attempt holds it
                time.sleep(0.2)
            except OSError:  # locking unsupported here (ENOLCK, EINVAL, ...): run unlocked
                break
        yield
    finally:
        os.close(fd)  # releases the lock


def _train_or_reuse(cfg: RunConfig) -> tuple[dict[str, Any], str]:
    """Train ``cfg`` in its run folder, or resume / reuse what an earlier attempt left there.

    Returns:
        ``(summary, note)``; the note says what was found ("" for a fresh run).

    Raises:
        ConfigError: the folder holds a run of another config, or a completed run without its
            config (the folder is not touched).
    """
    from bnn.checkpoint import CheckpointError, load_checkpoint
    from bnn.records import SUMMARY_NAME
    from bnn.training import CONFIG_NAME, run_files, train_from_config

    run_dir = Path(cfg.output.run_dir)
    if not (run_dir.is_dir() and run_files(run_dir)):
        return train_from_config(cfg, quiet=True, handle_signals=False), ""
    try:  # as saved: no path resolution, so it compares equal to the config that wrote it
        saved = RunConfig.from_dict(tomllib.loads((run_dir / CONFIG_NAME).read_text("utf-8")))
    except (OSError, ValueError):  # missing, cut short or invalid (ConfigError is a ValueError)
        saved = None
    if saved is not None:
        changed = _differences(saved, cfg)
        if changed:
            raise ConfigError(
                f"run directory {str(run_dir)!r} holds a run of another config (it differs at "
                f"{', '.join(changed[:6])}); it is left untouched: sweep into another --out or "
                f"remove it (got {len(changed)} differing keys)"
            )
    try:
        summary = json.loads((run_dir / SUMMARY_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = None
    if isinstance(summary, dict) and summary.get("status") == "completed":
        if saved is None:
            raise ConfigError(
                f"run directory {str(run_dir)!r} holds a completed run without a readable "
                f"{CONFIG_NAME}, so it cannot be matched to this config; it is left untouched "
                "(got a summary.json with status 'completed')"
            )
        return summary, "completed earlier: summary reused, run folder untouched"
    try:
        state = load_checkpoint(run_dir) if saved is not None else None
    except CheckpointError:
        state = None
    if state is not None:
        note = (
            f"resumed a partial run from its checkpoint (epoch {state['epoch']}, "
            f"step {state['step']})"
        )
        return train_from_config(cfg, resume=True, quiet=True, handle_signals=False), note
    data = cfg.to_dict()
    data["output"]["overwrite"] = True
    fresh = RunConfig.from_dict(data)
    summary = train_from_config(fresh, quiet=True, handle_signals=False)
    return summary, "restarted: a partial run without a usable checkpoint was cleared"


def _run_task(point: dict[str, Any], seed: int, config: dict[str, Any]) -> dict[str, Any]:
    """Task body (runs on a worker): train one config and return its table row.

    Safe to run again after a worker died mid-run: see the module docstring.
    """
    t0 = time.perf_counter()
    cfg = RunConfig.from_dict(config)
    run_dir = Path(cfg.output.run_dir)
    row: dict[str, Any] = {**point, "seed": seed, "run_dir": str(run_dir), "note": ""}
    try:
        with _run_lock(run_dir):
            summary, note = _train_or_reuse(cfg)
    except QSGDError as exc:  # a config that fails at run time is a row, not a lost sweep
        row.update(
            status=f"failed: {type(exc).__name__}: {exc}", wall_time=time.perf_counter() - t0
        )
        return row
    final = summary.get("final") or {}
    reused = note.startswith("completed earlier")
    row.update(
        status=summary.get("status"),
        epochs_completed=summary.get("epochs_completed"),
        steps=summary.get("steps"),
        train_accuracy=final.get("train_accuracy"),
        val_accuracy=final.get("val_accuracy"),
        test_accuracy=final.get("test_accuracy"),
        best_val_accuracy=summary.get("best_val_accuracy"),
        wall_time=summary.get("wall_time") if reused else time.perf_counter() - t0,
        note=note,
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
    client: Any = None,
    dask: DaskConfig | Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """Run the sweep and write its table; returns the rows (grid order, then seed order).

    Args:
        base: Base config (file path, mapping or :class:`RunConfig`).
        grid: ``{dotted key: [values]}`` (see :func:`qsgd.sweep.parse_grid`).
        seeds: Seeds; each point runs once per seed.
        out_dir: Sweep folder: one run directory per task, plus ``sweep.{json,csv,md}``. Run
            folders already there are reused or resumed as the module docstring says.
        scheduler: ``"local"``, ``"processes"`` or a Dask scheduler address.
        engine: An explicit engine (overrides ``scheduler``, ``client`` and ``dask``).
        client: An existing ``distributed.Client`` to run the tasks on (left open).
        dask: Cluster settings (:class:`~qsgd.distributed.DaskConfig` or a mapping of its
            keys): ``scheduler_file``, ``connect_timeout``, ``worker_timeout``, TLS files, ...
            Its ``timeout`` is not used: see ``timeout``.
        timeout: Seconds for the whole sweep (``None``: no limit; reaching the scheduler and
            having workers stay bounded by ``connect_timeout`` and ``worker_timeout``).

    Raises:
        ConfigError: bad grid key or value, bad seeds, scheduler or cluster settings.
        BackendError: the cluster cannot be reached, has no worker, or the sweep ran past
            ``timeout``.
    """
    tasks = plan_sweep(base, grid, seeds, out_dir)
    if engine is None:
        engine = resolve_engine(check_scheduler(scheduler), client=client, dask=dask)
    t0 = time.perf_counter()
    rows = engine.map(_run_task, *zip(*tasks, strict=True), key="bnn sweep", timeout=timeout)
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
                  [--scheduler-file PATH] [--timeout S] [--connect-timeout S]
                  [--worker-timeout S] [--tls-ca-file PEM --tls-cert PEM [--tls-key PEM]]

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
        dask, timeout = sweep_dask_options(args)
        base = RunConfig.from_file(args.config)
        out = args.out or f"runs/sweep-{base.name}"
        rows = run_sweep(base, grid, seeds, out, scheduler=scheduler, dask=dask, timeout=timeout)
    except QSGDError as exc:
        print(f"bnn sweep: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    columns = [*grid, "seed", "status", "val_accuracy", "test_accuracy", "wall_time", "note"]
    print(markdown_rows(rows, columns), end="")
    print(f"{len(rows)} runs; table in {Path(out) / 'sweep.md'}")
    return 0 if all(r.get("status") == "completed" for r in rows) else 1
