"""Benchmark: the ``batched`` annealer vs dwave-samplers' simulated annealing (``neal``).

Problems: the 128 per-neuron Ising problems of one QP-SBGD step on a 128x128 binary layer
with a batch of 16 real inputs. Inputs come from a1a (LIBSVM, 123 binary features, mapped to
±1 and centred with the dataset's column means) through a random ±1 layer ``X = sign(A W0^T)`` (16 x 128); the upstream gradient ``G`` is
the true gradient of a logistic loss on the a1a labels through ``tanh`` and a random readout.
The problems are ``qsgd.qubo.layer_ising(X, G, eta, curvature=1)`` (``J = eta^2 offdiag(X^T X)/B``,
``h = -eta X^T G``, low-rank factor ``X``); ``eta`` balances fields and couplings (their rms
local fields are equal) unless ``--eta`` is given.

Solvers, all with the same ``num_reads``, ``num_sweeps`` and per-problem ``beta_range``
(:func:`qsgd.samplers.batched.default_beta_range`, geometric schedule):

* ``neal loop``: ``SimulatedAnnealingSampler.sample`` called once per problem (BQM built
  from numpy vectors inside the timed loop, as the ``neal`` backend must).
* ``neal pool``: the same calls spread over a 2-process ``multiprocessing`` pool (pool start-up
  and a warm-up call excluded).
* ``batched``: one ``BatchedAnnealer.sample_batch`` call for all problems (numba compile time
  excluded by a warm-up call; with ``--device cuda`` the torch/CUDA path).

Reported: wall times (best of ``--repeats``), speed-ups, and the per-problem gap
``batched best energy - neal best energy`` (median, and relative to ``|neal best|``). Negative
gaps mean ``batched`` found lower energies. For scale, the same relative gap of neal against
itself run with other seeds is reported too (``neal_reseed_median_rel_gap``).

Run: ``python benchmarks/bench_annealers.py [--quick] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_time, emit, load_libsvm, machine  # noqa: E402

from qsgd.ising import IsingBatch, to_bqm  # noqa: E402
from qsgd.samplers.batched import BatchedAnnealer, default_beta_range  # noqa: E402

BATCH, FAN_IN, FAN_OUT, A1A_FEATURES = 16, 128, 128, 123


def build_problems(data: Path | None, seed: int, eta: float | None) -> tuple[IsingBatch, float]:
    """The 128 per-neuron problems of a 128x128 layer for 16 a1a inputs, and the eta used."""
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


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=None, help="a1a LIBSVM file (default: the shipped a1a)"
    )
    p.add_argument("--quick", action="store_true", help="one sweep budget, one repeat (< 1 min)")
    p.add_argument("--device", default="cpu", help="batched device: cpu, torch-cpu, cuda, auto")
    p.add_argument("--num-reads", type=int, default=10)
    p.add_argument("--num-sweeps", type=int, nargs="+", default=None, help="default 100 1000")
    p.add_argument("--eta", type=float, default=None, help="step size (default: balanced)")
    p.add_argument("--repeats", type=int, default=None, help="timing repeats (best of)")
    p.add_argument("--processes", type=int, default=2, help="neal pool size (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    sweeps_list = args.num_sweeps or ([100] if args.quick else [100, 1000])
    repeats = args.repeats or (1 if args.quick else 3)

    batch, eta = build_problems(args.data, args.seed, args.eta)
    ranges = default_beta_range(batch)
    _init_worker(batch, ranges)
    sampler = BatchedAnnealer()
    R = args.num_reads
    print(
        f"problems: m={batch.num_problems} n={batch.num_variables} rank={batch.factor.shape[0]} "
        f"eta={eta:.4g}; reads={R}; beta_range median=({np.median(ranges[:, 0]):.3g}, "
        f"{np.median(ranges[:, 1]):.3g})"
    )
    t0 = time.perf_counter()
    sampler.sample_batch(
        batch.subset(slice(0, 2)), num_reads=2, num_sweeps=2, seed=0, device=args.device
    )
    print(f"warm-up (numba compile/cache load, excluded): {time.perf_counter() - t0:.2f} s")

    pool = None
    if args.processes > 0:
        pool = mp.get_context("fork").Pool(args.processes, _init_worker, (batch, ranges))
        pool.map(_neal_one, [(0, 1, 1, 0)] * args.processes)  # warm-up, excluded

    record: dict = {"bench": "annealers", "m": batch.num_problems, "n": batch.num_variables}
    record.update(batch=BATCH, num_reads=R, device=args.device, quick=args.quick, **machine())
    runs = []
    for S in sweeps_list:
        t_loop, best_loop = best_time(lambda S=S: neal_loop(batch, R, S, args.seed), repeats)
        e_loop = batch.energies(best_loop)
        # run-to-run noise of the reference: neal against itself with other seeds
        e_other = batch.energies(neal_loop(batch, R, S, args.seed + 100_000))
        noise = float(np.median((e_other - e_loop) / np.abs(e_loop)))
        t_pool = float("nan")
        if pool is not None:
            t_pool, best_pool = best_time(
                lambda S=S: neal_pool(pool, batch, R, S, args.seed), repeats
            )
            assert np.allclose(batch.energies(best_pool), e_loop)  # same seeds -> same answers
        t_bat, res = best_time(
            lambda S=S: sampler.sample_batch(
                batch, num_reads=R, num_sweeps=S, seed=args.seed, device=args.device
            ),
            repeats,
        )
        e_bat = res.best_energy
        gap = e_bat - e_loop
        rel = gap / np.abs(e_loop)
        run = {
            "num_sweeps": S,
            "neal_loop_s": round(t_loop, 4),
            "neal_pool_s": round(t_pool, 4),
            "batched_s": round(t_bat, 4),
            "speedup_vs_loop": round(t_loop / t_bat, 2),
            "speedup_vs_pool": round(t_pool / t_bat, 2),
            "median_energy_gap": float(np.median(gap)),
            "median_rel_gap": float(np.median(rel)),
            "neal_reseed_median_rel_gap": noise,
            "frac_batched_le_neal": float(np.mean(gap <= 1e-9 * np.abs(e_loop))),
            "median_neal_best": float(np.median(e_loop)),
        }
        runs.append(run)
        print(
            f"sweeps={S:5d}  neal loop {t_loop:7.3f} s  neal pool({args.processes}) {t_pool:7.3f} s  "
            f"batched[{res.info['device']}/{res.info['path']}] {t_bat:7.3f} s  "
            f"speed-up {t_loop / t_bat:6.1f}x (loop) {t_pool / t_bat:6.1f}x (pool)  "
            f"median gap {np.median(gap):+.4g} (rel {np.median(rel):+.2e}), "
            f"batched <= neal on {100 * run['frac_batched_le_neal']:.0f}% of problems; "
            f"neal vs neal with other seeds: median rel gap {noise:+.2e}"
        )
    if pool is not None:
        pool.close()
        pool.join()
    record["runs"] = runs
    head = runs[0]
    record.update(
        speedup=head["speedup_vs_loop"],
        speedup_vs_pool=head["speedup_vs_pool"],
        median_energy_gap=head["median_energy_gap"],
        median_rel_gap=head["median_rel_gap"],
        neal_reseed_median_rel_gap=head["neal_reseed_median_rel_gap"],
        num_sweeps=head["num_sweeps"],
        compile_excluded=True,
    )
    emit(record)
    return record


if __name__ == "__main__":
    main()
