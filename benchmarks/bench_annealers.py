"""Benchmark: the ``batched`` annealer vs dwave-samplers' simulated annealing (``neal``).

Problems: the 128 per-neuron Ising problems of one QP-SBGD step on a 128x128 binary layer
with a batch of 16 real inputs. Inputs come from a1a (LIBSVM, 123 binary features, mapped to
±1 and centred with the dataset's column means) through a random ±1 layer ``X = sign(A W0^T)``
(16 x 128); the upstream gradient ``G`` is the true gradient of a logistic loss on the a1a
labels through ``tanh`` and a random readout. The problems are
``qsgd.qubo.layer_ising(X, G, eta, curvature=1)`` (``J = eta^2 offdiag(X^T X)/B``,
``h = -eta X^T G``, low-rank factor ``X``); ``eta`` balances fields and couplings (their rms
local fields are equal) unless ``--eta`` is given. A second, wide case is built the same way
with a batch of 128 and fan-in 512 (64 problems, 1 read, 100 sweeps).

Solvers, all with the same ``num_reads``, ``num_sweeps`` and per-problem ``beta_range``
(:func:`qsgd.samplers.batched.default_beta_range`, geometric schedule):

* ``neal loop``: ``SimulatedAnnealingSampler.sample`` called once per problem (BQM built
  from numpy vectors inside the timed loop, as the ``neal`` backend must).
* ``neal pool`` (``--processes N``, default off): the same calls over an N-process pool.
* ``batched``: one ``BatchedAnnealer.sample_batch`` call for all problems, the default
  (``kernel="fast"``) and the float64 kernels it replaced (``kernel="reference"``); numba
  compile time excluded by a warm-up call; ``--device cuda`` runs the torch/CUDA path.

Repeat ``k`` of each solver uses seed ``seed + k``; times are the best of the repeats. Energy
gaps are pooled over the repeats: ``median_rel_gap`` is the median over problems and repeats of
``(E_batched - E_neal) / |E_neal|`` for the same seed (negative: batched lower), and
``neal_reseed_median_rel_gap`` the same statistic of neal against itself with the next seed,
i.e. the size of a gap that is only seed noise. The last line is JSON with ``speedup``
(100 sweeps), ``speedup_1000``, ``median_rel_gap``, ``neal_reseed_median_rel_gap`` (100
sweeps; the 1000-sweep ones are under ``runs``) and ``speedup_b128_n512``.

Run: ``python benchmarks/bench_annealers.py [--quick] [--device cuda] [--num-threads N]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, load_libsvm, machine  # noqa: E402

from qsgd.ising import IsingBatch, to_bqm  # noqa: E402
from qsgd.samplers.batched import BatchedAnnealer, default_beta_range  # noqa: E402

BATCH, FAN_IN, FAN_OUT, A1A_FEATURES = 16, 128, 128, 123
WIDE = {"batch": 128, "fan_in": 512, "fan_out": 64, "num_reads": 1, "num_sweeps": 100}


def build_problems(
    data: Path | None,
    seed: int,
    eta: float | None,
    batch_size: int = BATCH,
    fan_in: int = FAN_IN,
    fan_out: int = FAN_OUT,
) -> tuple[IsingBatch, float]:
    """The ``fan_out`` per-neuron problems of a ``fan_out x fan_in`` layer for ``batch_size``
    a1a inputs (default: 128 problems of a 128x128 layer, batch 16), and the eta used."""
    BATCH, FAN_IN, FAN_OUT = batch_size, fan_in, fan_out  # noqa: N806 - the formulas below
    rng = np.random.default_rng(seed)
    A, y = load_libsvm(data, A1A_FEATURES)
    A = 2.0 * A - 1.0  # binary features -> ±1
    A = A - A.mean(axis=0)  # centred: otherwise the mostly -1 rows give near-constant columns of X
    rows = rng.choice(A.shape[0], size=BATCH, replace=False)
    A, y = A[rows], y[rows]  # labels ±1
    W0 = rng.choice([-1.0, 1.0], size=(FAN_IN, A1A_FEATURES))
    X = np.where(A @ W0.T >= 0, 1.0, -1.0)  # (B, 128): outputs of a random binary layer
    W = rng.choice([-1.0, 1.0], size=(FAN_OUT, FAN_IN))  # the layer whose update we solve
    v = rng.choice([-1.0, 1.0], size=FAN_OUT)  # readout
    z = X @ W.T / np.sqrt(FAN_IN)
    a = np.tanh(z)
    out = a @ v / np.sqrt(FAN_OUT)
    dout = -y / (1.0 + np.exp(y * out)) / BATCH  # d mean log(1 + exp(-y out)) / d out
    G = (dout[:, None] * v[None, :] / np.sqrt(FAN_OUT)) * (1.0 - a**2)  # dL/dz, (B, 128)
    grad = G.T @ X
    if eta is None:  # rms field == rms coupling field
        gram = X.T @ X / BATCH
        np.fill_diagonal(gram, 0.0)
        eta = float(np.sqrt(np.mean(grad**2)) / np.sqrt(np.mean((gram**2).sum(axis=1))))
    try:
        from qsgd.qubo import layer_ising
    except ImportError:  # before qsgd.qubo existed
        J = eta**2 * X.T @ X / BATCH
        np.fill_diagonal(J, 0.0)
        batch = IsingBatch.from_arrays(-eta * grad, J, factor=X, factor_scale=eta**2 / BATCH)
    else:
        batch = layer_ising(X, G, eta=eta, curvature=1.0)
    return batch, eta


# ---------------------------------------------------------------- neal (module level for pickling)

_BATCH: IsingBatch | None = None
_RANGES: np.ndarray | None = None


def _init_worker(batch: IsingBatch, ranges: np.ndarray) -> None:
    global _BATCH, _RANGES
    _BATCH, _RANGES = batch, ranges


def _neal_one(args: tuple[int, int, int, int]) -> np.ndarray:
    """Best sample of problem ``k`` from one dwave-samplers call."""
    from dwave.samplers import SimulatedAnnealingSampler

    k, num_reads, num_sweeps, seed = args
    assert _BATCH is not None and _RANGES is not None
    bqm = to_bqm(_BATCH, k)
    ss = SimulatedAnnealingSampler().sample(
        bqm,
        num_reads=num_reads,
        num_sweeps=num_sweeps,
        beta_range=tuple(float(b) for b in _RANGES[k]),
        beta_schedule_type="geometric",
        seed=seed + k,
    )
    samples = ss.record.sample[:, [ss.variables.index(i) for i in range(_BATCH.num_variables)]]
    e = _BATCH.problem(k).energies(samples[None])[0]
    return samples[int(np.argmin(e))].astype(np.int8)


def neal_loop(batch: IsingBatch, num_reads: int, num_sweeps: int, seed: int) -> np.ndarray:
    return np.stack(
        [_neal_one((k, num_reads, num_sweeps, seed)) for k in range(batch.num_problems)]
    )


def neal_pool(pool, batch: IsingBatch, num_reads: int, num_sweeps: int, seed: int) -> np.ndarray:
    tasks = [(k, num_reads, num_sweeps, seed) for k in range(batch.num_problems)]
    return np.stack(pool.map(_neal_one, tasks, chunksize=4))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _rel(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (a - ref) / np.abs(ref)


# ---------------------------------------------------------------- main


def compare(batch, sampler, S, R, repeats, seed, device, num_threads, pool, label=""):
    """Neal loop, batched (fast and reference) side by side on ``batch``; one result row."""
    global _BATCH, _RANGES
    _BATCH, _RANGES = batch, default_beta_range(batch)
    neal_runs = max(2, repeats)  # two seeds at least: the reseed gap needs a second one
    t_loop, e_neal = [], []
    kw = dict(num_reads=R, num_sweeps=S, device=device, num_threads=num_threads)
    t_bat, e_bat, t_ref = [], [], []
    info = {}
    for k in range(neal_runs):  # interleaved, so load from other jobs hits both alike
        t, best = _timed(lambda k=k: neal_loop(batch, R, S, seed + k))
        t_loop.append(t)
        e_neal.append(batch.energies(best))
        if k < repeats:
            t, res = _timed(lambda k=k: sampler.sample_batch(batch, seed=seed + k, **kw))
            t_bat.append(t)
            e_bat.append(res.best_energy)
            info = res.info
            if device == "cpu" and k == 0:
                t, _ = _timed(
                    lambda: sampler.sample_batch(batch, seed=seed, kernel="reference", **kw)
                )
                t_ref.append(t)
    t_pool = float("nan")
    if pool is not None:
        t_pool, best_pool = _timed(lambda: neal_pool(pool, batch, R, S, seed))
        assert np.allclose(batch.energies(best_pool), e_neal[0])  # same seeds -> same answers
    gap = np.concatenate([_rel(e_bat[k], e_neal[k]) for k in range(len(e_bat))])
    noise = np.concatenate([_rel(e_neal[k + 1], e_neal[k]) for k in range(neal_runs - 1)])
    abs_gap = np.concatenate([e_bat[k] - e_neal[k] for k in range(len(e_bat))])
    tl, tb = min(t_loop), min(t_bat)
    tr = min(t_ref) if t_ref else float("nan")
    visits = batch.num_problems * R * batch.num_variables * S
    row = {
        "case": label,
        "m": batch.num_problems,
        "n": batch.num_variables,
        "rank": int(batch.factor.shape[0]),
        "num_reads": R,
        "num_sweeps": S,
        "neal_loop_s": round(tl, 4),
        "neal_pool_s": round(t_pool, 4),
        "batched_s": round(tb, 4),
        "reference_s": round(tr, 4),
        "speedup_vs_loop": round(tl / tb, 2),
        "speedup_vs_pool": round(t_pool / tb, 2),
        "speedup_vs_reference": round(tr / tb, 2),
        "batched_ns_per_visit": round(tb / visits * 1e9, 2),
        "neal_ns_per_visit": round(tl / visits * 1e9, 2),
        "median_energy_gap": float(np.median(abs_gap)),
        "median_rel_gap": float(np.median(gap)),
        "neal_reseed_median_rel_gap": float(np.median(noise)),
        "frac_batched_le_neal": float(np.mean(gap <= 1e-9)),
        "path": info.get("path"),
        "num_threads": info.get("num_threads"),
    }
    print(
        f"{label:>10} m={row['m']} n={row['n']} r={row['rank']} reads={R} sweeps={S:5d}: "
        f"neal loop {tl:7.3f} s  batched[{info.get('device')}/{info.get('path')}, "
        f"{info.get('num_threads')} threads] {tb:7.4f} s ({row['batched_ns_per_visit']} ns/visit)  "
        f"reference kernel {tr:7.4f} s  pool {t_pool:7.3f} s  "
        f"speed-up {tl / tb:6.1f}x (loop) {tr / tb:5.1f}x (reference)  "
        f"median rel gap {row['median_rel_gap']:+.2e} (batched <= neal on "
        f"{100 * row['frac_batched_le_neal']:.0f}%); neal vs neal, next seed: "
        f"{row['neal_reseed_median_rel_gap']:+.2e}",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=None, help="a1a LIBSVM file (default: the shipped a1a)"
    )
    p.add_argument("--quick", action="store_true", help="100 sweeps and the wide case, 1 repeat")
    p.add_argument("--device", default="cpu", help="batched device: cpu, torch-cpu, cuda, auto")
    p.add_argument("--num-reads", type=int, default=10)
    p.add_argument("--num-sweeps", type=int, nargs="+", default=None, help="default 100 1000")
    p.add_argument("--num-threads", type=int, default=None, help="batched threads (default: free)")
    p.add_argument("--eta", type=float, default=None, help="step size (default: balanced)")
    p.add_argument(
        "--repeats", type=int, default=None, help="repeats (seeds) per solver, default 2"
    )
    p.add_argument("--processes", type=int, default=0, help="neal pool size (default 0: skip)")
    p.add_argument("--no-wide", action="store_true", help="skip the batch-128 fan-in-512 case")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    sweeps_list = args.num_sweeps or ([100] if args.quick else [100, 1000])
    repeats = args.repeats or (1 if args.quick else 2)

    batch, eta = build_problems(args.data, args.seed, args.eta)
    ranges = default_beta_range(batch)
    sampler = BatchedAnnealer()
    R = args.num_reads
    print(
        f"problems: m={batch.num_problems} n={batch.num_variables} rank={batch.factor.shape[0]} "
        f"eta={eta:.4g}; reads={R}; beta_range median=({np.median(ranges[:, 0]):.3g}, "
        f"{np.median(ranges[:, 1]):.3g}); load average {os.getloadavg()[0]:.1f}"
    )
    t0 = time.perf_counter()
    for kernel in ("fast", "reference") if args.device == "cpu" else ("fast",):
        sampler.sample_batch(
            batch.subset(slice(0, 2)),
            num_reads=2,
            num_sweeps=2,
            seed=0,
            device=args.device,
            kernel=kernel,
            path="factor",
        )
        sampler.sample_batch(
            batch.subset(slice(0, 2)),
            num_reads=2,
            num_sweeps=2,
            seed=0,
            device=args.device,
            kernel=kernel,
            path="dense",
        )
    print(f"warm-up (numba compile/cache load, excluded): {time.perf_counter() - t0:.2f} s")

    pool = None
    if args.processes > 0:
        _init_worker(batch, ranges)
        pool = mp.get_context("fork").Pool(args.processes, _init_worker, (batch, ranges))
        pool.map(_neal_one, [(0, 1, 1, 0)] * args.processes)  # warm-up, excluded

    record: dict = {"bench": "annealers", "m": batch.num_problems, "n": batch.num_variables}
    record.update(batch=BATCH, num_reads=R, device=args.device, quick=args.quick, **machine())
    record["load_average_start"] = round(os.getloadavg()[0], 2)
    runs = []
    for S in sweeps_list:
        runs.append(
            compare(
                batch,
                sampler,
                S,
                R,
                repeats,
                args.seed,
                args.device,
                args.num_threads,
                pool,
                "layer",
            )
        )
    if pool is not None:
        pool.close()
        pool.join()
    record["runs"] = runs
    head = runs[0]
    by_sweeps = {r["num_sweeps"]: r for r in runs}
    record.update(
        speedup=head["speedup_vs_loop"],
        speedup_1000=by_sweeps[1000]["speedup_vs_loop"] if 1000 in by_sweeps else None,
        speedup_vs_pool=head["speedup_vs_pool"],
        speedup_vs_reference=head["speedup_vs_reference"],
        median_energy_gap=head["median_energy_gap"],
        median_rel_gap=head["median_rel_gap"],
        neal_reseed_median_rel_gap=head["neal_reseed_median_rel_gap"],
        num_sweeps=head["num_sweeps"],
        compile_excluded=True,
    )
    if not args.no_wide:
        wide, _ = build_problems(
            args.data, args.seed, None, WIDE["batch"], WIDE["fan_in"], WIDE["fan_out"]
        )
        row = compare(
            wide,
            sampler,
            WIDE["num_sweeps"],
            WIDE["num_reads"],
            repeats,
            args.seed,
            args.device,
            args.num_threads,
            None,
            "b128-n512",
        )
        record["wide"] = row
        record["speedup_b128_n512"] = row["speedup_vs_loop"]
    record["load_average_end"] = round(os.getloadavg()[0], 2)
    emit(record)
    return record


if __name__ == "__main__":
    main()
