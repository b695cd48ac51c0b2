"""Time to build all Ising problems of a 10-layer, 128-wide binary MLP vs one backward pass.

A torch MLP with sign weights (straight-through estimators) runs a real
forward/backward on one batch of 16 random inputs; the per-layer inputs and
gradients w.r.t. the pre-activations are captured, then every layer's
problems are built with :func:`qsgd.qubo.layer_ising` (both formulations).

Run ``python benchmarks/bench_qubo_build.py [--quick]``; the last line is JSON::

    {"bench": "qubo_build", "build_s": ..., "backward_s": ..., "ratio": ...}

``build_s`` and ``backward_s`` are medians over repeats; ``ratio = build_s / backward_s``
(the goal is well under 10).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from qsgd.qubo import layer_ising

LAYERS = 10
WIDTH = 128
BATCH = 16


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad


def _forward(weights: list[torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, list, list]:
    """Forward pass; returns the output, the layer inputs and the pre-activations."""
    inputs, pre = [], []
    h = x
    for k, w in enumerate(weights):
        inputs.append(h)
        z = h @ _SignSTE.apply(w).T
        z.retain_grad()
        pre.append(z)
        h = _SignSTE.apply(torch.nn.functional.hardtanh(z)) if k < len(weights) - 1 else z
    return h, inputs, pre


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (well under a minute)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    repeats = 20 if args.quick else 200
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    weights = [torch.randn(WIDTH, WIDTH, requires_grad=True) for _ in range(LAYERS)]
    x = torch.randn(BATCH, WIDTH)
    y = torch.randint(0, WIDTH, (BATCH,))

    def step() -> tuple[float, list, list]:
        for w in weights:
            w.grad = None
        out, inputs, pre = _forward(weights, x)
        loss = torch.nn.functional.cross_entropy(out / WIDTH, y)
        t0 = time.perf_counter()
        loss.backward()
        return time.perf_counter() - t0, inputs, pre

    for _ in range(3):  # warm up
        step()
    back_times = []
    for _ in range(repeats):
        dt, inputs, pre = step()
        back_times.append(dt)
    X = [h.detach().numpy().astype(np.float64) for h in inputs]
    G = [z.grad.numpy().astype(np.float64) for z in pre]
    W = [torch.where(w >= 0, 1.0, -1.0).detach().numpy().astype(np.float64) for w in weights]

    def build(formulation: str) -> float:
        t0 = time.perf_counter()
        for k in range(LAYERS):
            layer_ising(X[k], G[k], eta=0.01, formulation=formulation, weights=W[k], name=f"fc{k}")
        return time.perf_counter() - t0

    for _ in range(3):
        build("binary_gradient")
    build_bg = [build("binary_gradient") for _ in range(repeats)]
    build_pr = [build("projected") for _ in range(repeats)]

    backward_s = float(np.median(back_times))
    build_s = float(np.median(build_bg))
    projected_s = float(np.median(build_pr))
    result = {
        "bench": "qubo_build",
        "layers": LAYERS,
        "width": WIDTH,
        "batch": BATCH,
        "repeats": repeats,
        "build_s": round(build_s, 6),
        "build_projected_s": round(projected_s, 6),
        "backward_s": round(backward_s, 6),
        "ratio": round(build_s / backward_s, 3),
        "ratio_projected": round(projected_s / backward_s, 3),
    }
    print(
        f"build (binary_gradient, {LAYERS} layers): {build_s * 1e3:.3f} ms, "
        f"projected: {projected_s * 1e3:.3f} ms, backward: {backward_s * 1e3:.3f} ms"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
