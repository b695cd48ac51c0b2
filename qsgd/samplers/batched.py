"""``batched``: a simulated annealer that solves all problems of an :class:`IsingBatch` at once.

A binary layer yields ``m`` Ising problems that share one coupling matrix ``J``; each is
annealed with ``num_reads`` independent Metropolis chains, and all ``m * num_reads`` chains
run in one call:

* **CPU** (``device="cpu"``/``"numba"``): numba kernels, parallel over chains (``prange``).
  When the batch carries a low-rank factor ``F`` (``J == factor_scale * offdiag(F.T @ F)``,
  ``r = F.shape[0] < n``), each chain keeps ``u = F @ s`` and the local field of spin ``i`` is
  ``h_i + factor_scale * (F[:, i] @ u - ||F[:, i]||^2 s_i)``; a flip updates ``u`` in ``O(r)``,
  so one sweep costs ``O(n r)`` instead of ``O(n^2)``. Groups of 16 chains run in lock step
  with the loops over chains innermost, so the field, the Metropolis test and the update of
  ``u`` are SIMD-vectorised (branch-free; a table-and-polynomial ``exp``).
  Without a factor each chain keeps the local-field vector ``h + J @ s`` and updates it in
  ``O(n)`` per accepted flip (scalar kernel).
* **torch** (``device="cuda"``, ``"cuda:N"`` or ``"torch-cpu"``): the same algorithm written
  with torch tensors, vectorised across chains (a Python loop over the spins of a sweep, each
  step one update of all chains). ``"torch-cpu"`` runs that code on the CPU so it can be tested
  without a GPU; it is slower than the numba kernel.

Each sweep visits the spins in order ``0..n-1`` and accepts a flip with energy change ``dE`` with
probability ``min(1, exp(-beta dE))``; ``beta`` follows a geometric schedule from
``beta_range[0]`` (hot) to ``beta_range[1]`` (cold) over ``num_sweeps`` sweeps. The default range
is computed per problem by :func:`default_beta_range`.

Randomness: ``seed`` feeds one :class:`numpy.random.SeedSequence`, from which the initial states
and one 64-bit seed per chain are drawn. The numba kernels give each chain its own generator
(xoroshiro128+ in the factor kernel, xorshift64* in the dense one, both seeded by splitmix64),
so results do not depend on thread scheduling or the number of threads. The torch
path draws its uniforms from its own seeded :class:`torch.Generator`; it agrees with the numba
path in distribution (energy quality), not bit for bit.

Side effects: none on the caller's threads. Numba's OpenMP threading layer calls
``omp_set_num_threads(NUMBA_NUM_THREADS)`` when its thread pool starts (the first parallel
kernel call in a process), which silently resets torch's intra-op thread count (torch uses the
same OpenMP runtime) to the number of cores. :meth:`BatchedAnnealer.sample_batch` restores
torch's count after its kernels run, so a ``torch.set_num_threads(1)`` made before training
holds, and torch's float reductions (batch norm, Adam) round the same way in every step.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dimod
import numpy as np
from numba import njit, prange

from qsgd.checks import positive_int
from qsgd.errors import ConfigError, ProblemError
from qsgd.ising import IsingBatch, from_bqm
from qsgd.samplers.base import BatchResult

__all__ = ["BatchedAnnealer", "default_beta_range", "resolve_device"]

# Acceptance probabilities that define the default schedule (see default_beta_range).
_HOT_ACCEPT = 0.5
_COLD_ACCEPT = 0.01
# Above this value of beta * dE the acceptance probability exp(-beta dE) < 2e-18: reject outright.
_MAX_EXPONENT = 40.0
# Chains annealed in lock step by one task of the factor kernel (vectorised across lanes).
_LANES = 16
_POW2NEG = np.array([2.0**-k for k in range(64)])


# --------------------------------------------------------------------------- schedule


def default_beta_range(batch: IsingBatch) -> np.ndarray:
    """Per-problem ``(beta_hot, beta_cold)`` for the geometric schedule.

    For problem ``k`` and spin ``i`` let ``s_ki = sqrt(h_ki^2 + sum_j J_ij^2)``, the root mean
    square of the local field ``h_ki + sum_j J_ij s_j`` over uniformly random states. A flip of
    spin ``i`` changes the energy by twice the magnitude of its local field.

    * hot: a flip against the largest typical field, ``dE = 2 max_i s_ki``, is accepted with
      probability 0.5: ``beta_hot = ln 2 / (2 max_i s_ki)``. (The worst-case field
      ``|h_i| + sum_j |J_ij|`` used by dwave-samplers is ~sqrt(n) times larger for dense
      couplings and spends the first third of the sweeps at infinite temperature.)
    * cold: a flip against a small field, ``d_k = min_i s_ki / sqrt(n)``, is accepted with
      probability 0.01: ``beta_cold = ln 100 / (2 d_k)``. (The smallest nonzero coefficient used
      by dwave-samplers can be arbitrarily small for real-valued couplings; a colder end only
      adds frozen sweeps. On the layer problems of ``benchmarks/bench_annealers.py``, 10x and
      100x colder ends gave the same energies.)

    Problems whose fields and couplings are all zero get ``(1, 1)``.

    Shape:
        returns ``(m, 2)``, float64.
    """
    s = np.sqrt(batch.h**2 + (batch.J**2).sum(axis=1)[None, :])  # (m, n)
    n = batch.num_variables
    smax = s.max(axis=1)
    smin = np.where(s > 0, s, np.inf).min(axis=1) / math.sqrt(n)  # spins with no field ignored
    out = np.ones((batch.num_problems, 2))
    ok = smax > 0
    out[ok, 0] = math.log(1.0 / _HOT_ACCEPT) / (2.0 * smax[ok])
    out[ok, 1] = math.log(1.0 / _COLD_ACCEPT) / (2.0 * smin[ok])
    out[:, 1] = np.maximum(out[:, 1], out[:, 0])
    return out


def _schedule(beta_range: np.ndarray, num_sweeps: int) -> np.ndarray:
    """Geometric schedules, ``(m, 2)`` ranges -> ``(m, num_sweeps)`` betas."""
    if num_sweeps == 1:
        return beta_range[:, 1:2].copy()
    t = np.linspace(0.0, 1.0, num_sweeps)[None, :]
    lo = np.log(beta_range[:, 0:1])
    hi = np.log(beta_range[:, 1:2])
    return np.exp(lo + t * (hi - lo))


# --------------------------------------------------------------------------- numba kernels


@contextmanager
def _keep_torch_threads() -> Iterator[None]:
    """Undo a change of torch's intra-op thread count made by the numba kernels run inside.

    The first parallel numba call of a process starts numba's thread pool; with the OpenMP
    threading layer that calls ``omp_set_num_threads(NUMBA_NUM_THREADS)`` on the calling thread,
    which is torch's thread count too (``torch.get_num_threads`` jumps from, e.g., 1 to the
    number of cores). Torch then splits its CPU reductions differently and results change in
    the last bits: a run that reaches its first annealer call in a fresh process (a resumed
    run) diverges from one that started in it earlier. Only acts when torch is already imported.
    """
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)


@njit(cache=True, inline="always")
def _xorshift(state: np.uint64) -> tuple[np.uint64, float]:
    """One xorshift64* step: the new state and a uniform float in [0, 1)."""
    state ^= state >> np.uint64(12)
    state ^= state << np.uint64(25)
    state ^= state >> np.uint64(27)
    out = state * np.uint64(0x2545F4914F6CDD1D)
    return state, float(out >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, inline="always")
def _seed_state(seed: np.uint64) -> np.uint64:
    """splitmix64 of ``seed``, never zero (xorshift needs a nonzero state)."""
    z = seed + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    if z == np.uint64(0):
        z = np.uint64(0x9E3779B97F4A7C15)
    return z


@njit(cache=True, inline="always")
def _metropolis_lanes(off, de, beta, s, st0, st1, delta, pow2neg):  # pragma: no cover
    """Metropolis decision for the ``LANES`` chains of a group at spin offset ``off``.

    Branch-free so that LLVM vectorises it across lanes: every lane draws one xoroshiro128+
    number per visit (so a chain's stream depends only on its own seed), and
    ``exp(-x)`` for ``x = beta * dE`` clipped to ``[0, 40]`` is ``2^-k * exp(-t)`` with
    ``k = floor(x log2 e)``, ``2^-k`` from a table and ``exp(-t)``, ``t in [0, ln 2)``, from its
    degree-9 Taylor polynomial (relative error < 1e-8). Writes the spin change into ``delta``.
    """
    for c in range(_LANES):
        a = st0[c]
        b = st1[c]
        res = a + b
        b ^= a
        st0[c] = ((a << np.uint64(24)) | (a >> np.uint64(40))) ^ b ^ (b << np.uint64(16))
        st1[c] = (b << np.uint64(37)) | (b >> np.uint64(27))
        rnd = np.float64(res >> np.uint64(11)) * (1.0 / 9007199254740992.0)
        x = min(max(beta[c] * de[c], 0.0), _MAX_EXPONENT)
        y = x * 1.4426950408889634
        k = np.int64(y)
        t = (y - k) * 0.6931471805599453
        p = 1.0 + t * (
            -1.0
            + t
            * (
                0.5
                + t
                * (
                    -1.0 / 6.0
                    + t
                    * (
                        1.0 / 24.0
                        + t
                        * (
                            -1.0 / 120.0
                            + t
                            * (
                                1.0 / 720.0
                                + t * (-1.0 / 5040.0 + t * (1.0 / 40320.0 + t * (-1.0 / 362880.0)))
                            )
                        )
                    )
                )
            )
        )
        p = p * pow2neg[k]
        acc = (de[c] <= 0.0) | (rnd < p)
        sc = s[off + c]
        d = -2.0 * sc * acc
        delta[c] = d
        s[off + c] = sc + d


@njit(parallel=True, cache=True, fastmath=False)
def _anneal_factor(hG, Ft, scale, colnorm2, bG, sG, seeds):  # pragma: no cover
    """Anneal groups of ``_LANES`` chains in lock step using ``u = F s`` (parallel over groups).

    Arrays are laid out lane-fastest so the loops over lanes vectorise: for group ``g``,
    ``hG[g, i * L + c]`` is the field of spin ``i`` in lane ``c``'s problem, ``bG[g, t * L + c]``
    its beta at sweep ``t``, ``sG[g, i * L + c]`` its spin (in/out). Per spin visit the cost is
    ``O(r)`` (field ``F[:, i] . u``, and the rank-one update of ``u`` applied branch-free).

    Shape:
        hG ``(G, n * L)``, Ft ``(n * r,)`` (``F.T`` flattened), colnorm2 ``(n,)``,
        bG ``(G, sweeps * L)``, sG ``(G, n * L)`` float64 ±1, seeds ``(G, L)`` uint64.
    """
    num_groups = sG.shape[0]
    n = colnorm2.shape[0]
    r = Ft.shape[0] // n
    num_sweeps = bG.shape[1] // _LANES
    pow2neg = _POW2NEG
    for g in prange(num_groups):
        s = sG[g].copy()
        h = hG[g]
        bg = bG[g]
        st0 = np.empty(_LANES, np.uint64)
        st1 = np.empty(_LANES, np.uint64)
        for c in range(_LANES):
            st0[c] = _seed_state(seeds[g, c])
            st1[c] = _seed_state(st0[c])
        u = np.zeros(r * _LANES)
        for i in range(n):
            for q in range(r):
                f = Ft[i * r + q]
                for c in range(_LANES):
                    u[q * _LANES + c] += f * s[i * _LANES + c]
        dot = np.empty(_LANES)
        de = np.empty(_LANES)
        delta = np.empty(_LANES)
        beta = np.empty(_LANES)
        for t in range(num_sweeps):
            for c in range(_LANES):
                beta[c] = bg[t * _LANES + c]
            for i in range(n):
                for c in range(_LANES):
                    dot[c] = 0.0
                for q in range(r):
                    f = Ft[i * r + q]
                    for c in range(_LANES):
                        dot[c] += f * u[q * _LANES + c]
                cn = colnorm2[i]
                off = i * _LANES
                for c in range(_LANES):
                    si = s[off + c]
                    de[c] = -2.0 * si * (h[off + c] + scale * (dot[c] - cn * si))
                _metropolis_lanes(off, de, beta, s, st0, st1, delta, pow2neg)
                for q in range(r):
                    f = Ft[i * r + q]
                    for c in range(_LANES):
                        u[q * _LANES + c] += delta[c] * f
        sG[g] = s


def _to_lanes(a: np.ndarray, num_groups: int) -> np.ndarray:
    """``(num_groups * L, X)`` -> ``(num_groups, X * L)``, lane index fastest."""
    x = a.shape[1]
    return np.ascontiguousarray(
        a.reshape(num_groups, _LANES, x).transpose(0, 2, 1).reshape(num_groups, x * _LANES)
    )


def _run_factor_numba(
    batch: IsingBatch, betas: np.ndarray, spins: np.ndarray, seeds: np.ndarray, num_reads: int
) -> np.ndarray:
    """Pad the chains to whole lane groups, run :func:`_anneal_factor`, return ``(C, n)`` int8."""
    assert batch.factor is not None
    num_chains, n = spins.shape
    num_groups = -(-num_chains // _LANES)
    padded = num_groups * _LANES
    problem = np.minimum(np.arange(padded) // num_reads, batch.num_problems - 1)
    s0 = np.ones((padded, n))
    s0[:num_chains] = spins
    seeds_p = np.zeros(padded, dtype=np.uint64)
    seeds_p[:num_chains] = seeds
    F = np.asarray(batch.factor, dtype=np.float64)
    sG = _to_lanes(s0, num_groups)
    _anneal_factor(
        _to_lanes(batch.h[problem], num_groups),
        np.ascontiguousarray(F.T).ravel(),
        float(batch.factor_scale),
        np.ascontiguousarray((F**2).sum(axis=0)),
        _to_lanes(betas[problem], num_groups),
        sG,
        seeds_p.reshape(num_groups, _LANES),
    )
    out = sG.reshape(num_groups, n, _LANES).transpose(0, 2, 1).reshape(padded, n)
    return out[:num_chains].astype(np.int8)


@njit(parallel=True, cache=True, fastmath=False)
def _anneal_dense(h, J, betas, spins, seeds, num_reads):  # pragma: no cover
    """Anneal every chain in place with a maintained local-field vector (numba, parallel over chains).

    Shape:
        h ``(m, n)``, J ``(n, n)``, betas ``(m, sweeps)``, spins ``(m * num_reads, n)`` int8 (in/out),
        seeds ``(m * num_reads,)``.
    """
    num_chains, n = spins.shape
    num_sweeps = betas.shape[1]
    for c in prange(num_chains):
        k = c // num_reads
        state = _seed_state(seeds[c])
        s = np.empty(n)
        for i in range(n):
            s[i] = spins[c, i]
        lf = np.empty(n)
        for i in range(n):
            acc = h[k, i]
            for j in range(n):
                acc += J[i, j] * s[j]
            lf[i] = acc
        for t in range(num_sweeps):
            beta = betas[k, t]
            for i in range(n):
                si = s[i]
                de = -2.0 * si * lf[i]
                accept = de <= 0.0
                if not accept:
                    x = beta * de
                    if x < _MAX_EXPONENT:
                        state, rnd = _xorshift(state)
                        accept = rnd < math.exp(-x)
                if accept:
                    d = -2.0 * si
                    for j in range(n):
                        lf[j] += d * J[i, j]
                    s[i] = -si
        for i in range(n):
            spins[c, i] = np.int8(s[i])


# --------------------------------------------------------------------------- torch path


def _anneal_torch(
    batch: IsingBatch,
    betas: np.ndarray,
    spins: np.ndarray,
    seed: int,
    num_reads: int,
    use_factor: bool,
    device: str,
) -> np.ndarray:
    """The same Metropolis sweeps in torch, vectorised across all chains.

    float32 on CUDA, float64 on CPU; ``u`` (or the local fields) is recomputed from the spins
    at the start of every sweep so rounding does not accumulate.

    Shape:
        betas ``(m, sweeps)``, spins ``(m * num_reads, n)`` int8 -> ``(m * num_reads, n)`` int8.
    """
    import torch

    dev = torch.device("cpu" if device == "torch-cpu" else device)
    dtype = torch.float32 if dev.type == "cuda" else torch.float64
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)

    def T(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=dev)

    n = batch.num_variables
    hc = T(batch.h).repeat_interleave(num_reads, dim=0)  # (C, n)
    bc = T(betas).repeat_interleave(num_reads, dim=0)  # (C, sweeps)
    s = T(spins)  # (C, n)
    num_chains = s.shape[0]
    if use_factor:
        assert batch.factor is not None
        Ft = T(batch.factor.T)  # (n, r)
        scale = float(batch.factor_scale)
        diag = T(batch.factor_scale * (batch.factor**2).sum(axis=0))  # (n,)
    else:
        J = T(batch.J)
    with torch.no_grad():
        for t in range(bc.shape[1]):
            beta = bc[:, t]
            rnd = torch.rand((num_chains, n), generator=gen, device=dev, dtype=dtype)
            if use_factor:
                u = s @ Ft  # (C, r)
            else:
                lf = hc + s @ J  # (C, n)
            for i in range(n):
                si = s[:, i]
                if use_factor:
                    field = hc[:, i] + scale * (u @ Ft[i]) - diag[i] * si
                else:
                    field = lf[:, i]
                de = -2.0 * si * field
                accept = (de <= 0) | (rnd[:, i] < torch.exp(-(beta * de).clamp(min=0)))
                delta = torch.where(accept, -2.0 * si, torch.zeros_like(si))
                s[:, i] = si + delta
                if use_factor:
                    u.add_(delta[:, None] * Ft[i][None, :])
                else:
                    lf.add_(delta[:, None] * J[i][None, :])
    return s.to("cpu").numpy().astype(np.int8)


# --------------------------------------------------------------------------- device


def resolve_device(device: str) -> str:
    """Map a ``device`` argument to ``"numba"``, ``"torch-cpu"`` or a CUDA device string.

    ``"auto"`` is CUDA when ``torch.cuda.is_available()`` and numba otherwise; ``"cpu"`` and
    ``"numba"`` are the numba kernel; ``"torch-cpu"`` is the torch code on the CPU; ``"cuda"``
    and ``"cuda:N"`` need a CUDA device.

    Raises:
        ConfigError: unknown device, or CUDA asked for but not available.
    """
    if not isinstance(device, str):
        raise ConfigError(
            f"device must be one of 'auto', 'cpu', 'numba', 'torch-cpu', 'cuda', 'cuda:N' (got {device!r})"
        )
    d = device.lower()
    if d == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "numba"
    if d in ("cpu", "numba"):
        return "numba"
    if d == "torch-cpu":
        return d
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} needs CUDA, but torch.cuda.is_available() is False; "
                "use device='auto' or 'cpu'"
            )
        return d
    raise ConfigError(
        f"device must be one of 'auto', 'cpu', 'numba', 'torch-cpu', 'cuda', 'cuda:N' (got {device!r})"
    )


# --------------------------------------------------------------------------- validation


def _check_beta_range(beta_range: Any) -> np.ndarray:
    try:
        arr = np.asarray(beta_range, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (2,):
        raise ConfigError(
            f"beta_range must be two floats (beta_hot, beta_cold) (got {beta_range!r})"
        )
    lo, hi = float(arr[0]), float(arr[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise ConfigError(
            f"beta_range must be two finite positive floats with beta_hot <= beta_cold (got {beta_range!r})"
        )
    return arr


def _check_initial_states(initial_states: Any, m: int, num_reads: int, n: int) -> np.ndarray:
    arr = np.asarray(initial_states)
    if arr.ndim == 2 and arr.shape == (num_reads, n):
        arr = np.broadcast_to(arr, (m, num_reads, n))
    if arr.shape != (m, num_reads, n):
        raise ConfigError(
            f"initial_states must have shape ({m}, {num_reads}, {n}) or ({num_reads}, {n}) "
            f"(got shape {arr.shape})"
        )
    if not np.all((arr == 1) | (arr == -1)):
        raise ConfigError("initial_states must contain only +1 and -1")
    return arr.astype(np.int8)


# --------------------------------------------------------------------------- sampler


class BatchedAnnealer(dimod.Sampler):
    """Simulated annealing of many Ising problems sharing one ``J``, on CPU (numba) or CUDA (torch).

    The constructor takes nothing; every run setting is a keyword of :meth:`sample_batch` (and
    of :meth:`sample`, :meth:`sample_ising`, :meth:`sample_qubo`, which solve one problem).

    Example:
        >>> import numpy as np
        >>> from qsgd.ising import IsingBatch
        >>> batch = IsingBatch.from_arrays(np.array([[1.0, -1.0]]), np.array([[0.0, -2.0], [-2.0, 0.0]]))
        >>> res = BatchedAnnealer().sample_batch(batch, num_reads=4, seed=0, device="cpu")
        >>> res.best.shape, float(res.best_energy[0])  # (1, 1) and (-1, -1) tie at -2
        ((1, 2), -2.0)
    """

    _PARAMETERS: Mapping[str, list] = {
        "num_reads": [],
        "num_sweeps": [],
        "beta_range": [],
        "seed": [],
        "initial_states": [],
        "warm_start": [],
        "device": [],
    }

    @property
    def parameters(self) -> dict[str, list]:
        """Keyword arguments accepted by the sample methods (mirrors :meth:`sample_batch`)."""
        return {k: list(v) for k, v in self._PARAMETERS.items()}

    @property
    def properties(self) -> dict[str, Any]:
        """Static facts about the sampler."""
        return {
            "backend": "batched",
            "devices": ["auto", "cpu", "numba", "torch-cpu", "cuda", "cuda:N"],
            "schedule": "geometric",
            "exploits_low_rank_factor": True,
        }

    def sample_batch(
        self,
        batch: IsingBatch,
        *,
        num_reads: int = 10,
        num_sweeps: int = 100,
        beta_range: tuple[float, float] | None = None,
        seed: int | None = None,
        initial_states: np.ndarray | None = None,
        warm_start: bool = False,
        device: str = "auto",
    ) -> BatchResult:
        """Anneal ``num_reads`` chains for each of the ``m`` problems of ``batch`` in one call.

        Args:
            batch: ``m`` problems over ``n`` spins sharing ``J`` (and optionally a factor of it).
            num_reads: Independent chains per problem.
            num_sweeps: Metropolis sweeps per chain (each visits every spin once).
            beta_range: ``(beta_hot, beta_cold)`` shared by all problems; ``None`` computes a
                range per problem with :func:`default_beta_range`.
            seed: Seed of every random choice; the same seed gives the same samples on the same
                device kind.
            initial_states: ±1 starting spins, ``(m, num_reads, n)`` or ``(num_reads, n)``
                (the same for every problem); default uniformly random.
            warm_start: Start every chain from ``sign(-h)`` (``+1`` where ``h == 0``), the optimum
                without couplings. Combine with a cold ``beta_range`` to stay near it.
            device: ``"auto"`` (CUDA if available, else numba), ``"cpu"``/``"numba"``,
                ``"torch-cpu"``, ``"cuda"`` or ``"cuda:N"``.

        Returns:
            Samples sorted by energy per problem, energies recomputed in float64 from
            ``batch``, and ``info`` with ``backend``, ``wall_time`` (seconds), ``device``,
            ``num_sweeps``, ``num_reads``, ``beta_range`` (``(m, 2)`` array) and ``path``
            (``"factor"`` or ``"dense"``).

        Raises:
            ConfigError: a bad keyword value (named in the message).
            ProblemError: ``batch`` is not an :class:`IsingBatch`.

        Shape:
            ``samples`` ``(m, num_reads, n)`` int8, ``energies`` ``(m, num_reads)``.
        """
        t0 = time.perf_counter()
        if not isinstance(batch, IsingBatch):
            raise ProblemError(f"batch must be an IsingBatch (got {type(batch).__name__})")
        num_reads = positive_int("num_reads", num_reads)
        num_sweeps = positive_int("num_sweeps", num_sweeps)
        if not isinstance(warm_start, (bool, np.bool_)):
            raise ConfigError(f"warm_start must be a bool (got {warm_start!r})")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
        ):
            raise ConfigError(f"seed must be a non-negative int or None (got {seed!r})")
        dev = resolve_device(device)
        m, n = batch.num_problems, batch.num_variables
        if beta_range is None:
            ranges = default_beta_range(batch)
        else:
            ranges = np.broadcast_to(_check_beta_range(beta_range), (m, 2)).copy()
        if initial_states is not None and warm_start:
            raise ConfigError("initial_states and warm_start=True are exclusive: pass one of them")

        ss = np.random.SeedSequence(seed)
        rng = np.random.Generator(np.random.PCG64(ss))
        if initial_states is not None:
            init = _check_initial_states(initial_states, m, num_reads, n)
        elif warm_start:
            ws = np.where(batch.h > 0, -1, 1).astype(np.int8)
            init = np.broadcast_to(ws[:, None, :], (m, num_reads, n))
        else:
            init = (2 * rng.integers(0, 2, size=(m, num_reads, n)) - 1).astype(np.int8)
        spins = np.ascontiguousarray(init.reshape(m * num_reads, n), dtype=np.int8).copy()
        betas = np.ascontiguousarray(_schedule(ranges, num_sweeps))
        r = 0 if batch.factor is None else batch.factor.shape[0]
        use_factor = batch.factor is not None and r < n
        path = "factor" if use_factor else "dense"

        if dev == "numba":
            seeds = rng.integers(0, 2**64, size=m * num_reads, dtype=np.uint64, endpoint=False)
            h = np.ascontiguousarray(batch.h, dtype=np.float64)
            with _keep_torch_threads():
                if use_factor:
                    spins = _run_factor_numba(batch, betas, spins, seeds, num_reads)
                else:
                    J = np.ascontiguousarray(batch.J, dtype=np.float64)
                    _anneal_dense(h, J, betas, spins, seeds, num_reads)
            device_name = "numba-cpu"
        else:
            torch_seed = int(rng.integers(0, 2**63 - 1))
            spins = _anneal_torch(batch, betas, spins, torch_seed, num_reads, use_factor, dev)
            device_name = dev

        samples = spins.reshape(m, num_reads, n)
        energies = batch.energies(samples)
        order = np.argsort(energies, axis=1, kind="stable")
        samples = np.take_along_axis(samples, order[:, :, None], axis=1)
        energies = np.take_along_axis(energies, order, axis=1)
        info = {
            "backend": "batched",
            "solved_by": "batched",
            "wall_time": time.perf_counter() - t0,
            "device": device_name,
            "num_sweeps": num_sweeps,
            "num_reads": num_reads,
            "beta_range": ranges,
            "path": path,
        }
        return BatchResult(samples=np.ascontiguousarray(samples), energies=energies, info=info)

    def sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any) -> dimod.SampleSet:
        """Solve one BQM (SPIN or BINARY) through :meth:`sample_batch`.

        Keywords are those of :meth:`sample_batch`; ``initial_states`` may be ``(num_reads, n)``
        in the order of ``bqm.variables``. Energies are recomputed for the BQM's vartype.
        """
        parameters = self.remove_unknown_kwargs(**parameters)
        if len(bqm.variables) == 0:
            return dimod.SampleSet.from_samples(
                [], bqm.vartype, energy=[], info={"backend": "batched"}
            )
        batch, labels = from_bqm(bqm)
        res = self.sample_batch(batch, **parameters)
        samples = res.samples[0]
        if bqm.vartype is dimod.BINARY:
            samples = ((samples + 1) // 2).astype(np.int8)
        info = {k: v for k, v in res.info.items() if k != "beta_range"}
        info["beta_range"] = tuple(float(b) for b in res.info["beta_range"][0])
        return dimod.SampleSet.from_samples_bqm((samples, labels), bqm, info=info)
