"""Summaries of :func:`qkernels.experiment.run_experiment`'s runs: mean and standard deviation
across seeds per (data set, ansatz) for every kernel (:func:`summarize`), and the markdown
tables of ``results.md`` (:func:`markdown_table`). Also importable from
:mod:`qkernels.experiment`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The four kernels of every run, in table order.
METHODS: tuple[str, ...] = ("untrained", "untrained_tuned_bandwidth", "trained", "rbf_tuned")

#: Column titles of :data:`METHODS`.
METHOD_TITLES: dict[str, str] = {
    "untrained": "untrained",
    "untrained_tuned_bandwidth": "untrained, tuned bandwidth",
    "trained": "trained (alignment)",
    "rbf_tuned": "RBF, tuned γ",
}


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std())}


def _acc(rs: list[dict[str, Any]], phase: str, key: str) -> dict[str, float]:
    return _stats([r[phase]["accuracy"][key] for r in rs])


#: Evaluators summarised per kernel (keys of a method record).
EVALUATORS: tuple[str, ...] = (
    "alignment",
    "centered_alignment",
    "polarity",
    "task_model_alignment",
    "model_complexity_per_n",
    "generalization_bound",
    "geometric_difference_rbf",
    "effective_dimension",
)


def _method_summary(rs: list[dict[str, Any]], method: str) -> dict[str, Any] | None:
    recs = [r["methods"][method] for r in rs if method in r.get("methods", {})]
    if len(recs) != len(rs):
        return None
    out: dict[str, Any] = {
        "test": _stats([m["accuracy"]["test"] for m in recs]),
        "train": _stats([m["accuracy"]["train"] for m in recs]),
        **{k: _stats([m[k] for m in recs]) for k in EVALUATORS},
    }
    if "on_edge" in recs[0]:
        out["chosen_on_grid_edge"] = int(sum(bool(m["on_edge"]) for m in recs))
    for key in ("bandwidth", "gamma"):
        if key in recs[0]:
            out[key] = _stats([m[key] for m in recs])
    return out


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation across seeds per (data set, ansatz), for every kernel."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["ansatz"]), []).append(r)
    out = []
    for (dataset, ansatz), rs in groups.items():
        delta = [r["after"]["accuracy"]["test"] - r["before"]["accuracy"]["test"] for r in rs]
        methods = {m: _method_summary(rs, m) for m in METHODS}
        entry = {
            "dataset": dataset,
            "ansatz": ansatz,
            "n_seeds": len(rs),
            "trained": rs[0]["trained"],
            "test_before": _acc(rs, "before", "test"),
            "test_after": _acc(rs, "after", "test"),
            "train_before": _acc(rs, "before", "train"),
            "train_after": _acc(rs, "after", "train"),
            "test_gain": _stats(delta),
            "alignment_before": _stats([r["before"]["alignment"] for r in rs]),
            "alignment_after": _stats([r["after"]["alignment"] for r in rs]),
            "geometric_difference_after": _stats(
                [r["after"]["geometric_difference_rbf"] for r in rs]
            ),
            "train_seconds": _stats([r["train_seconds"] for r in rs]),
            "methods": {m: v for m, v in methods.items() if v is not None},
        }
        for other in ("untrained_tuned_bandwidth", "rbf_tuned"):
            if entry["methods"].get(other) is not None:  # paired per seed, same split
                entry[f"trained_minus_{other}"] = _stats(
                    [
                        r["after"]["accuracy"]["test"] - r["methods"][other]["accuracy"]["test"]
                        for r in rs
                    ]
                )
        out.append(entry)
    return out


def markdown_table(summary: list[dict[str, Any]]) -> str:
    """Markdown tables of a summary: test accuracy of the four kernels, then their evaluators."""

    def pm(s: dict[str, float] | None, scale: float = 100.0, digits: int = 1) -> str:
        if s is None:
            return "–"
        return f"{s['mean'] * scale:.{digits}f} ± {s['std'] * scale:.{digits}f}"

    present = [m for m in METHODS if any(m in s["methods"] for s in summary)]
    head = (
        "Test accuracy (%), mean ± std over seeds, same splits and SVM C for every kernel:\n\n"
        "| dataset | ansatz | seeds | "
        + " | ".join(METHOD_TITLES[m] for m in present)
        + " | trained − tuned bandwidth (points, paired) | trained − RBF (points, paired) |\n"
        + "|---|---|---|"
        + "---|" * len(present)
        + "---|---|\n"
    )
    rows = []
    for s in summary:
        cells = [pm((s["methods"].get(m) or {}).get("test")) for m in present]
        rows.append(
            f"| {s['dataset']} | {s['ansatz']}{'' if s['trained'] else ' (fixed)'} "
            f"| {s['n_seeds']} | "
            + " | ".join(cells)
            + f" | {pm(s.get('trained_minus_untrained_tuned_bandwidth'))}"
            + f" | {pm(s.get('trained_minus_rbf_tuned'))} |"
        )
    ev_head = (
        "\nEvaluators on the training Gram (means over seeds): alignment, task-model alignment "
        "(area under the cumulative power), polarity (class-rescaled), model complexity "
        "s_K / N and Huang et al.'s bound (ridge regulariser `baselines.reg`), geometric "
        "difference g(RBF‖K) to the tuned RBF kernel, effective dimension:\n\n"
        "| dataset | ansatz | kernel | alignment | task-model alignment | polarity | s_K / N "
        "| bound | g(RBF‖K) | eff. dim. | grid-edge choices |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    ev_rows = []
    for s in summary:
        for m in present:
            e = s["methods"].get(m)
            if e is None:
                continue
            edge = e.get("chosen_on_grid_edge")
            ev_rows.append(
                f"| {s['dataset']} | {s['ansatz']} | {METHOD_TITLES[m]} "
                f"| {e['alignment']['mean']:.3f} | {e['task_model_alignment']['mean']:.3f} "
                f"| {e['polarity']['mean']:.3f} | {e['model_complexity_per_n']['mean']:.3f} "
                f"| {e['generalization_bound']['mean']:.3f} "
                f"| {e['geometric_difference_rbf']['mean']:.2f} "
                f"| {e['effective_dimension']['mean']:.1f} "
                f"| {'–' if edge is None else str(edge) + '/' + str(s['n_seeds'])} |"
            )
    return head + "\n".join(rows) + "\n" + ev_head + "\n".join(ev_rows) + "\n"
