"""Run every method of one experiment, in this process or in forked workers.

:func:`run_experiment` orders the methods (a method with ``search_from`` runs after the one it
reuses), runs them and assembles the results document with the environment it ran in
(:func:`environment`).
"""

from __future__ import annotations

import multiprocessing
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnn.experiments.methods import PROTOCOL_VERSION, Method, Task, fix_threads
from bnn.experiments.report import _fmt, markdown_table, paired_differences
from bnn.experiments.runs import run_method
from bnn.trial_store import code_fingerprint

# --------------------------------------------------------------------- parallel methods
_POOL_STATE: dict[str, Any] = {}


def _pool_init(threads: int | None) -> None:
    if threads is not None:
        fix_threads(threads)


def _pool_run(index: int, chosen: Mapping[str, Any] | None) -> tuple[dict[str, Any], int | None]:
    task, methods, seeds, search_seed = (
        _POOL_STATE[k] for k in ("task", "methods", "seeds", "search_seed")
    )
    res = run_method(task, methods[index], seeds=seeds, search_seed=search_seed, chosen=chosen)
    try:
        import numba

        return res, numba.get_num_threads()
    except ImportError:  # pragma: no cover
        return res, None


def run_experiment(
    task: Task,
    methods: Sequence[Method],
    *,
    seeds: Sequence[int],
    search_seed: int = 1000,
    title: str = "",
    extra: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    jobs: int = 1,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run every method (search, then seeds) and collect the results document.

    A method with ``search_from`` reuses the chosen setting of that method (run first).
    With ``jobs > 1`` the methods run in that many forked worker processes (each with
    ``threads`` torch/numba threads); every run is seeded on its own, so the numbers do not
    depend on ``jobs``. The parent must not have started numba's OpenMP pool before (see
    :func:`fix_threads`'s ``numba_too``).

    Returns:
        ``task``, ``title``, ``majority_rate`` (test) and ``majority_rate_val``, ``protocol``
        (version, maximum epochs, batch size, seeds, search seed, epochs and fraction,
        patience, extensions, selection rule, non-binary lr rule, threads), ``methods`` (by
        key, see :func:`run_method`), ``paired`` (:func:`paired_differences`),
        ``environment``, ``wall_time``, ``extra`` and ``table``.

    Raises:
        ValueError: a ``search_from`` that is not run, or ``jobs < 1``.
    """

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int (got {jobs!r})")
    if threads is not None:
        fix_threads(threads, numba_too=jobs == 1)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    keys = [m.key for m in methods]
    for m in methods:
        if m.search_from is not None and m.search_from not in keys:
            raise ValueError(
                f"method {m.key!r} reuses the search of {m.search_from!r}, which is not run"
            )
    methods = list(methods)
    first = [i for i, m in enumerate(methods) if m.search_from is None]
    later = [i for i, m in enumerate(methods) if m.search_from is not None]
    t0 = time.perf_counter()
    if jobs == 1 or len(first) < 2:
        done, worker_numba = _run_here(task, methods, first + later, seeds, search_seed, log), None
    else:
        done, worker_numba = _run_in_workers(
            task, methods, (first, later), seeds, search_seed, log, jobs, threads
        )
    ordered = {k: done[k] for k in keys}
    results = _document(task, title, ordered, seeds, search_seed, threads, jobs)
    # the parent of forked workers must not start numba's OpenMP pool (a later experiment
    # of the same script forks again): the workers report their numba thread count
    results["environment"] = environment(
        threads, numba_threads=worker_numba if jobs > 1 else "query"
    )
    results["wall_time"] = time.perf_counter() - t0
    results["extra"] = dict(extra or {})
    results["table"] = markdown_table(results)
    return results


def _report(task: Task, res: Mapping[str, Any], log: Callable[[str], None]) -> None:
    s = res["summary"]
    log(
        f"[{task.name}] {res['label']}: chosen {res['chosen']}, test accuracy "
        f"{_fmt(s['test_accuracy'], 4)} (best-val epoch), {_fmt(s['wall_time_per_epoch'], 2)}"
        f" s/epoch, {res['wall_time']['total']:.0f} s"
    )


def _run_here(
    task: Task,
    methods: Sequence[Method],
    order: Sequence[int],
    seeds: Sequence[int],
    search_seed: int,
    log: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """Run ``methods[i]`` for ``i`` in ``order`` in this process; results by key."""
    done: dict[str, dict[str, Any]] = {}
    for i in order:
        m = methods[i]
        chosen = done[m.search_from]["chosen"] if m.search_from else None
        log(f"[{task.name}] {m.label}: " + ("runs" if chosen else f"search ({len(m.grid)}+)"))
        done[m.key] = run_method(task, m, seeds=seeds, search_seed=search_seed, chosen=chosen)
        _report(task, done[m.key], log)
    return done


def _run_in_workers(
    task: Task,
    methods: Sequence[Method],
    order: tuple[Sequence[int], Sequence[int]],
    seeds: Sequence[int],
    search_seed: int,
    log: Callable[[str], None],
    jobs: int,
    threads: int | None,
) -> tuple[dict[str, dict[str, Any]], int | None]:
    """Run the methods in ``jobs`` forked workers: first those that search (``order[0]``),
    then those reusing a search (``order[1]``). Returns the results by key and the workers'
    numba thread count."""
    from concurrent.futures import ProcessPoolExecutor

    first, later = order
    done: dict[str, dict[str, Any]] = {}
    worker_numba: int | None = None
    _POOL_STATE.update(task=task, methods=methods, seeds=list(seeds), search_seed=search_seed)
    try:
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_pool_init,
            initargs=(threads,),
        ) as pool:
            futures = {pool.submit(_pool_run, i, None): i for i in first}
            log(f"[{task.name}] {len(first)} methods on {jobs} workers")
            for fut, i in futures.items():
                done[methods[i].key], worker_numba = fut.result()
                _report(task, done[methods[i].key], log)
            futures = {
                pool.submit(_pool_run, i, done[methods[i].search_from]["chosen"]): i for i in later
            }
            for fut, i in futures.items():
                done[methods[i].key], worker_numba = fut.result()
                _report(task, done[methods[i].key], log)
    finally:
        _POOL_STATE.clear()
    return done, worker_numba


def _document(
    task: Task,
    title: str,
    ordered: Mapping[str, Any],
    seeds: Sequence[int],
    search_seed: int,
    threads: int | None,
    jobs: int,
) -> dict[str, Any]:
    """The results document without its environment, timing and extra fields."""
    from bnn.training import _Data

    data = _Data(task.dataset)
    results: dict[str, Any] = {
        "task": task.name,
        "title": title or task.name,
        "majority_rate": data.majority_rate("test"),
        "majority_rate_val": data.majority_rate("val"),
        "protocol": {
            "version": PROTOCOL_VERSION,
            "epochs": task.epochs,
            "batch_size": task.batch_size,
            "max_batches_per_epoch": task.max_batches,
            "seeds": list(seeds),
            "search_seed": search_seed,
            **({"search_seeds": task.search_seeds} if task.search_seeds > 1 else {}),
            "search_epochs": task.search_epoch_count(),
            "search_fraction": task.search_fraction if task.search_epochs is None else None,
            "patience": task.patience,
            "max_extensions": task.max_extensions,
            "search_split": "validation",
            "selection": (
                "best validation accuracy at the best-validation epoch (ties: lower validation "
                "loss), test accuracy reported at that epoch"
                + (f"; early stopping, patience {task.patience}" if task.patience else "")
            ),
            "nonbinary_lr": (
                "Adam; its lr is tied to the step size lr for every method (QP-SBGD other_lr = "
                "lr; the baselines' single lr), Bop searches it as its lr axis"
            ),
            "threads": threads,
            "jobs": jobs,
        },
        "methods": ordered,
        "paired": paired_differences(ordered),
    }
    return results


def _git_commit() -> str | None:
    """The commit of the source tree (``+dirty`` with uncommitted changes), or None outside git.

    Bounded: each git call may take at most 5 s."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "qsgd", "bnn"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment(
    threads: int | None = None, numba_threads: int | None | str = "query"
) -> dict[str, Any]:
    """Versions and machine facts stored with the results (thread counts included).

    ``numba_threads="query"`` asks numba (which starts its OpenMP pool: a process that will
    still fork must pass the count instead)."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads() if threads is None else threads,
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "source_sha256": code_fingerprint(),
        "git_commit": _git_commit(),
    }
    try:
        import numba

        env["numba"] = numba.__version__
        env["numba_threads"] = (
            numba.get_num_threads() if numba_threads == "query" else numba_threads
        )
    except ImportError:  # pragma: no cover
        pass
    # numba's OpenMP threading layer, started by the query above, resets the process's OpenMP
    # thread count (torch's): put torch's back, the numbers of later runs depend on it
    torch.set_num_threads(env["torch_threads"])
    return env
