"""Statistics, tables, curves and the results files of the experiments.

:func:`summarize` and :func:`paired_differences` (95 % t-intervals over seeds),
:func:`markdown_table`, :func:`plot_curves`, :func:`write_results` (JSON, markdown, PNG) and the
cross-experiment index :func:`summary_index` / :func:`summary_markdown`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bnn.experiments.methods import METHOD_ORDER, PROTOCOL_VERSION, _label


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value) of the finite values.

    Example:
        >>> mean_std([1.0, 3.0])
        (2.0, 1.4142135623730951)
    """
    arr = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return None, None
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of the test accuracy and loss (at the best-validation epoch),
    the last-epoch test accuracy, the best epoch, the epochs run and the wall time per epoch."""
    out: dict[str, Any] = {"n": len(runs)}
    for key in (
        "test_accuracy",
        "test_loss",
        "wall_time_per_epoch",
        "val_accuracy",
        "best_epoch",
        "epochs_run",
    ):
        m, s = mean_std([r.get(key) for r in runs])
        out[key] = {"mean": m, "std": s}
    m, s = mean_std([(r.get("last") or {}).get("test_accuracy") for r in runs])
    out["last_test_accuracy"] = {"mean": m, "std": s}
    return out


def t_interval(
    diffs: Sequence[float], confidence: float = 0.95
) -> tuple[float | None, float | None, list[float] | None]:
    """Mean, sample std and two-sided t-interval ``[low, high]`` of paired differences
    (interval None with fewer than 2 values).

    Example:
        >>> mean, std, ci = t_interval([0.1, 0.3])
        >>> round(mean, 3), [round(v, 3) for v in ci]
        (0.2, [-1.071, 1.471])
    """
    from scipy import stats

    mean, std = mean_std(diffs)
    if len(diffs) < 2 or mean is None:
        return mean, std, None
    half = float(stats.t.ppf(0.5 + confidence / 2, len(diffs) - 1)) * std / math.sqrt(len(diffs))
    return mean, std, [mean - half, mean + half]


def paired_differences(
    methods: Mapping[str, Mapping[str, Any]], *, confidence: float = 0.95
) -> list[dict[str, Any]]:
    """Per-seed paired differences of test accuracy, every QP-SBGD column minus every
    non-QP-SBGD method and minus its own curvature-0 ablation (``<key>_c0``), over the seeds
    both ran; mean, std and a two-sided t-interval.

    Returns:
        One record per pair: ``method``, ``baseline``, ``seeds``, ``diffs``, ``mean``,
        ``std``, ``ci`` (``[low, high]``; None with fewer than 2 seeds), ``confidence``.
    """
    out = []
    for qk, q in methods.items():
        if not qk.startswith("qpsbgd") or qk.endswith("_c0"):
            continue
        qacc = {r["seed"]: r["test_accuracy"] for r in q["runs"]}
        for bk, b in methods.items():
            if bk.startswith("qpsbgd") and bk != f"{qk}_c0":
                continue
            bacc = {r["seed"]: r["test_accuracy"] for r in b["runs"]}
            seeds = sorted(set(qacc) & set(bacc))
            diffs = [qacc[s] - bacc[s] for s in seeds]
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
                }
            )
    return out


def _fmt(stat: Mapping[str, Any] | None, digits: int) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _fmt_hp(hp: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())


def _search_cell(m: Mapping[str, Any]) -> str:
    if m.get("search_from"):
        return f"reused from {_label(m['search_from'])}"
    info = m.get("search_info") or {}
    cell = f"{m['budget']} ({info.get('epochs', '?')} ep)"
    if info.get("extensions"):
        cell += ", extended " + ", ".join(
            f"{e['axis']}{'+' if e['direction'] > 0 else '-'}" for e in info["extensions"]
        )
    if info.get("at_edge"):
        cell += ", **still at edge: " + ", ".join(info["at_edge"]) + "**"
    if info.get("at_bound"):
        cell += ", at bound: " + ", ".join(info["at_bound"])
    return cell


def markdown_table(results: Mapping[str, Any]) -> str:
    """The results as markdown: one column per method (mean ± std over seeds), then the paired
    differences of each QP-SBGD column against every other method.

    Rows: test accuracy at the best-validation epoch, test loss, last-epoch test accuracy,
    validation accuracy, best epoch, epochs run, wall time per epoch (s), the majority-class
    rate, seeds, maximum epochs, the search (trials, epochs, extensions) and the choice.
    """
    methods = list(results["methods"].values())
    head = "| | " + " | ".join(m["label"] for m in methods) + " |"
    sep = "|---|" + "---|" * len(methods)
    rows = [
        (
            "test accuracy (best-val epoch)",
            [_fmt(m["summary"]["test_accuracy"], 4) for m in methods],
        ),
        ("test loss", [_fmt(m["summary"]["test_loss"], 4) for m in methods]),
        (
            "test accuracy (last epoch)",
            [_fmt(m["summary"].get("last_test_accuracy"), 4) for m in methods],
        ),
        ("validation accuracy", [_fmt(m["summary"]["val_accuracy"], 4) for m in methods]),
        ("best epoch", [_fmt(m["summary"].get("best_epoch"), 1) for m in methods]),
        ("epochs run", [_fmt(m["summary"].get("epochs_run"), 1) for m in methods]),
        ("wall time / epoch (s)", [_fmt(m["summary"]["wall_time_per_epoch"], 2) for m in methods]),
        (
            "majority rate (test)",
            [f"{results.get('majority_rate', float('nan')):.4f}" for _ in methods],
        ),
        ("seeds", [str(len(m["seeds"])) for m in methods]),
        (
            "max epochs (batches/epoch cap)",
            [
                f"{m['epochs']}"
                + (f" ({m['max_batches_per_epoch']})" if m.get("max_batches_per_epoch") else "")
                for m in methods
            ],
        ),
        ("search trials", [_search_cell(m) for m in methods]),
        ("chosen", [_fmt_hp(m["chosen"]) for m in methods]),
    ]
    title = results.get("title", results.get("task", ""))
    lines = [f"### {title}", "", head, sep]
    lines += ["| " + name + " | " + " | ".join(cells) + " |" for name, cells in rows]
    pairs = results.get("paired") or []
    if pairs:
        labels = {m["key"]: m["label"] for m in methods}
        lines += [
            "",
            "Paired per-seed differences of test accuracy (QP-SBGD minus the other method), "
            "mean ± std and 95 % t-interval:",
            "",
            "| QP-SBGD column | minus | seeds | mean ± std | 95 % interval |",
            "|---|---|---|---|---|",
        ]
        for p in pairs:
            ci = "n/a" if p["ci"] is None else f"[{p['ci'][0]:+.4f}, {p['ci'][1]:+.4f}]"
            lines.append(
                f"| {labels.get(p['method'], p['method'])} | {labels.get(p['baseline'], p['baseline'])} "
                f"| {len(p['seeds'])} | {p['mean']:+.4f} ± {p['std']:.4f} | {ci} |"
            )
    return "\n".join(lines) + "\n"


def plot_curves(results: Mapping[str, Any], path: str | Path) -> Path:
    """Test accuracy and training loss per epoch (mean over seeds, ± std band) per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for m in results["methods"].values():
        for ax, key in zip(axes, ("test_accuracy", "train_loss"), strict=True):
            curves = [
                [(c["epoch"], c[key]) for c in r["curve"] if c.get(key) is not None]
                for r in m["runs"]
            ]
            curves = [c for c in curves if c]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            x = np.array([e for e, _ in curves[0][:n]])
            y = np.array([[v for _, v in c[:n]] for c in curves], dtype=float)
            mu, sd = y.mean(axis=0), y.std(axis=0)
            ax.plot(x, mu, marker="o", ms=3, label=m["label"])
            ax.fill_between(x, mu - sd, mu + sd, alpha=0.2)
    if results.get("majority_rate") is not None:
        axes[0].axhline(results["majority_rate"], color="k", ls="--", lw=1, label="majority rate")
    axes[0].set(xlabel="epoch", ylabel="test accuracy", title=results.get("title", ""))
    axes[1].set(xlabel="epoch", ylabel="training loss")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = save_figure(fig, path)
    plt.close(fig)
    return path


def save_figure(fig: Any, path: str | Path, *, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG at ``path`` atomically (a reader never sees a partly
    written image; :func:`bnn.checkpoint.atomic_write_bytes`). Returns the path."""
    import io

    from bnn.checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(Path(path), buf.getvalue())


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return _jsonable(value.model_dump())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return repr(value)


_TIMING_KEYS = frozenset(
    {"wall_time", "wall_time_per_epoch", "solver_time", "environment", "date", "table"}
)


def numbers_only(results: Any) -> Any:
    """The results without timings, dates and the rendered table (which shows timings): what
    a rerun on the same machine must reproduce exactly."""
    if isinstance(results, Mapping):
        return {k: numbers_only(v) for k, v in results.items() if k not in _TIMING_KEYS}
    if isinstance(results, list | tuple):
        return [numbers_only(v) for v in results]
    return results


# --------------------------------------------------------------------- summary.json
def summary_index(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Gather experiment JSONs (:func:`write_results`) run under :data:`PROTOCOL_VERSION`
    into ``{"experiments": {name: {"methods": {key: {...}}}}}``.

    Each method entry has ``test_acc_mean``, ``test_acc_std`` (over seeds, at the
    best-validation epoch), ``seeds``, ``epochs`` (maximum), ``selection``, ``label``,
    ``chosen``; each experiment ``source`` (the JSON's path), ``command``, ``threads``,
    ``wall_time_s``, ``majority_rate``, ``smoke`` and ``paired``. Files of another protocol
    are listed under ``"skipped"``.

    Raises:
        ValueError: two files describe the same experiment name.
    """
    experiments: dict[str, Any] = {}
    skipped: list[str] = []
    for path in sorted(Path(p) for p in paths):
        data = json.loads(Path(path).read_text())
        if (data.get("protocol") or {}).get("version") != PROTOCOL_VERSION or "methods" not in data:
            skipped.append(str(path))
            continue
        name = data["task"]
        if name in experiments:
            raise ValueError(
                f"experiment {name!r} appears twice: {experiments[name]['source']} and {path}"
            )
        proto = data["protocol"]
        methods = {}
        for key, m in data["methods"].items():
            acc = m["summary"]["test_accuracy"]
            methods[key] = {
                "label": m["label"],
                "test_acc_mean": acc["mean"],
                "test_acc_std": acc["std"],
                "seeds": m["seeds"],
                "epochs": m["epochs"],
                "selection": proto["selection"],
                "chosen": m["chosen"],
                "search_trials": m["budget"],
                "search_at_edge": (m.get("search_info") or {}).get("at_edge", []),
            }
        experiments[name] = {
            "title": data.get("title", name),
            "source": str(path),
            "command": (data.get("extra") or {}).get("command"),
            "smoke": bool((data.get("extra") or {}).get("smoke")),
            "threads": proto.get("threads"),
            "wall_time_s": data.get("wall_time"),
            "majority_rate": data.get("majority_rate"),
            "protocol": {k: v for k, v in proto.items() if k != "selection"},
            "methods": methods,
            "paired": [
                {k: p[k] for k in ("method", "baseline", "mean", "std", "ci")}
                for p in data.get("paired", [])
            ],
        }
    return {"protocol": PROTOCOL_VERSION, "experiments": experiments, "skipped": skipped}


def summary_markdown(index: Mapping[str, Any]) -> str:
    """The table of :func:`summary_index`: one row per experiment, one column per method
    family (test accuracy at the best-validation epoch, mean ± std over seeds)."""
    cols: list[str] = []
    for exp in index["experiments"].values():
        for key in exp["methods"]:
            if key not in cols:
                cols.append(key)
    order = {k: i for i, k in enumerate(METHOD_ORDER)}
    cols.sort(key=lambda k: order.get(k, len(order)))
    lines = [
        "| experiment | majority | " + " | ".join(_label(k) for k in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for name, exp in index["experiments"].items():
        cells = []
        for k in cols:
            m = exp["methods"].get(k)
            cells.append(
                "—"
                if m is None or m["test_acc_mean"] is None
                else f"{m['test_acc_mean']:.3f} ± {m['test_acc_std']:.3f}"
            )
        maj = exp.get("majority_rate")
        lines.append(
            f"| {name} | {'' if maj is None else f'{maj:.3f}'} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


#: The files of one experiment ``STEM`` in its output folder (``STEM.json``, ``.md``, ``.png``).
RESULT_SUFFIXES = ("json", "md", "png")


def result_files(out: str | Path, stem: str) -> list[Path]:
    """The files :func:`write_results` (and a script's own plot) may write for ``stem``.

    Example:
        >>> [p.as_posix() for p in result_files("runs/gcn", "gcn_cora")]
        ['runs/gcn/gcn_cora.json', 'runs/gcn/gcn_cora.md', 'runs/gcn/gcn_cora.png']
    """
    return [Path(out) / f"{stem}.{suffix}" for suffix in RESULT_SUFFIXES]


def write_json(path: str | Path, data: Any, *, overwrite: bool = False) -> Path:
    """``data`` as indented JSON at ``path``, written atomically (folder created); the one
    writer of the experiments' JSON files (:func:`write_results`, the scripts' diagnostics).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false (nothing is written).
    """
    from bnn.checkpoint import atomic_write_bytes

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, (json.dumps(_jsonable(data), indent=1) + "\n").encode())


def write_results(
    results: Mapping[str, Any], out: str | Path, stem: str, *, overwrite: bool = False
) -> dict[str, Path]:
    """Write ``STEM.png`` (if there are curves), ``STEM.md`` (table) and ``STEM.json`` (raw
    results, written last) into ``out`` (created). Returns the paths by kind.

    Every file is written atomically (a temporary file renamed over it), so an interrupted
    write leaves the earlier file whole or none.

    Raises:
        FileExistsError: one of ``STEM.json``, ``STEM.md``, ``STEM.png`` already exists and
            ``overwrite`` is false (nothing is written).
    """
    from bnn.checkpoint import atomic_write_bytes

    out = Path(out)
    if not overwrite:
        existing = [p for p in result_files(out, stem) if p.exists()]
        if existing:
            raise FileExistsError(
                f"{existing[0]} already exists; pass overwrite=True (--overwrite) to replace it"
            )
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    if results.get("methods") and any(
        r.get("curve") for m in results["methods"].values() for r in m.get("runs", [])
    ):
        paths["png"] = plot_curves(results, out / f"{stem}.png")
    table = results.get("table") or markdown_table(results)
    atomic_write_bytes(paths["md"], table.encode())
    # the JSON last: its presence means the run is complete
    write_json(paths["json"], results, overwrite=True)  # refused above unless overwrite
    return paths
