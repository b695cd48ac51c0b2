"""The Dask engine: where tasks run, how long each wait may take, and the shared engines.

See :mod:`qsgd.distributed` for the schedulers and the timeouts. Importing this module imports
neither dask nor dimod; dask is imported when an engine first needs a cluster.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qsgd.distributed.settings import (
    _ADDRESS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKER_TIMEOUT,
    DaskConfig,
    _check_seconds,
    _check_tls,
    _handshake,
    _import_distributed,
    _unreachable,
    check_scheduler,
    check_target,
    read_scheduler_file,
)
from qsgd.errors import BackendError, ConfigError

__all__ = ["DaskEngine", "get_engine", "resolve_engine", "shutdown_engines"]

_POLL_SECONDS = 0.5
_USE_ENGINE = object()  # "the engine's own timeout" for map/gather

class DaskEngine:
    """Where tasks run: in this process, on a local Dask cluster, or on an existing scheduler.

    The cluster or connection is opened lazily on the first :meth:`map` (or :attr:`client`)
    and closed by :meth:`close` (also on ``with`` exit). A ``client`` passed in is used as is
    and never closed by the engine.

    Args:
        scheduler: ``"local"``, ``"processes"`` or a scheduler address (see
            :func:`check_scheduler`).
        scheduler_file: A Dask scheduler file to read the address from (instead of an address).
        client: An existing ``distributed.Client`` to run on (instead of an address).
        n_workers: Worker processes of a ``"processes"`` cluster (default 2).
        threads_per_worker: Threads per worker process (default 1; the numeric libraries of
            each worker are limited to as many threads).
        connect_timeout: Seconds to reach the scheduler, handshake included (also the wait for
            a ``scheduler_file`` to appear, and for each "how many workers" query).
        worker_timeout: Seconds tasks may wait while the cluster has no worker at all.
        retries: Times a task that raised is retried on the cluster.
        timeout: Seconds to wait for all results of one :meth:`map` or :meth:`gather`
            (``None``: no limit; the connection and worker waits stay bounded).
        tls_ca_file, tls_cert, tls_key: PEM files for a ``tls://`` scheduler (checked to exist).

    Raises:
        ConfigError: a bad argument (named in the message).
    """

    def __init__(
        self,
        scheduler: str = "local",
        *,
        scheduler_file: str | Path | None = None,
        client: Any = None,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        worker_timeout: float = DEFAULT_WORKER_TIMEOUT,
        retries: int = 2,
        timeout: float | None = DEFAULT_TIMEOUT,
        tls_ca_file: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
    ) -> None:
        self.scheduler = check_scheduler(scheduler)
        check_target(
            self.scheduler, None if scheduler_file is None else str(scheduler_file), client
        )
        for name, value, low in (
            ("n_workers", n_workers, 1),
            ("threads_per_worker", threads_per_worker, 1),
            ("retries", retries, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"{name} must be an int >= {low} (got {value!r})")
        self.connect_timeout = _check_seconds("connect_timeout", connect_timeout)
        self.worker_timeout = _check_seconds("worker_timeout", worker_timeout)
        self.timeout = _check_seconds("timeout", timeout, optional=True)
        self.tls = _check_tls(tls_ca_file, tls_cert, tls_key)
        no_address = self.scheduler in ("local", "processes") and scheduler_file is None
        plain = bool(_ADDRESS.match(self.scheduler)) and not self.scheduler.startswith("tls://")
        if any(self.tls) and (no_address or plain):
            raise ConfigError(
                "tls_ca_file, tls_cert and tls_key are for a tls:// scheduler address or a "
                f"scheduler_file (got scheduler={self.scheduler!r})"
            )
        self.scheduler_file = None if scheduler_file is None else str(scheduler_file)
        if self.scheduler_file is not None:  # a label until the file is read on connecting
            self.scheduler = f"file:{self.scheduler_file}"
        if client is not None:
            distributed = _import_distributed()
            if not isinstance(client, distributed.Client):
                raise ConfigError(
                    f"client must be a distributed.Client (got {type(client).__name__})"
                )
            self.scheduler = str(client.scheduler.address)
        self.n_workers = int(n_workers)
        self.threads_per_worker = int(threads_per_worker)
        self.retries = int(retries)
        self._client: Any = client
        self._owns_client = client is None
        self._cluster: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DaskEngine({self.scheduler!r}, started={self._client is not None})"

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def is_local(self) -> bool:
        """True when tasks run in this process (``scheduler="local"``, no file, no client)."""
        return self.scheduler == "local"

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (started on first access); ``None`` for ``"local"``.

        Raises:
            BackendUnavailableError: dask/distributed are not installed.
            BackendError: no scheduler (or no handshake) within ``connect_timeout``, or a
                ``scheduler_file`` that did not appear or holds no address.
        """
        if self.is_local:
            return None
        with self._lock:
            if self._client is None:
                self._client = self._start()
        return self._client

    def _security(self, address: str) -> Any:
        if not any(self.tls):
            return None
        if not address.startswith("tls://"):
            raise ConfigError(
                "tls_ca_file, tls_cert and tls_key are for a tls:// scheduler (got the address "
                f"{address!r} from scheduler_file {self.scheduler_file!r})"
            )
        from distributed.security import Security

        ca, cert, key = self.tls
        return Security(
            tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True
        )

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
                client = distributed.Client(
                    cluster, timeout=self.connect_timeout, set_as_default=False
                )
            except BaseException:
                cluster.close()
                raise
            self._cluster = cluster
            return client
        if self.scheduler_file is not None:
            self.scheduler = read_scheduler_file(self.scheduler_file, wait=self.connect_timeout)
        address = self.scheduler
        security = self._security(address)
        args = security.get_connection_args("client") if security is not None else {}
        _handshake(address, args, self.connect_timeout)
        return self._connect(distributed, address, security)

    def _connect(self, distributed: Any, address: str, security: Any) -> Any:
        """``distributed.Client(address)``, given up after ``2 * connect_timeout + 5`` s."""
        box: dict[str, Any] = {}
        abandoned = threading.Event()

        def make() -> None:
            try:
                client = distributed.Client(
                    address,
                    timeout=self.connect_timeout,
                    security=security,
                    set_as_default=False,
                )
            except BaseException as exc:  # reported below
                box["error"] = exc
                return
            if abandoned.is_set():  # pragma: no cover - the caller gave up meanwhile
                client.close()
            box["client"] = client

        thread = threading.Thread(target=make, name="qsgd-dask-connect", daemon=True)
        thread.start()
        thread.join(2 * self.connect_timeout + 5.0)
        if thread.is_alive():  # pragma: no cover - the handshake check passed just before
            abandoned.set()
            raise BackendError(
                f"the Dask scheduler at {address!r} answered the handshake but no client "
                f"connection within connect_timeout={self.connect_timeout:g} s"
            )
        if "error" in box:
            raise _unreachable(address, self.connect_timeout, box["error"]) from box["error"]
        return box["client"]

    def worker_count(self) -> int:
        """Workers currently connected (1 for ``"local"``).

        Raises:
            BackendError: the scheduler did not answer within ``connect_timeout``.
        """
        if self.is_local:
            return 1
        client = self.client
        try:
            return len(client.nthreads(callback_timeout=self.connect_timeout))
        except (OSError, TimeoutError, asyncio.TimeoutError) as exc:
            raise BackendError(
                f"the Dask scheduler at {self.scheduler!r} did not answer within "
                f"connect_timeout={self.connect_timeout:g} s ({type(exc).__name__}: {exc})"
            ) from exc

    def share(self, obj: Any) -> Any:
        """Make ``obj`` available to tasks (pass the return value as a task argument).

        Locally ``obj`` itself. On a cluster a future of a task that returns ``obj``: unlike
        scattered data, a task result lost with its worker is recomputed by the scheduler, so a
        dying worker never loses the shared input.
        """
        if self.is_local:
            return obj
        return self.client.submit(_identity, obj, pure=False, retries=self.retries)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """One task ``fn(*args)`` on the cluster (a future), or its result when local."""
        if self.is_local:
            return fn(*args)
        return self.client.submit(fn, *args, pure=False, retries=self.retries)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        key: str = "task",
        timeout: Any = _USE_ENGINE,
    ) -> list:
        """``[fn(*args) for args in zip(*iterables)]``, as Dask tasks unless local.

        Results come back in input order, one per input. Tasks that raise are retried
        ``retries`` times; tasks of a dead worker are rescheduled by Dask.

        Args:
            fn: The task body (picklable).
            *iterables: One iterable per argument of ``fn``.
            key: A name for the tasks, used in error messages.
            timeout: Seconds for all results (default: the engine's ``timeout``; ``None``: no
                limit, the connection and worker waits stay bounded).

        Raises:
            BackendError: see :meth:`gather`.
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
            return self.gather(futures, key=key, timeout=timeout)
        finally:
            for f in futures:
                f.release()

    def gather(
        self, futures: Sequence[Any], *, key: str = "task", timeout: Any = _USE_ENGINE
    ) -> list:
        """The results of ``futures``, in order, waiting a bounded time.

        Waits until every future is finished, checking every half second that the scheduler
        answers (``connect_timeout``) and that some worker is connected (``worker_timeout``).

        Raises:
            BackendError: results did not arrive within ``timeout``; no worker was connected for
                ``worker_timeout`` seconds; the scheduler stopped answering or the connection to
                it was lost; or a task's workers died more often than the scheduler allows
                (``distributed.scheduler.allowed-failures``).
            Exception: the last exception of a task that failed on every attempt.
        """
        distributed = _import_distributed()
        futures = list(futures)
        if not futures:
            return []
        limit = (
            self.timeout
            if timeout is _USE_ENGINE
            else _check_seconds("timeout", timeout, optional=True)
        )
        finished = threading.Event()
        pending = [len(futures)]
        count_lock = threading.Lock()

        def one_done(_: Any) -> None:  # runs when a future finishes, errs or is cancelled
            with count_lock:
                pending[0] -= 1
                if pending[0] <= 0:
                    finished.set()

        for f in futures:
            f.add_done_callback(one_done)
        start = time.monotonic()
        no_workers_since: float | None = None
        while True:
            left = None if limit is None else limit - (time.monotonic() - start)
            step = _POLL_SECONDS if left is None else max(min(_POLL_SECONDS, left), 0.01)
            if finished.wait(step) or all(f.done() for f in futures):
                break
            now = time.monotonic()
            done = sum(f.done() for f in futures)
            if limit is not None and now - start >= limit:
                raise BackendError(
                    f"{key}: only {done} of {len(futures)} tasks finished within timeout="
                    f"{limit:g} s on the Dask scheduler at {self.scheduler!r}; raise timeout "
                    "or add workers"
                )
            if self.worker_count() == 0:
                no_workers_since = now if no_workers_since is None else no_workers_since
                if now - no_workers_since >= self.worker_timeout:
                    raise BackendError(
                        f"{key}: no Dask worker connected to the scheduler at {self.scheduler!r} "
                        f"for worker_timeout={self.worker_timeout:g} s ({done} of "
                        f"{len(futures)} tasks finished); start workers with `dask worker "
                        f"{self.scheduler}`, or raise worker_timeout"
                    )
            else:
                no_workers_since = None
        lost = [f for f in futures if f.cancelled()]
        if lost:
            raise BackendError(
                f"{key}: {len(lost)} of {len(futures)} tasks were cancelled: the connection to "
                f"the Dask scheduler at {self.scheduler!r} was lost or another client cancelled "
                "them"
            )
        try:
            return self.client.gather(futures)
        except distributed.KilledWorker as exc:
            raise BackendError(
                f"{key}: {exc} (the scheduler gives up on a task after "
                "distributed.scheduler.allowed-failures worker deaths)"
            ) from exc

    def close(self) -> None:
        """Close the client and the local cluster it started (never a client passed in).

        The engine can be started again (except one made with ``client=``, which stays bound
        to that client).
        """
        with self._lock:
            client, cluster = self._client, self._cluster
            if self._owns_client:
                self._client = None
            self._cluster = None
        if client is not None and self._owns_client:
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


_ENGINES: dict[tuple[str, str], DaskEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(scheduler: str = "local", **options: Any) -> DaskEngine:
    """A shared :class:`DaskEngine` per scheduler and options (created on first request).

    ``options`` are :class:`DaskEngine` keywords (not ``client``); engines with different
    options are different engines. All shared engines are closed at interpreter exit (or by
    :func:`shutdown_engines`).
    """
    scheduler = check_scheduler(scheduler)
    if "client" in options:
        raise ConfigError("get_engine shares engines; pass client= to DaskEngine instead")
    key = (scheduler, repr(sorted(options.items())))
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = DaskEngine(scheduler, **options)
            _ENGINES[key] = engine
    return engine


def resolve_engine(
    scheduler: str = "local",
    *,
    engine: DaskEngine | None = None,
    client: Any = None,
    dask: DaskConfig | Mapping[str, Any] | None = None,
) -> DaskEngine:
    """The engine a call should use: ``engine`` if given, else one on ``client``, else the shared
    engine of ``scheduler`` with the options of ``dask`` (a :class:`DaskConfig` or mapping).

    Raises:
        ConfigError: bad options, or two of scheduler / scheduler_file / client given.
    """
    if engine is not None:
        return engine
    options = DaskConfig.coerce(dask).engine_options()
    if client is not None:
        check_target(scheduler, options.pop("scheduler_file"), client)
        return DaskEngine(client=client, **options)
    return get_engine(scheduler, **options)


def shutdown_engines() -> None:
    """Close every engine made by :func:`get_engine`."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.close()


atexit.register(shutdown_engines)
