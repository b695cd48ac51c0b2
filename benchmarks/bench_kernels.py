"""Benchmark: batched statevector Gram vs PennyLane's per-pair ``square_kernel_matrix``.

8 qubits, N = 100, the layered embedding of Hubregtsen et al. (2 layers), measured side by side
in one run, plus the N = 1000 Gram time on its own and alignment training-step times.

    python benchmarks/bench_kernels.py           # full: per-pair part on N = 100
    python benchmarks/bench_kernels.py --quick   # per-pair part on N = 20 (said in the JSON)

The last line is one JSON object ``{"bench": "kernels", ...}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pennylane as qml
import torch

from qkernels.alignment import target_alignment
from qkernels.ansatz import get_ansatz
from qkernels.kernel import EmbeddingKernel


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="per-pair part on N=20 (< 1 min)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    n_wires, n_layers, n = 8, 2, 100
    n_pair = 20 if args.quick else n
    rng = np.random.default_rng(0)
    X = rng.uniform(0.0, np.pi, size=(1000, n_wires))
    ansatz = get_ansatz("hubregtsen", n_wires, n_layers)
    kern = EmbeddingKernel(ansatz, bandwidth=0.25, seed=0)
    params = kern.params.detach().numpy()

    # PennyLane's own per-pair evaluation: one overlap circuit per pair (numpy interface)
    dev = qml.device("default.qubit", wires=n_wires)

    @qml.qnode(dev)
    def overlap(x1, x2):
        ansatz(x1, params)
        qml.adjoint(ansatz)(x2, params)
        return qml.probs(wires=range(n_wires))

    def pair_k(x1, x2):
        return overlap(0.25 * x1, 0.25 * x2)[0]

    t0 = time.perf_counter()
    K_ref = qml.kernels.square_kernel_matrix(X[:n_pair], pair_k)
    t_pair = time.perf_counter() - t0

    with torch.no_grad():
        kern.gram(X[:10])  # warm-up (QNode construction)
        t_batch_pair, K_pair = best_of(lambda: kern.gram(X[:n_pair]), 5)
        t_batch, _ = best_of(lambda: kern.gram(X[:n]), 5)
        t_1000, K1000 = best_of(lambda: kern.gram(X), 2)
    max_diff = float(np.abs(K_pair.numpy() - K_ref).max())

    y = np.where(rng.uniform(size=1000) > 0.5, 1, -1)
    opt = torch.optim.Adam([kern.params], lr=0.05)

    def step(m: int) -> float:
        opt.zero_grad()
        a = target_alignment(kern.gram(X[:m]), y[:m])
        (-a).backward()
        opt.step()
        return float(a.detach())

    step(8)
    t_step8, _ = best_of(lambda: step(8), 5)
    t_step100, _ = best_of(lambda: step(n), 3)

    # per-pair time scaled to N=100 pairs when --quick ran it on fewer points
    pairs = lambda m: m * (m + 1) // 2  # noqa: E731  (square_kernel_matrix also runs the diagonal)
    t_pair_100 = t_pair * pairs(n) / pairs(n_pair)
    result = {
        "bench": "kernels",
        "quick": args.quick,
        "n_wires": n_wires,
        "n_layers": n_layers,
        "ansatz": "hubregtsen",
        "threads": args.threads,
        "n_per_pair": n_pair,
        "per_pair_seconds": t_pair,
        "batched_seconds_same_n": t_batch_pair,
        "speedup_same_n": t_pair / t_batch_pair,
        "per_pair_seconds_n100": t_pair_100 if args.quick else t_pair,
        "per_pair_n100_extrapolated": args.quick,
        "batched_seconds_n100": t_batch,
        "speedup_n100": (t_pair_100 if args.quick else t_pair) / t_batch,
        "max_abs_diff": max_diff,
        "batched_seconds_n1000": t_1000,
        "gram_n1000_mean_offdiag": float((K1000.sum() - 1000) / (1000 * 999)),
        "train_step_seconds_batch8": t_step8,
        "train_step_seconds_batch100": t_step100,
        "pennylane": qml.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    print(
        f"N={n_pair}: per-pair square_kernel_matrix {t_pair:.2f} s, batched {t_batch_pair * 1e3:.1f} ms "
        f"({result['speedup_same_n']:.0f}x), max |diff| {max_diff:.1e}"
    )
    note = f" (per-pair extrapolated from N={n_pair})" if args.quick else ""
    print(
        f"N=100: batched {t_batch * 1e3:.1f} ms, speedup {result['speedup_n100']:.0f}x{note}; "
        f"N=1000: {t_1000:.2f} s; training step: batch 8 {t_step8 * 1e3:.1f} ms, "
        f"batch 100 {t_step100 * 1e3:.1f} ms"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
