"""The mechanics of a packed QPU call: building, scaling, submitting and splitting it.

Helpers of :class:`qsgd.samplers.packing.PackedQPUSampler` (see that module's docstring for the
scheme): :func:`_joint_bqm` and :func:`_shared_call` build the source problem of one call,
:func:`_scale_per_problem` scales each problem of the embedded call on its own,
:func:`_unembed` splits the samples back per problem, and :func:`_resolve_shared` /
:func:`_shared_results` turn the calls made for several batches into one result per batch.
"""

from __future__ import annotations

from typing import Any

import dimod
import numpy as np

from qsgd.errors import BackendError, ConfigError
from qsgd.ising import IsingBatch, to_bqm
from qsgd.samplers.base import BatchResult
from qsgd.samplers.qpu_failures import qpu_access_seconds

Embedding = dict[int, tuple[int, ...]]


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive int (got {value!r})")
    return int(value)


def _symmetric_bound(rng: Any, default: float) -> float:
    """The largest magnitude allowed in both directions by a ``[lo, hi]`` range property."""
    try:
        lo, hi = float(rng[0]), float(rng[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return default
    bound = min(-lo, hi)
    return bound if bound > 0 else default


def _chain_strength(batch: IsingBatch, emb: Embedding, given: Any) -> float:
    """``given``, or ``uniform_torque_compensation`` of the first problem (the couplings of a
    layer's problems are shared, so every problem of the batch gets the same value).

    Raises:
        ConfigError: not a positive number.
    """
    from dwave.embedding.chain_strength import uniform_torque_compensation

    cs = given
    if cs is None:
        bqm0 = to_bqm(batch, 0)
        cs = float(uniform_torque_compensation(bqm0, emb)) if bqm0.num_interactions else 1.0
    if isinstance(cs, bool) or not (isinstance(cs, (int, float)) and cs > 0):
        raise ConfigError(f"chain_strength must be a positive number (got {cs!r})")
    return float(cs)


def _owners(embs: list[Embedding]) -> tuple[np.ndarray, np.ndarray]:
    """Qubit -> problem slot and qubit -> variable (``-1``: unused), for scaling and unembedding.

    Raises:
        BackendError: two embeddings share a qubit.
    """
    max_q = 1 + max(q for e in embs for chain in e.values() for q in chain)
    slot_of = np.full(max_q, -1, dtype=np.int64)
    var_of = np.full(max_q, -1, dtype=np.int64)
    for j, e in enumerate(embs):  # one entry per chain, not per sample
        for v, chain in e.items():
            idx = np.asarray(chain, dtype=np.int64)
            if np.any(slot_of[idx] >= 0):
                raise BackendError("packed embeddings overlap: a qubit is in two chains")
            slot_of[idx] = j
            var_of[idx] = v
    return slot_of, var_of


def _joint_bqm(batch: IsingBatch, idx: np.ndarray) -> dimod.BinaryQuadraticModel:
    """Problems ``idx`` of ``batch`` as one SPIN BQM, problem ``j`` on variables ``j*n .. j*n+n-1``."""
    n, kk = batch.num_variables, len(idx)
    iu, ju = np.triu_indices(n, k=1)
    jv = batch.J[iu, ju]
    keep = jv != 0
    iu, ju, jv = iu[keep], ju[keep], jv[keep]
    shift = (n * np.arange(kk))[:, None]
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        batch.h[idx].ravel(),
        ((iu[None, :] + shift).ravel(), (ju[None, :] + shift).ravel(), np.tile(jv, kk)),
        0.0,
        dimod.SPIN,
    )


def _scale_per_problem(
    target: dimod.BinaryQuadraticModel,
    slot_of: np.ndarray,
    kk: int,
    h_bound: float,
    j_bound: float,
) -> dimod.BinaryQuadraticModel:
    """Scale each problem's embedded fields and couplings to fill ``h_bound``/``j_bound``.

    Also checks the packing: every coupler must join two qubits of the same problem.

    Raises:
        BackendError: a coupler joins two problems (the packing is broken).
    """
    order = list(target.variables)
    qubits = np.asarray(order, dtype=np.int64)
    lin_b, (row, col, quad), offset = target.to_numpy_vectors(variable_order=order)
    owner = slot_of[qubits]
    if np.any(owner < 0):
        raise BackendError("packed problem uses a qubit outside every embedding")
    qa, qb = owner[row], owner[col]
    if np.any(qa != qb):
        bad = int(np.flatnonzero(qa != qb)[0])
        raise BackendError(
            f"packing check failed: coupler ({order[row[bad]]}, {order[col[bad]]}) joins "
            f"problems {qa[bad]} and {qb[bad]}"
        )
    hmax = np.zeros(kk)
    jmax = np.zeros(kk)
    np.maximum.at(hmax, owner, np.abs(lin_b))
    np.maximum.at(jmax, qa, np.abs(quad))
    ratio = np.maximum(hmax / h_bound, jmax / j_bound)
    scale = np.where(ratio > 0, 1.0 / np.where(ratio > 0, ratio, 1.0), 1.0)
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        lin_b * scale[owner],
        (row, col, quad * scale[qa]),
        0.0,
        dimod.SPIN,
        variable_order=order,
    )


def _unembed(
    response: dimod.SampleSet, slot_of: np.ndarray, var_of: np.ndarray, kk: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Majority-vote unembedding of every problem of one call.

    Returns:
        ``spins`` ``(reads, kk, n)`` int8 (ties to +1) and ``broken`` ``(reads, kk)``: the
        fraction of each problem's chains that are broken in each read.
    """
    qubits = np.asarray(list(response.variables), dtype=np.int64)
    rec = np.asarray(response.record.sample, dtype=np.int64)
    if response.vartype is dimod.BINARY:
        rec = 2 * rec - 1
    counts = np.asarray(response.record.num_occurrences)
    if np.any(counts != 1):
        rec = np.repeat(rec, counts, axis=0)
    slot = slot_of[qubits]
    use = (slot >= 0) & (slot < kk)
    flat = slot[use] * n + var_of[qubits][use]  # logical variable of each used column
    cols = rec[:, use]
    reads = rec.shape[0]
    total = np.zeros((reads, kk * n))
    size = np.zeros(kk * n)
    np.add.at(total.T, flat, cols.T)
    np.add.at(size, flat, 1.0)
    spins = np.where(total >= 0, 1, -1).astype(np.int8).reshape(reads, kk, n)
    broken = (np.abs(total) != size[None, :]).reshape(reads, kk, n).mean(axis=2)
    return spins, broken


def _fit_reads(s: np.ndarray, reads: int) -> np.ndarray:
    """Exactly ``reads`` rows (aggregated sample sets can expand to a different count)."""
    if len(s) == reads:
        return s
    if len(s) > reads:
        return s[:reads]
    return np.concatenate([s, np.repeat(s[:1], reads - len(s), 0)])


def _child_settings(backend: Any, kw: dict[str, Any]) -> tuple[Any, float, float, int, dict, bool]:
    """The backend's child sampler, its ``h``/``J`` bounds, the reads, the child's run settings
    and whether the backend takes a seed."""
    child = backend.child
    props = getattr(child, "properties", {}) or {}
    h_bound = _symmetric_bound(props.get("h_range"), 1.0)
    j_bound = _symmetric_bound(props.get("j_range"), 1.0)
    reads = int(kw["num_reads"])
    child_kw: dict[str, Any] = {"num_reads": reads}
    if kw.get("annealing_time") is not None:
        child_kw["annealing_time"] = kw["annealing_time"]
    seeded = "seed" in backend.parameters
    return child, h_bound, j_bound, reads, child_kw, seeded


def _couplers(batches: list[IsingBatch]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each batch's nonzero upper-triangle couplings ``(rows, cols, values)``, once."""
    couplers = []
    for b in batches:
        iu, ju = np.triu_indices(b.num_variables, k=1)
        jv = b.J[iu, ju]
        nz = jv != 0
        couplers.append((iu[nz], ju[nz], jv[nz]))
    return couplers


def _shared_call(
    batches: list[IsingBatch],
    couplers: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    strengths: list[float],
    problems: list[tuple[int, int]],
    n_max: int,
    embs: list[Embedding],
) -> tuple[dimod.BinaryQuadraticModel, dict[int, tuple[int, ...]], dict[int, float]]:
    """The source problem, chains and per-chain strengths of one call of several batches.

    ``problems[j] = (batch, problem)`` goes in slot ``j``: its variables are ``j * n_max + v``,
    on the first chains of the slot's clique embedding ``embs[j]``.
    """
    labels, lin, qi, qj, qx, chains, cs = [], [], [], [], [], {}, {}
    pos = 0  # position of the problem's first spin in the call's variables
    for j, (b_i, p) in enumerate(problems):
        n = batches[b_i].num_variables
        labels.append(j * n_max + np.arange(n))
        lin.append(batches[b_i].h[p])
        iu, ju, jv = couplers[b_i]
        qi.append(iu + pos)
        qj.append(ju + pos)
        qx.append(jv)
        pos += n
        for v in range(n):  # one entry per chain, as in sample_batch
            chains[j * n_max + v] = embs[j][v]
            cs[j * n_max + v] = strengths[b_i]
    source = dimod.BinaryQuadraticModel.from_numpy_vectors(
        np.concatenate(lin).astype(np.float64),
        (
            np.concatenate(qi),
            np.concatenate(qj),
            np.concatenate(qx).astype(np.float64),
        ),
        0.0,
        dimod.SPIN,
        variable_order=np.concatenate(labels).tolist(),
    )
    return source, chains, cs


def _resolve_shared(
    pending: list[tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray, Any]],
    batches: list[IsingBatch],
    reads: int,
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Resolve the calls ``(owners, locals, n_max, slot_of, var_of, call)`` made for ``batches``.

    Returns:
        Per batch: samples ``(m, reads, n)`` (unsorted) and chain-break fractions ``(m,)``;
        then, as arrays over batches, the QPU access time (each call's split by problems), the
        calls counted for each (a call goes to the batch owning most of its problems) and the
        problems those calls held.
    """
    nb = len(batches)
    samples = [np.empty((b.num_problems, reads, b.num_variables), np.int8) for b in batches]
    cbf = [np.empty(b.num_problems) for b in batches]
    access = np.zeros(nb)
    counted = np.zeros(nb, dtype=int)
    held = np.zeros(nb)
    for owners, locals_, n_max, slot_of, var_of, call in pending:
        call.resolve()
        spins, broken = _unembed(call, slot_of, var_of, len(owners), n_max)
        per = np.bincount(owners, minlength=nb)
        top = int(per.argmax())
        counted[top] += 1
        held[top] += len(owners)
        access += qpu_access_seconds(call.info) * per / len(owners)
        for j, (b_i, p) in enumerate(zip(owners.tolist(), locals_.tolist(), strict=True)):
            n = batches[b_i].num_variables
            samples[b_i][p] = _fit_reads(spins[:, j, :n], reads)
            # a smaller problem's unused chains are not in the call (never broken)
            cbf[b_i][p] = float(broken[:, j].mean()) * n_max / n if len(broken) else 0.0
    return samples, cbf, access, counted, held


def _shared_results(
    batches: list[IsingBatch],
    resolved: tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray, np.ndarray],
    strengths: list[float],
    num_calls: int,
    name: str,
    reads: int,
    wall: float,
) -> list[BatchResult]:
    """One :class:`BatchResult` per batch from :func:`_resolve_shared`'s arrays (see
    :meth:`~qsgd.samplers.packing.PackedQPUSampler.sample_batches` for the ``info`` keys)."""
    samples, cbf, access, counted, held = resolved
    work = np.array([b.num_problems * b.num_variables for b in batches], dtype=np.float64)
    out = []
    for b_i, b in enumerate(batches):
        s = samples[b_i]
        energies = b.energies(s)
        if reads > 1:
            order = np.argsort(energies, axis=1, kind="stable")
            s = np.take_along_axis(s, order[:, :, None], axis=1)
            energies = np.take_along_axis(energies, order, axis=1)
        calls = int(counted[b_i])
        info = {
            "backend": name,
            "solved_by": name,
            "calls": calls,
            "qpu_calls": calls,
            "problems_per_call": float(held[b_i] / calls) if calls else None,
            "qpu_access_time": float(access[b_i]),
            "chain_break_fraction": float(cbf[b_i].mean()),
            "chain_break_fractions": cbf[b_i],
            "chain_strength": float(strengths[b_i]),
            "shared_calls": num_calls,
            "energies_from_batch": True,
            "wall_time": wall * float(work[b_i] / work.sum()),
        }
        out.append(BatchResult(samples=s, energies=energies, info=info))
    return out
