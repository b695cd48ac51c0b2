"""``batched``: a simulated annealer that solves all problems of an :class:`IsingBatch` at once.

A binary layer yields ``m`` Ising problems that share one coupling matrix ``J``; each is
annealed with ``num_reads`` independent Metropolis chains, and all ``m * num_reads`` chains
run in one call:

* **CPU** (``device="cpu"``/``"numba"``): numba kernels (:mod:`qsgd.samplers._anneal_kernels`)
  in float32, chains in groups of up to 64 annealed in lock step with the loops over chains
  innermost, so the local field, the random numbers, the exponential and the Metropolis test
  are SIMD-vectorised (branch-free); groups run in parallel on ``num_threads`` threads
  (``prange``). Two representations of the local field, chosen by ``path``:

  - ``"factor"``: when the batch carries a low-rank factor ``F``
    (``J == factor_scale * offdiag(F.T @ F)``, ``r = F.shape[0]``), each chain keeps
    ``u = F @ s`` and the field of spin ``i`` is ``h_i + factor_scale * (F[:, i] @ u -
    ||F[:, i]||^2 s_i)``; a visit costs ``O(r)``.
  - ``"dense"``: each chain keeps the local fields ``h + J @ s``; a visit costs ``O(1)`` and a
    flip ``O(n)``.

  ``path="auto"`` takes the factor when ``3 r <= n`` (measured crossover on the layer problems,
  ``benchmarks/bench_curves.py``), else the dense fields. float32 is exact for ±1 factors and
  within ~1e-6 relative otherwise; ``u`` or the fields are recomputed from the spins every 16
  sweeps so rounding cannot accumulate, and the returned energies are recomputed in float64.
  ``kernel="reference"`` runs the float64 kernels these replaced (kept to pin the fast ones).
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
(xoshiro128+ in the fast kernels; xoroshiro128+ / xorshift64* in the reference ones, all
seeded by splitmix64), so results do not depend on thread scheduling, the number of threads or
the lane width. The torch path draws its uniforms from its own seeded :class:`torch.Generator`;
it agrees with the numba path in distribution (energy quality), not bit for bit.

Side effects: none on the caller's threads. Numba's OpenMP threading layer calls
``omp_set_num_threads(NUMBA_NUM_THREADS)`` when its thread pool starts (the first parallel
kernel call in a process), which silently resets torch's intra-op thread count (torch uses the
same OpenMP runtime) to the number of cores. :meth:`BatchedAnnealer.sample_batch` restores
torch's count after its kernels run, so a ``torch.set_num_threads(1)`` made before training
holds, and torch's float reductions (batch norm, Adam) round the same way in every step. It
also puts numba's own thread count back after using ``num_threads``.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dimod
import numpy as np

from qsgd.checks import positive_int
from qsgd.errors import ConfigError, ProblemError
from qsgd.ising import IsingBatch, from_bqm
from qsgd.samplers import _anneal_kernels as _k
from qsgd.samplers.base import BatchResult

__all__ = ["BatchedAnnealer", "default_beta_range", "resolve_device"]

# Acceptance probabilities that define the default schedule (see default_beta_range).
_HOT_ACCEPT = 0.5
_COLD_ACCEPT = 0.01
# path="auto" uses the low-rank factor when FACTOR_RATIO * rank <= n (O(r) per visit against
# O(1) + O(n) per flip for the dense fields; crossover measured by benchmarks/bench_curves.py).
FACTOR_RATIO = 3
_KERNELS = ("fast", "reference")
_PATHS = ("auto", "factor", "dense")


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
    # s^2 per spin; sqrt is monotone and correctly rounded, so max/min of s are the square
    # roots of max/min of s^2 (two passes over (m, n) fewer than taking s first)
    s2 = batch.h * batch.h + np.einsum("ij,ij->i", batch.J, batch.J)[None, :]  # (m, n)
    n = batch.num_variables
    smax = np.sqrt(s2.max(axis=1))
    s2[s2 <= 0] = np.inf  # spins with no field ignored
    smin = np.sqrt(s2.min(axis=1)) / math.sqrt(n)
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


# --------------------------------------------------------------------------- threads


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
    at the start of every sweep so rounding does not accumulate. The Metropolis test uses one
    exponential variate per visit, drawn for a whole sweep at once: a move with energy change
    ``dE`` is accepted iff ``beta dE <= E``, ``E = -log(U)``, ``U`` uniform on ``(0, 1]``, which
    holds with probability ``min(1, exp(-beta dE))``; a visit is then five to seven tensor
    operations (each a kernel launch on CUDA).

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
        diag = (batch.factor_scale * (batch.factor**2).sum(axis=0)).tolist()  # (n,)
    else:
        J = T(batch.J)
    with torch.no_grad():
        for t in range(bc.shape[1]):
            # accept iff dE / 2 <= E / (2 beta), E ~ Exp(1): one draw per visit of the sweep
            uni = torch.rand((num_chains, n), generator=gen, device=dev, dtype=dtype)
            thr = torch.log1p(-uni).neg_().div_(2.0 * bc[:, t : t + 1])  # (C, n)
            if use_factor:
                u = s @ Ft  # (C, r)
            else:
                lf = hc + s @ J  # (C, n)
            for i in range(n):
                si = s[:, i]
                if use_factor:  # dE/2 = |F_i|^2 scale - s_i (h_i + scale F_i . u)
                    x = torch.add(hc[:, i], u @ Ft[i], alpha=scale)
                    half = torch.addcmul(torch.full_like(si, diag[i]), si, x, value=-1.0)
                else:  # dE/2 = -s_i lf_i
                    half = torch.mul(si, lf[:, i]).neg_()
                flip = si * (half <= thr[:, i])  # s_i where the move is accepted, else 0
                if use_factor:
                    u.addr_(flip, Ft[i], alpha=-2.0)
                else:
                    lf.addr_(flip, J[i], alpha=-2.0)
                si.sub_(flip, alpha=2.0)
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


def _run_kernel(kernel: str, *args: Any) -> np.ndarray:
    """The numba kernels' entry point (one name, so profilers can time it): ``"fast"`` runs
    :func:`qsgd.samplers._anneal_kernels.run_fast`, ``"reference"`` its ``run_reference``."""
    return (_k.run_fast if kernel == "fast" else _k.run_reference)(*args)


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


def _check_run_settings(
    batch: Any,
    num_reads: Any,
    num_sweeps: Any,
    warm_start: Any,
    seed: Any,
    device: Any,
    num_threads: Any,
    kernel: Any,
    path: Any,
) -> tuple[int, int, str, int]:
    """:meth:`BatchedAnnealer.sample_batch`'s checked ``num_reads``, ``num_sweeps``, resolved
    device and CPU thread count (the other settings are only checked).

    Raises:
        ConfigError: a bad value (named in the message).
    """
    num_reads = positive_int("num_reads", num_reads)
    num_sweeps = positive_int("num_sweeps", num_sweeps)
    if not isinstance(warm_start, (bool, np.bool_)):
        raise ConfigError(f"warm_start must be a bool (got {warm_start!r})")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise ConfigError(f"seed must be a non-negative int or None (got {seed!r})")
    dev = resolve_device(device)
    if num_threads is None:
        threads = _k.free_cpus()
    else:
        threads = positive_int("num_threads", num_threads)
    if kernel not in _KERNELS:
        raise ConfigError(f"kernel must be one of {list(_KERNELS)} (got {kernel!r})")
    if kernel == "reference" and dev != "numba":
        raise ConfigError(
            f"kernel='reference' runs on the CPU only: use device='cpu' (got device={device!r})"
        )
    if path not in _PATHS:
        raise ConfigError(f"path must be one of {list(_PATHS)} (got {path!r})")
    if path == "factor" and batch.factor is None:
        raise ConfigError(
            "path='factor' needs a batch with a low-rank factor (batch.factor is None)"
        )
    return num_reads, num_sweeps, dev, threads


def _initial_spins(
    batch: IsingBatch, initial_states: Any, warm_start: bool, num_reads: int, rng: Any
) -> np.ndarray:
    """Starting spins ``(m * num_reads, n)``, a fresh C-contiguous int8 array:
    ``initial_states`` (checked), ``sign(-h)`` with ``warm_start``, else uniformly random
    from ``rng`` (:func:`_random_spins`)."""
    m, n = batch.num_problems, batch.num_variables
    if initial_states is not None:
        init = _check_initial_states(initial_states, m, num_reads, n)
    elif warm_start:
        ws = np.where(batch.h > 0, -1, 1).astype(np.int8)
        init = np.broadcast_to(ws[:, None, :], (m, num_reads, n))
    else:
        return _random_spins(rng, m * num_reads, n)
    return np.ascontiguousarray(init.reshape(m * num_reads, n), dtype=np.int8).copy()


def _random_spins(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """``2 * rng.integers(0, 2, size=(rows, n)) - 1`` as int8, and the same state of ``rng``
    afterwards, from the raw 64-bit words.

    numpy draws each of these integers as the top bit of one 32-bit output, and a PCG64
    generator gives the low then the high half of each 64-bit word; so the spins are bits 31
    and 63 of ``ceil(N / 2)`` raw words, about 3x faster than ``integers`` and its int64 array.
    :func:`_raw_bits_match` checks that equivalence once per process on the installed numpy;
    where it does not hold (or the bit generator is not PCG64, or holds a buffered half word,
    or the size is odd) ``integers`` is used.
    """
    size = rows * n
    bitgen = rng.bit_generator
    if (
        size % 2
        or not isinstance(bitgen, np.random.PCG64)
        or bitgen.state["has_uint32"]  # a half word is buffered: integers would use it first
        or not _raw_bits_match()
    ):
        return (2 * rng.integers(0, 2, size=(rows, n)) - 1).astype(np.int8)
    halves = bitgen.random_raw(size // 2).view(np.int32)  # little endian: low half first
    sign = np.right_shift(halves, 31).astype(np.int8)  # bit 31: 0 -> 0, 1 -> -1
    return np.subtract(-1, sign * np.int8(2), dtype=np.int8).reshape(rows, n)  # 0 -> -1, -1 -> 1


@functools.cache
def _raw_bits_match() -> bool:
    """Whether :func:`_random_spins`' raw-word path reproduces ``rng.integers(0, 2, ...)``
    (values and the generator's state after) on this numpy and platform."""
    if sys.byteorder != "little":  # pragma: no cover - no big-endian CI
        return False
    a, b = (np.random.Generator(np.random.PCG64(12345)) for _ in range(2))
    want = 2 * a.integers(0, 2, size=(3, 70)) - 1
    halves = b.bit_generator.random_raw(105).view(np.int32)
    got = -1 - 2 * np.right_shift(halves, 31).astype(np.int64)
    sa, sb = a.bit_generator.state, b.bit_generator.state  # "uinteger" is stale when unflagged
    same_state = sa["state"] == sb["state"] and sa["has_uint32"] == sb["has_uint32"] == 0
    return bool(np.array_equal(want.ravel(), got)) and same_state


def _anneal(
    batch: IsingBatch,
    betas: np.ndarray,
    spins: np.ndarray,
    rng: np.random.Generator,
    dev: str,
    kernel: str,
    use_factor: bool,
    num_reads: int,
    threads: int,
) -> tuple[np.ndarray, str, int | None]:
    """Run the chains ``spins`` ``(m * num_reads, n)`` on ``dev`` (numba kernels seeded per
    chain from ``rng``, or torch with one seed from it).

    Returns:
        The final spins, the device's name and the CPU threads used (None on torch).
    """
    m = batch.num_problems
    if dev == "numba":
        seeds = rng.integers(0, 2**64, size=m * num_reads, dtype=np.uint64, endpoint=False)
        with _keep_torch_threads():
            spins = _run_kernel(
                kernel,
                batch.h,
                None if use_factor else batch.J,
                batch.factor if use_factor else None,
                batch.factor_scale,
                betas,
                spins,
                seeds,
                num_reads,
                threads,
            )
        return spins, "numba-cpu", threads
    torch_seed = int(rng.integers(0, 2**63 - 1))
    spins = _anneal_torch(batch, betas, spins, torch_seed, num_reads, use_factor, dev)
    return spins, dev, None


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
        "num_threads": [],
        "kernel": list(_KERNELS),
        "path": list(_PATHS),
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
            "kernels": list(_KERNELS),
            "paths": list(_PATHS),
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
        num_threads: int | None = None,
        kernel: str = "fast",
        path: str = "auto",
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
            num_threads: CPU threads of the numba kernels; ``None`` uses the CPUs this process
                may run on (``os.sched_getaffinity``, capped by ``NUMBA_NUM_THREADS``). Results
                do not depend on it. Numba's thread count is restored afterwards.
            kernel: ``"fast"`` (float32, vectorised across chains) or ``"reference"`` (the
                float64 kernels it replaced; for tests and benchmarks). CPU only.
            path: ``"auto"`` (the low-rank factor when ``3 * rank <= n``, else dense local
                fields), ``"factor"`` (needs ``batch.factor``) or ``"dense"``.

        Returns:
            Samples sorted by energy per problem (not sorted when ``num_reads == 1``), energies
            recomputed in float64 from ``batch`` (:meth:`IsingBatch.energies`), and ``info`` with ``backend``, ``wall_time`` (seconds), ``device``, ``num_sweeps``,
            ``num_reads``, ``beta_range`` (``(m, 2)`` array), ``path`` (``"factor"`` or
            ``"dense"``), ``kernel``, ``num_threads`` (CPU; ``None`` on torch devices) and
            ``energies_from_batch`` (True: ``solve_batch`` skips its own energy pass).

        Raises:
            ConfigError: a bad keyword value (named in the message).
            ProblemError: ``batch`` is not an :class:`IsingBatch`.

        Shape:
            ``samples`` ``(m, num_reads, n)`` int8, ``energies`` ``(m, num_reads)``.
        """
        t0 = time.perf_counter()
        if not isinstance(batch, IsingBatch):
            raise ProblemError(f"batch must be an IsingBatch (got {type(batch).__name__})")
        num_reads, num_sweeps, dev, threads = _check_run_settings(
            batch, num_reads, num_sweeps, warm_start, seed, device, num_threads, kernel, path
        )
        m, n = batch.num_problems, batch.num_variables
        if beta_range is None:
            ranges = default_beta_range(batch)
        else:
            ranges = np.broadcast_to(_check_beta_range(beta_range), (m, 2)).copy()
        if initial_states is not None and warm_start:
            raise ConfigError("initial_states and warm_start=True are exclusive: pass one of them")

        ss = np.random.SeedSequence(seed)
        rng = np.random.Generator(np.random.PCG64(ss))
        spins = _initial_spins(batch, initial_states, warm_start, num_reads, rng)
        betas = np.ascontiguousarray(_schedule(ranges, num_sweeps))
        if path == "auto":
            r = n if batch.factor is None else batch.factor.shape[0]
            use_factor = FACTOR_RATIO * r <= n
        else:
            use_factor = path == "factor"
        path = "factor" if use_factor else "dense"

        spins, device_name, threads = _anneal(
            batch, betas, spins, rng, dev, kernel, use_factor, num_reads, threads
        )

        samples = spins.reshape(m, num_reads, n)
        energies = batch.energies(samples)  # float64, bit-identical to every other path
        if num_reads > 1:
            order = np.argsort(energies, axis=1, kind="stable")
            samples = np.ascontiguousarray(np.take_along_axis(samples, order[:, :, None], axis=1))
            # recomputed in the sorted order: exactly what batch.energies(samples) gives
            energies = batch.energies(samples)
        info = {
            "backend": "batched",
            "solved_by": "batched",
            "wall_time": time.perf_counter() - t0,
            "device": device_name,
            "num_sweeps": num_sweeps,
            "num_reads": num_reads,
            "beta_range": ranges,
            "path": path,
            "kernel": kernel,
            "num_threads": threads,
            "energies_from_batch": True,  # float64, from this batch: solve_batch reuses them
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
