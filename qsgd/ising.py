"""The one data structure every QUBO builder returns and every backend consumes.

A layer of a binary network yields ``m`` independent Ising problems over the
same ``n`` spins that share one coupling matrix and differ only in their
fields. :class:`IsingBatch` stores exactly that, plus (optionally) a low-rank
factor of the couplings that the ``batched`` annealer exploits.

Energy convention (the same as dimod's SPIN ``BinaryQuadraticModel``)::

    E_k(s) = h[k] @ s + sum_{i<j} J[i, j] s_i s_j + offset[k]
           = h[k] @ s + 0.5 * s @ J @ s + offset[k]          (J symmetric, zero diagonal)

If ``factor`` (shape ``(r, n)``) is given, then
``J == factor_scale * offdiag(factor.T @ factor)``, so
``0.5 * s @ J @ s == 0.5 * factor_scale * (||factor @ s||^2 - sum_i ||factor[:, i]||^2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import dimod
import numpy as np

from qsgd.errors import ProblemError

__all__ = ["IsingBatch", "ising_energies", "to_bqm", "from_bqm"]


@dataclass(frozen=True)
class IsingBatch:
    """``m`` Ising problems over ``n`` spins sharing one coupling matrix.

    Attributes:
        h: Fields, shape ``(m, n)``.
        J: Symmetric couplings with zero diagonal, shape ``(n, n)``, shared by all problems.
        offset: Constant energy per problem, shape ``(m,)``.
        factor: Optional low-rank factor ``F`` (shape ``(r, n)``) with
            ``J == factor_scale * offdiag(F.T @ F)``.
        factor_scale: Scale of the factorised couplings (see above).

    Shape:
        spins passed to :meth:`energies` are ``(m, n)`` or ``(m, reads, n)`` with values ±1.

    Example:
        >>> b = IsingBatch.from_arrays(np.ones((2, 3)), np.zeros((3, 3)))
        >>> b.energies(-np.ones((2, 3))).tolist()
        [-3.0, -3.0]
    """

    h: np.ndarray
    J: np.ndarray
    offset: np.ndarray
    factor: np.ndarray | None = None
    factor_scale: float = 1.0

    @classmethod
    def from_arrays(
        cls,
        h: np.ndarray,
        J: np.ndarray,
        offset: np.ndarray | float | None = None,
        *,
        factor: np.ndarray | None = None,
        factor_scale: float = 1.0,
        check: bool = True,
    ) -> IsingBatch:
        """Validate and build a batch; a 1-D ``h`` is one problem.

        ``J`` may be given as any square matrix: it is symmetrised as ``(J + J.T)/2``
        only if it is not already symmetric, and its diagonal must be zero
        (a diagonal is constant on spins: move it into ``offset``).
        """
        h = np.asarray(h, dtype=np.float64)
        if h.ndim == 1:
            h = h[None, :]
        if h.ndim != 2:
            raise ProblemError(f"h must have shape (m, n) or (n,) (got shape {h.shape})")
        m, n = h.shape
        if n == 0 or m == 0:
            raise ProblemError(
                f"empty Ising problem: h has shape {h.shape}, expected m >= 1 and n >= 1"
            )
        J = np.asarray(J, dtype=np.float64)
        if J.shape != (n, n):
            raise ProblemError(f"J must have shape ({n}, {n}) to match h (got shape {J.shape})")
        if offset is None:
            offset = np.zeros(m)
        offset = np.broadcast_to(np.asarray(offset, dtype=np.float64), (m,)).copy()
        if check:
            if not np.all(np.isfinite(h)):
                raise ProblemError("h contains non-finite values (NaN or inf)")
            if not np.all(np.isfinite(J)):
                raise ProblemError("J contains non-finite values (NaN or inf)")
            if np.any(np.diag(J) != 0):
                raise ProblemError(
                    "J must have a zero diagonal (s_i^2 == 1 is constant: put it in offset)"
                )
            if not np.allclose(
                J, J.T, rtol=1e-12, atol=1e-12 * max(1.0, float(np.abs(J).max(initial=0)))
            ):
                J = 0.5 * (J + J.T)
        if factor is not None:
            factor = np.asarray(factor, dtype=np.float64)
            if factor.ndim != 2 or factor.shape[1] != n:
                raise ProblemError(f"factor must have shape (r, {n}) (got shape {factor.shape})")
        return cls(h=h, J=J, offset=offset, factor=factor, factor_scale=float(factor_scale))

    @property
    def num_problems(self) -> int:
        return int(self.h.shape[0])

    @property
    def num_variables(self) -> int:
        return int(self.h.shape[1])

    def energies(self, spins: np.ndarray) -> np.ndarray:
        """Energies of ``spins`` (``(m, n)`` -> ``(m,)``, ``(m, reads, n)`` -> ``(m, reads)``)."""
        return ising_energies(
            self.h, self.J, self.offset, spins, factor=self.factor, factor_scale=self.factor_scale
        )

    def problem(self, k: int) -> IsingBatch:
        """The ``k``-th problem alone, as a batch of one."""
        return IsingBatch(
            self.h[k : k + 1], self.J, self.offset[k : k + 1], self.factor, self.factor_scale
        )

    def subset(self, index: np.ndarray | slice) -> IsingBatch:
        """The problems selected by ``index`` (rows of ``h``)."""
        return IsingBatch(self.h[index], self.J, self.offset[index], self.factor, self.factor_scale)


#: Dense problems with at least this many spins: energies through one gemm (see ising_energies),
#: and the ``batched`` sampler's blocked kernel path.
WIDE_DENSE = 512


def ising_energies(
    h: np.ndarray,
    J: np.ndarray,
    offset: np.ndarray,
    spins: np.ndarray,
    *,
    factor: np.ndarray | None = None,
    factor_scale: float = 1.0,
) -> np.ndarray:
    """Vectorised Ising energies ``h.s + 0.5 s.J.s + offset`` for a batch of problems.

    Each problem's reads go through one matrix product (``(reads, n) @ J``, stacked over the
    problems, or ``@ factor.T`` when a factor of rank ``r < n`` is given: ``0.5 s.J.s == 0.5 * factor_scale *
    (||factor @ s||^2 - sum_i ||factor[:, i]||^2)``, ``O(r n)`` per read instead of ``O(n^2)``).
    Sums are accumulated in float64; a float32 ``J`` is applied in float32 (the problem itself
    holds no more digits), a float32 factor in float64 (its difference of squares cancels).

    Shape:
        h ``(m, n)``, J ``(n, n)``, offset ``(m,)``; spins ``(m, n)`` or ``(m, reads, n)``;
        factor ``(r, n)``. Returns ``(m,)`` or ``(m, reads)``.
    """
    s = np.asarray(spins)
    if s.ndim not in (2, 3):
        raise ProblemError(f"spins must have shape (m, n) or (m, reads, n) (got shape {s.shape})")
    n = h.shape[-1]
    s3 = s.reshape(s.shape[0], -1, s.shape[-1])  # (m, reads, n)
    s64 = s3.astype(np.float64)
    lin = np.einsum("mrn,mn->mr", s64, np.asarray(h, dtype=np.float64))
    # below WIDE_DENSE spins: one matrix product per problem (a stacked matmul), so a problem's
    # energies do not depend on which other problems share the call (chunked and distributed
    # solves give the same bits as a local one); from WIDE_DENSE spins one gemm for all reads,
    # which reads J (or the factor) once instead of once per problem (64 problems of 3703
    # spins: 3.5 GB of memory traffic otherwise) and may round the last bits differently with
    # the number of rows. A wide problem's factor of rank >= n/3 (a GCN layer: 3327 rows over
    # 3703 spins) costs more in float64 than J in its own precision: J is used then.
    if factor is not None and factor.shape[0] < (n if n < WIDE_DENSE else n / 3):
        F = np.asarray(factor, dtype=np.float64)
        if n >= WIDE_DENSE:
            u = _gemm(s3.reshape(-1, n), F.T).reshape(*s3.shape[:2], -1)
        else:
            u = s64 @ F.T  # (m, reads, r)
        quad = 0.5 * float(factor_scale) * (np.einsum("mcr,mcr->mc", u, u) - float(np.sum(F * F)))
    else:
        work = np.float32 if np.asarray(J).dtype == np.float32 else np.float64
        sf = s64 if work is np.float64 else s3.astype(work)
        if n >= WIDE_DENSE:  # one gemm: J is read once, not once per problem
            # J is symmetric: J.T is the same matrix, already in Fortran order for BLAS
            field = _gemm(sf.reshape(-1, n), np.asarray(J, dtype=work).T).reshape(sf.shape)
        else:
            field = sf @ J  # (m, reads, n)
        if work is np.float64:
            quad = 0.5 * np.einsum("mcn,mcn->mc", field, sf)
        else:
            quad = 0.5 * np.einsum("mcn,mcn->mc", field, sf, dtype=np.float64)
    e = lin + quad + np.asarray(offset, dtype=np.float64)[:, None]
    return e[:, 0] if s.ndim == 2 else e


def _gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` as one BLAS gemm in ``b``'s precision, also for a single row (pass ``b`` in
    Fortran order, e.g. a C-order matrix's ``.T``, or BLAS gets a copy)."""
    from scipy.linalg import blas

    gemm = blas.sgemm if b.dtype == np.float32 else blas.dgemm
    return gemm(1.0, np.asfortranarray(a, dtype=b.dtype), b)


def to_bqm(batch: IsingBatch, k: int = 0) -> dimod.BinaryQuadraticModel:
    """Problem ``k`` of ``batch`` as a SPIN ``dimod.BinaryQuadraticModel`` over variables ``0..n-1``.

    Built from numpy vectors (no per-entry Python loop); zero couplings are dropped.
    """
    n = batch.num_variables
    iu, ju = np.triu_indices(n, k=1)
    vals = batch.J[iu, ju]
    keep = vals != 0
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        batch.h[k], (iu[keep], ju[keep], vals[keep]), float(batch.offset[k]), dimod.SPIN
    )


def from_bqm(bqm: dimod.BinaryQuadraticModel) -> tuple[IsingBatch, list]:
    """Convert any BQM to a one-problem :class:`IsingBatch` (SPIN).

    Returns the batch and the variable order (``labels[i]`` is spin ``i``).
    """
    spin = bqm.spin if bqm.vartype is dimod.BINARY else bqm
    labels = list(spin.variables)
    n = len(labels)
    if n == 0:
        raise ProblemError("empty BQM: it has no variables")
    ldata, (irow, icol, qdata), offset = spin.to_numpy_vectors(variable_order=labels)
    J = np.zeros((n, n))
    np.add.at(J, (irow, icol), qdata)
    J = J + J.T
    return IsingBatch.from_arrays(ldata, J, offset), labels
