"""The validated ``[annealer]`` configuration: which backend, and how to run it.

Example (TOML)::

    [annealer]
    backend = "neal"          # any name from qsgd.samplers.available_backends()
    num_reads = 20
    num_sweeps = 100
    seed = 0
    options = { beta_schedule_type = "linear" }   # backend-specific, checked against the backend
    scheduler = "local"       # or "processes" (local Dask cluster) or "tcp://host:8786"
    # QPU backends only: pack = true (several problems per call), max_qpu_seconds, max_qpu_calls

Generic knobs (``num_reads``, ``num_sweeps``, ``seed``, ``beta_range``, ``chain_strength``,
``annealing_time``, ``fallback``, ``timeout``, ``connect_timeout``) are applied where the chosen
backend has them and ignored where it has none (``num_sweeps`` means nothing to ``"tabu"``), so
switching backends is a one-line change. Keys in ``options`` are strict: each must be a
constructor option or a run option of the backend, otherwise loading fails with the key named.
``max_block_vars`` is not a sampler setting: the optimizer uses it to split large problems into
blocks (unset, a backend with ``properties["max_num_variables"]`` sets it). ``scheduler`` says
where a layer's batch is solved (see :mod:`qsgd.distributed`): ``"local"`` in-process (default),
``"processes"`` on a local Dask cluster, or the address of an existing Dask scheduler.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dimod
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from qsgd.configio import FileWording, format_validation_error, parse_config_text, read_config_file
from qsgd.distributed.settings import DaskConfig
from qsgd.errors import ConfigError
from qsgd.samplers.base import check_options

__all__ = ["AnnealerConfig", "backend_options"]

_PACKABLE = {"dwave": "dwave-packed", "mock-dwave": "mock-dwave-packed"}
_RUN_FIELDS = ("num_reads", "num_sweeps", "seed", "beta_range", "chain_strength", "annealing_time")
_INIT_FIELDS = ("fallback", "timeout", "connect_timeout")
_FILE_WORDING = FileWording(
    missing="cannot read annealer config file {path}: no such file",
    not_a_file="cannot read annealer config file {path}: not a file",
    unreadable="cannot read annealer config file {path}: {detail}",
    invalid="invalid {fmt} in annealer config: {detail}",
)


def backend_options(name: str) -> tuple[set[str], set[str]]:
    """``(constructor_options, run_options)`` that backend ``name`` accepts.

    Constructor options are the factory's keyword parameters (structure: ``max_variables``,
    solver, timeouts, fallback, ...); run options are the sampler's dimod ``parameters``
    (:func:`qsgd.samplers.registry.run_option_names`: nothing is connected to read them).

    Raises:
        UnknownBackendError: unknown ``name``.
        BackendUnavailableError: its optional dependency is missing.
    """
    from qsgd.samplers.registry import backend_spec, run_option_names

    factory = backend_spec(name).resolve()
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins
        params = ()
    init = {
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self",)
    }
    return init, run_option_names(factory)


def split_options(backend: str, options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(constructor options, run options)`` of ``options`` for ``backend``: the one option check.

    Every path from a backend name and its options to a sampler (a TOML ``[annealer]`` table,
    ``QPSBGD(backend=..., backend_options=...)``) goes through here. A key that is both (a
    packed backend's ``problems_per_call``) is a run option.

    Raises:
        ConfigError: a key the backend accepts neither way (names it and the accepted ones).

    Example:
        >>> split_options("exact", {"max_variables": 10, "num_reads": 2})
        ({'max_variables': 10}, {'num_reads': 2})
    """
    init, run = backend_options(backend)
    check_options(options, init | run, backend=backend)
    return (
        {k: v for k, v in options.items() if k in init and k not in run},
        {k: v for k, v in options.items() if k in run},
    )


def packed_name(backend: str, pack: Any, *, key: str = "pack", true: str = "true") -> str:
    """The registry name that solves ``backend`` with packing on or off.

    Args:
        backend: A registry name.
        pack: Whether to pack several problems per QPU call.
        key, true: How the caller spells the switch and its value, for the message
            (``pack``/``true`` in TOML, ``backend_options['pack']``/``True`` in Python).

    Raises:
        ConfigError: ``pack`` is not a bool, or ``pack`` with a backend that has no packed twin.
    """
    if not isinstance(pack, bool):
        raise ConfigError(f"{key} must be a bool (got {pack!r})")
    if not pack or backend in _PACKABLE.values():
        return backend
    if backend not in _PACKABLE:
        raise ConfigError(
            f"{key} = {true} needs backend 'dwave' or 'mock-dwave' (several problems per QPU "
            f"call) (got backend={backend!r})"
        )
    return _PACKABLE[backend]


class AnnealerConfig(BaseModel):
    """Which annealer backend solves the QUBOs, and its settings. Unknown keys are rejected.

    Attributes:
        backend: Registry name (default ``"neal"``).
        num_reads: Reads (samples) per problem.
        num_sweeps: Sweeps per read for annealers (``None``: the backend's default).
        seed: Seed of the whole run (``None``: not reproducible).
        beta_range: ``(hot, cold)`` inverse temperatures for simulated annealers
            (``None``: computed from each problem).
        max_block_vars: Split problems larger than this into blocks (used by the optimizer).
        fallback: Backend that solves the problems when a QPU cannot be reached (connection
            failures only: timeouts, refused/reset connections, DNS failures); an invalid
            token, an unknown solver or a solver failure is an error even with a fallback.
        timeout: Seconds the ``"dwave"`` backend waits for an answer: per request and for each
            problem's result (``None``: 60). Running out of time is a connection failure.
        connect_timeout: Seconds the ``"dwave"`` backend waits to connect (``None``: 10).
        chain_strength: Absolute chain strength for QPU backends (``None``: torque compensation).
        annealing_time: QPU annealing time in microseconds.
        options: Backend-specific constructor or run options, validated against the backend.
        scheduler: ``"local"`` (in-process), ``"processes"`` (a local Dask cluster) or a Dask
            scheduler address such as ``"tcp://host:8786"``; see :mod:`qsgd.distributed`.
        pack: Put several problems into each QPU call and submit all calls of a batch before
            resolving them (:class:`qsgd.samplers.packing.PackedQPUSampler`): ``backend =
            "mock-dwave"`` with ``pack = true`` solves on ``"mock-dwave-packed"``, ``"dwave"`` on
            ``"dwave-packed"``. Only for those two backends.
        max_qpu_seconds: Cap on the QPU access time of a whole run, in seconds (summed from the
            solver's ``timing``; the mock reports an estimate). When a step brings the total to
            the cap, the run checkpoints and stops (``bnn train`` exits with code 3); resume
            with a higher cap or another backend. ``None``: no cap.
        max_qpu_calls: Cap on the QPU calls of a whole run (same behaviour). ``None``: no cap.
        dask: The ``[annealer.dask]`` table (:class:`qsgd.distributed.DaskConfig`): Dask
            ``scheduler_file``, ``timeout``, ``connect_timeout``, ``worker_timeout``,
            ``chunk_size``, TLS files. Distinct from ``timeout``/``connect_timeout`` above,
            which are the QPU's.

    Example:
        >>> cfg = AnnealerConfig(backend="exact", num_reads=1)
        >>> cfg.run_options()
        {'num_reads': 1}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = "neal"
    num_reads: int = Field(10, gt=0)
    num_sweeps: int | None = Field(None, gt=0)
    seed: int | None = Field(None, ge=0, lt=2**63)
    beta_range: tuple[float, float] | None = None
    max_block_vars: int | None = Field(None, gt=1)
    fallback: str | None = None
    timeout: float | None = Field(None, gt=0)
    connect_timeout: float | None = Field(None, gt=0)
    chain_strength: float | None = Field(None, gt=0)
    annealing_time: float | None = Field(None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    scheduler: str = "local"
    pack: bool = False
    max_qpu_seconds: float | None = Field(None, gt=0)
    max_qpu_calls: int | None = Field(None, gt=0)
    dask: DaskConfig = Field(default_factory=DaskConfig)

    _split: tuple[str, dict[str, Any], dict[str, Any]] = PrivateAttr()

    @property
    def sampler_backend(self) -> str:
        """The registry name that solves: ``backend``, or its packed twin when ``pack``."""
        return self._split[0]

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from qsgd.samplers.registry import backend_spec

        backend_spec(value)  # UnknownBackendError (a ValueError) lists the known names
        return value

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value: str) -> str:
        from qsgd.distributed.settings import check_scheduler

        return check_scheduler(value)  # ConfigError (a ValueError) shows the accepted forms

    @model_validator(mode="after")
    def _one_cluster(self) -> AnnealerConfig:
        from qsgd.distributed.settings import check_target

        check_target(self.scheduler, self.dask.scheduler_file)  # not both
        return self

    @field_validator("beta_range")
    @classmethod
    def _beta_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not (0 < value[0] < value[1] < float("inf")):
            raise ValueError(
                f"beta_range must be (hot, cold) with 0 < hot < cold < inf (got {value!r})"
            )
        return value

    @field_validator("fallback")
    @classmethod
    def _fallback(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from qsgd.samplers.dwave import QPU_BACKENDS
        from qsgd.samplers.registry import available_backends

        known = [b for b in available_backends() if b not in QPU_BACKENDS]
        if value not in known:
            raise ValueError(f"fallback must be one of {', '.join(known)} or None (got {value!r})")
        return value

    @model_validator(mode="after")
    def _options_fit_backend(self) -> AnnealerConfig:
        solver = packed_name(self.backend, self.pack)
        init, run = split_options(solver, self.options)
        self._split = (solver, init, run)  # validated once, here; the helpers below only read it
        return self

    # ------------------------------------------------------------------ helpers
    def run_options(self) -> dict[str, Any]:
        """Keywords for ``solve_batch``/``sample``: generic knobs the backend has, plus its run options."""
        _, run = backend_options(self.sampler_backend)
        out = {
            k: getattr(self, k) for k in _RUN_FIELDS if k in run and getattr(self, k) is not None
        }
        out.update(self._split[2])
        return out

    def sampler_options(self) -> dict[str, Any]:
        """Keywords for ``get_sampler``: constructor options from ``options`` (and ``fallback``)."""
        init, _ = backend_options(self.sampler_backend)
        out = {
            k: getattr(self, k) for k in _INIT_FIELDS if k in init and getattr(self, k) is not None
        }
        out.update(self._split[1])
        return out

    def composites(self) -> list[tuple[str, dict[str, Any]]]:
        """The registered composites this table selects, innermost first, with their options.

        ``scheduler`` other than ``"local"`` (or a ``dask.scheduler_file``) selects ``"dask"``
        with the ``dask`` table's chunk size, timeouts and TLS files. (``pack`` selects the
        backend's packed twin, the ``"pack"`` composite around it: see :attr:`sampler_backend`.)
        """
        if self.scheduler == "local" and self.dask.scheduler_file is None:
            return []
        opts = {"scheduler": self.scheduler, "chunk_size": self.dask.chunk_size}
        return [("dask", {**opts, **self.dask.engine_options()})]

    def make_sampler(self) -> dimod.Sampler:
        """The sampler this table describes: the backend inside its :meth:`composites`.

        ``get_sampler(self.sampler_backend, **self.sampler_options())``, wrapped by
        :func:`qsgd.samplers.registry.compose`. The ``"dask"`` composite ships the backend's name
        and options to the workers, which build it there; the cluster is started or connected
        on the first solve.
        """
        from qsgd.samplers.registry import compose, get_sampler

        stack = self.composites()
        if stack and stack[0][0] == "dask":  # workers build the backend from its name
            from qsgd.distributed.solve import SamplerSpec

            return compose(SamplerSpec(self.sampler_backend, self.sampler_options()), stack)
        return compose(get_sampler(self.sampler_backend, **self.sampler_options()), stack)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str = "annealer") -> AnnealerConfig:
        """Validate a mapping; errors become one :class:`ConfigError` naming ``path.key`` and the value.

        Raises:
            ConfigError: unknown key, unknown backend or option, or a bad value.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path} must be a table/mapping (got {type(data).__name__})")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, cls, prefix=path)) from None

    @classmethod
    def from_toml(cls, source: str | Path) -> AnnealerConfig:
        """Load from a TOML file path or TOML text; uses its ``[annealer]`` table if present.

        Raises:
            ConfigError: unreadable TOML or an invalid table (see :meth:`from_dict`).
        """
        if isinstance(source, Path) or (
            isinstance(source, str) and "\n" not in source and "=" not in source
        ):
            data = read_config_file(source, wording=_FILE_WORDING, yaml=False)
        else:
            data = parse_config_text(str(source), source="annealer config", wording=_FILE_WORDING)
        table = data.get("annealer", data)
        return cls.from_dict(table)
