"""One registry of named annealer backends, and the batched entry point every caller uses.

A backend is a name mapped to a lazily imported factory that returns a ``dimod.Sampler``.
Nothing else in qsgd chooses a backend with ``if``/``elif``: callers do::

    sampler = get_sampler("exact", max_variables=20)  # constructor options: structure only
    result = solve_batch(sampler, batch, num_reads=20, seed=0)   # run settings: sample keywords

Composites (``pack``, ``dask``, ``blockwise``) wrap any backend the same way::

    sampler = compose(get_sampler("neal"), [("dask", {"scheduler": "processes"})])

:func:`solve_batch` calls ``sampler.sample_batch`` (every qsgd backend is a
:class:`qsgd.samplers.base.Sampler`, whose default ``sample_batch`` solves problem ``k`` with
``sampler.sample(to_bqm(batch, k), ...)``; the ``batched`` annealer solves a whole layer at once;
a plain dimod sampler gets the same loop), recomputes the energies from the
:class:`~qsgd.ising.IsingBatch` and sorts each problem's reads by energy.

Provenance: every result says which backend actually solved it. A ``SampleSet`` carries
``info["solved_by"]`` (the registry name, or a QPU backend's fallback when the fallback solved
it); :func:`solve_batch` returns ``info["solved_by"]`` (the names joined by ``"+"``, sorted, when
the problems of one batch were solved by different backends) and ``info["solved_by_counts"]``
(``{name: problems}``). A backend that does not say is recorded under its own name.

Seeds: a ``seed`` run option is the seed of the whole batch. Problem ``k`` gets the ``k``-th
child of ``numpy.random.SeedSequence(seed)`` (a 31-bit int), so the same seed gives the same
samples and the problems of a batch do not share random streams.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dimod
import numpy as np

from qsgd.errors import BackendUnavailableError, ConfigError, UnknownBackendError
from qsgd.ising import IsingBatch
from qsgd.samplers.base import (
    SUMMED_INFO_KEYS,
    BatchResult,
    Sampler,
    backend_label,
    check_options,
    problem_seeds,
    solve_each,
)

__all__ = [
    "BackendSpec",
    "register_backend",
    "available_backends",
    "backend_spec",
    "get_sampler",
    "accepted_run_options",
    "run_option_names",
    "register_composite",
    "available_composites",
    "compose",
    "check_run_options",
    "problem_seeds",
    "solve_batch",
    "solve_each",
    "solved_by_counts",
    "SUMMED_INFO_KEYS",
]

Factory = Callable[..., dimod.Sampler]


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend.

    Attributes:
        name: Registry name (``"neal"``, ``"exact"``, ...).
        factory: A callable returning a ``dimod.Sampler``, or its import path ``"module:attr"``
            (imported only when the backend is first requested).
        description: One line for listings.
        extra: The optional dependency extra the backend needs (e.g. ``"dwave"``), if any.
        requires: Top-level module names whose absence means the extra is missing.
    """

    name: str
    factory: Factory | str
    description: str = ""
    extra: str | None = None
    requires: tuple[str, ...] = ()

    def resolve(self) -> Factory:
        """Import (if needed) and return the factory.

        Raises:
            BackendUnavailableError: the module or one of ``requires`` cannot be imported.
        """
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            for req in self.requires:
                importlib.import_module(req)
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or module_name
            if self.extra is not None:
                raise BackendUnavailableError(
                    f"backend {self.name!r} needs {_EXTRA_PACKAGES.get(self.extra, self.extra)}: "
                    f"pip install 'qsgd[{self.extra}]' (missing module {missing!r})"
                ) from exc
            raise BackendUnavailableError(
                f"backend {self.name!r} is unavailable: module {missing!r} cannot be imported"
            ) from exc
        return getattr(module, attr)


_EXTRA_PACKAGES = {"dwave": "dwave-system"}

_REGISTRY: dict[str, BackendSpec] = {}


def register_backend(
    name: str,
    factory: Factory | str,
    *,
    description: str = "",
    extra: str | None = None,
    requires: tuple[str, ...] = (),
    overwrite: bool = False,
) -> None:
    """Register a backend under ``name``.

    Args:
        name: Registry name; must be a non-empty string not yet registered (unless ``overwrite``).
        factory: Callable returning a ``dimod.Sampler`` (its keyword arguments are the backend's
            constructor options), or an import path ``"package.module:attr"`` imported lazily.
        description: One line shown in listings.
        extra: Optional-dependency extra the backend needs, named in the error when missing.
        requires: Modules that must be importable (checked lazily, with ``extra`` in the error).
        overwrite: Replace an existing registration instead of raising.

    Raises:
        ConfigError: bad name, bad factory, or name already registered.

    Example:
        >>> register_backend("random", dimod.RandomSampler, overwrite=True)
        >>> type(get_sampler("random")).__name__
        'RandomSampler'
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"backend name must be a non-empty str (got {name!r})")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise ConfigError(
            f"factory for backend {name!r} must be a callable or an import path 'module:attr' "
            f"(got {factory!r})"
        )
    if name in _REGISTRY and not overwrite:
        raise ConfigError(
            f"backend {name!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[name] = BackendSpec(name, factory, description, extra, tuple(requires))


def available_backends() -> list[str]:
    """Names of all registered backends, in registration order (``"neal"``, the default, first).

    A listed backend may still raise :class:`BackendUnavailableError` from :func:`get_sampler` when
    its optional dependency is not installed.
    """
    return list(_REGISTRY)


def backend_spec(name: str) -> BackendSpec:
    """The :class:`BackendSpec` registered as ``name``.

    Raises:
        UnknownBackendError: ``name`` is not registered; the message lists the known names.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownBackendError(
            f"unknown annealer backend {name!r}; known backends: {', '.join(_REGISTRY)}"
        ) from None


def _accepted_kwargs(factory: Factory) -> tuple[set[str] | None, bool]:
    """Keyword names accepted by ``factory`` (``None`` if not introspectable) and whether ``**kw``."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None, True
    names = {
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
    }
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw


def get_sampler(name: str, **options: Any) -> dimod.Sampler:
    """Build the sampler registered as ``name``.

    Args:
        name: A name from :func:`available_backends`.
        **options: Constructor options of the backend: structure only (``"exact"``:
            ``max_variables``; QPU backends: solver, timeouts, fallback, ...). Run settings
            (``num_reads``, ``num_sweeps``, ``seed``, ...) are keywords of ``sample`` /
            :func:`solve_batch`, never constructor options.

    Returns:
        A ``dimod.Sampler``; its ``info``-friendly name is stored as ``sampler.backend_name``
        when the object allows attributes.

    Raises:
        UnknownBackendError: unknown ``name`` (lists the known names).
        BackendUnavailableError: the backend's optional dependency is missing.
        ConfigError: an option the backend does not accept (names it and the accepted ones; a
            run setting is named as one).

    Example:
        >>> sampler = get_sampler("neal")
        >>> "num_sweeps" in sampler.parameters
        True
        >>> get_sampler("neal", num_sweeps=50)
        Traceback (most recent call last):
        ...
        qsgd.errors.ConfigError: 'num_sweeps' is a run setting of backend 'neal': pass it to sample() or solve_batch() (annealer.num_sweeps or annealer.options in a config), not to get_sampler()
    """
    spec = backend_spec(name)
    factory = spec.resolve()
    names, var_kw = _accepted_kwargs(factory)
    if names is not None and not var_kw:
        unknown = sorted(set(options) - names)
        if unknown and unknown[0] in run_option_names(factory):
            raise ConfigError(
                f"{unknown[0]!r} is a run setting of backend {name!r}: pass it to sample() or "
                f"solve_batch() (annealer.{unknown[0]} or annealer.options in a config), "
                "not to get_sampler()"
            )
        check_options(options, names, backend=name)
    sampler = factory(**options)
    try:
        sampler.backend_name = name
    except AttributeError:  # pragma: no cover - objects with __slots__
        pass
    return sampler


def run_option_names(factory: Factory) -> set[str]:
    """Run options (``sample`` keywords) of the samplers ``factory`` builds.

    Read from a class attribute ``_run_keys`` when the factory has one (QPU backends: nothing
    is constructed, no network), otherwise from a default-constructed instance's ``parameters``.
    """
    run_keys = getattr(factory, "_run_keys", None)
    if run_keys is not None:
        return set(run_keys)
    return set(getattr(factory(), "parameters", None) or {})


_COMPOSITES: dict[str, BackendSpec] = {}


def register_composite(
    name: str,
    factory: Factory | str,
    *,
    description: str = "",
    extra: str | None = None,
    requires: tuple[str, ...] = (),
    overwrite: bool = False,
) -> None:
    """Register a composite under ``name``: ``factory(child, **options)`` wraps any sampler.

    Arguments as for :func:`register_backend`; the factory's first argument is the child.

    Raises:
        ConfigError: bad name or factory, or name already registered.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"composite name must be a non-empty str (got {name!r})")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise ConfigError(
            f"factory for composite {name!r} must be a callable or an import path "
            f"'module:attr' (got {factory!r})"
        )
    if name in _COMPOSITES and not overwrite:
        raise ConfigError(
            f"composite {name!r} is already registered; pass overwrite=True to replace it"
        )
    _COMPOSITES[name] = BackendSpec(name, factory, description, extra, tuple(requires))


def available_composites() -> list[str]:
    """Names of all registered composites (``"pack"``, ``"dask"``, ``"blockwise"``, ...)."""
    return list(_COMPOSITES)


def compose(
    sampler: Any, composites: Sequence[str | tuple[str, Mapping[str, Any]]] = ()
) -> dimod.Sampler:
    """Wrap ``sampler`` in registered composites, innermost first.

    Args:
        sampler: The child of the first composite (a sampler; the ``"dask"`` composite also
            takes a :class:`~qsgd.distributed.solve.SamplerSpec` that workers build).
        composites: Names, or ``(name, options)`` pairs; ``options`` are the composite's
            constructor keywords, checked by the one option check.

    Returns:
        The outermost composite (``sampler`` itself when ``composites`` is empty).

    Raises:
        UnknownBackendError: an unknown composite (lists the known ones).
        ConfigError: an option the composite does not accept.

    Example:
        >>> inner = get_sampler("exact")
        >>> outer = compose(inner, [("blockwise", {"max_block_vars": 4})])
        >>> outer.children[0] is inner
        True
    """
    for entry in composites:
        name, options = (entry, {}) if isinstance(entry, str) else entry
        spec = _COMPOSITES.get(name) if isinstance(name, str) else None
        if spec is None:
            raise UnknownBackendError(
                f"unknown composite {name!r}; known composites: {', '.join(_COMPOSITES)}"
            )
        factory = spec.resolve()
        names, var_kw = _accepted_kwargs(factory)
        if names is not None and not var_kw:
            check_options(options, names - {"child", "inner", "backend"}, backend=name)
        sampler = factory(sampler, **dict(options))
    return sampler


def accepted_run_options(sampler: dimod.Sampler) -> set[str]:
    """Run options (``sample`` keywords) the sampler declares in its dimod ``parameters``."""
    params = getattr(sampler, "parameters", None) or {}
    return set(params)


def check_run_options(sampler: dimod.Sampler, run_options: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for a run option the sampler does not declare.

    Raises:
        ConfigError: names the unknown option, the backend and its accepted options.
    """
    check_options(
        run_options, accepted_run_options(sampler), backend=_name_of(sampler), kind="run option"
    )


def _name_of(sampler: Any) -> str:
    return backend_label(sampler)


def solve_batch(sampler: dimod.Sampler, batch: IsingBatch, **run_options: Any) -> BatchResult:
    """Solve all problems of ``batch`` with ``sampler``.

    Args:
        sampler: A :class:`~qsgd.samplers.base.Sampler` (its ``sample_batch`` is called once)
            or any other ``dimod.Sampler`` (its ``sample`` is called per problem).
        batch: ``m`` problems over ``n`` spins.
        **run_options: ``sample`` keywords (``num_reads``, ``num_sweeps``, ``seed``, ...); each must
            be in ``sampler.parameters``. ``seed`` seeds the whole batch (see module docstring).

    Returns:
        :class:`BatchResult` with reads sorted by energy; ``info`` holds ``backend`` (the
        requested one), ``solved_by`` and ``solved_by_counts`` (which backend actually solved
        the problems, see the module docstring), ``wall_time`` (s), ``num_reads`` and backend
        figures (e.g. ``chain_break_fraction``,
        ``reported_energy_max_abs_error``). Energies are recomputed from ``batch`` unless the
        sampler's ``info["energies_from_batch"]`` is True (it computed them from this batch in
        float64; they are used as they are).

    Raises:
        ConfigError: unknown run option.

    Shape:
        ``samples`` ``(m, reads, n)`` int8 ±1, ``energies`` ``(m, reads)``.

    Example:
        >>> b = IsingBatch.from_arrays(np.array([[1.0, -1.0]]), np.zeros((2, 2)))
        >>> solve_batch(get_sampler("exact"), b).best.tolist()
        [[-1, 1]]
    """
    if not isinstance(batch, IsingBatch):
        raise TypeError(f"batch must be an IsingBatch (got {type(batch).__name__})")
    check_run_options(sampler, run_options)
    name = _name_of(sampler)
    t0 = time.perf_counter()
    if isinstance(sampler, Sampler):
        result = sampler.sample_batch(batch, **run_options)
    else:  # a plain dimod sampler: the base class's loop over its sample method
        result = Sampler.sample_batch(sampler, batch, **run_options)
    samples = np.asarray(result.samples, dtype=np.int8)
    info = dict(result.info)
    reported = np.asarray(result.energies, dtype=np.float64)
    if info.get("energies_from_batch") is True and reported.shape == samples.shape[:2]:
        energies = reported  # computed from this batch by the sampler: no second pass
        info["reported_energy_max_abs_error"] = 0.0
    else:
        energies = batch.energies(samples)
        info["reported_energy_max_abs_error"] = float(np.max(np.abs(reported - energies)))
    if samples.shape[1] > 1:  # one read per problem: nothing to sort
        order = np.argsort(energies, axis=1, kind="stable")
        samples = np.take_along_axis(samples, order[:, :, None], axis=1)
        energies = np.take_along_axis(energies, order, axis=1)
    info.setdefault("backend", name)
    counts = solved_by_counts(info, default=name, num_problems=batch.num_problems)
    info["solved_by_counts"] = counts
    info["solved_by"] = "+".join(sorted(counts))
    info["wall_time"] = time.perf_counter() - t0
    info["num_reads"] = int(samples.shape[1])
    return BatchResult(samples=samples, energies=energies, info=info)


def solved_by_counts(info: Mapping[str, Any], *, default: str, num_problems: int) -> dict[str, int]:
    """``{backend name: problems}`` from a batch ``info``, whatever form the solver left it in.

    Reads ``info["solved_by_counts"]`` (a dict, or a list of dicts from merged chunks, summed) or
    else ``info["solved_by"]`` (one name for all problems, a per-problem list of names, or a
    list of per-chunk entries); when neither is there all ``num_problems`` count for ``default``.

    Example:
        >>> solved_by_counts({"solved_by": ["dwave", "neal", "neal"]}, default="x", num_problems=3)
        {'dwave': 1, 'neal': 2}
    """
    counts: dict[str, int] = {}

    def add(name: Any, k: int) -> None:
        counts[str(name)] = counts.get(str(name), 0) + int(k)

    given = info.get("solved_by_counts")
    if isinstance(given, Mapping):
        given = [given]
    if isinstance(given, list) and given and all(isinstance(g, Mapping) for g in given):
        for g in given:
            for name, k in g.items():
                add(name, k)
        return counts
    raw = info.get("solved_by")
    if isinstance(raw, str) and raw:
        add(raw, num_problems)
    elif (
        isinstance(raw, (list, tuple))
        and len(raw) == num_problems
        and all(isinstance(r, str) for r in raw)
    ):
        for r in raw:
            add(r, 1)
    elif isinstance(raw, (list, tuple)) and raw:
        # per-chunk names of unknown chunk sizes: the whole batch under the joined names
        names = sorted({str(r) for r in raw if isinstance(r, str)}) or [str(default)]
        add("+".join(names), num_problems)
    else:
        add(default, num_problems)
    return counts


register_backend(
    "neal",
    "qsgd.samplers.dimod_backends:NealBackend",
    description="dwave-samplers simulated annealing with a problem-scaled beta range (default)",
)
register_backend(
    "exact",
    "qsgd.samplers.dimod_backends:ExactBackend",
    description="brute-force enumeration (dimod ExactSolver), at most 24 variables",
)
register_backend(
    "steepest",
    "qsgd.samplers.dimod_backends:SteepestBackend",
    description="dwave-samplers steepest descent from random starts",
)
register_backend(
    "tabu",
    "qsgd.samplers.dimod_backends:TabuBackend",
    description="dwave-samplers tabu search",
)
register_backend(
    "batched",
    "qsgd.samplers.batched:BatchedAnnealer",
    description="qsgd's batched simulated annealer for problems sharing one low-rank J",
)
register_backend(
    "dwave",
    "qsgd.samplers.dwave:DWaveBackend",
    description="a D-Wave QPU with a cached clique embedding (needs credentials)",
    extra="dwave",
    requires=("dwave.system", "minorminer"),
)
register_backend(
    "mock-dwave",
    "qsgd.samplers.dwave:MockDWaveBackend",
    description="the 'dwave' code path over dwave-system's offline MockDWaveSampler",
    extra="dwave",
    requires=("dwave.system", "minorminer"),
)
register_backend(
    "dwave-packed",
    "qsgd.samplers.packing:packed_dwave",
    description="'dwave' with several problems per QPU call, all calls of a batch in flight at once",
    extra="dwave",
    requires=("dwave.system", "minorminer"),
)
register_backend(
    "mock-dwave-packed",
    "qsgd.samplers.packing:packed_mock_dwave",
    description="the 'dwave-packed' code path over dwave-system's offline MockDWaveSampler",
    extra="dwave",
    requires=("dwave.system", "minorminer"),
)
register_backend(
    "dwave-hybrid",
    "qsgd.samplers.hybrid:LeapHybridBackend",
    description="Leap's hybrid BQM solver, one call per problem, a batch's calls in flight at once",
    extra="dwave",
    requires=("dwave.system",),
)
register_composite(
    "pack",
    "qsgd.samplers.packing:PackedQPUSampler",
    description="several problems per call of a QPU backend, all calls of a batch in flight",
    extra="dwave",
    requires=("dwave.system", "minorminer"),
)
register_composite(
    "dask",
    "qsgd.samplers.dask:DaskComposite",
    description="a batch solved in chunk tasks on a Dask cluster",
)
register_composite(
    "blockwise",
    "qsgd.samplers.blockwise:BlockwiseComposite",
    description="problems larger than max_block_vars solved block by block (block-coordinate descent)",
)
