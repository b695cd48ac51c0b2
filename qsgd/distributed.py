"""Dask as the distributed engine: a layer's QUBO batch solved in chunks on workers.

One option chooses where the work runs (``scheduler`` in :class:`qsgd.config.AnnealerConfig`):

* ``"local"`` (default): in this process, no Dask needed;
* ``"processes"``: a ``distributed.LocalCluster`` of worker processes on this machine
  (one thread each), started on first use and closed at exit;
* an address such as ``"tcp://10.0.0.5:8786"``: an existing Dask scheduler.

Reproducibility: the results do not depend on the scheduler or on the number of workers.

* Per-problem backends (``neal``, ``tabu``, ``steepest``, ``exact``, ``mock-dwave``, ``dwave``):
  problem ``k`` of a batch solved with seed ``s`` always gets the seed
  ``problem_seeds(s, m)[k]``, exactly as :func:`qsgd.samplers.registry.solve_batch` gives it,
  so the chunked, distributed solve is **bit-identical** to ``solve_batch`` in one process, for
  any chunk size.
* Batch backends (those with ``sample_batch``, e.g. ``batched``) draw one random stream per
  call. A batch is cut into chunks of ``chunk_size`` problems; chunk ``c`` gets the seed
  ``problem_seeds(s, num_chunks)[c]`` (the seed itself when there is one chunk). The chunk plan
  depends only on ``m`` and ``chunk_size``, never on the workers, so the same ``chunk_size``
  gives the same samples on every scheduler (``scheduler="local"`` runs the same chunks
  in-process).

Failures: tasks are submitted with ``retries`` (an exception in a task is retried), and a task
whose worker dies is rescheduled by Dask on another worker (up to the scheduler's
``distributed.scheduler.allowed-failures``); results are assembled by chunk index, so none is
lost or counted twice. An unreachable scheduler address raises :class:`BackendError` after
``connect_timeout`` seconds.

dask and distributed are the optional extra ``distributed``, imported lazily.

Example:
    >>> from qsgd.samplers import get_sampler
    >>> with DaskEngine("processes", n_workers=2) as engine:          # doctest: +SKIP
    ...     res = solve_batch_distributed(get_sampler("neal"), batch, engine=engine, seed=0)
"""

from __future__ import annotations

import atexit
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dimod
import numpy as np

from qsgd.errors import BackendError, BackendUnavailableError, ConfigError
from qsgd.ising import IsingBatch
from qsgd.samplers.base import BatchResult
from qsgd.samplers.registry import (
    check_run_options,
    get_sampler,
    problem_seeds,
    solve_each,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "INSTALL_HINT",
    "DaskEngine",
    "DistributedSampler",
    "SamplerSpec",
    "check_scheduler",
    "chunk_plan",
    "get_engine",
    "shutdown_engines",
    "solve_batch_distributed",
    "solve_batches",
]

DEFAULT_CHUNK_SIZE = 16
"""Problems per task when no ``chunk_size`` is given."""

INSTALL_HINT = "the Dask engine needs dask and distributed: pip install 'qsgd[distributed]'"

_ADDRESS = re.compile(r"^((tcp|tls|inproc|ucx|ws|wss)://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def _import_distributed() -> Any:
    """The ``distributed`` module, or :class:`BackendUnavailableError` naming the extra."""
    try:
        import dask  # noqa: F401
        import distributed
    except ModuleNotFoundError as exc:
        raise BackendUnavailableError(f"{INSTALL_HINT} (missing module {exc.name!r})") from exc
    return distributed


def check_scheduler(value: Any) -> str:
    """Validate a ``scheduler`` option and return it.

    Accepted: ``"local"``, ``"processes"``, or a Dask scheduler address ``[proto://]host:port``
    (``proto`` one of tcp, tls, inproc, ucx, ws, wss).

    Raises:
        ConfigError: anything else; the message shows the accepted forms.

    Example:
        >>> check_scheduler("tcp://127.0.0.1:8786")
        'tcp://127.0.0.1:8786'
    """
    if isinstance(value, str) and (value in ("local", "processes") or _ADDRESS.match(value)):
        return value
    raise ConfigError(
        "scheduler must be 'local', 'processes' or a Dask scheduler address like "
        f"'tcp://host:8786' (got {value!r})"
    )


# --------------------------------------------------------------------------- engine


class DaskEngine:
    """Where tasks run: in this process, on a local Dask cluster, or on an existing scheduler.

    The cluster or connection is opened lazily on the first :meth:`map` (or :attr:`client`)
    and closed by :meth:`close` (also on ``with`` exit).

    Args:
        scheduler: ``"local"``, ``"processes"`` or a scheduler address (see
            :func:`check_scheduler`).
        n_workers: Worker processes of a ``"processes"`` cluster (default 2).
        threads_per_worker: Threads per worker process (default 1; the numeric libraries of
            each worker are limited to as many threads).
        connect_timeout: Seconds to wait for an address scheduler before giving up.
        retries: Times a task that raised is retried on the cluster.
        timeout: Seconds to wait for all results of one :meth:`map` (``None``: no limit).

    Raises:
        ConfigError: a bad argument (named in the message).
    """

    def __init__(
        self,
        scheduler: str = "local",
        *,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        connect_timeout: float = 10.0,
        retries: int = 2,
        timeout: float | None = None,
    ) -> None:
        self.scheduler = check_scheduler(scheduler)
        for name, value, low in (
            ("n_workers", n_workers, 1),
            ("threads_per_worker", threads_per_worker, 1),
            ("retries", retries, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"{name} must be an int >= {low} (got {value!r})")
        for name, value in (("connect_timeout", connect_timeout), ("timeout", timeout)):
            if value is None and name == "timeout":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds (got {value!r})")
        self.n_workers = int(n_workers)
        self.threads_per_worker = int(threads_per_worker)
        self.connect_timeout = float(connect_timeout)
        self.retries = int(retries)
        self.timeout = None if timeout is None else float(timeout)
        self._client: Any = None
        self._cluster: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DaskEngine(scheduler={self.scheduler!r}, started={self._client is not None})"

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def is_local(self) -> bool:
        """True when tasks run in this process (``scheduler="local"``)."""
        return self.scheduler == "local"

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (started on first access); ``None`` for ``"local"``.

        Raises:
            BackendUnavailableError: dask/distributed are not installed.
            BackendError: the scheduler address cannot be reached within ``connect_timeout``.
        """
        if self.is_local:
            return None
        with self._lock:
            if self._client is None:
                self._client = self._start()
        return self._client

    def _start(self) -> Any:
        distributed = _import_distributed()
        if self.scheduler == "processes":
            threads = str(self.threads_per_worker)
            cluster = distributed.LocalCluster(
                n_workers=self.n_workers,
                threads_per_worker=self.threads_per_worker,
                processes=True,
                dashboard_address=None,
                env={"OMP_NUM_THREADS": threads, "NUMBA_NUM_THREADS": threads},
            )
            try:
                client = distributed.Client(cluster, timeout=self.connect_timeout)
            except BaseException:
                cluster.close()
                raise
            self._cluster = cluster
            return client
        try:
            return distributed.Client(
                self.scheduler, timeout=self.connect_timeout, set_as_default=False
            )
        except (OSError, TimeoutError) as exc:
            raise BackendError(
                f"could not reach the Dask scheduler at {self.scheduler!r} within "
                f"{self.connect_timeout:g} s ({type(exc).__name__}: {exc}); start one with "
                f"`dask scheduler` and workers with `dask worker {self.scheduler}`, or use "
                "scheduler='processes' for a local cluster"
            ) from exc

    def worker_count(self) -> int:
        """Workers currently connected (1 for ``"local"``)."""
        if self.is_local:
            return 1
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def share(self, obj: Any) -> Any:
        """Make ``obj`` available to tasks (pass the return value as a task argument).

        Locally ``obj`` itself. On a cluster a future of a task that returns ``obj``: unlike
        scattered data, a task result lost with its worker is recomputed by the scheduler, so a
        dying worker never loses the shared input.
        """
        if self.is_local:
            return obj
        return self.client.submit(_identity, obj, pure=False, retries=self.retries)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], key: str = "task") -> list:
        """``[fn(*args) for args in zip(*iterables)]``, as Dask tasks unless local.

        Results come back in input order, one per input. Tasks that raise are retried
        ``retries`` times; tasks of a dead worker are rescheduled by Dask.

        Raises:
            BackendError: results did not arrive within ``timeout`` seconds.
            Exception: the last exception of a task that failed on every attempt.
        """
        args = list(zip(*iterables, strict=True))
        if self.is_local:
            return [fn(*a) for a in args]
        client = self.client
        if not args:
            return []
        cols = [list(c) for c in zip(*args, strict=True)]
        futures = client.map(fn, *cols, pure=False, retries=self.retries)
        try:
            if self.timeout is None:
                return client.gather(futures)
            return _gather_with_timeout(client, futures, self.timeout, key)
        finally:
            for f in futures:
                f.release()

    def close(self) -> None:
        """Close the client and the local cluster (if any); the engine can be started again."""
        with self._lock:
            client, cluster = self._client, self._cluster
            self._client = self._cluster = None
        if client is not None:
            try:
                client.close(timeout=10)
            except Exception:  # pragma: no cover - best effort at shutdown
                pass
        if cluster is not None:
            try:
                cluster.close(timeout=10)
            except Exception:  # pragma: no cover
                pass


def _identity(obj: Any) -> Any:
    return obj


def _gather_with_timeout(client: Any, futures: list, timeout: float, key: str) -> list:
    distributed = _import_distributed()
    try:
        distributed.wait(futures, timeout=timeout)
    except (TimeoutError, distributed.TimeoutError) as exc:
        done = sum(f.done() for f in futures)
        raise BackendError(
            f"{key}: only {done} of {len(futures)} tasks finished within timeout={timeout:g} s"
        ) from exc
    return client.gather(futures)


_ENGINES: dict[str, DaskEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(scheduler: str = "local", **options: Any) -> DaskEngine:
    """A shared :class:`DaskEngine` per scheduler string (created on first request).

    ``options`` (see :class:`DaskEngine`) apply only when the engine is created.
    All shared engines are closed at interpreter exit (or by :func:`shutdown_engines`).
    """
    scheduler = check_scheduler(scheduler)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(scheduler)
        if engine is None:
            engine = DaskEngine(scheduler, **options)
            _ENGINES[scheduler] = engine
    return engine


def shutdown_engines() -> None:
    """Close every engine made by :func:`get_engine`."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.close()


atexit.register(shutdown_engines)


# --------------------------------------------------------------------------- samplers on workers


@dataclass(frozen=True)
class SamplerSpec:
    """A registry backend by name and constructor options; built once per worker process.

    Sending a spec instead of a sampler object keeps tasks small and lets each worker keep
    its own caches (e.g. the QPU embedding cache) across tasks.

    Example:
        >>> SamplerSpec("neal", {"num_sweeps": 50}).build().backend_name
        'neal'
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[str, str]:
        return self.name, repr(sorted(self.options.items()))

    def build(self) -> dimod.Sampler:
        """The sampler, from this process's cache (``get_sampler(name, **options)``)."""
        k = self.key()
        sampler = _SAMPLER_CACHE.get(k)
        if sampler is None:
            sampler = get_sampler(self.name, **dict(self.options))
            _SAMPLER_CACHE[k] = sampler
        return sampler


_SAMPLER_CACHE: dict[tuple[str, str], dimod.Sampler] = {}

SamplerLike = dimod.Sampler | SamplerSpec | str


def _as_sampler(sampler: SamplerLike) -> dimod.Sampler:
    if isinstance(sampler, str):
        return SamplerSpec(sampler).build()
    if isinstance(sampler, SamplerSpec):
        return sampler.build()
    if isinstance(sampler, DistributedSampler):
        return _as_sampler(sampler.inner)
    if isinstance(sampler, dimod.Sampler) or hasattr(sampler, "sample"):
        return sampler
    raise TypeError(
        f"sampler must be a dimod.Sampler, a SamplerSpec or a backend name (got {type(sampler).__name__})"
    )


def chunk_plan(m: int, chunk_size: int) -> list[tuple[int, int]]:
    """Half-open problem ranges ``[(start, stop), ...]`` of ``chunk_size`` problems (last shorter).

    Raises:
        ConfigError: ``chunk_size`` is not a positive int.

    Example:
        >>> chunk_plan(5, 2)
        [(0, 2), (2, 4), (4, 5)]
    """
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise ConfigError(f"chunk_size must be a positive int (got {chunk_size!r})")
    starts = range(0, int(m), int(chunk_size))
    return [(s, min(s + int(chunk_size), int(m))) for s in starts]


def _solve_chunk(
    sampler: SamplerLike,
    batch: IsingBatch,
    start: int,
    stop: int,
    opts: Mapping[str, Any],
    seeds: Sequence[int | None] | None,
    chunk_seed: int | None,
) -> BatchResult:
    """Task body: solve problems ``start:stop`` of ``batch`` (runs on a worker)."""
    t0 = time.perf_counter()
    s = _as_sampler(sampler)
    sub = batch.subset(slice(start, stop))
    if hasattr(s, "sample_batch"):
        kw = dict(opts)
        if chunk_seed is not None:
            kw["seed"] = chunk_seed
        res = s.sample_batch(sub, **kw)
        samples = np.asarray(res.samples, dtype=np.int8)
        reported = np.asarray(res.energies, dtype=np.float64)
        info = dict(res.info)
    else:
        assert seeds is not None
        samples, reported, info = solve_each(s, sub, seeds, opts)
    energies = sub.energies(samples)
    info["reported_energy_max_abs_error"] = float(np.max(np.abs(reported - energies)))
    order = np.argsort(energies, axis=1, kind="stable")
    samples = np.take_along_axis(samples, order[:, :, None], axis=1)
    energies = np.take_along_axis(energies, order, axis=1)
    info["chunk_seconds"] = time.perf_counter() - t0
    return BatchResult(samples=samples, energies=energies, info=info)


def _merge_chunks(
    results: list[BatchResult], sizes: list[int]
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Concatenate chunk results in order; numeric info weighted by chunk size."""
    samples = _concat_padded([r.samples for r in results])
    energies = _concat_padded([r.energies for r in results])
    w = np.asarray(sizes, dtype=np.float64)
    info: dict[str, Any] = {}
    keys = {k for r in results for k in r.info}
    for k in sorted(keys, key=str):
        vals = [r.info.get(k) for r in results]
        if any(v is None for v in vals):
            continue
        if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals):
            if k == "reported_energy_max_abs_error":
                info[k] = float(max(vals))
            elif k == "chunk_seconds":
                info["worker_seconds"] = float(sum(vals))
            else:
                info[k] = float(np.average(np.asarray(vals, dtype=np.float64), weights=w))
        elif all(
            isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == n
            for v, n in zip(vals, sizes, strict=True)
        ):
            info[k] = np.concatenate(vals)
        elif all(isinstance(v, list) and len(v) == n for v, n in zip(vals, sizes, strict=True)):
            info[k] = [x for v in vals for x in v]
        else:
            info[k] = vals[0] if all(_same(v, vals[0]) for v in vals[1:]) else vals
    return samples, energies, info


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _concat_padded(parts: list[np.ndarray]) -> np.ndarray:
    r = max(p.shape[1] for p in parts)
    fixed = [
        p if p.shape[1] == r else np.concatenate([p, np.repeat(p[:, :1], r - p.shape[1], 1)], 1)
        for p in parts
    ]
    return np.concatenate(fixed, axis=0)


def solve_batches(
    sampler: SamplerLike,
    batches: Sequence[IsingBatch],
    *,
    seeds: Sequence[int | None] | None = None,
    scheduler: str = "local",
    engine: DaskEngine | None = None,
    chunk_size: int | None = None,
    **run_options: Any,
) -> list[BatchResult]:
    """Solve several batches (e.g. all layers of a step) as one pool of chunk tasks.

    All chunks of all batches are submitted before any result is awaited, so the workers stay
    busy across layers. Batch ``i`` is solved with seed ``seeds[i]`` with the semantics of the
    module docstring, so ``result[i]`` equals ``solve_batch(sampler, batches[i], seed=seeds[i])``
    for per-problem backends.

    Args:
        sampler: A dimod sampler (pickled to the workers), a :class:`SamplerSpec` or a backend
            name (built once per worker).
        batches: The batches.
        seeds: One seed per batch (``None``: unseeded).
        scheduler: Used when ``engine`` is not given: the shared engine of :func:`get_engine`.
        engine: An explicit engine.
        chunk_size: Problems per task (default :data:`DEFAULT_CHUNK_SIZE`).
        **run_options: ``sample`` keywords for every problem (``num_reads``, ...); not ``seed``.

    Returns:
        One :class:`BatchResult` per batch; ``info`` adds ``scheduler``, ``chunks``,
        ``chunk_size``, ``worker_seconds`` (summed task time) and ``wall_time``.

    Raises:
        ConfigError: unknown run option, ``seed`` in ``run_options``, bad ``chunk_size`` or
            seeds of the wrong length.
        BackendError: unreachable scheduler or a timeout.

    Shape:
        each result: ``samples`` ``(m_i, reads, n_i)`` int8, ``energies`` ``(m_i, reads)``.
    """
    t0 = time.perf_counter()
    if "seed" in run_options:
        raise ConfigError(f"pass seeds=[...] (one per batch), not seed={run_options['seed']!r}")
    batches = list(batches)
    for i, b in enumerate(batches):
        if not isinstance(b, IsingBatch):
            raise TypeError(f"batches[{i}] must be an IsingBatch (got {type(b).__name__})")
    if seeds is None:
        seeds = [None] * len(batches)
    seeds = list(seeds)
    if len(seeds) != len(batches):
        raise ConfigError(
            f"seeds must have one entry per batch ({len(batches)}) (got {len(seeds)})"
        )
    chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    local_sampler = _as_sampler(sampler)
    check_run_options(local_sampler, run_options)
    is_batch = hasattr(local_sampler, "sample_batch")
    name = str(getattr(local_sampler, "backend_name", None) or type(local_sampler).__name__)
    engine = engine if engine is not None else get_engine(scheduler)
    ship = sampler.inner if isinstance(sampler, DistributedSampler) else sampler

    shipped_sampler = (
        engine.share(ship)
        if not engine.is_local and not isinstance(ship, (str, SamplerSpec))
        else ship
    )
    tasks: list[tuple[Any, ...]] = []  # arguments of _solve_chunk, one tuple per chunk
    owners: list[int] = []  # batch index of each task
    plans = []
    for i, (b, seed) in enumerate(zip(batches, seeds, strict=True)):
        plan = chunk_plan(b.num_problems, chunk_size)
        plans.append(plan)
        pseeds = problem_seeds(seed, b.num_problems)
        cseeds = [seed] if len(plan) == 1 else problem_seeds(seed, len(plan))
        shipped = engine.share(b)
        for c, (start, stop) in enumerate(plan):
            per_problem = None if is_batch else pseeds[start:stop]
            per_chunk = cseeds[c] if is_batch else None
            opts = dict(run_options)
            tasks.append((shipped_sampler, shipped, start, stop, opts, per_problem, per_chunk))
            owners.append(i)
    results = engine.map(_solve_chunk, *zip(*tasks, strict=True), key=f"solve {name}")
    out = []
    for i, plan in enumerate(plans):
        mine = [r for r, o in zip(results, owners, strict=True) if o == i]
        samples, energies, info = _merge_chunks(mine, [stop - start for start, stop in plan])
        info.setdefault("backend", name)
        info.update(
            scheduler=engine.scheduler,
            chunks=len(plan),
            chunk_size=int(chunk_size),
            wall_time=time.perf_counter() - t0,
            num_reads=int(samples.shape[1]),
        )
        out.append(BatchResult(samples=samples, energies=energies, info=info))
    return out


def solve_batch_distributed(
    sampler: SamplerLike,
    batch: IsingBatch,
    *,
    scheduler: str = "local",
    engine: DaskEngine | None = None,
    chunk_size: int | None = None,
    **run_options: Any,
) -> BatchResult:
    """Like :func:`qsgd.samplers.registry.solve_batch`, with the problems solved in chunk tasks.

    ``run_options`` may hold ``seed`` (the batch seed). See :func:`solve_batches`.

    Example:
        >>> from qsgd.ising import IsingBatch
        >>> b = IsingBatch.from_arrays(np.array([[1.0, -1.0], [-1.0, 1.0]]), np.zeros((2, 2)))
        >>> solve_batch_distributed("exact", b, chunk_size=1).best.tolist()
        [[-1, 1], [1, -1]]
    """
    seed = run_options.pop("seed", None)
    return solve_batches(
        sampler,
        [batch],
        seeds=[seed],
        scheduler=scheduler,
        engine=engine,
        chunk_size=chunk_size,
        **run_options,
    )[0]


class DistributedSampler(dimod.Sampler):
    """A sampler whose :meth:`sample_batch` solves the batch in chunk tasks on a Dask engine.

    :func:`qsgd.samplers.registry.solve_batch` (and so the QP-SBGD optimizer) calls
    ``sample_batch``, so wrapping a backend is all it takes to distribute a training run;
    :meth:`qsgd.config.AnnealerConfig.make_sampler` does it when ``scheduler`` is not
    ``"local"``.

    Args:
        inner: The backend: a :class:`SamplerSpec` or name (built once per worker), or a sampler.
        scheduler: ``"processes"``, an address, or ``"local"`` (chunks in-process).
        engine: An explicit :class:`DaskEngine` (otherwise the shared one of ``scheduler``).
        chunk_size: Problems per task (default :data:`DEFAULT_CHUNK_SIZE`).

    Shape:
        ``sample_batch`` returns ``samples`` ``(m, reads, n)`` and ``energies`` ``(m, reads)``.
    """

    def __init__(
        self,
        inner: SamplerLike,
        *,
        scheduler: str = "processes",
        engine: DaskEngine | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self.inner = inner
        self._local = _as_sampler(inner)
        self.scheduler = check_scheduler(scheduler) if engine is None else engine.scheduler
        self.engine = engine
        if chunk_size is not None:
            chunk_plan(1, chunk_size)  # validates
        self.chunk_size = chunk_size
        self.backend_name = str(
            getattr(self._local, "backend_name", None) or type(self._local).__name__
        )

    @property
    def parameters(self) -> dict[str, list]:
        return dict(self._local.parameters)

    @property
    def properties(self) -> dict[str, Any]:
        return {
            "inner": self.backend_name,
            "scheduler": self.scheduler,
            "chunk_size": self.chunk_size or DEFAULT_CHUNK_SIZE,
        }

    def sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any) -> dimod.SampleSet:
        """One problem: solved in this process by the inner sampler."""
        return self._local.sample(bqm, **parameters)

    def sample_batch(self, batch: IsingBatch, **run_options: Any) -> BatchResult:
        """Solve ``batch`` in chunks on the engine (``seed`` seeds the whole batch)."""
        return solve_batch_distributed(
            self.inner,
            batch,
            scheduler=self.scheduler,
            engine=self.engine,
            chunk_size=self.chunk_size,
            **run_options,
        )
