"""Wall time of one a1a 10-layer epoch: QP-SBGD on the ``batched`` annealer vs BinaryConnect.

Both optimisers train the same binary MLP (123 -> 128 x 9 -> 2, batch norm, sign
activations; ``bnn.models.BinaryMLP``) on the full a1a training file (1605 rows,
batch 16, ~101 steps per epoch; ``bnn.data.get_dataset("a1a", val_fraction=0)``),
single-threaded (``torch.set_num_threads(1)``, numba threads set by ``--numba-threads``).
Epochs of the two optimisers are interleaved (BC, QP, BC, QP, ...) so that load from
other processes on a shared machine hits both alike; the figures are medians over
``--repeats`` epochs. One untimed warm-up step per optimiser loads the numba kernels.

QP-SBGD uses the settings recommended in ``docs/tuning.md`` (override them with the
flags): ``binary_gradient``, lr 0.003, curvature 30 scaled by ``curvature_scale``
("fisher" when the optimiser supports it), and a cheap, warm-started annealer:
``num_reads=1``, ``num_sweeps=10``, ``warm_start=True`` (every chain starts from
``sign(-h)``, the signSGD direction, and is annealed from the per-problem default
``beta_range``).

Run ``python benchmarks/bench_epoch.py [--quick]``; the last line is JSON::

    {"bench": "epoch", "qpsbgd_epoch_s": ..., "binaryconnect_epoch_s": ..., "ratio": ...,
     "settings": {...}, ...}

``ratio = qpsbgd_epoch_s / binaryconnect_epoch_s`` (issue 3 target: <= 10). ``--quick``
times 25 steps per "epoch" and scales them to a full epoch (steps per epoch / 25).
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine  # noqa: E402

from bnn.baselines import make_optimizer  # noqa: E402
from bnn.data import get_dataset  # noqa: E402
from bnn.models import BinaryMLP  # noqa: E402

__all__ = ["main", "run_epoch", "build_optimizers"]

HIDDEN = [128] * 9
BATCH = 16


def _qpsbgd_options(args: argparse.Namespace) -> dict[str, Any]:
    """QP-SBGD constructor options from the command line (recommended defaults)."""
    from qsgd.optimizer import QPSBGD

    opts: dict[str, Any] = dict(
        lr=args.qp_lr,
        curvature=args.curvature,
        formulation=args.formulation,
        backend="batched",
        backend_options={
            "num_reads": args.num_reads,
            "num_sweeps": args.num_sweeps,
            "warm_start": not args.cold_start,
            "device": "cpu",
        },
        seed=0,
    )
    if args.curvature_scale and "curvature_scale" in inspect.signature(QPSBGD).parameters:
        opts["curvature_scale"] = args.curvature_scale
    if args.schedule != "all":
        opts["layer_schedule"] = args.schedule
    return opts


def build_optimizers(
    args: argparse.Namespace, in_features: int, num_classes: int
) -> dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]]:
    """Two identically initialised models with their optimisers, keyed by method name."""
    out = {}
    for name in ("binaryconnect", "qpsbgd"):
        torch.manual_seed(0)
        model = BinaryMLP(in_features, HIDDEN, num_classes)
        if name == "qpsbgd":
            opt = make_optimizer("qpsbgd", model, **_qpsbgd_options(args))
        else:
            opt = make_optimizer("binaryconnect", model, lr=args.bc_lr)
        out[name] = (model, opt)
    return out


def run_epoch(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    seed: int,
) -> tuple[float, float, float]:
    """Train ``steps`` mini-batches of ``BATCH`` rows of a seeded permutation.

    Returns:
        ``(wall_s, solver_s, mean_loss)``: wall time of the loop, the annealer wall time
        reported by QP-SBGD's ``last_stats`` (0 for other optimisers), the mean batch loss.

    Shape:
        x ``(rows, features)``, y ``(rows,)``.
    """
    model.train()
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    solver, losses = 0.0, []
    t0 = time.perf_counter()
    for k in range(steps):
        idx = perm[k * BATCH : (k + 1) * BATCH]
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if type(opt).__name__ == "QPSBGD":
            solver += sum(s["wall_time"] for s in opt.last_stats)
    wall = time.perf_counter() - t0
    return wall, solver, sum(losses) / len(losses)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print its JSON record as the last line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="25 steps per epoch, 2 repeats")
    p.add_argument("--repeats", type=int, default=None, help="timed epochs per optimiser")
    p.add_argument("--steps", type=int, default=None, help="steps per timed epoch")
    p.add_argument("--qp-lr", type=float, default=0.003)
    p.add_argument("--bc-lr", type=float, default=0.003)
    p.add_argument("--curvature", type=float, default=30.0)
    p.add_argument("--curvature-scale", default="fisher", help="'' keeps the optimiser default")
    p.add_argument("--formulation", default="binary_gradient")
    p.add_argument("--num-reads", type=int, default=1)
    p.add_argument("--num-sweeps", type=int, default=10)
    p.add_argument("--cold-start", action="store_true", help="random initial states")
    p.add_argument("--schedule", default="all", help="'all' or 'round_robin'")
    p.add_argument("--numba-threads", type=int, default=1)
    args = p.parse_args(argv)

    import numba

    torch.set_num_threads(1)
    numba.set_num_threads(max(1, min(args.numba_threads, numba.config.NUMBA_NUM_THREADS)))
    ds = get_dataset("a1a", features="all", spins=True, val_fraction=0.0, seed=0)
    x, y = ds.x_train, ds.y_train
    full_steps = -(-x.shape[0] // BATCH)
    steps = args.steps or (25 if args.quick else full_steps)
    steps = min(steps, full_steps)
    repeats = args.repeats or (2 if args.quick else 3)
    runs = build_optimizers(args, ds.num_features, ds.num_classes)
    for model, opt in runs.values():  # warm-up: numba kernels, allocator
        run_epoch(model, opt, x, y, steps=1, seed=10_000)

    times: dict[str, list[float]] = {k: [] for k in runs}
    solver: list[float] = []
    loss: dict[str, float] = {}
    for r in range(repeats):
        for name, (model, opt) in runs.items():
            wall, sol, mean_loss = run_epoch(model, opt, x, y, steps=steps, seed=r)
            times[name].append(wall * full_steps / steps)
            loss[name] = mean_loss
            if name == "qpsbgd":
                solver.append(sol * full_steps / steps)
            print(
                f"repeat {r} {name:14s} epoch {wall * full_steps / steps:7.2f} s "
                f"(timed {steps} steps: {wall:.2f} s; solver {sol:.2f} s; loss {mean_loss:.4f})",
                flush=True,
            )
    qp = statistics.median(times["qpsbgd"])
    bc = statistics.median(times["binaryconnect"])
    opts = _qpsbgd_options(args)
    settings = {k: v for k, v in opts.items() if k not in ("seed",)}
    record = {
        "bench": "epoch",
        "qpsbgd_epoch_s": round(qp, 4),
        "binaryconnect_epoch_s": round(bc, 4),
        "ratio": round(qp / bc, 3),
        "qpsbgd_solver_s": round(statistics.median(solver), 4),
        "steps_per_epoch": full_steps,
        "timed_steps": steps,
        "repeats": repeats,
        "settings": settings,
        "binaryconnect_lr": args.bc_lr,
        "numba_threads": numba.get_num_threads(),
        "torch_threads": torch.get_num_threads(),
        "quick": bool(args.quick),
        "machine": machine(),
    }
    print(
        f"QP-SBGD {qp:.2f} s/epoch vs BinaryConnect {bc:.2f} s/epoch: ratio {qp / bc:.2f} "
        f"(target <= 10)"
    )
    emit(record)
    return record


if __name__ == "__main__":
    main()
