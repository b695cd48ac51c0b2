"""Settings of the Dask engine: scheduler forms, the ``[*.dask]`` table, TLS files, timeouts.

Pure validation, importable without dask or dimod (the configs of qsgd, bnn and qkernels use it).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORKER_TIMEOUT",
    "INSTALL_HINT",
    "DaskConfig",
    "check_scheduler",
    "check_target",
    "chunk_plan",
    "read_scheduler_file",
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
            from qsgd.configio import format_validation_error

            raise ConfigError(format_validation_error(exc, cls, prefix="dask")) from None


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


def chunk_plan(m: int, chunk_size: int, *, name: str = "chunk_size") -> list[tuple[int, int]]:
    """Half-open ranges ``[(start, stop), ...]`` of ``chunk_size`` items of ``m`` (last shorter).

    The one range helper of the Dask engine: annealer problems per task, Gram rows per tile
    (:func:`qkernels.distributed.tile_ranges`).

    Args:
        m: Number of items.
        chunk_size: Items per range.
        name: What the caller calls ``chunk_size``, for the message.

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
        raise ConfigError(f"{name} must be a positive int (got {chunk_size!r})")
    starts = range(0, int(m), int(chunk_size))
    return [(s, min(s + int(chunk_size), int(m))) for s in starts]
