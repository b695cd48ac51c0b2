"""``"dwave-hybrid"``: Leap's hybrid BQM solver through dwave-system's ``LeapHybridSampler``.

For layers too large or too dense to embed well on a QPU (a dense 128-spin problem needs
13-qubit chains on Pegasus and breaks about 18 % of them), Leap's hybrid solver takes the
whole problem as it is: no embedding, no chains, no block decomposition. Each problem of a
batch is one hybrid call; all calls of a batch are **submitted first and resolved afterwards**,
so their run times overlap in the service instead of adding up.

Cost: every hybrid call runs for at least the solver's minimum ``time_limit`` (the
``minimum_time_limit`` property, a few seconds even for a 10-variable problem), and Leap
charges that run time. One call per neuron and step is therefore expensive: see docs/qpu.md.

Credentials, timeouts and failures follow the ``"dwave"`` backend (:mod:`qsgd.samplers.dwave`):
the token comes only from dwave-cloud-client's own configuration chain (config file or
``DWAVE_API_TOKEN``; a ``token`` in ``client_config`` is refused); every request waits at most
``connect_timeout`` to connect and ``timeout`` for an answer, and each problem's result is
polled for at most ``timeout`` seconds; failures are told apart by exception type and raised as
typed :class:`~qsgd.errors.QPUServiceError` subclasses (:func:`classify_qpu_failure`). There is
no fallback: a hybrid run that cannot reach Leap stops with the error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dimod
import numpy as np

from qsgd.errors import BackendError, ConfigError, CredentialsError, QPUUnreachableError
from qsgd.ising import IsingBatch, to_bqm
from qsgd.samplers.base import BatchResult, Sampler, check_options
from qsgd.samplers.dwave import (
    _CREDENTIALS_HINT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    _check_positive,
    _client_config,
    _import_dwave,
    classify_qpu_failure,
)
from qsgd.samplers.qpu_failures import describe_failure, service_error

__all__ = ["LeapHybridBackend", "HYBRID_TIMING_KEYS"]

#: ``SampleSet.info`` timing keys of a hybrid answer (SAPI reports microseconds), summed over
#: the problems of a batch and reported in seconds.
HYBRID_TIMING_KEYS = ("run_time", "charge_time", "qpu_access_time")

_LABEL = "dwave-hybrid"


def _service_error(kind: str, exc: BaseException, hint: str) -> Exception:
    """The typed error of a service failure (``"dwave"``'s, without its fallback advice)."""
    if kind == "connection":
        return QPUUnreachableError(
            f"backend {_LABEL!r}: Leap unreachable (connection failure{hint}) "
            f"(got {describe_failure(exc)})"
        )
    return service_error(_LABEL, kind, exc, hint)


def _seconds(info: Any, key: str) -> float:
    """``info[key]`` (microseconds) in seconds; 0.0 when absent or not a number."""
    value = info.get(key) if isinstance(info, dict) else None
    try:
        return max(float(value), 0.0) * 1e-6
    except (TypeError, ValueError):
        return 0.0


def _spins_in_order(ss: dimod.SampleSet, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples as ±1 int8 in variable order ``0..n-1`` (``(reads, n)``) and their energies.

    Raises:
        BackendError: the answer is not over exactly the variables ``0..n-1``.
    """
    labels = list(ss.variables)
    if sorted(labels, key=str) != sorted(range(n), key=str) or len(labels) != n:
        raise BackendError(
            f"backend {_LABEL!r} returned samples over variables {labels[:5]}..., "
            f"expected exactly 0..{n - 1}"
        )
    idx = np.empty(n, dtype=np.intp)
    idx[np.asarray(labels, dtype=np.intp)] = np.arange(n)
    arr = np.asarray(ss.record.sample)[:, idx]
    if ss.vartype is dimod.BINARY:
        arr = 2 * arr - 1
    counts = np.asarray(ss.record.num_occurrences)
    energies = np.asarray(ss.record.energy, dtype=np.float64)
    if np.any(counts != 1):
        arr = np.repeat(arr, counts, axis=0)
        energies = np.repeat(energies, counts)
    return arr.astype(np.int8), energies


class LeapHybridBackend(Sampler):
    """``"dwave-hybrid"``: each problem is one call to Leap's hybrid BQM solver.

    Args:
        solver: Solver name or feature filter (``None``: dwave-system's default, the latest
            hybrid BQM solver).
        client_config: Further cloud-client options (``region``, ``endpoint``, ``proxy``,
            ``http_retry_total``, ...). ``token``, ``request_timeout`` and ``polling_timeout``
            are refused, as for ``"dwave"``.
        timeout: Seconds to wait for an answer: read timeout of each request and polling
            timeout of each problem (default :data:`~qsgd.samplers.dwave.DEFAULT_TIMEOUT`).
            Must exceed any ``time_limit`` used.
        connect_timeout: Seconds to wait for a connection (default
            :data:`~qsgd.samplers.dwave.DEFAULT_CONNECT_TIMEOUT`).
        connect: Factory of the dwave-system sampler (default ``LeapHybridSampler``; tests
            pass a stand-in). Called with the cloud-client keywords.

    Run settings (keywords of ``sample``/``sample_batch``, listed in ``parameters``):
    ``time_limit`` (seconds per problem; ``None``: the solver's minimum for the problem's size).

    Raises:
        BackendUnavailableError: dwave-system is not installed.
        CredentialsError: no API token configured; says how to configure one.
        QPUAuthenticationError: the token was rejected.
        UnknownSolverError: no hybrid solver matches ``solver``.
        QPUUnreachableError: the service cannot be reached within the timeouts.
        ConfigError: a bad timeout or a refused ``client_config`` key.

    Attributes:
        calls: Hybrid calls made so far (one per problem).
        totals: ``run_time``, ``charge_time`` and ``qpu_access_time`` (seconds) summed so far.

    Example:
        >>> sampler = get_sampler("dwave-hybrid", timeout=120)  # doctest: +SKIP
        >>> solve_batch(sampler, batch, time_limit=5).info["run_time"]  # doctest: +SKIP
    """

    backend_name = _LABEL
    #: Run settings, read by :func:`qsgd.config.backend_options` without constructing.
    _run_keys: tuple[str, ...] = ("time_limit",)

    def __init__(
        self,
        solver: str | dict | None = None,
        client_config: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        connect: Callable[..., Any] | None = None,
    ) -> None:
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        connect_timeout = DEFAULT_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
        _check_positive("timeout", timeout)
        _check_positive("connect_timeout", connect_timeout)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        config = _client_config(client_config, solver, self.timeout, self.connect_timeout)
        if connect is None:
            dsys, _ = _import_dwave()
            connect = dsys.LeapHybridSampler
        try:
            self.child = connect(**config)
        except Exception as exc:
            found = classify_qpu_failure(exc)
            if found is None:
                if isinstance(exc, ValueError) and "token" in str(exc).lower():
                    raise CredentialsError(_CREDENTIALS_HINT) from exc
                if isinstance(exc, ValueError) and "hybrid" in str(exc).lower():
                    raise ConfigError(
                        f"solver must name a hybrid BQM solver (got {solver!r}): {exc}"
                    ) from exc
                raise
            kind = found[0]
            hint = (
                self._connection_hint()
                if kind == "connection"
                else (f" {solver!r}" if solver is not None else "")
            )
            raise _service_error(kind, exc, hint) from exc
        self.solver_id = str(getattr(getattr(self.child, "solver", None), "name", _LABEL))
        self.calls = 0
        self.totals = {k: 0.0 for k in HYBRID_TIMING_KEYS}

    def _connection_hint(self) -> str:
        return (
            f" within timeout={self.timeout:g}s, connect_timeout={self.connect_timeout:g}s; "
            "raise annealer.timeout for a slow link"
        )

    @property
    def parameters(self) -> dict[str, list]:
        return {k: [] for k in self._run_keys}

    @property
    def properties(self) -> dict[str, Any]:
        """``solver_id`` and the solver's ``minimum_time_limit`` curve (when it reports one)."""
        props: dict[str, Any] = {"solver_id": self.solver_id}
        try:
            curve = self.child.properties.get("minimum_time_limit")
        except Exception:  # a solver whose properties cannot be read declares nothing
            curve = None
        if curve is not None:
            props["minimum_time_limit"] = curve
        return props

    # ------------------------------------------------------------------ solving

    def _time_limit(self, bqm: dimod.BinaryQuadraticModel, time_limit: Any) -> float:
        """``time_limit`` checked against the solver's minimum and ``timeout``."""
        minimum = float(self.child.min_time_limit(bqm))
        if time_limit is None:
            time_limit = minimum
        else:
            _check_positive("time_limit", time_limit)
            if time_limit < minimum:
                raise ConfigError(
                    f"time_limit must be at least {minimum:g} s for a problem of "
                    f"{bqm.num_variables} variables on solver {self.solver_id!r} "
                    f"(got {time_limit!r})"
                )
        if time_limit >= self.timeout:
            raise ConfigError(
                f"timeout must exceed the hybrid time_limit of {float(time_limit):g} s, or the "
                f"answer is given up before the solver finishes (got timeout={self.timeout:g})"
            )
        return float(time_limit)

    def _fail(self, exc: BaseException) -> Exception:
        found = classify_qpu_failure(exc)
        if found is None:
            return exc  # a local error: raised as it is
        kind = found[0]
        hint = self._connection_hint() if kind == "connection" else ""
        return _service_error(kind, exc, hint)

    def _submit(self, bqm: dimod.BinaryQuadraticModel, time_limit: Any) -> dimod.SampleSet:
        """Upload ``bqm`` and submit it; returns the (unresolved) sample set."""
        limit = self._time_limit(bqm, time_limit)
        try:
            return self.child.sample(bqm, time_limit=limit)
        except Exception as exc:
            err = self._fail(exc)
            if err is exc:
                raise
            raise err from exc

    def _resolve(self, ss: dimod.SampleSet) -> dimod.SampleSet:
        try:
            ss.resolve()
        except Exception as exc:
            err = self._fail(exc)
            if err is exc:
                raise
            raise err from exc
        return ss

    def _account(self, infos: list[dict[str, Any]]) -> dict[str, Any]:
        """Call count and timing sums (seconds) of resolved answers; updates the totals."""
        out: dict[str, Any] = {
            "solved_by": _LABEL,
            "hybrid_calls": len(infos),
            "qpu_calls": len(infos),  # billed service calls: counted by the run's QPU cap
            "solver_id": self.solver_id,
        }
        for key in HYBRID_TIMING_KEYS:
            total = float(sum(_seconds(i, key) for i in infos))
            out[key] = total
            self.totals[key] += total
        self.calls += len(infos)
        ids = [i.get("problem_id") for i in infos if isinstance(i, dict) and i.get("problem_id")]
        if ids:
            out["problem_ids"] = ids
        return out

    def sample(
        self, bqm: dimod.BinaryQuadraticModel, time_limit: float | None = None, **kwargs: Any
    ) -> dimod.SampleSet:
        """Solve one BQM with one hybrid call (submitted and resolved here).

        Returns:
            The solver's sample set (in the BQM's vartype); ``info`` holds ``solved_by``,
            ``hybrid_calls`` (1), ``qpu_calls`` (1), ``run_time``, ``charge_time`` and
            ``qpu_access_time`` in seconds, and ``problem_ids``.

        Raises:
            ConfigError: unknown run option, or a bad ``time_limit``.
            QPUServiceError: a typed service failure (authentication, unknown solver,
                connection, solver failure).
        """
        check_options(kwargs, self.parameters, backend=_LABEL, kind="run option")
        if bqm.num_variables == 0:
            empty = dimod.SampleSet.from_samples_bqm((np.empty((1, 0), dtype=np.int8), []), bqm)
            empty.info.update(self._account([]))
            return empty
        ss = self._resolve(self._submit(bqm, time_limit))
        info = self._account([dict(ss.info)])
        return dimod.SampleSet(ss.record, ss.variables, info, ss.vartype)

    def sample_batch(
        self, batch: IsingBatch, *, time_limit: float | None = None, **kwargs: Any
    ) -> BatchResult:
        """Solve every problem of ``batch``, one hybrid call each: all are submitted, then all
        are resolved, so the calls run concurrently in the service.

        Returns:
            Samples in variable order and the solver's energies; ``info`` has ``solved_by``,
            ``solved_by_counts``, ``hybrid_calls`` and ``qpu_calls`` (``m``), the summed
            ``run_time``, ``charge_time`` and ``qpu_access_time`` (seconds) and ``time_limit``.

        Shape:
            ``samples`` ``(m, reads, n)`` int8, ``energies`` ``(m, reads)``.
        """
        check_options(kwargs, self.parameters, backend=_LABEL, kind="run option")
        m, n = batch.num_problems, batch.num_variables
        if n == 0:
            z = np.zeros((m, 1, 0), dtype=np.int8)
            info = self._account([])
            info["solved_by_counts"] = {_LABEL: m}
            return BatchResult(samples=z, energies=batch.offset[:, None].copy(), info=info)
        bqms = [to_bqm(batch, k) for k in range(m)]
        limits = [self._time_limit(b, time_limit) for b in bqms]  # all checked before any call
        pending = [self._submit(b, t) for b, t in zip(bqms, limits, strict=True)]
        resolved = [self._resolve(ss) for ss in pending]
        rows = [_spins_in_order(ss, n) for ss in resolved]
        reads = max(len(s) for s, _ in rows)
        samples = np.stack([np.resize(s, (reads, n)) for s, _ in rows])
        energies = np.stack([np.resize(e, reads) for _, e in rows])
        info = self._account([dict(ss.info) for ss in resolved])
        info["solved_by_counts"] = {_LABEL: m}
        info["time_limit"] = float(np.mean(limits))
        return BatchResult(samples=samples, energies=energies, info=info)
