"""Benchmark: a 10-layer x 128 batch of QUBOs solved in one process vs on a 2-worker Dask cluster.

Problems: one QP-SBGD step of a 10-layer, 128-wide binary MLP with a batch of 16 inputs: each
layer yields 128 per-neuron Ising problems of 128 spins sharing ``J = eta^2 offdiag(X^T X)/16``
(``qsgd.qubo.layer_ising``, low-rank factor ``X``), with ±1 inputs ``X`` and Gaussian upstream
gradients (seeded). ``eta`` balances the rms of fields and couplings.

Solvers (same backend, same seeds, same run settings):

* ``one process``: ``solve_batch(sampler, layer, seed=s_l)`` for each layer in turn;
* ``cluster``: ``qsgd.distributed.solve_batches`` on a ``LocalCluster`` of 2 worker processes
  with 1 thread each; all chunks of all layers are submitted at once. Cluster start-up and one
  warm-up solve are excluded from the timing and reported separately.

Backend: ``neal`` by default (dwave-samplers simulated annealing, single-threaded per call; a
per-problem backend, so the distributed samples are bit-identical to ``solve_batch``). With
``--backend batched`` the in-process reference is the same chunk plan run locally (the batched
annealer seeds per chunk; see ``qsgd.distributed``), and ``NUMBA_NUM_THREADS=1`` should be set so
that the one-process reference is single-threaded too.

Reported: both wall times (best of ``--repeats``), their ratio ``speedup`` (target >= 1.6 on
2 cores), ``identical`` (all samples and energies equal), cluster start-up seconds, and CPU
seconds per solve (this process alone; each worker; the client during the cluster run) with
``cpu_speedup = one-process CPU / busiest worker CPU``, the speed-up the cluster reaches when
each worker has a free core. On a machine shared with other jobs the wall-time ratio measures
the share of the CPUs the job got; the CPU ratio does not depend on it.

Run: ``python benchmarks/bench_distributed.py [--quick] [--backend neal|batched]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_time, emit, machine  # noqa: E402

from qsgd.distributed import DaskEngine, solve_batch_distributed, solve_batches  # noqa: E402
from qsgd.ising import IsingBatch  # noqa: E402
from qsgd.qubo import layer_ising  # noqa: E402
from qsgd.samplers import get_sampler, solve_batch  # noqa: E402

BATCH, WIDTH = 16, 128


def build_layers(num_layers: int, seed: int) -> list[IsingBatch]:
    """``num_layers`` batches of 128 problems x 128 spins (batch-16 low-rank couplings)."""
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(num_layers):
        X = rng.choice([-1.0, 1.0], size=(BATCH, WIDTH))
        G = rng.standard_normal((BATCH, WIDTH)) / BATCH
        g_rms = np.sqrt(np.mean((G.T @ X) ** 2))
        h_rms = np.sqrt(np.mean((X.T @ X / BATCH) ** 2) * WIDTH)
        eta = float(g_rms / h_rms)  # eta*g ~ eta^2*H: fields and couplings of equal weight
        layers.append(layer_ising(X, G, eta=eta))
    return layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer reads and sweeps (< 1 min)")
    ap.add_argument("--backend", default="neal", choices=["neal", "batched"])
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--num-reads", type=int, default=None)
    ap.add_argument("--num-sweeps", type=int, default=None)
    ap.add_argument("--chunk-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    reads = args.num_reads or (4 if args.quick else 10)
    sweeps = args.num_sweeps or (50 if args.quick else 100)
    repeats = args.repeats or (1 if args.quick else 2)
    run = {"num_reads": reads, "num_sweeps": sweeps}
    if args.backend == "batched":
        run["device"] = "cpu"

    layers = build_layers(args.layers, args.seed)
    seeds = list(range(100, 100 + args.layers))
    sampler = get_sampler(args.backend)
    print(
        f"{args.layers} layers x {layers[0].num_problems} problems x {layers[0].num_variables} spins, "
        f"backend {args.backend}, {reads} reads x {sweeps} sweeps, chunk {args.chunk_size}, "
        f"{args.workers} workers; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus",
        flush=True,
    )

    def one_process():
        if args.backend == "neal":
            return [
                solve_batch(sampler, b, seed=s, **run) for b, s in zip(layers, seeds, strict=True)
            ]
        return [
            solve_batch_distributed(sampler, b, chunk_size=args.chunk_size, seed=s, **run)
            for b, s in zip(layers, seeds, strict=True)
        ]

    if args.backend == "batched":
        solve_batch(sampler, layers[0], seed=0, **run)  # warm-up: numba compile
    c0 = time.process_time()
    t_local, local = best_time(one_process, repeats)
    cpu_local = (time.process_time() - c0) / repeats
    print(f"one process: {t_local:.2f} s", flush=True)

    t0 = time.perf_counter()
    with DaskEngine("processes", n_workers=args.workers, threads_per_worker=1) as engine:
        engine.client.wait_for_workers(args.workers)
        startup = time.perf_counter() - t0

        def cluster():
            return solve_batches(
                args.backend, layers, seeds=seeds, engine=engine, chunk_size=args.chunk_size, **run
            )

        # warm-up: imports (and numba compile) on every worker, one chunk each
        solve_batches(
            args.backend,
            [layers[0].subset(slice(0, 2 * args.workers))],
            seeds=[0],
            engine=engine,
            chunk_size=2,
            **run,
        )
        before = engine.client.run(time.process_time)
        c0 = time.process_time()
        t_dist, dist = best_time(cluster, repeats)
        cpu_client = (time.process_time() - c0) / repeats
        after = engine.client.run(time.process_time)
        cpu_workers = [(after[w] - before[w]) / repeats for w in after if w in before]
    print(
        f"cluster ({args.workers} workers): {t_dist:.2f} s (start-up {startup:.1f} s)", flush=True
    )
    identical = all(
        np.array_equal(a.samples, b.samples) and np.array_equal(a.energies, b.energies)
        for a, b in zip(local, dist, strict=True)
    )
    speedup = t_local / t_dist
    # CPU seconds do not depend on how busy the machine is: the speed-up the cluster reaches
    # with one free core per worker is (one-process CPU) / (busiest worker's CPU).
    cpu_speedup = cpu_local / max(cpu_workers) if cpu_workers else float("nan")
    print(f"speedup {speedup:.2f}x, identical results: {identical}", flush=True)
    print(
        f"CPU seconds per solve: one process {cpu_local:.2f}; workers "
        f"{', '.join(f'{c:.2f}' for c in cpu_workers)}; client {cpu_client:.2f} -> "
        f"speed-up with {args.workers} free cores {cpu_speedup:.2f}x",
        flush=True,
    )
    emit(
        {
            "bench": "distributed",
            "backend": args.backend,
            "layers": args.layers,
            "problems_per_layer": layers[0].num_problems,
            "spins": layers[0].num_variables,
            "num_reads": reads,
            "num_sweeps": sweeps,
            "workers": args.workers,
            "chunk_size": args.chunk_size,
            "one_process_s": round(t_local, 3),
            "cluster_s": round(t_dist, 3),
            "speedup": round(speedup, 3),
            "identical": identical,
            "cluster_startup_s": round(startup, 2),
            "one_process_cpu_s": round(cpu_local, 3),
            "worker_cpu_s": [round(c, 3) for c in cpu_workers],
            "client_cpu_s": round(cpu_client, 3),
            "cpu_speedup": round(cpu_speedup, 3),
            "load_average": round(os.getloadavg()[0], 2),
            "quick": args.quick,
            **machine(),
        }
    )


if __name__ == "__main__":
    main()
