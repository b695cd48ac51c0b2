"""Per-step and per-epoch statistics of the fit loop, and the run summary.

What one optimizer step reports (loss, accuracy, per-layer flip ratio, QUBO energy, solver
time, which backend solved the problems, QPU calls and access time, chain breaks), how the steps
of an epoch add up (:func:`new_accum`, :func:`accumulate_step`, :func:`epoch_record`) and the
summary written to ``summary.json`` (:func:`run_summary`).

Flip ratio: the fraction of a binary layer's weights whose sign changed in the step
(:func:`qsgd.binary_optim.flip_ratio`, the one definition the optimizers report too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bnn.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME
from bnn.records import METRICS_NAME, SUMMARY_NAME

__all__ = ["CONFIG_NAME", "QPU_CAP_STATUS"]

#: The config file of a run directory (written by :func:`bnn.runner.train_from_config`).
CONFIG_NAME = "config.toml"


def _sign_snapshot(layers: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {name: layer.weight.detach() >= 0 for name, layer in layers.items()}


def _annealer_stats(optimizer: Any) -> tuple[float | None, float | None]:
    """Mean best QUBO energy over the updated layers and total solver time of the last step.

    Only records that name an annealer ``backend`` (QPSBGD's) count; baselines give ``None``.
    """
    stats = getattr(optimizer, "last_stats", None)
    if not isinstance(stats, list):
        return None, None
    solved = [
        s for s in stats if isinstance(s, Mapping) and s.get("backend") and not s.get("skipped")
    ]
    if not solved:
        return None, None
    energies = [float(s["best_energy"]) for s in solved if s.get("best_energy") is not None]
    energies = [e for e in energies if math.isfinite(e)]
    solver = sum(float(s.get("wall_time") or 0.0) for s in solved)
    return (float(np.mean(energies)) if energies else None), solver


def _solved_by(optimizer: Any) -> dict[str, int] | None:
    """``{backend: problems}`` solved in the last step (QPSBGD's ``solved_by_counts``), or None.

    This is the backend that actually solved the problems: a QPU backend's fallback shows up
    here, not under the configured backend name.
    """
    stats = getattr(optimizer, "last_stats", None)
    if not isinstance(stats, list):
        return None
    counts: dict[str, int] = {}
    for s in stats:
        if isinstance(s, Mapping) and isinstance(s.get("solved_by_counts"), Mapping):
            for k, v in s["solved_by_counts"].items():
                counts[str(k)] = counts.get(str(k), 0) + int(v)
    return counts or None


QPU_CAP_STATUS = "qpu_cap_reached"
"""``status`` of a run stopped by ``annealer.max_qpu_seconds``/``max_qpu_calls`` (resumable)."""


def _qpu_step(optimizer: Any) -> dict[str, Any]:
    """QPU figures of the last step, summed over its layers (QPSBGD's ``last_stats``).

    ``qpu_calls``, ``problems_per_call`` (mean over the step's calls; None without calls),
    ``qpu_access_time`` (seconds) and ``chain_break_fraction`` (mean over problems; None when
    no problem went through a QPU).
    """
    stats = getattr(optimizer, "last_stats", None)
    calls, problems, access, cbf_sum, cbf_n = 0, 0.0, 0.0, 0.0, 0
    for s in stats if isinstance(stats, list) else []:
        if not isinstance(s, Mapping) or s.get("skipped"):
            continue
        c = int(s.get("qpu_calls") or 0)
        calls += c
        if c and s.get("problems_per_call") is not None:
            problems += float(s["problems_per_call"]) * c
        access += float(s.get("qpu_access_time") or 0.0)
        if s.get("chain_break_fraction") is not None:
            k = int(s.get("problems") or 1)
            cbf_sum += float(s["chain_break_fraction"]) * k
            cbf_n += k
    return {
        "qpu_calls": calls,
        "problems_per_call": problems / calls if calls else None,
        "qpu_access_time": access,
        "chain_break_fraction": cbf_sum / cbf_n if cbf_n else None,
    }


def _qpu_cap_hit(
    optimizer: Any, max_qpu_seconds: float | None, max_qpu_calls: int | None
) -> str | None:
    """Why the QPU cap stops the run before the next step, or None.

    Only a QPU backend is capped: a run resumed on a classical backend is never stopped.
    """
    from qsgd.samplers.dwave import QPU_BACKENDS

    totals = getattr(optimizer, "qpu_totals", None)
    if (
        not isinstance(totals, Mapping)
        or getattr(optimizer, "backend_name", None) not in QPU_BACKENDS
    ):
        return None
    seconds, calls = float(totals.get("qpu_access_time", 0.0)), int(totals.get("qpu_calls", 0))
    if max_qpu_seconds is not None and seconds >= max_qpu_seconds:
        return (
            f"QPU access time {seconds:.4g} s reached annealer.max_qpu_seconds="
            f"{max_qpu_seconds:g} ({calls} QPU calls)"
        )
    if max_qpu_calls is not None and calls >= max_qpu_calls:
        return (
            f"QPU calls {calls} reached annealer.max_qpu_calls={max_qpu_calls} "
            f"({seconds:.4g} s of QPU access time)"
        )
    return None


def _add_counts(total: dict[str, int], counts: Mapping[str, int] | None) -> dict[str, int]:
    for k, v in (counts or {}).items():
        total[k] = total.get(k, 0) + int(v)
    return total


def new_accum(names: Sequence[str]) -> dict[str, Any]:
    """The running sums of one epoch (stored in checkpoints, so a resumed epoch adds up)."""
    return {
        "loss_sum": 0.0,
        "correct": 0,
        "count": 0,
        "steps": 0,
        "flip_sum": {n: 0.0 for n in names},
        "flip_steps": {n: 0 for n in names},
        "energy_sum": 0.0,
        "energy_count": 0,
        "solver_time": 0.0,
        "solved_by_counts": {},
        "qpu_calls": 0,
        "qpu_access_time": 0.0,
        "cbf_sum": 0.0,
        "cbf_steps": 0,
        "time": 0.0,
    }


def accumulate_step(
    accum: dict[str, Any],
    *,
    loss: float,
    rows: int,
    correct: int,
    flips: Mapping[str, float],
    energy: float | None,
    solver: float | None,
    solved_by: Mapping[str, int] | None,
    qpu: Mapping[str, Any],
    dt: float,
) -> None:
    """Add one step to the epoch's running sums ``accum`` (in place).

    Keys missing from an ``accum`` stored by an older checkpoint start at zero.
    """
    accum["loss_sum"] += loss * rows
    accum["correct"] += correct
    accum["count"] += rows
    accum["steps"] += 1
    for n, fr in flips.items():
        accum["flip_sum"][n] += fr
        accum["flip_steps"][n] += 1
    if energy is not None:
        accum["energy_sum"] += energy
        accum["energy_count"] += 1
    accum["solver_time"] += solver or 0.0
    _add_counts(accum.setdefault("solved_by_counts", {}), solved_by)
    accum["qpu_calls"] = accum.get("qpu_calls", 0) + qpu["qpu_calls"]
    accum["qpu_problems"] = accum.get("qpu_problems", 0.0) + (
        (qpu["problems_per_call"] or 0.0) * qpu["qpu_calls"]
    )
    accum["qpu_access_time"] = accum.get("qpu_access_time", 0.0) + qpu["qpu_access_time"]
    if qpu["chain_break_fraction"] is not None:
        accum["cbf_sum"] = accum.get("cbf_sum", 0.0) + qpu["chain_break_fraction"]
        accum["cbf_steps"] = accum.get("cbf_steps", 0) + 1
    accum["time"] += dt


def epoch_record(
    epoch: int,
    step: int,
    accum: Mapping[str, Any],
    active: list[str],
    majority_rate: float | None,
    layers: Sequence[str],
) -> dict[str, Any]:
    """The ``{"kind": "epoch"}`` record of 0-based ``epoch`` from its running sums."""
    count = max(int(accum["count"]), 1)
    flips = {
        n: accum["flip_sum"][n] / accum["flip_steps"][n]
        for n in layers
        if accum["flip_steps"].get(n)
    }
    return {
        "kind": "epoch",
        "epoch": epoch + 1,
        "step": step,
        "active_layers": active,
        "train_loss": accum["loss_sum"] / count,
        "train_accuracy": accum["correct"] / count,
        "majority_rate": majority_rate,
        "flip_ratio": flips,
        "best_energy": accum["energy_sum"] / accum["energy_count"]
        if accum["energy_count"]
        else None,
        "solver_time": accum["solver_time"],
        "solved_by": "+".join(sorted(accum.get("solved_by_counts") or {})) or None,
        "solved_by_counts": dict(accum.get("solved_by_counts") or {}) or None,
        "qpu_calls": int(accum.get("qpu_calls", 0)),
        "qpu_access_time": float(accum.get("qpu_access_time", 0.0)),
        "problems_per_call": accum.get("qpu_problems", 0.0) / accum["qpu_calls"]
        if accum.get("qpu_calls")
        else None,
        "chain_break_fraction": accum["cbf_sum"] / accum["cbf_steps"]
        if accum.get("cbf_steps")
        else None,
        "epoch_time": accum["time"],
    }


def _final_and_best(history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``final`` (last epoch's train figures, last evaluation's val/test ones) and the best
    validation epoch."""
    evaluated = [r for r in history if "test_accuracy" in r or "val_accuracy" in r]
    last_eval = evaluated[-1] if evaluated else {}
    last = history[-1] if history else {}
    final = {
        k: (last_eval if k.startswith(("val", "test")) else last).get(k)
        for k in (
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "test_loss",
            "test_accuracy",
        )
    }
    with_val = [r for r in history if r.get("val_accuracy") is not None]
    best = max(with_val, key=lambda r: r["val_accuracy"]) if with_val else None
    return {
        "final": final,
        "best_val_accuracy": best["val_accuracy"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "evaluated_epoch": last_eval.get("epoch"),
    }


def _solver_figures(
    history: Sequence[Mapping[str, Any]], qpu_totals: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Who solved the problems and the QPU figures of the whole run."""
    qpu_totals = dict(qpu_totals or {})
    solved: dict[str, int] = {}
    for r in history:
        _add_counts(solved, r.get("solved_by_counts"))
    calls_done = sum(int(r.get("qpu_calls") or 0) for r in history)
    cbfs = [r["chain_break_fraction"] for r in history if r.get("chain_break_fraction") is not None]
    return {
        "solved_by": "+".join(sorted(solved)) or None,
        "solved_by_counts": solved or None,
        "solver_time": sum(float(r.get("solver_time") or 0.0) for r in history),
        "qpu_calls": qpu_totals.get("qpu_calls", 0),
        "qpu_access_time": qpu_totals.get("qpu_access_time", 0.0),
        "problems_per_call": (
            sum((r.get("problems_per_call") or 0.0) * (r.get("qpu_calls") or 0) for r in history)
            / calls_done
            if calls_done
            else None
        ),
        "chain_break_fraction": float(np.mean(cbfs)) if cbfs else None,
    }


def run_summary(
    *,
    label: str,
    status: str,
    epochs: int,
    steps: int,
    seed: int,
    schedule: str,
    optimizer_name: str,
    backend: str | None,
    history: Sequence[Mapping[str, Any]],
    majority_rates: tuple[float | None, float | None],
    elapsed: float,
    model: nn.Module,
    config: Mapping[str, Any] | None,
    run_path: Path | None,
    qpu_totals: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary of a run (``summary.json``; the keys are listed in :func:`bnn.training.fit`).

    ``majority_rates`` is ``(test, val)``.
    """
    from bnn.layers import binary_parameters

    epochs_done = sum(1 for r in history if r["kind"] == "epoch")
    files = []
    if run_path is not None:
        files = [METRICS_NAME, SUMMARY_NAME, CHECKPOINT_NAME]
        files += [n for n in (CONFIG_NAME, PREVIOUS_NAME) if (run_path / n).exists()]
    solver = _solver_figures(history, qpu_totals)
    return {
        "name": label,
        "status": status,
        "epochs": epochs,
        "epochs_completed": epochs_done,
        "steps": steps,
        "seed": seed,
        "schedule": schedule,
        "optimizer": optimizer_name,
        "backend": backend,
        "solved_by": solver.pop("solved_by"),
        "solved_by_counts": solver.pop("solved_by_counts"),
        **_final_and_best(history),
        "majority_rate": majority_rates[0],
        "majority_rate_val": majority_rates[1],
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "num_binary_parameters": sum(p.numel() for p in binary_parameters(model)),
        **solver,
        "wall_time": elapsed,
        "wall_time_per_epoch": elapsed / epochs_done if epochs_done else None,
        "hyperparameters": (config or {}).get("train", {}).get("hyperparameters", {}),
        "run_dir": str(run_path) if run_path is not None else None,
        "files": files,
    }
