"""Wall time of one training epoch, QP-SBGD on the ``batched`` annealer vs BinaryConnect.

Three workloads, each measured side by side in one run (epochs of the two optimisers
interleaved, BC, QP, BC, QP, ..., so that load from other processes hits both alike; the
figures are medians over ``--repeats`` epochs), single-threaded by default (one torch thread
for both optimisers, one numba/BLAS thread for the annealer; ``--torch-threads`` and
``--numba-threads`` raise them). One untimed warm-up step per optimiser loads the numba kernels.

* ``a1a``: the a1a 10-layer network of ``examples/a1a_10layer.py`` (``BinaryMLP(123, [128] * 9,
  2)``, batch norm, sign activations) on the full a1a training file (1605 rows, batch 16, 101
  steps per epoch). QP-SBGD with the settings of the committed experiment
  (``results/a1a_10layer``: ``batched``, 1 read x 10 sweeps from random states, the
  per-problem default ``beta_range``; Fisher curvature 3, lr 0.001, the setting its search
  chose); BinaryConnect lr 0.001.
* ``cora`` / ``citeseer``: the binary GCN of ``examples/gcn.py`` (``BinaryGCN(F, [64], C,
  dropout=0.5)``, full batch, loss on the training mask; one epoch is one step). QP-SBGD with
  the example's annealer (``batched``, 1 read x 20 sweeps), Fisher curvature 30, lr 0.01;
  BinaryConnect lr 0.01. The first layer's problems: 64 of 1433 (Cora) / 3703 (CiteSeer) spins,
  built from the node rows with a non-zero gradient.

An epoch here is the training steps only (no evaluation pass), the harder comparison.

Run ``python benchmarks/bench_epoch.py [--quick] [--tasks a1a,cora,citeseer]``; the last line
is JSON::

    {"bench": "epoch", "ratio": ..., "ratio_cora": ..., "ratio_citeseer": ...,
     "a1a": {"qpsbgd_epoch_s": ..., "binaryconnect_epoch_s": ..., ...}, "cora": {...}, ...}

``ratio* = QP-SBGD epoch / BinaryConnect epoch`` (issue 13 target: <= 3 each). ``--quick`` times
25 a1a steps per "epoch" (scaled to the full 101) and fewer repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine  # noqa: E402

__all__ = ["main", "Workload", "make_workload", "run_epoch", "TASKS"]

TASKS = ("a1a", "cora", "citeseer")
A1A_HIDDEN = [128] * 9
A1A_BATCH = 16


@dataclass
class Workload:
    """One benchmark task: a model factory, its training batches and the optimiser settings.

    Attributes:
        name: ``"a1a"``, ``"cora"`` or ``"citeseer"``.
        make_model: Builds a freshly (seeded) initialised model.
        batches: ``batches(seed)`` -> list of ``(inputs, targets)`` closures' arguments of one epoch.
        loss: ``loss(model, batch)`` -> the training loss of one batch.
        qpsbgd: QP-SBGD constructor options.
        binaryconnect: BinaryConnect constructor options.
        steps_per_epoch: Steps of a full epoch.
    """

    name: str
    make_model: Callable[[], torch.nn.Module]
    batches: Callable[[int], list[Any]]
    loss: Callable[[torch.nn.Module, Any], torch.Tensor]
    qpsbgd: dict[str, Any]
    binaryconnect: dict[str, Any]
    steps_per_epoch: int
    info: dict[str, Any] = field(default_factory=dict)


def _annealer(
    num_reads: int, num_sweeps: int, seed: int = 0, threads: int | None = 1, warm: bool = False
) -> Any:
    """The ``batched`` config; ``threads`` annealer threads where the sampler has that setting,
    ``warm``: every chain starts from ``sign(-h)`` (the signSGD direction)."""
    from qsgd.config import AnnealerConfig
    from qsgd.samplers.batched import BatchedAnnealer

    cfg: dict[str, Any] = {
        "backend": "batched",
        "num_reads": num_reads,
        "num_sweeps": num_sweeps,
        "seed": seed,
    }
    options: dict[str, Any] = {"warm_start": True} if warm else {}
    if threads is not None and "num_threads" in BatchedAnnealer().parameters:
        options["num_threads"] = int(threads)
    if options:
        cfg["options"] = options
    return AnnealerConfig.from_dict(cfg)


def make_workload(
    name: str,
    *,
    num_reads: int = 1,
    num_sweeps: int | None = None,
    threads: int | None = 1,
    warm: bool = False,
) -> Workload:
    """The workload ``name`` with the experiments' settings (see the module docstring)."""
    from bnn.data import get_dataset
    from bnn.models import BinaryGCN, BinaryMLP

    if name == "a1a":
        ds = get_dataset("a1a", features="all", spins=True, val_fraction=0.0, seed=0)
        x, y = ds.x_train, ds.y_train
        steps = -(-x.shape[0] // A1A_BATCH)

        def batches(seed: int) -> list[Any]:
            perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
            return [perm[k * A1A_BATCH : (k + 1) * A1A_BATCH] for k in range(steps)]

        def loss(model: torch.nn.Module, idx: Any) -> torch.Tensor:
            return F.cross_entropy(model(x[idx]), y[idx])

        def model() -> torch.nn.Module:
            torch.manual_seed(0)
            return BinaryMLP(ds.num_features, A1A_HIDDEN, ds.num_classes)

        annealer = _annealer(num_reads, num_sweeps or 10, threads=threads, warm=warm)
        return Workload(
            name,
            model,
            batches,
            loss,
            dict(
                lr=0.001,
                curvature=3.0,
                curvature_scale="fisher",
                backend=annealer,
                seed=0,
                other_lr=0.001,
            ),
            dict(lr=0.001),
            steps,
            {
                "rows": int(x.shape[0]),
                "batch": A1A_BATCH,
                "annealer": {**annealer.run_options(), **annealer.options},
            },
        )
    if name in ("cora", "citeseer"):
        from bnn.layers import normalized_adjacency

        ds = get_dataset(name, spins=True)
        adj = normalized_adjacency(ds.edge_index, ds.num_nodes)
        mask = ds.train_mask & ds.label_valid if ds.label_valid is not None else ds.train_mask

        def gcn_loss(model: torch.nn.Module, _: Any) -> torch.Tensor:
            return F.cross_entropy(model(ds.x, adj)[mask], ds.y[mask])

        def gcn() -> torch.nn.Module:
            torch.manual_seed(0)
            return BinaryGCN(ds.num_features, [64], ds.num_classes, dropout=0.5)

        annealer = _annealer(num_reads, num_sweeps or 20, threads=threads, warm=warm)
        return Workload(
            name,
            gcn,
            lambda seed: [None],
            gcn_loss,
            dict(
                lr=0.01,
                curvature=30.0,
                curvature_scale="fisher",
                backend=annealer,
                seed=0,
                other_lr=0.01,
            ),
            dict(lr=0.01),
            1,
            {
                "nodes": ds.num_nodes,
                "features": ds.num_features,
                "annealer": {**annealer.run_options(), **annealer.options},
            },
        )
    raise ValueError(f"task must be one of {', '.join(TASKS)} (got {name!r})")


def run_epoch(
    model: torch.nn.Module, opt: torch.optim.Optimizer, work: Workload, *, steps: int, seed: int
) -> tuple[float, float, float]:
    """Train ``steps`` batches of the epoch ``seed``.

    Returns:
        ``(wall_s, solver_s, mean_loss)``: wall time of the loop, the annealer wall time
        reported by QP-SBGD's ``last_stats`` (0 for other optimisers), the mean batch loss.
    """
    model.train()
    batches = work.batches(seed)[:steps]
    solver, losses = 0.0, []
    qp = type(opt).__name__ == "QPSBGD"
    t0 = time.perf_counter()
    for b in batches:
        opt.zero_grad()
        loss = work.loss(model, b)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if qp:
            solver += sum(s["wall_time"] for s in opt.last_stats)
    wall = time.perf_counter() - t0
    return wall, solver, sum(losses) / len(losses)


def measure(work: Workload, *, steps: int, repeats: int) -> dict[str, Any]:
    """Interleaved epochs of BinaryConnect and QP-SBGD on ``work``; medians and ratio."""
    from bnn.baselines import make_optimizer

    runs = {}
    for name in ("binaryconnect", "qpsbgd"):
        model = work.make_model()
        opts = work.qpsbgd if name == "qpsbgd" else work.binaryconnect
        runs[name] = (model, make_optimizer(name, model, **opts))
    for model, opt in runs.values():  # warm-up: numba kernels, allocator
        run_epoch(model, opt, work, steps=1, seed=10_000)
    scale = work.steps_per_epoch / steps
    times: dict[str, list[float]] = {k: [] for k in runs}
    solver: list[float] = []
    for r in range(repeats):
        for name, (model, opt) in runs.items():
            wall, sol, mean_loss = run_epoch(model, opt, work, steps=steps, seed=r)
            times[name].append(wall * scale)
            if name == "qpsbgd":
                solver.append(sol * scale)
            print(
                f"{work.name:8s} repeat {r} {name:14s} epoch {wall * scale:7.3f} s "
                f"(timed {steps} steps: {wall:.3f} s; solver {sol:.3f} s; loss {mean_loss:.4f})",
                flush=True,
            )
    qp = statistics.median(times["qpsbgd"])
    bc = statistics.median(times["binaryconnect"])
    # each repeat's QP-SBGD epoch over the BinaryConnect epoch just before it: the spread of
    # these shows how much the machine's speed moved during the run
    paired = [q / b for q, b in zip(times["qpsbgd"], times["binaryconnect"], strict=True)]
    settings = {k: v for k, v in work.qpsbgd.items() if k not in ("seed", "backend")}
    return {
        "qpsbgd_epoch_s": round(qp, 4),
        "binaryconnect_epoch_s": round(bc, 4),
        "ratio": round(qp / bc, 3),
        "paired_ratios": [round(x, 3) for x in paired],
        "qpsbgd_solver_s": round(statistics.median(solver), 4),
        "steps_per_epoch": work.steps_per_epoch,
        "timed_steps": steps,
        "repeats": repeats,
        "settings": {**settings, **work.info},
        "binaryconnect": work.binaryconnect,
    }


def set_threads(numba_threads: int = 1, torch_threads: int = 1) -> dict[str, int]:
    """``torch_threads`` torch threads (both optimisers) and ``numba_threads`` numba threads
    (torch's count restored after numba's)."""
    import numba

    torch.set_num_threads(torch_threads)
    numba.set_num_threads(max(1, min(numba_threads, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(torch_threads)
    return {"torch": torch.get_num_threads(), "numba": numba.get_num_threads()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print its JSON record as the last line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="25 a1a steps per epoch, fewer repeats")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated: a1a,cora,citeseer")
    p.add_argument("--repeats", type=int, default=None, help="timed epochs per optimiser (a1a)")
    p.add_argument("--graph-repeats", type=int, default=None, help="timed epochs (GCN tasks)")
    p.add_argument("--steps", type=int, default=None, help="a1a steps per timed epoch")
    p.add_argument("--num-reads", type=int, default=1)
    p.add_argument("--num-sweeps", type=int, default=None, help="default: a1a 10, GCN 20")
    p.add_argument(
        "--warm-start",
        action="store_true",
        help="chains start from sign(-h) (not the experiments')",
    )
    p.add_argument("--numba-threads", type=int, default=1, help="annealer (numba and BLAS) threads")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads of both optimisers (default 1: one thread each)",
    )
    args = p.parse_args(argv)
    for flag, value in (
        ("--numba-threads", args.numba_threads),
        ("--torch-threads", args.torch_threads),
    ):
        if value < 1:
            print(f"error: {flag} must be a positive int (got {value})", file=sys.stderr)
            raise SystemExit(2)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        p.error(f"--tasks: unknown task {bad[0]!r}; known: {', '.join(TASKS)}")
    threads = set_threads(args.numba_threads, args.torch_threads)
    record: dict[str, Any] = {"bench": "epoch"}
    for task in tasks:
        work = make_workload(
            task,
            num_reads=args.num_reads,
            num_sweeps=args.num_sweeps,
            threads=args.numba_threads,
            warm=args.warm_start,
        )
        if task == "a1a":
            steps = min(
                args.steps or (25 if args.quick else work.steps_per_epoch), work.steps_per_epoch
            )
            repeats = args.repeats or (2 if args.quick else 3)
        else:
            steps = 1
            repeats = args.graph_repeats or (3 if args.quick else 7)
        res = measure(work, steps=steps, repeats=repeats)
        key = "ratio" if task == "a1a" else f"ratio_{task}"
        record[key] = res["ratio"]
        record[task] = res
        print(
            f"{task}: QP-SBGD {res['qpsbgd_epoch_s']:.3f} s/epoch vs BinaryConnect "
            f"{res['binaryconnect_epoch_s']:.3f} s/epoch: ratio {res['ratio']:.2f} (target <= 3; "
            f"per repeat {min(res['paired_ratios']):.2f}-{max(res['paired_ratios']):.2f})",
            flush=True,
        )
    record.update(threads=threads, quick=bool(args.quick), machine=machine())
    emit(record)
    return record


if __name__ == "__main__":
    main()
