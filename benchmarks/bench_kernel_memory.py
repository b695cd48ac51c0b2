"""Benchmark: time and peak resident memory of an evaluation Gram (no gradient) against N.

8 qubits, the layered embedding of Hubregtsen et al. (2 layers), ``K(X, X)`` inside
``torch.no_grad()`` with the default 1 GiB memory budget, and the same Gram with an autograd
graph for comparison at the smaller sizes. Each measurement runs in a fresh subprocess so that
its peak RSS (``ru_maxrss``) is its own; ``base_mb`` is the RSS after imports, before the Gram.

    python benchmarks/bench_kernel_memory.py                 # N = 1000, 4000, 10000
    python benchmarks/bench_kernel_memory.py --sizes 1000    # quicker

The last line is one JSON object ``{"bench": "kernel_memory", ...}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads({threads})
from qkernels.ansatz import get_ansatz
from qkernels.kernel import EmbeddingKernel
n, grad = {n}, {grad}
X = np.random.default_rng(0).uniform(0.0, np.pi, (n, 8))
kern = EmbeddingKernel(get_ansatz("hubregtsen", 8, 2), bandwidth=0.25, seed=0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if grad:
    K = kern.gram(X)
    assert K.requires_grad
else:
    with torch.no_grad():
        K = kern.gram(X)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"n": n, "autograd": grad, "seconds": seconds, "base_mb": base / 1024,
                  "peak_mb": peak / 1024, "gram_mb": K.numel() * 8 / 2**20}}))
"""


def measure(n: int, grad: bool, threads: int) -> dict:
    code = _CHILD.format(n=n, grad=grad, threads=threads)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 10000])
    parser.add_argument("--grad-sizes", type=int, nargs="*", default=[1000, 4000])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    rows = [measure(n, False, args.threads) for n in args.sizes]
    rows += [measure(n, True, args.threads) for n in args.grad_sizes]
    for r in rows:
        mode = "autograd" if r["autograd"] else "no_grad "
        print(
            f"N={r['n']:>6} {mode}  {r['seconds']:7.2f} s  peak {r['peak_mb']:7.0f} MB "
            f"(after imports {r['base_mb']:.0f} MB; Gram itself {r['gram_mb']:.0f} MB)"
        )
    result = {
        "bench": "kernel_memory",
        "threads": args.threads,
        "python": platform.python_version(),
        "rows": rows,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
