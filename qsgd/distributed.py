"""Dask as the distributed engine: a layer's QUBO batch solved in chunks on workers.

Where the work runs (``scheduler`` in :class:`qsgd.config.AnnealerConfig`, or an argument):

* ``"local"`` (default): in this process, no Dask needed;
* ``"processes"``: a ``distributed.LocalCluster`` of worker processes on this machine
  (one thread each), started on first use and closed at exit;
* an address such as ``"tcp://10.0.0.5:8786"`` or ``"tls://..."``: an existing Dask scheduler;
* ``scheduler_file``: the JSON file a scheduler writes with ``dask scheduler --scheduler-file``
  (SLURM, dask-jobqueue, dask-mpi); its address is read when the engine connects;
* an existing ``distributed.Client`` (from Python: ``DaskEngine(client=client)``), left open.

How long each wait on the cluster may take (:class:`DaskConfig`, the ``[annealer.dask]`` and
``[kernel.dask]`` tables) — nothing waits without a bound:

* ``connect_timeout`` (10 s): reaching the scheduler, including its answer to the Dask handshake
  (a port that accepts connections but never answers fails after this long, naming the address);
* ``worker_timeout`` (60 s): how long the cluster may have no worker at all while tasks wait
  (a scheduler without workers fails after this long, instead of waiting forever);
* ``timeout`` (3600 s): all results of one batch of tasks (one layer's QUBOs, one Gram matrix).

Every such failure raises :class:`~qsgd.errors.BackendError` naming the address and the setting.

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
lost or counted twice.

Security: a ``tcp://`` scheduler runs whatever code a client sends it, so it belongs on a
private network. Elsewhere use ``tls://`` with ``tls_ca_file``, ``tls_cert`` and ``tls_key``
(PEM files, checked to exist), turned into a ``distributed.security.Security``.

dask and distributed are the optional extra ``distributed``, imported lazily.

Example:
    >>> from qsgd.samplers import get_sampler
    >>> with DaskEngine("processes", n_workers=2) as engine:          # doctest: +SKIP
    ...     res = solve_batch_distributed(get_sampler("neal"), batch, engine=engine, seed=0)
"""

from __future__ import annotations

import asyncio
import atexit
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dimod
import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

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
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORKER_TIMEOUT",
    "INSTALL_HINT",
    "DaskConfig",
    "DaskEngine",
    "DistributedSampler",
    "SamplerSpec",
    "check_scheduler",
    "check_target",
    "chunk_plan",
    "get_engine",
    "read_scheduler_file",
    "resolve_engine",
    "shutdown_engines",
    "solve_batch_distributed",
    "solve_batches",
]

DEFAULT_CHUNK_SIZE = 16
"""Problems per task when no ``chunk_size`` is given."""

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds to reach a scheduler (TCP connection and Dask handshake)."""

DEFAULT_WORKER_TIMEOUT = 60.0
"""Seconds tasks may wait while the cluster has no worker at all."""

DEFAULT_TIMEOUT = 3600.0
"""Seconds to wait for all results of one batch of tasks."""

INSTALL_HINT = "the Dask engine needs dask and distributed: pip install 'qsgd[distributed]'"

_ADDRESS = re.compile(r"^((tcp|tls|inproc|ucx|ws|wss)://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_POLL_SECONDS = 0.5
_USE_ENGINE = object()  # "the engine's own timeout" for map/gather


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


def check_target(scheduler: str, scheduler_file: str | None, client: Any = None) -> None:
    """Check that at most one of ``scheduler`` (other than ``"local"``), ``scheduler_file``
    and ``client`` says where the work runs.

    Raises:
        ConfigError: two of them are given.
    """
    given = [
        f"{name}={value!r}"
        for name, value in (
            ("scheduler", None if scheduler == "local" else scheduler),
            ("scheduler_file", scheduler_file),
            ("client", client),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise ConfigError(
            "give one of scheduler (other than 'local'), scheduler_file or client to say where "
            f"the work runs (got {', '.join(given)})"
        )


def _check_seconds(name: str, value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not 0 < value < float("inf")
    ):
        what = "a positive number of seconds" + (" or None" if optional else "")
        raise ConfigError(f"{name} must be {what} (got {value!r})")
    return float(value)


def _check_file(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(f"{name} must be the path of a PEM file (got {value!r})")
    path = Path(value).expanduser()
    if not path.is_file():
        why = "a folder" if path.is_dir() else "no such file"
        raise ConfigError(f"{name} must be an existing PEM file (got {str(value)!r}: {why})")
    return str(path)


class DaskConfig(BaseModel):
    """How to reach a Dask cluster and how long to wait for it: the ``dask`` table of a config.

    It sits under the table whose work it distributes: ``[annealer.dask]`` (bnn, QP-SBGD) and
    ``[kernel.dask]`` (qkernels). Where the work runs is the table's ``scheduler`` key; this
    table adds the rest. Unknown keys are rejected.

    Attributes:
        scheduler_file: A Dask scheduler file (JSON with the scheduler's ``address``, written by
            ``dask scheduler --scheduler-file``); used instead of a ``scheduler`` address.
        connect_timeout: Seconds to reach the scheduler and get its handshake (default 10).
        worker_timeout: Seconds tasks may wait while no worker is connected (default 60).
        timeout: Seconds to wait for all results of one batch of tasks: one layer's QUBOs, one
            Gram matrix (default 3600).
        retries: Times a task that raised is retried (default 2).
        chunk_size: Items per task: QUBO problems per task for the annealer (default 16), rows
            per Gram tile for kernels (default 128).
        n_workers: Worker processes of a ``scheduler = "processes"`` cluster (default 2).
        threads_per_worker: Threads per worker process of that cluster (default 1).
        tls_ca_file: CA certificate (PEM) of a ``tls://`` scheduler.
        tls_cert: This client's certificate (PEM; may also hold the key).
        tls_key: This client's private key (PEM), when not in ``tls_cert``.

    Example:
        >>> DaskConfig(timeout=600, chunk_size=32).engine_options()["timeout"]
        600.0
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    scheduler_file: str | None = None
    connect_timeout: float = Field(DEFAULT_CONNECT_TIMEOUT, gt=0)
    worker_timeout: float = Field(DEFAULT_WORKER_TIMEOUT, gt=0)
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)
    retries: int = Field(2, ge=0)
    chunk_size: int | None = Field(None, gt=0)
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @field_validator("tls_ca_file", "tls_cert", "tls_key")
    @classmethod
    def _existing_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_file(str(info.field_name), value)

    @model_validator(mode="after")
    def _tls_pair(self) -> DaskConfig:
        _check_tls(self.tls_ca_file, self.tls_cert, self.tls_key)
        return self

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`DaskEngine` (all fields but ``chunk_size``)."""
        return {k: getattr(self, k) for k in type(self).model_fields if k != "chunk_size"}

    @classmethod
    def coerce(cls, value: DaskConfig | Mapping[str, Any] | None) -> DaskConfig:
        """``value`` as a :class:`DaskConfig` (``None``: the defaults).

        Raises:
            ConfigError: a mapping with an unknown key or a bad value (named).
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"dask must be a DaskConfig or a mapping (got {type(value).__name__})"
            )
        try:
            return cls.model_validate(dict(value))
        except ValidationError as exc:
            parts = []
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"]) or "dask"
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = f"unknown key; known keys: {', '.join(cls.model_fields)}"
                if "(got" not in msg:
                    msg += f" (got {err.get('input')!r})"
                parts.append(f"dask.{loc}: {msg}" if err["loc"] else msg)
            raise ConfigError("; ".join(parts)) from None


def _check_tls(ca: Any, cert: Any, key: Any) -> tuple[str | None, str | None, str | None]:
    """Validate the TLS file settings: all exist; a CA and a certificate come together."""
    ca = _check_file("tls_ca_file", ca)
    cert = _check_file("tls_cert", cert)
    key = _check_file("tls_key", key)
    if (ca or cert or key) and not (ca and cert):
        missing = " and ".join(n for n, v in (("tls_ca_file", ca), ("tls_cert", cert)) if not v)
        raise ConfigError(
            f"a tls:// connection needs tls_ca_file and tls_cert (tls_key too unless the "
            f"certificate file holds the key); {missing} is missing (got tls_ca_file={ca!r}, "
            f"tls_cert={cert!r}, tls_key={key!r})"
        )
    return ca, cert, key


def read_scheduler_file(path: str | Path, wait: float = 0.0) -> str:
    """The scheduler address in a Dask scheduler file, waiting up to ``wait`` s for the file.

    Args:
        path: The JSON file (``dask scheduler --scheduler-file PATH`` writes it; its
            ``"address"`` is the scheduler address).
        wait: Seconds to wait for the file to appear (a scheduler job may still be starting).

    Raises:
        BackendError: the file did not appear within ``wait`` seconds, or holds no address.
    """
    p = Path(path).expanduser()
    deadline = time.monotonic() + wait
    while not p.is_file():
        if time.monotonic() >= deadline:
            raise BackendError(
                f"scheduler_file {str(path)!r} does not exist (waited {wait:g} s, the "
                "connect_timeout); start the scheduler with `dask scheduler --scheduler-file "
                f"{path}` or fix the path (got no file)"
            )
        time.sleep(0.1)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        address = data["address"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackendError(
            f"scheduler_file {str(path)!r} is not a Dask scheduler file: expected JSON with an "
            f"'address' key ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(address, str) or not _ADDRESS.match(address):
        raise BackendError(
            f"scheduler_file {str(path)!r}: 'address' must be a Dask scheduler address "
            f"(got {address!r})"
        )
    return address


def _handshake(address: str, connection_args: Mapping[str, Any], timeout: float) -> None:
    """Reach ``address`` and complete Dask's handshake, all within ``timeout`` seconds.

    ``distributed.Client`` bounds the TCP connection but not the handshake that follows, so a
    port that accepts connections and never answers would hold it for good. This check bounds
    both: first a TCP connection (retried until the deadline, as a scheduler may be starting),
    then Dask's connection and handshake in an event loop of its own, given the time left.

    Raises:
        BackendError: no TCP connection ("could not reach"), or no handshake ("did not
            answer") within ``timeout`` seconds.
    """
    import socket

    from distributed.comm import connect, parse_address, parse_host_port

    deadline = time.monotonic() + timeout
    scheme, loc = parse_address(address)
    if scheme in ("tcp", "tls"):
        host, port = parse_host_port(loc)
        while True:
            try:
                left = max(deadline - time.monotonic(), 0.05)
                socket.create_connection((host, port), timeout=left).close()
                break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise _unreachable(address, timeout, exc) from exc
                time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
    left = max(deadline - time.monotonic(), min(timeout, 1.0))

    async def probe() -> None:
        comm = await asyncio.wait_for(
            connect(address, timeout=left, **connection_args), timeout=left
        )
        await comm.close()

    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            asyncio.run(probe())
        except BaseException as exc:  # reported below
            box["error"] = exc

    thread = threading.Thread(target=run, name="qsgd-dask-handshake", daemon=True)
    thread.start()
    thread.join(left + 5.0)
    error = box.get("error")
    if thread.is_alive() or isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        raise BackendError(
            f"the Dask scheduler at {address!r} did not answer within connect_timeout="
            f"{timeout:g} s: it accepts connections but does not complete Dask's handshake "
            "(not a Dask scheduler, a tls:// scheduler reached without certificates, or an "
            "overloaded one); check the address, or raise connect_timeout"
        )
    if error is not None:
        raise _unreachable(address, timeout, error) from error


def _unreachable(address: str, timeout: float, exc: BaseException) -> BackendError:
    detail = " ".join(str(exc).split())[:300]
    return BackendError(
        f"could not reach the Dask scheduler at {address!r} within connect_timeout={timeout:g} s "
        f"({type(exc).__name__}: {detail}); start one with `dask scheduler` and workers with "
        f"`dask worker {address}`, or use scheduler='processes' for a local cluster"
    )


# --------------------------------------------------------------------------- engine


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
    client: Any = None,
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
        scheduler: Used when neither ``engine`` nor ``client`` is given: the shared engine of
            :func:`get_engine`.
        engine: An explicit engine.
        client: An existing ``distributed.Client`` to run on (left open).
        chunk_size: Problems per task (default :data:`DEFAULT_CHUNK_SIZE`).
        **run_options: ``sample`` keywords for every problem (``num_reads``, ...); not ``seed``.

    Returns:
        One :class:`BatchResult` per batch; ``info`` adds ``scheduler``, ``chunks``,
        ``chunk_size``, ``worker_seconds`` (summed task time) and ``wall_time``.

    Raises:
        ConfigError: unknown run option, ``seed`` in ``run_options``, bad ``chunk_size`` or
            seeds of the wrong length.
        BackendError: unreachable scheduler, no workers or a timeout (see :meth:`DaskEngine.gather`).

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
    engine = resolve_engine(scheduler, engine=engine, client=client)
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
    client: Any = None,
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
        client=client,
        chunk_size=chunk_size,
        **run_options,
    )[0]


class DistributedSampler(dimod.Sampler):
    """A sampler whose :meth:`sample_batch` solves the batch in chunk tasks on a Dask engine.

    :func:`qsgd.samplers.registry.solve_batch` (and so the QP-SBGD optimizer) calls
    ``sample_batch``, so wrapping a backend is all it takes to distribute a training run;
    :meth:`qsgd.config.AnnealerConfig.make_sampler` does it when ``scheduler`` is not
    ``"local"`` or ``dask.scheduler_file`` is set.

    Args:
        inner: The backend: a :class:`SamplerSpec` or name (built once per worker), or a sampler.
        scheduler: ``"processes"`` (the default unless ``scheduler_file`` or ``client`` is
            given), an address, or ``"local"`` (chunks in-process).
        engine: An explicit :class:`DaskEngine`.
        client: An existing ``distributed.Client`` to run on (left open).
        chunk_size: Problems per task (default :data:`DEFAULT_CHUNK_SIZE`).
        **engine_options: :class:`DaskEngine` keywords (``scheduler_file``, ``timeout``,
            ``connect_timeout``, ``worker_timeout``, ``tls_*``, ...), checked here; the engine
            itself is created (and the cluster contacted) on the first solve.

    Raises:
        ConfigError: a bad option, or two of scheduler / scheduler_file / client / engine.

    Shape:
        ``sample_batch`` returns ``samples`` ``(m, reads, n)`` and ``energies`` ``(m, reads)``.

    Example:
        >>> DistributedSampler("neal", scheduler="tcp://10.0.0.5:8786", timeout=600).properties
        {'inner': 'neal', 'scheduler': 'tcp://10.0.0.5:8786', 'chunk_size': 16}
    """

    def __init__(
        self,
        inner: SamplerLike,
        *,
        scheduler: str | None = None,
        engine: DaskEngine | None = None,
        client: Any = None,
        chunk_size: int | None = None,
        **engine_options: Any,
    ) -> None:
        self.inner = inner
        self._local = _as_sampler(inner)
        if engine is not None and (client is not None or engine_options):
            raise ConfigError(
                "give either engine or client/engine options to DistributedSampler "
                f"(got engine={engine!r} and {sorted(engine_options) or ['client']})"
            )
        if scheduler is None:
            elsewhere = client is not None or engine_options.get("scheduler_file") is not None
            scheduler = "local" if elsewhere else "processes"
        if engine is None:  # validates everything, connects nothing
            self.scheduler = DaskEngine(scheduler, client=client, **engine_options).scheduler
        else:
            self.scheduler = engine.scheduler
        self._scheduler = scheduler
        self.engine = engine
        self.client = client
        self.engine_options = dict(engine_options)
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

    def _engine(self) -> DaskEngine:
        if self.engine is None:
            if self.client is not None:
                self.engine = DaskEngine(client=self.client, **self.engine_options)
            else:
                self.engine = get_engine(self._scheduler, **self.engine_options)
        return self.engine

    def sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any) -> dimod.SampleSet:
        """One problem: solved in this process by the inner sampler."""
        return self._local.sample(bqm, **parameters)

    def sample_batch(self, batch: IsingBatch, **run_options: Any) -> BatchResult:
        """Solve ``batch`` in chunks on the engine (``seed`` seeds the whole batch)."""
        return solve_batch_distributed(
            self.inner,
            batch,
            engine=self._engine(),
            chunk_size=self.chunk_size,
            **run_options,
        )
