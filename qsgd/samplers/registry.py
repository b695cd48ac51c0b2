"""One registry of named annealer backends, and the batched entry point every caller uses.

A backend is a name mapped to a lazily imported factory that returns a ``dimod.Sampler``.
Nothing else in qsgd chooses a backend with ``if``/``elif``: callers do::

    sampler = get_sampler("neal", num_sweeps=200)     # constructor options / default run settings
    result = solve_batch(sampler, batch, num_reads=20, seed=0)

:func:`solve_batch` calls ``sampler.sample_batch`` when the sampler has one (the ``batched``
annealer solves a whole layer at once); otherwise it solves problem ``k`` of the batch with
``sampler.sample(to_bqm(batch, k), ...)``, puts the samples in variable order ``0..n-1``,
recomputes the energies from the :class:`~qsgd.ising.IsingBatch` and sorts each problem's reads
by energy.

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

from qsgd.errors import BackendError, BackendUnavailableError, ConfigError, UnknownBackendError
from qsgd.ising import IsingBatch, to_bqm
from qsgd.samplers.base import BatchResult

__all__ = [
    "BackendSpec",
    "register_backend",
    "available_backends",
    "backend_spec",
    "get_sampler",
    "accepted_run_options",
    "check_run_options",
    "problem_seeds",
    "solve_batch",
    "solved_by_counts",
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
        **options: Constructor options of the backend. For the qsgd wrappers these include
            default run settings (e.g. ``num_sweeps`` for ``"neal"``) checked against the
            sampler's ``parameters``.

    Returns:
        A ``dimod.Sampler``; its ``info``-friendly name is stored as ``sampler.backend_name``
        when the object allows attributes.

    Raises:
        UnknownBackendError: unknown ``name`` (lists the known names).
        BackendUnavailableError: the backend's optional dependency is missing.
        ConfigError: an option the backend does not accept (names it and the accepted ones).

    Example:
        >>> sampler = get_sampler("neal", num_sweeps=50)
        >>> "num_sweeps" in sampler.parameters
        True
    """
    spec = backend_spec(name)
    factory = spec.resolve()
    names, var_kw = _accepted_kwargs(factory)
    if names is not None and not var_kw:
        unknown = sorted(set(options) - names)
        if unknown:
            raise ConfigError(
                f"unknown option {unknown[0]!r} for backend {name!r}; "
                f"accepted options: {', '.join(sorted(names)) or '(none)'}"
            )
    sampler = factory(**options)
    try:
        sampler.backend_name = name
    except AttributeError:  # pragma: no cover - objects with __slots__
        pass
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
    accepted = accepted_run_options(sampler)
    unknown = sorted(set(run_options) - accepted)
    if unknown:
        raise ConfigError(
            f"unknown run option {unknown[0]!r} for backend {_name_of(sampler)!r}; "
            f"accepted options: {', '.join(sorted(accepted)) or '(none)'}"
        )


def problem_seeds(seed: int | None, m: int) -> list[int | None]:
    """Per-problem seeds derived from one batch seed (``None`` stays ``None``).

    Problem ``k`` gets ``SeedSequence(seed).spawn(m)[k].generate_state(1)[0] >> 1`` (31 bits: every
    dimod sampler here accepts it).

    Raises:
        ConfigError: ``seed`` is not a non-negative int.
    """
    if seed is None:
        return [None] * m
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative int or None (got {seed!r})")
    children = np.random.SeedSequence(int(seed)).spawn(m)
    return [int(c.generate_state(1, dtype=np.uint32)[0] >> 1) for c in children]


def _name_of(sampler: Any) -> str:
    return str(getattr(sampler, "backend_name", None) or type(sampler).__name__)


def _sampleset_to_arrays(ss: dimod.SampleSet, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples in variable order ``0..n-1`` (int8, ``(reads, n)``) and reported energies.

    Aggregated sample sets (``num_occurrences > 1``) are expanded so every read is a row.
    """
    order = list(range(n))
    variables = ss.variables
    if variables == order:
        arr = ss.record.sample
    else:
        labels = np.asarray(list(variables))
        ok = labels.dtype.kind in "iu" and len(labels) == n and set(variables) == set(order)
        if not ok:
            raise BackendError(
                f"backend returned samples over variables {list(variables)[:5]}..., "
                f"expected exactly 0..{n - 1}"
            )
        idx = np.empty(n, dtype=np.intp)
        idx[labels] = np.arange(n)  # column of variable i
        arr = ss.record.sample[:, idx]
    counts = ss.record.num_occurrences
    energies = ss.record.energy
    if np.any(counts != 1):
        arr = np.repeat(arr, counts, axis=0)
        energies = np.repeat(energies, counts)
    if ss.vartype is dimod.BINARY:
        arr = 2 * arr - 1
    return np.asarray(arr, dtype=np.int8), np.asarray(energies, dtype=np.float64)


def solve_batch(sampler: dimod.Sampler, batch: IsingBatch, **run_options: Any) -> BatchResult:
    """Solve all problems of ``batch`` with ``sampler``.

    Args:
        sampler: Any ``dimod.Sampler``; if it has ``sample_batch(batch, **run_options)`` that is
            called once, otherwise ``sampler.sample`` is called per problem.
        batch: ``m`` problems over ``n`` spins.
        **run_options: ``sample`` keywords (``num_reads``, ``num_sweeps``, ``seed``, ...); each must
            be in ``sampler.parameters``. ``seed`` seeds the whole batch (see module docstring).

    Returns:
        :class:`BatchResult` with reads sorted by energy; ``info`` holds ``backend`` (the
        requested one), ``solved_by`` and ``solved_by_counts`` (which backend actually solved
        the problems, see the module docstring), ``wall_time`` (s), ``num_reads`` and backend
        figures (e.g. ``chain_break_fraction``,
        ``reported_energy_max_abs_error``).

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
    if hasattr(sampler, "sample_batch"):
        result = sampler.sample_batch(batch, **run_options)
        samples = np.asarray(result.samples, dtype=np.int8)
        energies = batch.energies(samples)
        info = dict(result.info)
        reported = np.asarray(result.energies, dtype=np.float64)
        info["reported_energy_max_abs_error"] = float(np.max(np.abs(reported - energies)))
    else:
        opts = dict(run_options)
        seeds = problem_seeds(opts.pop("seed", None), batch.num_problems)
        samples, reported, info = solve_each(sampler, batch, seeds, opts)
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


def solve_each(
    sampler: dimod.Sampler, batch: IsingBatch, seeds: Sequence[int | None], opts: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One ``sample`` call per problem of ``batch`` with the given per-problem seeds.

    Returns the samples ``(m, reads, n)`` int8 in variable order, the energies the backend
    reported ``(m, reads)`` (unsorted), and the merged ``SampleSet.info``. A problem that came
    back with fewer reads than the others is padded by repeating its first read.
    """
    n = batch.num_variables
    per_samples, per_reported, infos = [], [], []
    for k in range(batch.num_problems):  # one call per problem; the arrays inside are whole-problem
        kw = dict(opts)
        if seeds[k] is not None:
            kw["seed"] = seeds[k]
        ss = sampler.sample(to_bqm(batch, k), **kw)
        s, e = _sampleset_to_arrays(ss, n)
        per_samples.append(s)
        per_reported.append(e)
        infos.append(ss.info)
    info = _merge_infos(infos)
    # one name per problem (a list of length m, so chunked solves concatenate it in order)
    info["solved_by"] = [str(i.get("solved_by") or _name_of(sampler)) for i in infos]
    info.pop("solved_by_counts", None)
    return _stack_padded(per_samples), _stack_padded(per_reported), info


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


def _stack_padded(rows: list[np.ndarray]) -> np.ndarray:
    """Stack per-problem read arrays; shorter ones are padded by repeating their first read."""
    r = max(len(x) for x in rows)
    return np.stack(
        [x if len(x) == r else np.concatenate([x, np.repeat(x[:1], r - len(x), 0)]) for x in rows]
    )


#: ``info`` keys that are totals over problems (summed when per-problem infos are merged).
SUMMED_INFO_KEYS = ("qpu_calls", "qpu_access_time")


def _merge_infos(infos: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine per-problem ``SampleSet.info`` dicts: numbers are averaged, the rest listed.

    Counts of QPU use (:data:`SUMMED_INFO_KEYS`: ``qpu_calls``, ``qpu_access_time``) are summed
    instead, a problem without the key counting 0 (e.g. one solved by a fallback).
    """
    out: dict[str, Any] = {}
    keys = {k for i in infos for k in i}
    for key in sorted(keys, key=str):
        vals = [i[key] for i in infos if key in i]
        if key in SUMMED_INFO_KEYS:
            out[key] = type(vals[0])(sum(vals)) if vals else 0
        elif all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals):
            out[key] = float(np.mean(vals))
        elif key in ("embedding_context", "timing", "problem_id", "warnings"):
            continue  # bulky per-call records; backends report summaries instead
        else:
            out[key] = vals[0] if all(v == vals[0] for v in vals[1:]) else vals
    return out


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
