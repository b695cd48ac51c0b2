"""Ablation: what the annealer's solution quality buys, against the exact optimum of every QUBO.

QP-SBGD solves one QUBO per neuron and step. This script trains the same binary MLP with the
same hyperparameters and seeds, changing only the solver of those QUBOs:

* ``exact``: the exact optimum of every problem (:func:`qsgd.qubo.brute_force`, the vectorised
  enumeration; the registry's ``exact`` backend gives the same optimum through dimod's
  ``ExactSolver`` but about 50x slower at 16 spins);
* an annealer (``batched`` and/or ``neal``, 1 read) at several sweep budgets (1, 10, 100);
* ``field``: ``sign(-h)``, the minimiser of the fields alone (the couplings ignored: the
  direction the curvature-0 limit takes), scored on the same problems. It anchors the gap axis.

Every problem an annealer solves is also solved exactly, so each run records the **relative
energy gap** of its solutions,

    gap = (E_found - E_opt) / (E_rand - E_opt),

where ``E_rand`` is the mean energy of a uniformly random spin vector (the problem's constant
``offset``: fields and zero-diagonal couplings average to zero). ``gap = 0`` is the optimum,
``gap = 1`` is no better than a coin flip per spin. Per run: the mean gap over every solved
problem, the fraction solved exactly, and the test accuracy at the best-validation epoch.

Setting: scikit-learn's 8x8 digits, all 10 classes (splits 50/20/30, seed 0, ±1 inputs), a
binary MLP ``64 -> W -> 10`` (batch norm, sign activations), ``binary_gradient`` formulation,
Fisher curvature scale. Every layer is solved block-wise with ``max_block_vars = B`` (default
12; the 64-input layer as 6 blocks, the output layer's 16 inputs as 2 blocks; one sweep of
:func:`qsgd.qubo.solve_blockwise`), so every problem has at most ``B`` spins and its optimum is
computable; the gap is that of each block problem.

Settings: the solver matters only where the couplings do, so the arms run under several
settings, each with its step size ``lr`` (the Adam lr of the non-binary parameters tied to it)
searched with the exact solver on a separate seed (grid extended at edges,
:func:`bnn.experiments.search`): ``searched`` (``lr`` x ``curvature`` searched jointly) and one
setting per ``--fixed-curvatures`` value (curvature fixed, ``lr`` searched). Within a setting
every solver trains with the same hyperparameters on the same seeds. Paired per-seed
differences of test accuracy (each arm minus exact) with a 95 % t-interval.

Run::

    python examples/ablation_exact.py --seeds 5 --epochs 20 --patience 5 --search-fraction 0.5 --threads 1 --out results/ablation_exact --overwrite
    python examples/ablation_exact.py --smoke       # seconds; writes runs/ablation_exact/

Results go to ``--out`` (default ``runs/ablation_exact``); an existing
``ablation_exact.{json,md,png}`` there is refused before any training unless ``--overwrite``
is given.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dimod
import numpy as np

from bnn.data import get_dataset
from bnn.experiments import (
    Method,
    Task,
    check_outputs,
    command_line,
    environment,
    fix_threads,
    mean_std,
    save_figure,
    search,
    shrink_tabular,
    t_interval,
    train_once,
    write_results,
)
from bnn.models import BinaryMLP
from qsgd.config import AnnealerConfig
from qsgd.ising import IsingBatch
from qsgd.qubo import brute_force
from qsgd.samplers import get_sampler, register_backend, solve_batch
from qsgd.samplers.base import BatchResult

#: Largest block the audit enumerates (2^20 states per problem).
MAX_AUDIT_VARS = 20


class GapLog:
    """Running totals of the relative energy gaps of the problems solved since :meth:`reset`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.problems = 0
        self.optimal = 0
        self.gap_sum = 0.0
        self.gap_max = 0.0
        self.trivial = 0

    def add(self, found: np.ndarray, optimum: np.ndarray, random_mean: np.ndarray) -> None:
        """Add one batch. Shape: all ``(m,)``."""
        span = random_mean - optimum
        scale = np.maximum(np.abs(optimum), np.abs(random_mean)) + 1e-300
        ok = span > 1e-9 * scale  # a problem whose energy is constant has no gap to measure
        gap = np.zeros_like(found)
        gap[ok] = (found[ok] - optimum[ok]) / span[ok]
        gap = np.maximum(gap, 0.0)  # rounding below the optimum
        self.problems += int(found.size)
        self.trivial += int((~ok).sum())
        self.optimal += int((gap <= 1e-9).sum())
        self.gap_sum += float(gap.sum())
        self.gap_max = max(self.gap_max, float(gap.max(initial=0.0)))

    def record(self) -> dict[str, Any]:
        return {
            "problems": self.problems,
            "mean_rel_gap": self.gap_sum / self.problems if self.problems else None,
            "max_rel_gap": self.gap_max,
            "fraction_optimal": self.optimal / self.problems if self.problems else None,
            "constant_problems": self.trivial,
        }


#: The log every audited sampler of this process writes to (one training run at a time).
LOG = GapLog()


class AuditedSampler(dimod.Sampler):
    """A sampler that solves each batch with ``inner`` (or exactly, when ``inner`` is None) and
    logs the relative energy gap of its best sample to the exact optimum in :data:`LOG`.

    Args:
        inner: Registry name of the solver, or None for exact enumeration.
        **options: Constructor options and default run settings of ``inner``.
    """

    def __init__(self, inner: str | None = None, **options: Any) -> None:
        self.inner_name = inner
        self.inner = None if inner in (None, "field") else get_sampler(inner, **options)

    @property
    def parameters(self) -> dict[str, list]:
        return dict(self.inner.parameters) if self.inner is not None else {"seed": []}

    @property
    def properties(self) -> dict[str, Any]:
        props = dict(self.inner.properties) if self.inner is not None else {}
        props["max_num_variables"] = MAX_AUDIT_VARS
        return props

    def sample(self, bqm: dimod.BinaryQuadraticModel, **kwargs: Any) -> dimod.SampleSet:
        if self.inner is None:  # solve_batch calls sample_batch; this serves dimod's API only
            return dimod.ExactSolver().sample(bqm).truncate(1)
        return self.inner.sample(bqm, **kwargs)

    def sample_batch(self, batch: IsingBatch, **run: Any) -> BatchResult:
        exact_spins, exact_e = brute_force(batch, max_vars=MAX_AUDIT_VARS)
        if self.inner_name is None:
            samples, energies = exact_spins[:, None, :], exact_e[:, None]
            info: dict[str, Any] = {"solved_by": "exact"}
            found = exact_e
        elif self.inner_name == "field":
            spins = np.where(batch.h <= 0, 1, -1).astype(np.int8)
            found = batch.energies(spins)
            samples, energies, info = spins[:, None, :], found[:, None], {"solved_by": "field"}
        else:
            res = solve_batch(self.inner, batch, **run)
            samples, energies, info = res.samples, res.energies, dict(res.info)
            found = res.best_energy
        LOG.add(np.asarray(found, float), np.asarray(exact_e, float), batch.offset)
        return BatchResult(samples=samples, energies=energies, info=info)


def _register(inner: str | None) -> str:
    name = f"audited-{inner or 'exact'}"

    def factory(**options: Any) -> AuditedSampler:
        return AuditedSampler(inner, **options)

    register_backend(
        name, factory, description=f"{inner or 'exact'} with an exact-gap audit", overwrite=True
    )
    return name


def solvers(backends: Sequence[str], sweeps: Sequence[int]) -> list[dict[str, Any]]:
    """The solver arms: exact first, then each backend at each sweep budget (1 read), then
    the fields-only direction."""
    arms = [{"key": "exact", "label": "exact optimum", "inner": None, "options": {}}]
    for b in backends:
        for s in sweeps:
            arms.append(
                {
                    "key": f"{b}_s{s}",
                    "label": f"{b}, {s} sweep{'s' if s != 1 else ''}",
                    "inner": b,
                    "options": {"num_reads": 1, "num_sweeps": int(s)},
                }
            )
    arms.append({"key": "field", "label": "fields only, sign(-h)", "inner": "field", "options": {}})
    return arms


def make_method(
    arm: Mapping[str, Any],
    block: int,
    axes: Mapping[str, list[float]] | None,
    curvature: float | None = None,
) -> Method:
    """The QP-SBGD method of one solver arm (``curvature``: fixed, not searched)."""
    cfg = AnnealerConfig.from_dict(
        {"backend": _register(arm["inner"]), "max_block_vars": block, **arm["options"]}
    )
    return Method(
        f"qpsbgd_{arm['key']}",
        f"QP-SBGD ({arm['label']})",
        "qpsbgd",
        axes=dict(axes) if axes else {"lr": [0.003]},
        fixed={
            "backend": cfg,
            "curvature_scale": "fisher",
            "max_block_vars": block,
            **({} if curvature is None else {"curvature": curvature}),
        },
        tie_other_lr=True,
    )


def paired(runs: Mapping[str, list[dict[str, Any]]], confidence: float = 0.95) -> list[dict]:
    """Per-seed test-accuracy differences of every annealer arm minus the exact arm."""
    ref = {r["seed"]: r["test_accuracy"] for r in runs["exact"]}
    out = []
    for key, rs in runs.items():
        if key == "exact":
            continue
        acc = {r["seed"]: r["test_accuracy"] for r in rs}
        seeds = sorted(set(acc) & set(ref))
        diffs = [acc[s] - ref[s] for s in seeds]
        mean, std, ci = t_interval(diffs, confidence)
        out.append(
            {
                "arm": key,
                "minus": "exact",
                "seeds": seeds,
                "diffs": diffs,
                "mean": mean,
                "std": std,
                "ci": ci,
                "confidence": confidence,
            }
        )
    return out


def table(results: Mapping[str, Any]) -> str:
    lines = [f"### {results['title']}", ""]
    for st in results["settings"]:
        arms = st["arms"]
        info = st["search"]["info"]
        edge = (
            f"; **still at an edge: {', '.join(info['at_edge'])}**" if info.get("at_edge") else ""
        )
        lines += [
            f"#### Setting: {st['name']} ("
            + ", ".join(f"{k}={v:g}" for k, v in st["chosen"].items())
            + f"; lr searched with the exact solver, seed {results['protocol']['search_seed']}"
            + f"{edge})",
            "",
            "| solver | mean rel. energy gap | fraction optimal | test acc (best-val epoch) | "
            "val acc | best epoch | wall / run (s) |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in arms.values():
            sm = a["summary"]
            lines.append(
                f"| {a['label']} | {sm['mean_rel_gap']['mean']:.3g} ± "
                f"{sm['mean_rel_gap']['std']:.2g} | {sm['fraction_optimal']['mean']:.3f} "
                f"| {sm['test_accuracy']['mean']:.4f} ± {sm['test_accuracy']['std']:.4f} "
                f"| {sm['val_accuracy']['mean']:.4f} | {sm['best_epoch']['mean']:.1f} "
                f"| {sm['wall_time']['mean']:.0f} |"
            )
        lines += [
            "",
            "Paired per-seed differences of test accuracy (solver minus exact), 95 % t-interval:",
            "",
            "| solver | seeds | mean ± std | 95 % interval |",
            "|---|---|---|---|",
        ]
        for p in st["paired"]:
            ci = "n/a" if p["ci"] is None else f"[{p['ci'][0]:+.4f}, {p['ci'][1]:+.4f}]"
            lines.append(
                f"| {arms[p['arm']]['label']} | {len(p['seeds'])} | {p['mean']:+.4f} ± "
                f"{p['std']:.4f} | {ci} |"
            )
        lines.append("")
    lines += [results["protocol"]["problems_note"], ""]
    return "\n".join(lines)


def plot(results: Mapping[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = results["settings"]
    fig, axes = plt.subplots(
        1, len(settings), figsize=(5 * len(settings), 4.2), squeeze=False, sharey=True
    )
    for ax, st in zip(axes[0], settings, strict=True):
        for a in st["arms"].values():
            gaps = np.array([r["gap"]["mean_rel_gap"] for r in a["runs"]])
            accs = np.array([r["test_accuracy"] for r in a["runs"]])
            pts = ax.scatter(gaps, accs, s=14, alpha=0.5)
            ax.errorbar(
                gaps.mean(),
                accs.mean(),
                yerr=accs.std(ddof=1) if accs.size > 1 else 0,
                fmt="o",
                ms=7,
                color=pts.get_facecolor()[0][:3],
                label=a["label"],
            )
        ax.set_xscale("symlog", linthresh=1e-4)
        ax.set(xlabel="mean relative energy gap to the exact optimum")
        ax.set_title(
            f"{st['name']}: " + ", ".join(f"{k}={v:g}" for k, v in st["chosen"].items()),
            fontsize=9,
        )
    axes[0][0].set_ylabel("test accuracy (best-val epoch)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("QP-SBGD with annealers vs the exact optimum (digits, 10 classes)", fontsize=10)
    fig.tight_layout()
    path = save_figure(fig, path)
    plt.close(fig)
    return path


def run_arms(
    task: Task,
    arms: Sequence[Mapping[str, Any]],
    block: int,
    chosen: Mapping[str, Any],
    seeds: Sequence[int],
    name: str,
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Train every solver arm on every seed with the setting ``chosen``; per run the gap record."""
    out_arms: dict[str, Any] = {}
    runs_by_arm: dict[str, list[dict[str, Any]]] = {}
    for a in arms:
        method = make_method(a, block, None)
        runs = []
        for s in seeds:
            LOG.reset()
            rec = train_once(task, method, chosen, s)
            rec["gap"] = LOG.record()
            runs.append(rec)
            print(
                f"[ablation] {name} {a['key']} seed {s}: test {rec['test_accuracy']:.4f} gap "
                f"{rec['gap']['mean_rel_gap']:.2g} ({rec['wall_time']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        runs_by_arm[a["key"]] = runs
        summary = {}
        for key in ("test_accuracy", "val_accuracy", "best_epoch", "wall_time"):
            m, sd = mean_std([r[key] for r in runs])
            summary[key] = {"mean": m, "std": sd}
        for key in ("mean_rel_gap", "fraction_optimal"):
            m, sd = mean_std([r["gap"][key] for r in runs])
            summary[key] = {"mean": m, "std": sd}
        out_arms[a["key"]] = {
            "key": a["key"],
            "label": a["label"],
            "backend": a["inner"] or "exact (qsgd.qubo.brute_force)",
            "options": a["options"],
            "seeds": list(seeds),
            "runs": runs,
            "summary": summary,
        }
    return out_arms, runs_by_arm


def _ints(text: str, flag: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if not vals or any(v < 1 for v in vals):
        raise ValueError(f"{flag} must be comma-separated positive ints (got {text!r})")
    return vals


def _floats(text: str, flag: str) -> list[float]:
    try:
        vals = sorted({float(v) for v in text.split(",")})
    except ValueError:
        vals = []
    if not vals or any(not math.isfinite(v) or v < 0 for v in vals):
        raise ValueError(f"{flag} must be comma-separated non-negative numbers (got {text!r})")
    return vals


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1)")
    parser.add_argument("--epochs", type=int, default=15, help="maximum epochs per run")
    parser.add_argument("--patience", type=int, default=4, help="early-stopping patience")
    parser.add_argument(
        "--search-fraction", type=float, default=1.0, help="search epochs as a fraction of --epochs"
    )
    parser.add_argument("--backends", default="batched", help="annealer backends")
    parser.add_argument("--sweeps", default="1,10,100", help="sweep budgets of each annealer")
    parser.add_argument("--width", type=int, default=16, help="hidden width")
    parser.add_argument("--block", type=int, default=12, help="max_block_vars (<= 20)")
    parser.add_argument("--lr", default="0.003,0.01", help="lr axis of the search")
    parser.add_argument("--curvature", default="30,300", help="curvature axis of the search")
    parser.add_argument(
        "--fixed-curvatures",
        default="30,300",
        help="curvatures also run as fixed settings (lr searched at each); '' for none",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch/numba threads")
    parser.add_argument("--smoke", action="store_true", help="tiny run (seconds)")
    parser.add_argument(
        "--out", default="runs/ablation_exact", help="output folder (default runs/ablation_exact)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace result files that already exist in --out",
    )
    args = parser.parse_args(argv)
    try:
        sweeps = _ints(args.sweeps, "--sweeps")
        lr_axis = _floats(args.lr, "--lr")
        c_axis = _floats(args.curvature, "--curvature")
        fixed_c = (
            _floats(args.fixed_curvatures, "--fixed-curvatures") if args.fixed_curvatures else []
        )
        backends = [b for b in args.backends.split(",") if b]
        for flag in ("seeds", "epochs", "patience", "width", "batch_size", "threads"):
            if getattr(args, flag) < 1:
                raise ValueError(
                    f"--{flag.replace('_', '-')} must be a positive int (got {getattr(args, flag)})"
                )
        if not 2 <= args.block <= MAX_AUDIT_VARS:
            raise ValueError(f"--block must be in [2, {MAX_AUDIT_VARS}] (got {args.block})")
        if not 0 < args.search_fraction <= 1:
            raise ValueError(f"--search-fraction must be in (0, 1] (got {args.search_fraction})")
        arms = solvers(backends, sweeps)
        for a in arms:
            make_method(a, args.block, None)  # unknown backend names fail here, before any run
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    check_outputs(args.out, ["ablation_exact"], args.overwrite)
    threads = fix_threads(args.threads)
    seeds = list(range(1 if args.smoke else args.seeds))
    epochs = 2 if args.smoke else args.epochs
    ds = get_dataset("digits", spins=True, seed=0, test_fraction=0.3, val_fraction=0.2)
    if args.smoke:
        ds = shrink_tabular(ds, train=96, val=48, test=96)
        arms = [arms[0], arms[1], arms[-1]]
        lr_axis, c_axis, fixed_c = lr_axis[:1], c_axis[:1], fixed_c[:1]
    width = args.width
    task = Task(
        "ablation_exact",
        ds,
        lambda d, binary: BinaryMLP(d.num_features, [width], d.num_classes, binary=binary),
        epochs=epochs,
        batch_size=args.batch_size,
        search_fraction=args.search_fraction,
        patience=None if args.smoke else args.patience,
        max_extensions=0 if args.smoke else 3,
    )
    t_start = time.perf_counter()
    search_seed = 1000
    settings: list[dict[str, Any]] = []
    for c in [None, *fixed_c]:
        axes = {"lr": lr_axis, "curvature": c_axis} if c is None else {"lr": lr_axis}
        name = "searched" if c is None else f"curvature={c:g}"
        print(f"[ablation] {name}: search with the exact solver over {axes}", file=sys.stderr)
        exact_method = make_method(arms[0], args.block, axes, curvature=c)
        chosen, trials, search_info = search(task, exact_method, seed=search_seed)
        if c is not None:
            chosen = {**chosen, "curvature": c}
        print(f"[ablation] {name}: chosen {chosen}", file=sys.stderr, flush=True)
        out_arms, runs_by_arm = run_arms(task, arms, args.block, chosen, seeds, name)
        settings.append(
            {
                "name": name,
                "chosen": chosen,
                "search": {"trials": trials, "info": search_info, "solver": "exact"},
                "arms": out_arms,
                "paired": paired(runs_by_arm),
            }
        )
    results: dict[str, Any] = {
        "task": "ablation_exact",
        "title": (
            f"Annealer vs exact optimum: QP-SBGD on digits (10 classes), binary MLP 64-{width}-10, "
            f"blocks of {args.block} spins, {len(seeds)} seeds"
        ),
        "protocol": {
            "version": "ablation-exact-1",
            "epochs": epochs,
            "patience": task.patience,
            "batch_size": args.batch_size,
            "seeds": seeds,
            "search_seed": search_seed,
            "search_epochs": task.search_epoch_count(),
            "selection": "best-validation epoch (accuracy, ties: lower loss)",
            "threads": threads,
            "max_block_vars": args.block,
            "gap": "(E_found - E_opt) / (E_rand - E_opt), E_rand = mean energy of random spins",
            "problems_note": (
                f"every QUBO has at most {args.block} spins (each layer solved in blocks of "
                f"{args.block}, one sweep of qsgd.qubo.solve_blockwise)"
            ),
        },
        "settings": settings,
        "wall_time": time.perf_counter() - t_start,
        "environment": environment(),
        "extra": {
            "command": command_line("examples/ablation_exact.py", argv),
            "smoke": args.smoke,
            "dataset": "sklearn digits 8x8, 10 classes, splits 50/20/30, seed 0",
        },
    }
    results["table"] = table(results)
    out = Path(args.out)
    paths = write_results(results, out, "ablation_exact", overwrite=args.overwrite)
    paths["png"] = plot(results, out / "ablation_exact.png")
    print(results["table"])
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
