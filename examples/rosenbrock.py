"""Paper experiment: the Rosenbrock function with QP-SBGD (exact Hessian) vs signSGD and clipped GD.

``f(x) = sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`` for ``n = 2`` and ``n = 10``, from seeded
random starts in ``[-2, 2]^n``, with the same step budget and the same step-size schedule
``eta_t = eta_0 * 0.01^(t / (T - 1))`` for every method:

* QP-SBGD: ``d_t = argmin_{d in {-1,+1}^n} -eta_t g.d + (eta_t^2 / 2) d.H.d`` with the exact
  gradient ``g`` and Hessian ``H`` (:func:`qsgd.qubo.quadratic_model_ising`) solved by an
  annealer backend, then ``x <- x - eta_t d``;
* signSGD: ``x <- x - eta_t sign(g)``;
* gradient descent with clipped steps: ``x <- x - eta_t clip(g, -1, 1)`` (elementwise).

Each method's ``eta_0`` is chosen from the same grid (equal budget) by the mean ``log10 f`` at
the last step over separate search starts; the reported runs use other seeds.

Run::

    python examples/rosenbrock.py --seeds 5 --out results/rosenbrock
    python examples/rosenbrock.py --smoke --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bnn.experiments import (
    add_common_arguments,
    annealer_settings,
    command_line,
    environment,
    mean_std,
    write_results,
)
from qsgd.config import AnnealerConfig
from qsgd.qubo import quadratic_model_ising
from qsgd.samplers import solve_batch

ETA_GRID = [0.003, 0.01, 0.03, 0.1]


def rosenbrock(x: np.ndarray) -> np.ndarray:
    """``f`` of each row.

    Shape:
        x ``(S, n)`` -> ``(S,)``.
    """
    return np.sum(100.0 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1.0 - x[:, :-1]) ** 2, axis=1)


def rosenbrock_grad(x: np.ndarray) -> np.ndarray:
    """Exact gradient of each row.

    Shape:
        x ``(S, n)`` -> ``(S, n)``.
    """
    r = x[:, 1:] - x[:, :-1] ** 2
    g = np.zeros_like(x)
    g[:, :-1] = -400.0 * x[:, :-1] * r - 2.0 * (1.0 - x[:, :-1])
    g[:, 1:] += 200.0 * r
    return g


def rosenbrock_hessian(x: np.ndarray) -> np.ndarray:
    """Exact Hessian of each row (tridiagonal).

    Shape:
        x ``(S, n)`` -> ``(S, n, n)``.
    """
    s, n = x.shape
    diag = np.zeros_like(x)
    diag[:, :-1] = 1200.0 * x[:, :-1] ** 2 - 400.0 * x[:, 1:] + 2.0
    diag[:, 1:] += 200.0
    off = -400.0 * x[:, :-1]
    H = np.zeros((s, n, n))
    idx = np.arange(n)
    H[:, idx, idx] = diag
    H[:, idx[:-1], idx[1:]] = off
    H[:, idx[1:], idx[:-1]] = off
    return H


def schedule(eta0: float, steps: int) -> np.ndarray:
    """``eta_t = eta0 * 0.01^(t / (steps - 1))`` for ``t = 0..steps-1``."""
    return eta0 * 0.01 ** (np.arange(steps) / max(steps - 1, 1))


def sign_direction(g: np.ndarray, H: np.ndarray, eta: float, step: int) -> np.ndarray:
    return np.sign(g)


def clipped_direction(g: np.ndarray, H: np.ndarray, eta: float, step: int) -> np.ndarray:
    return np.clip(g, -1.0, 1.0)


def qpsbgd_direction(cfg: AnnealerConfig, seed: int) -> Callable[..., np.ndarray]:
    """The QP-SBGD direction of every start, one annealer call per start (each has its own H)."""
    sampler = cfg.make_sampler()
    run = cfg.run_options()
    run.pop("seed", None)
    seeded = "seed" in getattr(sampler, "parameters", {})

    def direction(g: np.ndarray, H: np.ndarray, eta: float, step: int) -> np.ndarray:
        out = np.empty_like(g)
        for i in range(g.shape[0]):
            extra = {"seed": (seed * 1_000_003 + step * 101 + i) % 2**31} if seeded else {}
            res = solve_batch(sampler, quadratic_model_ising(g[i], H[i], eta), **run, **extra)
            out[i] = res.best[0]
        return out

    return direction


def descend(
    x0: np.ndarray, etas: np.ndarray, direction: Callable[..., np.ndarray]
) -> tuple[np.ndarray, float]:
    """Run ``x <- x - eta_t direction(g, H, eta_t, t)``; returns ``f`` per step and the wall time.

    Shape:
        x0 ``(S, n)``; result ``(T + 1, S)``.
    """
    x = x0.copy()
    fs = [rosenbrock(x)]
    t0 = time.perf_counter()
    for t, eta in enumerate(etas):
        d = direction(rosenbrock_grad(x), rosenbrock_hessian(x), float(eta), t)
        x = x - eta * d
        fs.append(rosenbrock(x))
    return np.array(fs), time.perf_counter() - t0


def starts(n: int, seeds: Sequence[int]) -> np.ndarray:
    """One start per seed, uniform in ``[-2, 2]^n``. Shape: ``(len(seeds), n)``."""
    return np.stack([np.random.default_rng(s).uniform(-2.0, 2.0, n) for s in seeds])


def _score(fs: np.ndarray) -> float:
    return float(np.mean(np.log10(np.maximum(fs[-1], 1e-300))))


def run_method(
    key: str,
    label: str,
    make_dir: Callable[[int], Callable[..., np.ndarray]],
    n: int,
    steps: int,
    seeds: Sequence[int],
    search_seeds: Sequence[int],
    grid: Sequence[float],
) -> dict[str, Any]:
    trials = []
    for eta0 in grid:
        fs, wall = descend(starts(n, search_seeds), schedule(eta0, steps), make_dir(10_000))
        trials.append({"hparams": {"eta0": eta0}, "mean_log10_f": _score(fs), "wall_time": wall})
    best = min(trials, key=lambda t: t["mean_log10_f"])
    eta0 = best["hparams"]["eta0"]
    fs, wall = descend(starts(n, seeds), schedule(eta0, steps), make_dir(0))
    keep = np.unique(np.geomspace(1, steps + 1, 200).astype(int) - 1)
    runs = [
        {
            "seed": s,
            "final_f": float(fs[-1, i]),
            "curve": {"step": keep.tolist(), "f": fs[keep, i].tolist()},
            "wall_time_per_step": wall / steps / len(seeds),
        }
        for i, s in enumerate(seeds)
    ]
    m, sd = mean_std([r["final_f"] for r in runs])
    lm, lsd = mean_std([float(np.log10(max(r["final_f"], 1e-300))) for r in runs])
    return {
        "key": key,
        "label": label,
        "grid": [{"eta0": e} for e in grid],
        "budget": len(grid),
        "search": trials,
        "chosen": {"eta0": eta0},
        "seeds": list(seeds),
        "runs": runs,
        "summary": {
            "final_f": {"mean": m, "std": sd},
            "log10_final_f": {"mean": lm, "std": lsd},
            "median_final_f": float(np.median([r["final_f"] for r in runs])),
            "wall_time_per_step": wall / steps / len(seeds),
        },
    }


def table(results: dict[str, Any]) -> str:
    lines = [f"### {results['title']}", ""]
    for n, res in results["problems"].items():
        methods = list(res["methods"].values())
        lines += [
            f"n = {n}, {res['steps']} steps, {len(res['seeds'])} starts",
            "",
            "| | " + " | ".join(m["label"] for m in methods) + " |",
            "|---|" + "---|" * len(methods),
            "| final f (mean ± std) | "
            + " | ".join(
                f"{m['summary']['final_f']['mean']:.3g} ± {m['summary']['final_f']['std']:.3g}"
                for m in methods
            )
            + " |",
            "| log10 final f (mean ± std) | "
            + " | ".join(
                f"{m['summary']['log10_final_f']['mean']:.2f} ± "
                f"{m['summary']['log10_final_f']['std']:.2f}"
                for m in methods
            )
            + " |",
            "| median final f | "
            + " | ".join(f"{m['summary']['median_final_f']:.3g}" for m in methods)
            + " |",
            "| wall time / step / start (ms) | "
            + " | ".join(f"{1e3 * m['summary']['wall_time_per_step']:.3f}" for m in methods)
            + " |",
            "| search budget | " + " | ".join(str(m["budget"]) for m in methods) + " |",
            "| chosen | " + " | ".join(f"eta0={m['chosen']['eta0']:g}" for m in methods) + " |",
            "",
        ]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = results["problems"]
    fig, axes = plt.subplots(1, len(probs), figsize=(5.5 * len(probs), 4), squeeze=False)
    for ax, (n, res) in zip(axes[0], probs.items(), strict=True):
        for m in res["methods"].values():
            steps = np.array(m["runs"][0]["curve"]["step"])
            fs = np.array([r["curve"]["f"] for r in m["runs"]])
            med = np.median(fs, axis=0)
            ax.plot(steps + 1, med, label=m["label"])
            ax.fill_between(steps + 1, fs.min(axis=0), fs.max(axis=0), alpha=0.15)
        ax.set(xscale="log", yscale="log", xlabel="iteration", ylabel="f (median, min-max band)")
        ax.set_title(f"Rosenbrock, n = {n}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_backends=["neal", "exact"])
    parser.add_argument("--dims", default="2,10", help="comma-separated dimensions n")
    parser.add_argument("--steps", type=int, default=500, help="step budget per run")
    args = parser.parse_args(argv)
    backends, annealer = annealer_settings(args, {"num_reads": 10, "num_sweeps": 100})
    dims = [int(d) for d in args.dims.split(",")]
    if any(d < 2 for d in dims):
        raise ValueError(f"--dims must all be >= 2 (got {args.dims!r})")
    steps = 20 if args.smoke else args.steps
    if steps < 2:
        raise ValueError(f"--steps must be >= 2 (got {steps})")
    seeds = list(range(2 if args.smoke else args.seeds))
    search_seeds = [1000 + s for s in range(len(seeds))]
    grid = ETA_GRID[1:3] if args.smoke else ETA_GRID
    include = args.methods.split(",") if args.methods else None
    results: dict[str, Any] = {
        "task": "rosenbrock",
        "title": f"Rosenbrock, {len(seeds)} random starts in [-2, 2]^n",
        "protocol": {
            "steps": steps,
            "schedule": "eta_t = eta0 * 0.01^(t/(T-1))",
            "eta0_grid": grid,
            "selection": "lowest mean log10 f at the last step over the search starts",
            "seeds": seeds,
            "search_seeds": search_seeds,
        },
        "problems": {},
        "environment": environment(),
        "extra": {
            "command": command_line("examples/rosenbrock.py", argv),
            "annealer": annealer,
            "smoke": args.smoke,
        },
    }
    for n in dims:
        methods: dict[str, Any] = {}
        candidates: list[tuple[str, str, Callable[[int], Callable[..., np.ndarray]]]] = []
        for b in backends:
            cfg = AnnealerConfig.from_dict({**annealer, "backend": b})
            candidates.append(
                (f"qpsbgd_{b}", f"QP-SBGD ({b})", lambda s, c=cfg: qpsbgd_direction(c, s))
            )
        candidates += [
            ("signsgd", "signSGD", lambda s: sign_direction),
            ("clipped_gd", "GD (clipped steps)", lambda s: clipped_direction),
        ]
        for key, label, make_dir in candidates:
            if include is not None and key not in include:
                continue
            print(f"[rosenbrock n={n}] {label}", file=sys.stderr, flush=True)
            methods[key] = run_method(key, label, make_dir, n, steps, seeds, search_seeds, grid)
        results["problems"][str(n)] = {"steps": steps, "seeds": seeds, "methods": methods}
    results["table"] = table(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = write_results({**results, "methods": {}}, out, "rosenbrock")
    paths["png"] = plot(results, out / "rosenbrock.png")
    print(results["table"])
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
