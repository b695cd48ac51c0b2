"""Cost curves of the ``batched`` annealer and of build + solve, with fitted log-log slopes.

Problems: ``m`` per-neuron layer problems ``qsgd.qubo.layer_ising(X, G, eta)`` of a binary layer
with fan-in ``n`` fed a batch of ``B`` ±1 inputs ``X`` (random, seeded) and Gaussian upstream
gradients ``G``; ``eta`` balances fields and couplings as in ``bench_annealers.py``. The low-rank
factor is ``X`` (rank ``B``), so the ``"factor"`` path costs ``O(B)`` per spin visit and the
``"dense"`` one ``O(1)`` per visit plus ``O(n)`` per flip; ``path="auto"`` picks the factor
when ``3 B <= n``.

Axes (one varies, the others stay at the base point ``n = 512, B = 16, m = 64, 1 read,
100 sweeps``):

* fan-in ``n``: 64 .. 2048;
* batch ``B``: 8 .. 512, with ``path="auto"`` and with each path forced (the crossover);
* sweeps: 10 .. 1000;
* problems ``m``: 16 .. 1024.

For each point: ``solve`` = one ``BatchedAnnealer.sample_batch`` call (compile excluded by a
warm-up), ``build + solve`` = ``layer_ising`` from ``(X, G)`` then the solve. Times are the best
of ``--repeats``. Slopes are least-squares fits of ``log t`` against ``log x``. The widest case
(``n = 2048, B = 512``) is also run once in a fresh subprocess to record its peak memory: the
peak RSS over the RSS before the case (``VmHWM`` after resetting it through
``/proc/self/clear_refs``; includes numba's own arrays) and the peak of numpy/Python
allocations (``tracemalloc``).

Cost is CPU time (``time.process_time``) on one annealer thread by default, which other jobs on
the machine barely change; wall time is recorded too (``--num-threads`` for more threads).

Writes ``benchmarks/figures/curves.png`` and ``curves.json`` (``--out`` to change the folder);
the last stdout line is the JSON summary (slopes, peak memory).

Run: ``python benchmarks/bench_curves.py [--quick] [--num-threads N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, emit, machine  # noqa: E402

from qsgd.ising import IsingBatch  # noqa: E402
from qsgd.qubo import layer_ising  # noqa: E402
from qsgd.samplers.batched import BatchedAnnealer  # noqa: E402

BASE = {"n": 512, "B": 16, "m": 64, "sweeps": 100}
AXES = {
    "n": [64, 128, 256, 512, 1024, 2048],
    "B": [8, 16, 32, 64, 128, 256, 512],
    "sweeps": [10, 30, 100, 300, 1000],
    "m": [16, 64, 256, 1024],
}
QUICK_AXES = {
    "n": [64, 256, 1024, 2048],
    "B": [8, 32, 128, 512],
    "sweeps": [10, 100, 1000],
    "m": [16, 128, 1024],
}
WIDEST = {"n": 2048, "B": 512, "m": 64, "sweeps": 100}


def make_inputs(n: int, B: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """±1 layer inputs ``X`` ``(B, n)``, gradients ``G`` ``(B, m)`` and a balancing ``eta``."""
    rng = np.random.default_rng(seed)
    X = rng.choice([-1.0, 1.0], size=(B, n))
    G = rng.normal(size=(B, m)) / B
    grad = G.T @ X
    gram = X.T @ X / B
    np.fill_diagonal(gram, 0.0)
    eta = float(np.sqrt(np.mean(grad**2)) / np.sqrt(np.mean((gram**2).sum(axis=1))))
    return X, G, eta


def build(X: np.ndarray, G: np.ndarray, eta: float) -> IsingBatch:
    return layer_ising(X, G, eta=eta, curvature=1.0)


def measure(point: dict, repeats: int, num_threads: int | None, path: str = "auto") -> dict:
    """Best-of-``repeats`` solve and build+solve times at one point."""
    sampler = BatchedAnnealer()
    X, G, eta = make_inputs(point["n"], point["B"], point["m"])
    kw = dict(num_reads=1, num_sweeps=point["sweeps"], device="cpu", num_threads=num_threads)
    batch = build(X, G, eta)
    sampler.sample_batch(batch.subset(slice(0, 1)), num_sweeps=1, path=path, device="cpu")
    t_solve = t_both = w_solve = float("inf")
    info: dict = {}
    for k in range(repeats):
        c0 = time.process_time()
        b = build(X, G, eta)
        c1, w1 = time.process_time(), time.perf_counter()
        res = sampler.sample_batch(b, seed=k, path=path, **kw)
        c2, w2 = time.process_time(), time.perf_counter()
        t_solve = min(t_solve, c2 - c1)
        t_both = min(t_both, c2 - c0)
        w_solve = min(w_solve, w2 - w1)
        info = res.info
    visits = point["m"] * point["n"] * point["sweeps"]
    return {
        **point,
        "path": info["path"],
        "forced": path != "auto",
        "solve_s": t_solve,
        "build_solve_s": t_both,
        "solve_wall_s": w_solve,
        "ns_per_visit": t_solve / visits * 1e9,
        "threads": info["num_threads"],
    }


def slope(xs: list[float], ts: list[float]) -> float:
    """Least-squares slope of ``log t`` against ``log x``."""
    return float(np.polyfit(np.log(xs), np.log(ts), 1)[0])


def affine(xs: list[float], ts: list[float]) -> dict:
    """Least-squares ``t = fixed + per_unit * x`` and its largest relative residual: linear growth
    with a fixed cost per call shows as a small residual (while the log-log slope is below 1)."""
    x, t = np.asarray(xs, dtype=float), np.asarray(ts, dtype=float)
    per_unit, fixed = np.polyfit(x, t, 1)
    resid = np.abs(t - (fixed + per_unit * x)) / t
    return {
        "fixed_s": float(fixed),
        "per_unit_s": float(per_unit),
        "max_rel_residual": float(resid.max()),
    }


_PEAK_SCRIPT = """
import json, sys, time, tracemalloc
sys.path.insert(0, {bench!r})
import numpy as np
from bench_curves import make_inputs, build
from qsgd.samplers.batched import BatchedAnnealer

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # MB
    return float("nan")

p = json.loads(sys.argv[1])
s = BatchedAnnealer()
X, G, eta = make_inputs(p["n"], p["B"], p["m"])
s.sample_batch(build(X[:, :64], G, eta), num_reads=1, num_sweeps=1, device="cpu")  # compile/load
with open("/proc/self/clear_refs", "w") as f:  # reset the peak-RSS mark (VmHWM) to the current RSS
    f.write("5")
base = status("VmRSS")
tracemalloc.start()
t0, c0 = time.perf_counter(), time.process_time()
res = s.sample_batch(build(X, G, eta), num_reads=1, num_sweeps=p["sweeps"], seed=0, device="cpu",
                     num_threads=p["threads"])
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
_, traced = tracemalloc.get_traced_memory()
peak = status("VmHWM")
print(json.dumps({{"base_rss_mb": base, "peak_rss_mb": peak, "rss_increase_mb": peak - base,
                  "tracemalloc_peak_mb": traced / 2**20, "build_solve_s": wall,
                  "build_solve_cpu_s": cpu,
                  "path": res.info["path"]}}))
"""


def peak_memory(point: dict, timeout: float) -> dict:
    """Run ``point`` once in a fresh process; its peak memory (see the module docstring)."""
    script = _PEAK_SCRIPT.format(bench=str(Path(__file__).resolve().parent))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(point)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if out.returncode != 0:
        raise RuntimeError(f"peak-memory subprocess failed: {out.stderr.strip()[-500:]}")
    return {**point, **json.loads(out.stdout.strip().splitlines()[-1])}


def plot(rows: list[dict], slopes: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {
        "n": "fan-in n",
        "B": "batch B (rank of the factor)",
        "sweeps": "sweeps",
        "m": "problems m",
    }
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, axis in zip(axes.ravel(), AXES, strict=True):
        pts = [r for r in rows if r["axis"] == axis and not r["forced"]]
        xs = [r[axis] for r in pts]
        ax.loglog(
            xs,
            [r["solve_s"] for r in pts],
            "o-",
            label=f"solve (slope {slopes[axis]['solve']:.2f})",
        )
        ax.loglog(
            xs,
            [r["build_solve_s"] for r in pts],
            "s--",
            label=f"build + solve (slope {slopes[axis]['build_solve']:.2f})",
        )
        if axis == "B":
            for forced, style in (("factor", "^:"), ("dense", "v:")):
                fp = [r for r in rows if r["axis"] == "B" and r["forced"] and r["path"] == forced]
                ax.loglog(
                    [r["B"] for r in fp],
                    [r["solve_s"] for r in fp],
                    style,
                    label=f"solve, {forced} forced",
                )
        ax.set_xlabel(titles[axis])
        ax.set_ylabel("CPU seconds")
        base = ", ".join(f"{k}={v}" for k, v in BASE.items() if k != axis)
        ax.set_title(f"{titles[axis]} ({base}, 1 read)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    threads = rows[0]["threads"]
    fig.suptitle(f"batched annealer: CPU time on {threads} thread(s), best of repeats")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer points, one repeat (about a minute)")
    p.add_argument("--repeats", type=int, default=None, help="best of (default 2, quick 1)")
    p.add_argument("--num-threads", type=int, default=1, help="annealer threads (default 1)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "figures")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for the memory subprocess")
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 2)
    axes = QUICK_AXES if args.quick else AXES
    t_start = time.perf_counter()
    load0 = os.getloadavg()[0]

    rows = []
    for axis, values in axes.items():
        for v in values:
            point = {**BASE, axis: v}
            paths = ("auto", "factor", "dense") if axis == "B" else ("auto",)
            for path in paths:
                r = {"axis": axis, **measure(point, repeats, args.num_threads, path)}
                rows.append(r)
                print(
                    f"{axis:>6}={v:<5d} path={r['path']:<6}{' (forced)' if r['forced'] else '         '} "
                    f"solve {r['solve_s']:8.4f} s ({r['ns_per_visit']:7.2f} ns/visit)  "
                    f"build+solve {r['build_solve_s']:8.4f} s",
                    flush=True,
                )
    slopes = {}
    for axis in axes:
        pts = [r for r in rows if r["axis"] == axis and not r["forced"]]
        xs = [r[axis] for r in pts]
        slopes[axis] = {
            "solve": slope(xs, [r["solve_s"] for r in pts]),
            "build_solve": slope(xs, [r["build_solve_s"] for r in pts]),
            "solve_top3": slope(xs[-3:], [r["solve_s"] for r in pts][-3:]),
            "build_solve_top3": slope(xs[-3:], [r["build_solve_s"] for r in pts][-3:]),
        }
        if axis in ("sweeps", "m"):
            slopes[axis]["solve_affine"] = affine(xs, [r["solve_s"] for r in pts])
            slopes[axis]["build_solve_affine"] = affine(xs, [r["build_solve_s"] for r in pts])
        for forced in ("factor", "dense") if axis == "B" else ():
            fp = [r for r in rows if r["axis"] == axis and r["forced"] and r["path"] == forced]
            slopes[axis][f"solve_{forced}"] = slope(
                [r[axis] for r in fp], [r["solve_s"] for r in fp]
            )
    for axis, sl in slopes.items():
        print(
            f"log-log slope vs {axis}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in sl.items() if not isinstance(v, dict))
        )
        for k, v in sl.items():
            if isinstance(v, dict):
                print(
                    f"  {k} vs {axis}: fixed {v['fixed_s'] * 1e3:.2f} ms + {v['per_unit_s'] * 1e3:.4f} ms "
                    f"per unit, largest relative residual {v['max_rel_residual']:.2f}"
                )
    crossover = [
        {
            "B": b,
            "factor_s": next(
                r["solve_s"]
                for r in rows
                if r["axis"] == "B" and r["forced"] and r["path"] == "factor" and r["B"] == b
            ),
            "dense_s": next(
                r["solve_s"]
                for r in rows
                if r["axis"] == "B" and r["forced"] and r["path"] == "dense" and r["B"] == b
            ),
            "auto_path": next(
                r["path"] for r in rows if r["axis"] == "B" and not r["forced"] and r["B"] == b
            ),
        }
        for b in axes["B"]
    ]
    widest = {**WIDEST, "threads": args.num_threads}
    memory = None if args.no_memory else peak_memory(widest, args.timeout)
    if memory is not None:
        print(
            f"widest case n={WIDEST['n']} B={WIDEST['B']} m={WIDEST['m']} sweeps={WIDEST['sweeps']}: "
            f"peak RSS +{memory['rss_increase_mb']:.1f} MB over {memory['base_rss_mb']:.0f} MB after imports, "
            f"tracemalloc peak {memory['tracemalloc_peak_mb']:.1f} MB, build+solve {memory['build_solve_s']:.2f} s "
            f"wall, {memory['build_solve_cpu_s']:.2f} s CPU "
            f"({memory['path']} path)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, slopes, args.out / "curves.png")
    record = {
        "bench": "curves",
        "quick": args.quick,
        "repeats": repeats,
        "base": BASE,
        "slopes": slopes,
        "crossover_B_at_n512": crossover,
        "peak_memory_widest": memory,
        "rows": rows,
        "load_average_start": round(load0, 2),
        "load_average_end": round(os.getloadavg()[0], 2),
        "wall_s": round(time.perf_counter() - t_start, 1),
        **machine(),
    }
    (args.out / "curves.json").write_text(json.dumps(record, indent=1, default=float) + "\n")
    print(f"wrote {args.out / 'curves.png'} and {args.out / 'curves.json'}")
    summary = {k: v for k, v in record.items() if k not in ("rows",)}
    emit(summary)
    return record


if __name__ == "__main__":
    main()
