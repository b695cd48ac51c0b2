"""The sign-matching formulation in training: one Ising problem per output neuron.

:func:`qsgd.qubo.sign_match_ising` writes the reference code's formulation as **one** problem
over all weights of a layer: choose ``D`` (``fan_out x fan_in``, ±1; the update is
``W <- W - lr D``) so that the signs of ``z = X D^T`` agree with ``t = sign(G)``, with a sign
ancilla and ``K`` slack spins per (row, neuron). Neuron ``j``'s direction row ``D_j`` only
couples with its own ancillas and slacks, so that problem is block diagonal: it decomposes
into ``fan_out`` independent problems of ``fan_in + rows * (1 + K)`` spins. This module builds
them as one :class:`~qsgd.ising.IsingBatch` that shares a single coupling matrix (what every
backend, the ``batched`` annealer and the packed QPU path included, solves in one call):

* **Rows scaled by ``t``.** A residual's square does not change when the row is multiplied
  by ``t_bj = ±1``, and a slack of row ``b`` whose target is ``-1`` is gauge-flipped
  (``sigma -> -sigma``). Then the direction part of a residual is ``x_b . d`` and its slack
  part ``-c . sigma / 2`` for every neuron.
* **One big-M per row.** :func:`~qsgd.qubo.sign_match_ising` uses ``M_bj = S_b + theta_bj``
  (``theta = 1`` for a negative target); here ``M_b = S_b + 1`` for every neuron and the slack
  range is ``0 .. U = 2S + 1`` (same number of slack bits, ``K = bit_length(2S + 1) =
  bit_length(2S)``). Each of the four cases (target ±1, ancilla says match or not) stays
  exactly representable, so the encoding is still exact: for fixed ``D`` the minimum over
  ancillas is the weighted mismatch count.

With both, the couplings ``J = 2 * penalty * offdiag(A^T A)`` are the same for every neuron
(``A`` is ``(rows, N)``: ``[X | -diag(M)/2 | -c/2 per row]``, also the low-rank ``factor``), and
the targets enter only the fields and offsets. The ancilla ``y_b`` is the claimed sign of
``z_b``: ``y_b = t_bj`` enforces ``sign(z_b) = t_bj`` and costs nothing, ``y_b = -t_bj`` leaves
row ``b`` free and costs its weight ``w_bj``.

Spin order of problem ``j``: ``d`` (``fan_in``), then ``y`` (``rows``), then the slacks
(``rows * K``, row-major ``(b, k)``). ``docs/method.md`` has the derivation of the joint
problem; the tests check, by brute force on small cases, that for every ``D`` the per-neuron
minima over ancillas add up to the joint problem's (both equal the mismatch count).

**Rows.** ``N`` grows with the rows of the mini-batch (a 5-input neuron with 20 rows has
105 spins), so :class:`qsgd.optimizer.QPSBGD` uses a random subsample of
:data:`DEFAULT_ROWS` rows per layer and step (``sign_match={"rows": ...}``; None: all rows),
drawn from the step's solver seed among the rows with a non-zero gradient.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from qsgd.errors import ProblemError, ProblemTooLargeError
from qsgd.ising import IsingBatch

__all__ = [
    "DEFAULT_ROWS",
    "SIGN_MATCH_OPTIONS",
    "WEIGHT_SCALES",
    "DECODES",
    "check_sign_match_options",
    "neuron_slack_bits",
    "neuron_num_variables",
    "sign_match_neuron_ising",
    "sign_match_neuron_decode",
    "mismatch_cost",
    "optimal_mismatch",
    "ENUMERATE_MAX_FAN_IN",
    "select_rows",
    "sign_match_update",
]

#: Rows of the mini-batch per sign-matching problem by default (see the module docstring).
DEFAULT_ROWS: int = 8
#: Accepted values of ``weight_scale``: mismatch weights ``|G|`` divided by each neuron's
#: largest ``|G|`` (``"neuron"``: every problem scaled on its own) or by the layer's
#: (``"layer"``: the weights of :func:`qsgd.qubo.sign_match_ising`).
WEIGHT_SCALES: tuple[str, ...] = ("neuron", "layer")
#: The options of ``QPSBGD(sign_match={...})`` and their defaults.
SIGN_MATCH_OPTIONS: dict[str, Any] = {
    "rows": DEFAULT_ROWS,
    "penalty": 2.0,
    "weighted": True,
    "weight_scale": "neuron",
    "resolution": None,
    "decode": "mismatch",
}
#: Accepted values of ``decode``: the direction of each problem's lowest-energy read
#: (``"energy"``, as the other formulations) or of the read whose direction has the fewest
#: weighted mismatches (``"mismatch"``, the default; ties: the lower energy). A read's energy is its direction's
#: mismatch count plus whatever its ancillas miss, so an annealer often returns the best
#: direction in a read that is not the lowest in energy; ``"mismatch"`` keeps it.
DECODES: tuple[str, ...] = ("energy", "mismatch")


def _where(name: str | None) -> str:
    return f" of {name!r}" if name else ""


def check_sign_match_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``QPSBGD(sign_match=...)`` and fill in the defaults of :data:`SIGN_MATCH_OPTIONS`.

    Keys: ``rows`` (positive int or None: all rows), ``penalty`` (>= 1), ``weighted`` (bool),
    ``weight_scale`` (``"neuron"`` or ``"layer"``), ``resolution`` (> 0 or None), ``decode``
    (``"energy"`` or ``"mismatch"``, see :data:`DECODES`).

    Raises:
        TypeError: ``options`` is not a mapping or ``weighted`` is not a bool.
        ValueError: an unknown key or a value out of range.

    Example:
        >>> check_sign_match_options({"rows": 4})["rows"], check_sign_match_options(None)["penalty"]
        (4, 2.0)
    """
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TypeError(f"sign_match must be a mapping or None (got {options!r})")
    unknown = sorted(set(options) - set(SIGN_MATCH_OPTIONS))
    if unknown:
        raise ValueError(
            f"sign_match has unknown option {unknown[0]!r}; accepted: "
            f"{', '.join(SIGN_MATCH_OPTIONS)}"
        )
    out = {**SIGN_MATCH_OPTIONS, **dict(options)}
    rows = out["rows"]
    if rows is not None and (
        isinstance(rows, bool) or not isinstance(rows, numbers.Integral) or rows < 1
    ):
        raise ValueError(f"sign_match rows must be a positive int or None (got {rows!r})")
    pen = out["penalty"]
    if (
        isinstance(pen, bool)
        or not isinstance(pen, numbers.Real)
        or not math.isfinite(pen)
        or pen < 1
    ):
        raise ValueError(
            f"sign_match penalty must be a finite number >= 1 (the largest mismatch weight) "
            f"(got {pen!r})"
        )
    if not isinstance(out["weighted"], bool):
        raise TypeError(f"sign_match weighted must be a bool (got {out['weighted']!r})")
    if out["weight_scale"] not in WEIGHT_SCALES:
        raise ValueError(
            f"sign_match weight_scale must be one of {', '.join(map(repr, WEIGHT_SCALES))} "
            f"(got {out['weight_scale']!r})"
        )
    if out["decode"] not in DECODES:
        raise ValueError(
            f"sign_match decode must be one of {', '.join(map(repr, DECODES))} "
            f"(got {out['decode']!r})"
        )
    res = out["resolution"]
    if res is not None and (
        isinstance(res, bool)
        or not isinstance(res, numbers.Real)
        or not math.isfinite(res)
        or res <= 0
    ):
        raise ValueError(f"sign_match resolution must be a finite number > 0 or None (got {res!r})")
    out["rows"] = None if rows is None else int(rows)
    out["penalty"] = float(pen)
    out["resolution"] = None if res is None else float(res)
    return out


def neuron_slack_bits(input_bound: int) -> int:
    """Slack spins per row of a per-neuron problem: ``bit_length(2 * input_bound + 1)``.

    Example:
        >>> neuron_slack_bits(3), neuron_slack_bits(5)
        (3, 4)
    """
    if isinstance(input_bound, bool) or int(input_bound) != input_bound or input_bound < 0:
        raise ValueError(f"input_bound must be a non-negative int (got {input_bound!r})")
    return int(2 * int(input_bound) + 1).bit_length()


def neuron_num_variables(rows: int, fan_in: int, *, input_bound: int | None = None) -> int:
    """Spins of one per-neuron problem: ``fan_in + rows * (1 + K)``.

    ``K = bit_length(2S + 1)`` with ``S = max(fan_in, input_bound)`` (``fan_in`` for inputs
    with ``|x| <= 1``). ``fan_out`` of these add up to
    :func:`qsgd.qubo.sign_match_num_variables` of the joint problem.

    Example:
        >>> neuron_num_variables(20, 5), neuron_num_variables(8, 5)
        (105, 45)
    """
    for arg, val in (("rows", rows), ("fan_in", fan_in)):
        if isinstance(val, bool) or not isinstance(val, numbers.Integral) or val < 1:
            raise ValueError(f"{arg} must be a positive int (got {val!r})")
    bound = int(fan_in) if input_bound is None else max(int(fan_in), int(input_bound))
    return int(fan_in + rows * (1 + neuron_slack_bits(bound)))


def _slack_coefficients(upper: int) -> np.ndarray:
    """Integer coefficients whose 0/1 combinations are exactly ``{0, ..., upper}`` (upper >= 1)."""
    k = int(upper).bit_length()
    if k == 1:
        return np.ones(1)
    c = 2.0 ** np.arange(k - 1)
    return np.append(c, float(upper) - (2 ** (k - 1) - 1))


def _as_matrix(value: Any, what: str, name: str | None) -> np.ndarray:
    if torch.is_tensor(value):
        value = value.detach().cpu().double().numpy()
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ProblemError(
            f"{what}{_where(name)} must be a non-empty 2-D array (got shape {arr.shape})"
        )
    if not np.all(np.isfinite(arr)):
        raise ProblemError(f"{what}{_where(name)} contains non-finite values (NaN or inf)")
    return arr


def _integer_inputs(X: np.ndarray, resolution: float | None, name: str | None) -> np.ndarray:
    if resolution is not None:
        return np.round(X / resolution)
    if not np.all(X == np.round(X)):
        raise ProblemError(
            f"inputs{_where(name)} must be integer-valued for sign_match (binary activations "
            f"±1 or {{0,1}}); pass resolution=q to round inputs/q to integers"
        )
    return X


def _weights(G: np.ndarray, weighted: bool, weight_scale: str) -> np.ndarray:
    absg = np.abs(G)
    if not weighted:
        return (absg > 0).astype(np.float64)
    top = absg.max(axis=0, keepdims=True) if weight_scale == "neuron" else absg.max()
    top = np.broadcast_to(top, absg.shape)
    return np.divide(absg, top, out=np.zeros_like(absg), where=top > 0)


def sign_match_neuron_ising(
    inputs: Any,
    grad_out: Any,
    *,
    penalty: float = 2.0,
    weighted: bool = True,
    weight_scale: str = "neuron",
    resolution: float | None = None,
    name: str | None = None,
) -> IsingBatch:
    """The sign-matching problems of a layer, one per output neuron, sharing one ``J``.

    Problem ``j`` minimises, over its direction row ``d = D_j`` and its ancillas,
    ``E_j = penalty * sum_b r_b^2 + sum_b w_bj (1 - t_bj y_b) / 2`` with the residuals
    ``r = A s + e_j`` of the module docstring; for fixed ``d`` the minimum over ancillas is
    ``sum_b w_bj [sign(x_b . d) != t_bj]`` exactly (``sign(0) = +1``, ``t = sign(G)`` with
    ``t = +1`` where ``G = 0``).

    Args:
        inputs: ``X``, shape ``(rows, fan_in)``, integer-valued (or pass ``resolution``).
        grad_out: ``G = dL/dz``, shape ``(rows, fan_out)``.
        penalty: Constraint penalty, ``>= 1`` (the largest mismatch weight).
        weighted: Mismatch weights ``|G|`` (scaled, see ``weight_scale``); else ``[G != 0]``.
        weight_scale: ``"neuron"`` (each problem's largest weight is 1) or ``"layer"`` (the
            layer's largest ``|G|`` is 1, as in :func:`qsgd.qubo.sign_match_ising`).
        resolution: If given, inputs are replaced by ``round(X / resolution)``.
        name: Optional layer name used in error messages.

    Returns:
        ``fan_out`` problems of :func:`neuron_num_variables` spins; ``factor`` is ``A``
        (``rows`` x ``N``) and ``factor_scale = 2 * penalty``.

    Raises:
        ProblemError: bad shapes, non-finite or non-integer inputs.
        ValueError: ``penalty < 1`` or an unknown ``weight_scale``.

    Example:
        >>> X = np.array([[1.0, -1.0], [1.0, 1.0]]); G = np.array([[0.5], [-1.0]])
        >>> b = sign_match_neuron_ising(X, G)
        >>> b.num_problems, b.num_variables
        (1, 10)
    """
    if isinstance(penalty, bool) or not isinstance(penalty, numbers.Real) or not penalty >= 1:
        raise ValueError(
            f"penalty must be >= 1 (the largest mismatch weight) for an exact encoding "
            f"(got {penalty!r})"
        )
    if weight_scale not in WEIGHT_SCALES:
        raise ValueError(
            f"weight_scale must be one of {', '.join(map(repr, WEIGHT_SCALES))} (got {weight_scale!r})"
        )
    X = _as_matrix(inputs, "inputs", name)
    G = _as_matrix(grad_out, "grad_out", name)
    if G.shape[0] != X.shape[0]:
        raise ProblemError(
            f"grad_out{_where(name)} must have shape ({X.shape[0]}, fan_out) with the rows of "
            f"inputs (got shape {G.shape}, inputs shape {X.shape})"
        )
    X = _integer_inputs(X, resolution, name)
    rows, n = X.shape
    S_b = np.abs(X).sum(axis=1)  # (rows,)
    S = int(max(n, int(S_b.max())))
    U = 2 * S + 1
    coeffs = _slack_coefficients(U)
    K = coeffs.size
    N = n + rows * (1 + K)
    M = S_b + 1.0  # one big-M per row, the same for every neuron

    A = np.zeros((rows, N))
    A[:, :n] = X
    b_index = np.arange(rows)
    A[b_index, n + b_index] = -0.5 * M
    A[b_index[:, None], n + rows + b_index[:, None] * K + np.arange(K)] = -0.5 * coeffs

    t = np.where(G < 0, -1.0, 1.0)  # (rows, m)
    e = np.where(t > 0, 0.5 * M[:, None] - 0.5 * U, 1.0 - 0.5 * M[:, None] + 0.5 * U)
    w = _weights(G, weighted, weight_scale)

    gram = A.T @ A
    scale = 2.0 * float(penalty)
    J = scale * gram
    np.fill_diagonal(J, 0.0)
    h = scale * (e.T @ A)  # (m, N)
    h[:, n : n + rows] -= 0.5 * (w * t).T
    offset = float(penalty) * (np.einsum("bm,bm->m", e, e) + float(np.trace(gram)))
    offset = offset + 0.5 * w.sum(axis=0)
    return IsingBatch(h=h, J=J, offset=offset, factor=A, factor_scale=scale)


def sign_match_neuron_decode(spins: Any, fan_in: int) -> np.ndarray:
    """The direction ``D`` from the spins of the per-neuron problems: their first ``fan_in`` spins.

    Shape:
        spins ``(fan_out, N)`` (or ``(..., fan_out, N)``) -> ``(fan_out, fan_in)`` (``(..., fan_out, fan_in)``).
    """
    s = np.asarray(spins)
    if s.ndim < 2 or s.shape[-1] < fan_in:
        raise ProblemError(
            f"spins must have shape (..., fan_out, N) with N >= fan_in = {fan_in} (got shape {s.shape})"
        )
    return s[..., :fan_in]


def mismatch_cost(
    inputs: Any,
    grad_out: Any,
    direction: Any,
    *,
    weighted: bool = True,
    weight_scale: str = "neuron",
    resolution: float | None = None,
) -> np.ndarray:
    """Weighted sign mismatches ``sum_b w_bj [sign(x_b . D_j) != t_bj]`` per neuron (the objective).

    Shape:
        inputs ``(rows, fan_in)``, grad_out ``(rows, fan_out)``, direction ``(fan_out, fan_in)``
        or ``(k, fan_out, fan_in)``; result ``(fan_out,)`` or ``(k, fan_out)``.
    """
    X = _integer_inputs(_as_matrix(inputs, "inputs", None), resolution, None)
    G = _as_matrix(grad_out, "grad_out", None)
    D = np.asarray(direction, dtype=np.float64)
    z = np.einsum("bi,...ji->...bj", X, D)
    wrong = np.where(z >= 0, 1.0, -1.0) != np.where(G < 0, -1.0, 1.0)
    return np.einsum("bj,...bj->...j", _weights(G, weighted, weight_scale), wrong)


#: Largest fan-in for which :func:`sign_match_update` records the exact optimum.
ENUMERATE_MAX_FAN_IN: int = 12


def optimal_mismatch(
    inputs: Any,
    grad_out: Any,
    *,
    weighted: bool = True,
    weight_scale: str = "neuron",
    resolution: float | None = None,
) -> np.ndarray:
    """The smallest weighted mismatch of each neuron over all ``2^fan_in`` directions (exact).

    The problems' ground-state energies equal these values (the ancillas' minimum is the
    mismatch count), so this audits an annealer without solving the Ising problems. The
    directions are enumerated once for all neurons: ``O(2^fan_in * rows * fan_out)``.

    Shape:
        inputs ``(rows, fan_in)``, grad_out ``(rows, fan_out)``; result ``(fan_out,)``.

    Example:
        >>> optimal_mismatch(np.array([[1.0, 1.0], [1.0, -1.0]]), np.array([[1.0], [-1.0]])).tolist()
        [0.0]
    """
    X = _integer_inputs(_as_matrix(inputs, "inputs", None), resolution, None)
    G = _as_matrix(grad_out, "grad_out", None)
    n = X.shape[1]
    if n > 20:
        raise ProblemError(f"optimal_mismatch enumerates 2^fan_in directions: fan_in={n} > 20")
    codes = np.arange(1 << n)[:, None] >> np.arange(n) & 1
    z = X @ np.where(codes == 1, 1.0, -1.0).T  # (rows, 2^n)
    sz = np.where(z >= 0, 1.0, -1.0)
    w = _weights(G, weighted, weight_scale)
    t = np.where(G < 0, -1.0, 1.0)
    # mismatch of direction d for neuron j: sum_b w_bj (1 - t_bj sz_bd) / 2
    cost = 0.5 * (w.sum(axis=0)[None, :] - sz.T @ (w * t))  # (2^n, m)
    return cost.min(axis=0)


def select_rows(total: int, rows: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``min(rows, total)`` rows drawn without replacement (all for None).

    Example:
        >>> select_rows(5, None, 0).tolist(), len(select_rows(20, 8, 0))
        ([0, 1, 2, 3, 4], 8)
    """
    if rows is None or rows >= total:
        return np.arange(total)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5316]))
    return np.sort(rng.choice(total, size=int(rows), replace=False))


def sign_match_update(
    optimizer: Any, index: int, X: torch.Tensor, G: torch.Tensor, *, step: int
) -> dict[str, Any]:
    """One ``formulation="sign_match"`` update of layer ``index`` of a :class:`~qsgd.optimizer.QPSBGD`.

    Rows with a zero gradient are dropped, at most ``rows`` of the others are drawn
    (:func:`select_rows`, from the step's solver seed), the ``fan_out`` problems of
    :func:`sign_match_neuron_ising` are solved in one batched call of the optimizer's backend,
    each problem's direction is read from its lowest-energy read or, with ``decode =
    "mismatch"``, from the read whose direction mismatches least (:data:`DECODES`), and the
    latent weight moves as in ``binary_gradient``:
    ``W <- clip(W - lr * D, -latent_clip, latent_clip)`` (the forward pass uses ``sign(W)``).
    A neuron whose gradient is zero on every drawn row has no information: its row of ``D``
    is 0 (it does not move). The problems are never split into blocks: a backend that solves
    fewer spins (``properties["max_num_variables"]``, e.g. ``exact``: 24) or a smaller
    ``max_block_vars`` is an error naming the rows to use.

    Uses the optimizer's ``param_groups``, ``state``, ``sign_match_options``, ``sampler``,
    ``run_options``, ``backend_name``, ``max_block_vars``, ``qpu_totals`` and ``step_seed``.

    Returns:
        The layer record of ``last_stats`` (the keys of the other formulations), plus
        ``sign_match_rows`` (rows in the problems), ``mismatch`` (weighted mismatch fraction
        of the chosen ``D`` on those rows), ``mismatch_sign_grad`` (the same for the
        signSGD direction ``sign(G^T X)``, for comparison) and ``mismatch_optimum`` (the
        exact optimum by :func:`optimal_mismatch`, for ``fan_in <= 12``; else None).

    Raises:
        ProblemTooLargeError: the problems exceed the backend's size or ``max_block_vars``.
    """
    from qsgd.samplers.registry import accepted_run_options, solve_batch
    from qsgd.step_records import _QPUUse

    group = optimizer.param_groups[index]
    p: torch.Tensor = group["params"][0]
    name = group["name"]
    m = int(G.shape[1])
    n = int(X.shape[1])
    opts = getattr(optimizer, "sign_match_options", None) or check_sign_match_options(None)
    state = optimizer.state[p]
    if not state:
        state.update(steps=0, flips=0, solver_time=0.0, skipped=0)
    seed = optimizer.step_seed(step, index)
    record = _sign_match_record(name, step, m, n, seed, optimizer.backend_name)
    keep = (G != 0).any(dim=1)
    if not bool(keep.any()):
        record["skipped"] = True
        state["skipped"] += 1
        return record
    Xn = X[keep].detach().cpu().double().numpy()
    Gn = G[keep].detach().cpu().double().numpy()
    pick = select_rows(Xn.shape[0], opts["rows"], seed)
    Xn, Gn = Xn[pick], Gn[pick]
    build = {k: opts[k] for k in ("penalty", "weighted", "weight_scale", "resolution")}
    batch = sign_match_neuron_ising(Xn, Gn, name=name, **build)
    N = batch.num_variables
    limit = _size_limit(optimizer)
    if limit is not None and N > limit[0]:
        raise ProblemTooLargeError(
            f"sign_match problems of layer {name!r} have {N} spins (fan_in {n} + "
            f"{len(pick)} rows x (1 + {(N - n) // len(pick) - 1} slack bits)), more than "
            f"{limit[1]} = {limit[0]}; they "
            f"cannot be solved block-wise: lower sign_match rows (now {opts['rows']})"
        )
    run = dict(optimizer.run_options)
    if "seed" in accepted_run_options(optimizer.sampler):
        run["seed"] = seed
    t0 = time.perf_counter()
    result = solve_batch(optimizer.sampler, batch, **run)
    qpu = _QPUUse()
    qpu.add(result.info, batch.num_problems)
    wall = float(result.info.get("wall_time", time.perf_counter() - t0))
    counts = dict(result.info["solved_by_counts"])
    D = _decode(result, Xn, Gn, opts["decode"], build, name)
    informative = np.abs(Gn).max(axis=0) > 0
    D[~informative] = 0.0
    scored = {k: build[k] for k in ("weighted", "weight_scale", "resolution")}
    sign_grad = np.where(Gn.T @ Xn >= 0, 1.0, -1.0)  # signSGD's direction, for comparison
    both = mismatch_cost(Xn, Gn, np.stack([D, sign_grad]), **scored).sum(axis=1)
    denom = float(_weights(Gn, build["weighted"], build["weight_scale"]).sum())
    best = optimal_mismatch(Xn, Gn, **scored) if n <= ENUMERATE_MAX_FAN_IN else None
    record.update(qpu.record())
    optimizer.qpu_totals["qpu_calls"] += int(record["qpu_calls"])
    optimizer.qpu_totals["qpu_access_time"] += float(record["qpu_access_time"])

    flips = _step_latent(p, D, float(group["lr"]), float(group["latent_clip"]))
    state["steps"] += 1
    state["flips"] += flips
    state["solver_time"] += wall
    record.update(
        variables=N,
        rows=int(Xn.shape[0]),
        sign_match_rows=int(Xn.shape[0]),
        best_energy=float(np.mean(result.best_energy)),
        flip_ratio=flips / float(m * n),
        num_flipped=flips,
        wall_time=wall,
        solved_by="+".join(sorted(counts)),
        solved_by_counts=counts,
        mismatch=float(both[0] / denom) if denom > 0 else 0.0,
        mismatch_sign_grad=float(both[1] / denom) if denom > 0 else 0.0,
        mismatch_optimum=None
        if best is None
        else (float(best.sum() / denom) if denom > 0 else 0.0),
    )
    return record


def _sign_match_record(
    name: str, step: int, m: int, n: int, seed: int, backend: str
) -> dict[str, Any]:
    """A layer's ``last_stats`` entry before its sign_match solve: the optimizer's record
    (``variables`` set once the problem size is known) plus the sign-matching audit keys."""
    from qsgd.step_records import _new_record

    return {
        **_new_record(name, step, m, n, seed, backend),
        "variables": 0,
        "sign_match_rows": 0,
        "mismatch": None,
        "mismatch_sign_grad": None,
        "mismatch_optimum": None,
    }


def _decode(
    result: Any, Xn: np.ndarray, Gn: np.ndarray, decode: str, build: dict[str, Any], name: str
) -> np.ndarray:
    """Each problem's direction ``D`` ``(m, n)`` from a solve (:data:`DECODES`): the read whose
    direction mismatches least (``"mismatch"``; the first, i.e. lowest energy, on ties) or
    the lowest-energy read."""
    m, n = Gn.shape[1], Xn.shape[1]
    if decode == "mismatch":  # every read's direction, scored by the objective itself
        reads = sign_match_neuron_decode(result.samples, n).astype(np.float64)  # (m, r, n)
        z = np.einsum("bi,mri->mrb", _integer_inputs(Xn, build["resolution"], name), reads)
        wrong = np.where(z >= 0, 1.0, -1.0) != np.where(Gn < 0, -1.0, 1.0).T[:, None, :]
        w = _weights(Gn, build["weighted"], build["weight_scale"]).T[:, None, :]
        pick_read = np.argmin((w * wrong).sum(axis=2), axis=1)  # first = lowest energy on ties
        return reads[np.arange(m), pick_read]
    return sign_match_neuron_decode(result.best, n).astype(np.float64)


def _step_latent(p: torch.Tensor, D: np.ndarray, lr: float, clip: float) -> int:
    """``W <- clip(W - lr * D, -clip, clip)`` in place on the latent weight ``p``; returns how
    many signs flipped."""
    m, n = D.shape
    old = p.detach().reshape(m, n).clone()
    old_sign = torch.where(old >= 0, 1.0, -1.0)
    d = torch.as_tensor(D, dtype=p.dtype, device=p.device)
    new = (old - lr * d).clamp_(-clip, clip)
    p.copy_(new.reshape(p.shape))
    return int((torch.where(new >= 0, 1.0, -1.0) != old_sign).sum())


def _size_limit(optimizer: Any) -> tuple[int, str] | None:
    """The smaller of ``max_block_vars`` and the backend's ``max_num_variables`` (with its name)."""
    out: tuple[int, str] | None = None
    mbv = getattr(optimizer, "max_block_vars", None)
    if isinstance(mbv, numbers.Integral) and not isinstance(mbv, bool):
        out = (int(mbv), "max_block_vars")
    try:
        props = optimizer.sampler.properties
    except Exception:  # a backend whose properties cannot be read declares nothing
        props = {}
    cap = props.get("max_num_variables") if isinstance(props, Mapping) else None
    if isinstance(cap, numbers.Integral) and not isinstance(cap, bool) and cap > 1:
        if out is None or int(cap) < out[0]:
            out = (int(cap), f"backend {optimizer.backend_name!r}'s max_num_variables")
    return out
