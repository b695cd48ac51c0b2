"""Where one QP-SBGD step goes: forward/backward, capture, build, annealer, energies, update.

The workloads and settings are those of ``benchmarks/bench_epoch.py`` (a1a 10-layer network,
``batched``, 1 read x 10 sweeps; or the Cora/CiteSeer GCN, 1 read x 20 sweeps), one torch
thread and one numba thread. The script wraps the functions of each phase with timers that
count *exclusive* time (a phase nested in another is subtracted from its parent), runs
``--steps`` steps after a warm-up, and prints the mean time per step of every phase:

* ``forward`` / ``backward``: the model's forward (incl. the loss) and ``loss.backward()``
  (the capture hooks of the binary layers run inside them);
* ``capture checks``: :meth:`QPSBGD._captured` (finite checks of the captured tensors);
* ``problem build``: the Ising problems (:func:`qsgd.qubo.layer_ising` and the helpers the
  optimiser calls to prepare its inputs);
* ``annealer kernel``: the numba/torch kernels of the ``batched`` sampler;
* ``sampler setup``: the rest of ``BatchedAnnealer.sample_batch`` (schedule, seeds, initial
  states, sorting);
* ``energies``: every :func:`qsgd.ising.ising_energies` call;
* ``solve_batch``: the registry's wrapper (provenance, its energy check, sorting);
* ``update + record``: the rest of the per-layer update (decode, clip, copy, flips, record);
* ``standard optimiser``: Adam on the non-binary parameters;
* ``step bookkeeping``: the rest of :meth:`QPSBGD.step`.

Functions a version of the code does not have are skipped, so the script profiles older
commits too (``PYTHONPATH=<checkout> python benchmarks/profile_step.py``).

Run ``python benchmarks/profile_step.py [--task a1a|cora|citeseer] [--steps N]``; the last
line is JSON ``{"bench": "profile_step", "task": ..., "step_ms": ..., "phases_ms": {...}}``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine  # noqa: E402
from bench_epoch import TASKS, make_workload, set_threads  # noqa: E402

__all__ = ["main", "PhaseTimer", "PROBES"]

#: ``(module, attribute path, phase)``: the functions wrapped with timers (missing ones skipped).
PROBES: tuple[tuple[str, str, str], ...] = (
    ("qsgd.optimizer", "QPSBGD.step", "step bookkeeping"),
    ("qsgd.optimizer", "QPSBGD._captured", "capture checks"),
    ("qsgd.optimizer", "QPSBGD._update_layer", "update + record"),
    ("qsgd.optimizer", "QPSBGD._apply_update", "update + record"),
    ("qsgd.optimizer", "QPSBGD._prepare_layer", "problem build"),
    ("qsgd.optimizer", "QPSBGD._solve_layers", "solve dispatch"),
    ("qsgd.optimizer", "layer_ising", "problem build"),
    ("qsgd.optimizer", "fisher_curvature", "problem build"),
    ("qsgd.optimizer", "solve_batch", "solve_batch"),
    ("qsgd.optimizer", "solve_batches", "solve_batch"),
    ("qsgd.samplers.batched", "BatchedAnnealer.sample_batch", "sampler setup"),
    ("qsgd.samplers.batched", "default_beta_range", "sampler setup"),
    ("qsgd.samplers.batched", "_run_factor_numba", "annealer kernel"),
    ("qsgd.samplers.batched", "_anneal_dense", "annealer kernel"),
    ("qsgd.samplers.batched", "_anneal_torch", "annealer kernel"),
    ("qsgd.samplers.batched", "_run_dense_numba", "annealer kernel"),
    ("qsgd.samplers.batched", "_run_kernel", "annealer kernel"),
    ("qsgd.samplers.batched", "_energies", "energies"),
    ("qsgd.ising", "ising_energies", "energies"),
    ("torch.optim", "Adam.step", "standard optimiser"),
)

ORDER = (
    "forward",
    "backward",
    "capture checks",
    "problem build",
    "annealer kernel",
    "sampler setup",
    "energies",
    "solve_batch",
    "solve dispatch",
    "update + record",
    "standard optimiser",
    "step bookkeeping",
)


class PhaseTimer:
    """Exclusive wall time per phase of wrapped functions (nested phases are subtracted)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._stack: list[list[float]] = []  # [start, child time]
        self._undo: list[tuple[Any, str, Any]] = []

    def add(self, phase: str, seconds: float) -> None:
        self.totals[phase] = self.totals.get(phase, 0.0) + seconds

    def wrap(self, fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
        timer = self

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            frame = [time.perf_counter(), 0.0]
            timer._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                timer._stack.pop()
                total = time.perf_counter() - frame[0]
                timer.add(phase, total - frame[1])
                if timer._stack:
                    timer._stack[-1][1] += total

        return wrapper

    def install(self, probes: tuple[tuple[str, str, str], ...] = PROBES) -> list[str]:
        """Wrap every probe that exists; returns the ``module:attr`` names wrapped."""
        done = []
        for module_name, path, phase in probes:
            try:
                owner: Any = importlib.import_module(module_name)
            except ImportError:
                continue
            parts = path.split(".")
            for part in parts[:-1]:
                owner = getattr(owner, part, None)
                if owner is None:
                    break
            if owner is None or not hasattr(owner, parts[-1]):
                continue
            original = owner.__dict__.get(parts[-1]) if isinstance(owner, type) else None
            fn = getattr(owner, parts[-1])
            if isinstance(original, staticmethod):
                continue
            setattr(owner, parts[-1], self.wrap(fn, phase))
            self._undo.append((owner, parts[-1], original if original is not None else fn))
            done.append(f"{module_name}:{path}")
        return done

    def uninstall(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def timed(self, phase: str) -> _Section:
        return _Section(self, phase)


class _Section:
    def __init__(self, timer: PhaseTimer, phase: str) -> None:
        self.timer, self.phase = timer, phase

    def __enter__(self) -> None:
        self.frame = [time.perf_counter(), 0.0]
        self.timer._stack.append(self.frame)

    def __exit__(self, *exc: Any) -> None:
        self.timer._stack.pop()
        total = time.perf_counter() - self.frame[0]
        self.timer.add(self.phase, total - self.frame[1])


def profile(task: str, steps: int, warmup: int = 2) -> dict[str, Any]:
    """Mean per-step phase times (ms) of QP-SBGD on ``task`` over ``steps`` steps."""
    from bnn.baselines import make_optimizer

    work = make_workload(task)
    model = work.make_model()
    opt = make_optimizer("qpsbgd", model, **work.qpsbgd)
    batches = work.batches(0)
    model.train()

    def one(b: Any, timer: PhaseTimer | None) -> None:
        opt.zero_grad()
        if timer is None:
            loss = work.loss(model, b)
            loss.backward()
            opt.step()
            return
        with timer.timed("forward"):
            loss = work.loss(model, b)
        with timer.timed("backward"):
            loss.backward()
        opt.step()

    for k in range(warmup):
        one(batches[k % len(batches)], None)
    timer = PhaseTimer()
    wrapped = timer.install()
    try:
        t0 = time.perf_counter()
        for k in range(steps):
            one(batches[(warmup + k) % len(batches)], timer)
        wall = time.perf_counter() - t0
    finally:
        timer.uninstall()
    phases = {p: 1e3 * timer.totals[p] / steps for p in ORDER if p in timer.totals}
    phases.update({p: 1e3 * v / steps for p, v in timer.totals.items() if p not in phases})
    # a BinaryConnect step on the same batches, for scale
    bc_model = work.make_model()
    bc = make_optimizer("binaryconnect", bc_model, **work.binaryconnect)
    bc_model.train()
    for k in range(warmup):
        bc.zero_grad()
        work.loss(bc_model, batches[k % len(batches)]).backward()
        bc.step()
    t0 = time.perf_counter()
    for k in range(steps):
        bc.zero_grad()
        work.loss(bc_model, batches[(warmup + k) % len(batches)]).backward()
        bc.step()
    bc_ms = 1e3 * (time.perf_counter() - t0) / steps
    return {
        "task": task,
        "steps": steps,
        "step_ms": 1e3 * wall / steps,
        "phases_ms": phases,
        "binaryconnect_step_ms": bc_ms,
        "wrapped": wrapped,
        "settings": {k: v for k, v in work.qpsbgd.items() if k not in ("backend", "seed")},
        "annealer": work.info.get("annealer"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Profile and print the table; the JSON record is the last line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="a1a", choices=TASKS)
    p.add_argument("--steps", type=int, default=None, help="default: a1a 100, GCN 5")
    p.add_argument("--numba-threads", type=int, default=1)
    args = p.parse_args(argv)
    threads = set_threads(args.numba_threads)
    steps = args.steps or (100 if args.task == "a1a" else 5)
    res = profile(args.task, steps)
    total = sum(res["phases_ms"].values())
    print(f"QP-SBGD step on {args.task} ({steps} steps; wall {res['step_ms']:.2f} ms per step)")
    print("| phase | ms / step | share |")
    print("|---|---:|---:|")
    for phase, ms in res["phases_ms"].items():
        print(f"| {phase} | {ms:.2f} | {100 * ms / total:.0f} % |")
    print(f"| **total (timed phases)** | **{total:.2f}** | |")
    print(f"| BinaryConnect step, same batches | {res['binaryconnect_step_ms']:.2f} | |")
    record = {"bench": "profile_step", **res, "threads": threads, "machine": machine()}
    emit(record)
    return record


if __name__ == "__main__":
    main()
