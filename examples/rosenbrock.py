"""Paper experiment: the Rosenbrock function, QP-SBGD against first- and second-order binary steps.

``f(x) = sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`` for ``n = 2`` and ``n = 10``, from seeded
random starts in ``[-2, 2]^n``.

**The binary step.** Every method moves every coordinate by exactly the step size:
``x <- x - eta_t d`` with ``d in {-1, +1}^n`` (signSGD's ``sign`` may give 0 where a gradient
component is exactly 0), under the same schedule ``eta_t = eta_0 * 0.01^(t / (T - 1))`` and the
same ``T`` steps. Methods differ only in how they choose ``d`` from the exact gradient ``g`` and
Hessian ``H`` at ``x``:

* **QP-SBGD** (annealer backend ``B``): ``d = argmin_{d in {-1,+1}^n} m(d)`` with the second-order
  model ``m(d) = -eta_t g.d + (eta_t^2 / 2) d.H.d`` (:func:`qsgd.qubo.quadratic_model_ising`),
  solved by ``B`` (``exact``: enumeration, i.e. the true minimiser). For invertible ``H``,
  ``m(d) = 1/2 (eta_t d - p)^T H (eta_t d - p) + const`` with the Newton step ``p = H^{-1} g``:
  QP-SBGD picks the binary step closest to the Newton step **in the metric H**, and its choice
  depends on ``eta_t``.
* **Projected Newton**: ``d = sign(H^{-1} g)``, the binary step whose end point
  ``x - eta_t d`` is closest (Euclidean) to the Newton point ``x - H^{-1} g``, i.e. the Newton
  step on the continuous variable projected onto the binary steps. With an indefinite ``H``
  (away from the valley) the Newton point may be a saddle or a maximum.
* **Saddle-free sign step**: ``d = sign(|H|^{-1} g)`` with ``|H| = V |Lambda| V^T`` (absolute
  eigenvalues, the saddle-free Newton direction of Dauphin et al. 2014), projected the same
  way: a closed-form second-order sign step, no annealer.
* **signSGD**: ``d = sign(g)``; **GD with clipped steps**: ``x <- x - eta_t clip(g, -1, 1)``
  (first order; not a binary step).

**Protocol** (``fair-1``-like; the same for every method): ``eta_0`` is searched on the same
geometric grid (``ETA_GRID``), extended by one value beyond an edge (ratio of the two outermost
values) while the choice sits on that edge, at most ``--max-extensions`` rounds; the search runs
the same ``T`` steps as the final runs, on separate starts (``--search-starts``), scored by the
mean ``log10 f`` at the last step. The final runs use other seeds (``--seeds``, same starts for
every method). Reported per method: mean, std and median of the final ``f``, mean ``log10 f``,
and **paired** per-start differences of ``log10`` final ``f`` (QP-SBGD minus each other method:
mean, std, 95 % t-interval, and the number of starts where QP-SBGD ends lower).

Run::

    python examples/rosenbrock.py --seeds 10 --search-starts 5 --out results/rosenbrock --overwrite
    python examples/rosenbrock.py --smoke           # seconds; writes runs/rosenbrock/rosenbrock.*

Results go to ``--out`` (default ``runs/rosenbrock``); an existing ``rosenbrock.{json,md,png}``
there is refused before any run unless ``--overwrite`` is given.
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
    check_outputs,
    command_line,
    environment,
    mean_std,
    save_figure,
    t_interval,
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
    """signSGD: ``sign(g)``. Shape: g ``(S, n)`` -> ``(S, n)``."""
    return np.sign(g)


def clipped_direction(g: np.ndarray, H: np.ndarray, eta: float, step: int) -> np.ndarray:
    """Clipped gradient ``clip(g, -1, 1)`` (not a binary step). Shape: ``(S, n)``."""
    return np.clip(g, -1.0, 1.0)


def newton_step(g: np.ndarray, H: np.ndarray) -> np.ndarray:
    """The Newton step ``H^{-1} g`` of each start (least squares where ``H`` is singular).

    Shape:
        g ``(S, n)``, H ``(S, n, n)`` -> ``(S, n)``.
    """
    try:
        return np.linalg.solve(H, g[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.stack([np.linalg.lstsq(h, v, rcond=None)[0] for h, v in zip(H, g, strict=True)])


def projected_newton_direction(g: np.ndarray, H: np.ndarray, eta: float, step: int) -> np.ndarray:
    """Projected Newton: ``sign(H^{-1} g)``, the binary step nearest the Newton point.

    Example:
        >>> H = np.array([[[1.0, 2.0], [2.0, 1.0]]])  # eigenvalues 3 and -1
        >>> projected_newton_direction(np.array([[1.0, 0.0]]), H, 0.1, 0).tolist()
        [[-1.0, 1.0]]
    """
    return np.sign(newton_step(g, H))


def abs_hessian_solve(g: np.ndarray, H: np.ndarray) -> np.ndarray:
    """``|H|^{-1} g`` with ``|H| = V |Lambda| V^T``; eigenvalues below ``1e-12 max|Lambda|`` are
    raised to it.

    Shape:
        g ``(S, n)``, H ``(S, n, n)`` -> ``(S, n)``.
    """
    w, V = np.linalg.eigh(0.5 * (H + np.swapaxes(H, -1, -2)))
    a = np.abs(w)
    a = np.maximum(a, 1e-12 * a.max(axis=-1, keepdims=True) + 1e-300)
    coef = np.einsum("sji,sj->si", V, g) / a
    return np.einsum("sij,sj->si", V, coef)


def saddle_free_sign_direction(g: np.ndarray, H: np.ndarray, eta: float, step: int) -> np.ndarray:
    """The closed-form second-order sign step ``sign(|H|^{-1} g)``.

    Example:
        >>> H = np.array([[[1.0, 2.0], [2.0, 1.0]]])  # indefinite: Newton points uphill here
        >>> saddle_free_sign_direction(np.array([[1.0, 0.0]]), H, 0.1, 0).tolist()
        [[1.0, -1.0]]
    """
    return np.sign(abs_hessian_solve(g, H))


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


def _extend(values: list[float], direction: int) -> float:
    """One more grid value beyond an edge (geometric: the ratio of the two outermost values)."""
    if direction > 0:
        return float(f"{values[-1] * values[-1] / values[-2]:.6g}")
    return float(f"{values[0] * values[0] / values[1]:.6g}")


def search_eta0(
    make_dir: Callable[[int], Callable[..., np.ndarray]],
    n: int,
    steps: int,
    search_seeds: Sequence[int],
    grid: Sequence[float],
    max_extensions: int,
) -> tuple[float, list[dict[str, Any]], dict[str, Any]]:
    """Try every ``eta0`` of ``grid`` (``steps`` steps from each search start); while the best
    sits on an edge of the grid, add the next value beyond it (at most ``max_extensions``).

    Returns:
        ``(eta0, trials, info)``: ``info`` has ``grid`` (final), ``extensions`` and ``at_edge``
        (True when the choice is still on an edge after the last extension).
    """
    values = sorted(float(v) for v in grid)
    trials: dict[float, dict[str, Any]] = {}
    extensions: list[dict[str, Any]] = []

    def run(eta0: float) -> None:
        fs, wall = descend(starts(n, search_seeds), schedule(eta0, steps), make_dir(10_000))
        trials[eta0] = {"hparams": {"eta0": eta0}, "mean_log10_f": _score(fs), "wall_time": wall}

    for v in values:
        run(v)
    while True:
        best = min(values, key=lambda v: (trials[v]["mean_log10_f"], v))
        direction = -1 if best == values[0] else (1 if best == values[-1] else 0)
        if direction == 0 or len(values) < 2 or len(extensions) >= max_extensions:
            break
        new = _extend(values, direction)
        values = [new, *values] if direction < 0 else [*values, new]
        extensions.append({"axis": "eta0", "direction": direction, "value": new})
        run(new)
    at_edge = len(values) >= 2 and best in (values[0], values[-1])
    info = {"grid": values, "extensions": extensions, "at_edge": at_edge}
    return best, [trials[v] for v in values], info


def run_method(
    key: str,
    label: str,
    make_dir: Callable[[int], Callable[..., np.ndarray]],
    n: int,
    steps: int,
    seeds: Sequence[int],
    search_seeds: Sequence[int],
    grid: Sequence[float],
    max_extensions: int = 3,
) -> dict[str, Any]:
    """Search ``eta0`` (:func:`search_eta0`), then run every final seed with it."""
    eta0, trials, info = search_eta0(make_dir, n, steps, search_seeds, grid, max_extensions)
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
    lm, lsd = mean_std([_log10(r["final_f"]) for r in runs])
    return {
        "key": key,
        "label": label,
        "grid": [{"eta0": e} for e in info["grid"]],
        "budget": len(trials),
        "search": trials,
        "search_info": info,
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


def _log10(v: float) -> float:
    return float(np.log10(max(v, 1e-300)))


def paired(methods: dict[str, Any], confidence: float = 0.95) -> list[dict[str, Any]]:
    """Per-start differences of ``log10`` final ``f``, every QP-SBGD column minus every
    non-QP-SBGD method, and each annealer column minus ``qpsbgd_exact`` (negative: the first
    lower); mean, std, t-interval, the starts where the first ends lower (``wins``) and ties."""
    out = []
    for qk, q in methods.items():
        if not qk.startswith("qpsbgd"):
            continue
        qf = {r["seed"]: _log10(r["final_f"]) for r in q["runs"]}
        for bk, b in methods.items():
            # every non-QP-SBGD method; among QP-SBGD columns only the annealer minus exact
            if bk == qk or (bk.startswith("qpsbgd") and bk != "qpsbgd_exact"):
                continue
            bf = {r["seed"]: _log10(r["final_f"]) for r in b["runs"]}
            seeds = sorted(set(qf) & set(bf))
            diffs = [qf[s] - bf[s] for s in seeds]
            if not diffs:
                continue
            mean, std, ci = t_interval(diffs, confidence)
            out.append(
                {
                    "method": qk,
                    "baseline": bk,
                    "seeds": seeds,
                    "diffs": diffs,
                    "mean": mean,
                    "std": std,
                    "ci": ci,
                    "confidence": confidence,
                    "wins": int(sum(d < 0 for d in diffs)),
                    "ties": int(sum(abs(d) < 1e-12 for d in diffs)),
                }
            )
    return out


def table(results: dict[str, Any]) -> str:
    lines = [f"### {results['title']}", ""]
    for n, res in results["problems"].items():
        methods = list(res["methods"].values())

        def chosen(m: dict[str, Any]) -> str:
            info = m.get("search_info") or {}
            cell = f"eta0={m['chosen']['eta0']:g}"
            if info.get("extensions"):
                cell += (
                    " (extended " + ", ".join(f"{e['value']:g}" for e in info["extensions"]) + ")"
                )
            if info.get("at_edge"):
                cell += " **at edge**"
            return cell

        lines += [
            f"n = {n}, {res['steps']} steps (search and final), {len(res['seeds'])} final starts, "
            f"{len(results['protocol']['search_seeds'])} search starts",
            "",
            "| | " + " | ".join(m["label"] for m in methods) + " |",
            "|---|" + "---|" * len(methods),
            "| median final f | "
            + " | ".join(f"{m['summary']['median_final_f']:.3g}" for m in methods)
            + " |",
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
            "| wall time / step / start (ms) | "
            + " | ".join(f"{1e3 * m['summary']['wall_time_per_step']:.3f}" for m in methods)
            + " |",
            "| search trials | " + " | ".join(str(m["budget"]) for m in methods) + " |",
            "| chosen | " + " | ".join(chosen(m) for m in methods) + " |",
            "",
        ]
        pairs = res.get("paired") or []
        if pairs:
            labels = {m["key"]: m["label"] for m in methods}
            lines += [
                "Paired per-start differences of log10 final f (QP-SBGD minus the other method; "
                "negative: QP-SBGD lower), 95 % t-interval, starts where QP-SBGD ends lower:",
                "",
                "| QP-SBGD column | minus | mean ± std | 95 % interval | QP-SBGD lower / tied |",
                "|---|---|---|---|---|",
            ]
            for p in pairs:
                ci = "n/a" if p["ci"] is None else f"[{p['ci'][0]:+.2f}, {p['ci'][1]:+.2f}]"
                lines.append(
                    f"| {labels[p['method']]} | {labels[p['baseline']]} | {p['mean']:+.2f} ± "
                    f"{p['std']:.2f} | {ci} | {p['wins']} / {p['ties']} of {len(p['seeds'])} |"
                )
            lines.append("")
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
            ax.fill_between(steps + 1, fs.min(axis=0), fs.max(axis=0), alpha=0.12)
        ax.set(xscale="log", yscale="log", xlabel="iteration", ylabel="f (median, min-max band)")
        ax.set_title(f"Rosenbrock, n = {n}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = save_figure(fig, path)
    plt.close(fig)
    return path


#: The non-annealer methods: key, label, direction.
BASELINES: tuple[tuple[str, str, Callable[..., np.ndarray]], ...] = (
    ("saddle_free_sign", "sign(|H|^-1 g)", saddle_free_sign_direction),
    ("projected_newton", "projected Newton sign(H^-1 g)", projected_newton_direction),
    ("signsgd", "signSGD", sign_direction),
    ("clipped_gd", "GD (clipped steps)", clipped_direction),
)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, default_backends=["neal", "exact"], default_out="runs/rosenbrock")
    parser.add_argument("--dims", default="2,10", help="comma-separated dimensions n")
    parser.add_argument("--steps", type=int, default=500, help="step budget per run")
    parser.add_argument(
        "--search-starts", type=int, default=None, help="search starts (default: as --seeds)"
    )
    args = parser.parse_args(argv)
    try:
        backends, annealer = annealer_settings(args, {"num_reads": 10, "num_sweeps": 100})
        try:
            dims = [int(d) for d in args.dims.split(",")]
        except ValueError:
            dims = []
        if not dims or any(d < 2 for d in dims):
            raise ValueError(f"--dims must be comma-separated ints >= 2 (got {args.dims!r})")
        steps = 20 if args.smoke else args.steps
        if steps < 2:
            raise ValueError(f"--steps must be >= 2 (got {steps})")
        if args.search_seeds != 1:
            raise ValueError(
                f"--search-seeds does not apply here (got {args.search_seeds}); "
                "rosenbrock.py searches over --search-starts starting points"
            )
        if args.search_starts is not None and args.search_starts < 1:
            raise ValueError(f"--search-starts must be a positive int (got {args.search_starts})")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    check_outputs(args.out, ["rosenbrock"], args.overwrite)
    seeds = list(range(2 if args.smoke else args.seeds))
    n_search = 2 if args.smoke else (args.search_starts or len(seeds))
    search_seeds = [1000 + s for s in range(n_search)]
    grid = ETA_GRID[1:3] if args.smoke else ETA_GRID
    max_ext = 1 if args.smoke else args.max_extensions
    include = args.methods.split(",") if args.methods else None
    t_start = time.perf_counter()
    results: dict[str, Any] = {
        "task": "rosenbrock",
        "title": f"Rosenbrock, {len(seeds)} random starts in [-2, 2]^n",
        "protocol": {
            "name": "fair-1-like (Rosenbrock: final f, no accuracy)",
            "steps": steps,
            "search_steps": steps,
            "schedule": "eta_t = eta0 * 0.01^(t/(T-1))",
            "eta0_grid": grid,
            "max_extensions": max_ext,
            "selection": "lowest mean log10 f at the last step over the search starts",
            "seeds": seeds,
            "search_seeds": search_seeds,
            "paired": "per-start log10 final f, QP-SBGD minus each other method",
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
        candidates += [(k, label, lambda s, d=d: d) for k, label, d in BASELINES]
        for key, label, make_dir in candidates:
            if include is not None and key not in include:
                continue
            print(f"[rosenbrock n={n}] {label}", file=sys.stderr, flush=True)
            methods[key] = run_method(
                key, label, make_dir, n, steps, seeds, search_seeds, grid, max_ext
            )
        results["problems"][str(n)] = {
            "steps": steps,
            "seeds": seeds,
            "methods": methods,
            "paired": paired(methods),
        }
    results["wall_time"] = time.perf_counter() - t_start
    results["table"] = table(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # "methods" stays empty: summarize_results gathers accuracy tables, this file has none
    paths = write_results({**results, "methods": {}}, out, "rosenbrock", overwrite=args.overwrite)
    paths["png"] = plot(results, out / "rosenbrock.png")
    print(results["table"])
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
