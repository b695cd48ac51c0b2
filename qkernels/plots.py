"""Plots of experiment runs (matplotlib, Agg backend): Gram heatmaps, alignment, decision boundary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

__all__ = ["gram_heatmaps", "alignment_curve", "decision_boundary"]


def _class_splits(y_sorted: np.ndarray) -> list[float]:
    """Positions between consecutive classes of sorted labels (for lines between pixels)."""
    return [i - 0.5 for i in np.flatnonzero(np.diff(y_sorted) != 0) + 1]


def gram_heatmaps(
    K_before: np.ndarray,
    K_after: np.ndarray,
    y: np.ndarray,
    path: Path,
    titles: tuple[str, str] = ("untrained", "trained"),
) -> None:
    """Untrained and trained training Gram side by side, rows and columns sorted by class.

    White lines mark where one class ends and the next begins, so a kernel that suits the
    labels shows bright diagonal blocks and dark off-diagonal blocks.

    Shape:
        - K_before, K_after: ``(N, N)``; y: ``(N,)``
    """
    y = np.asarray(y)
    order = np.argsort(y, kind="stable")
    ys = y[order]
    splits = _class_splits(ys)
    classes, starts = np.unique(ys, return_index=True)
    ends = np.append(starts[1:], len(ys))
    centres = (starts + ends - 1) / 2
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.9), constrained_layout=True)
    for ax, K, title in zip(axes, (K_before, K_after), titles, strict=True):
        im = ax.imshow(K[np.ix_(order, order)], vmin=0, vmax=1, cmap="viridis")
        for pos in splits:
            ax.axhline(pos, color="w", lw=1.2)
            ax.axvline(pos, color="w", lw=1.2)
        ax.set_xticks(centres, [f"y={c:g}" for c in classes])
        ax.set_yticks(centres, [f"y={c:g}" for c in classes])
        ax.set_title(f"training Gram, {title}")
    fig.colorbar(im, ax=axes, shrink=0.85, label="k(x, x')")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def alignment_curve(
    alignment: list[float], path: Path, full: list[tuple[int, float]] | None = None
) -> None:
    """Kernel-target alignment over training: the full training set bold, the batches faint.

    Args:
        alignment: alignment of each step's mini-batch (noisy: a few points per step).
        path: output PNG.
        full: ``(step, alignment)`` on the whole training set, recorded every ``eval_every``
            steps (the curve to read).
    """
    fig, ax = plt.subplots(figsize=(5.4, 3.4))
    steps = np.arange(1, len(alignment) + 1)
    ax.plot(steps, alignment, lw=0.8, color="tab:blue", alpha=0.25, label="mini-batch")
    if full:
        fs, fa = zip(*full, strict=True)
        ax.plot(fs, fa, "-o", lw=2, ms=3.5, color="tab:red", label="full training set")
    ax.set_xlabel("training step")
    ax.set_ylabel("kernel-target alignment")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def decision_boundary(kern: Any, ds: Any, C: float, path: Path, grid: int = 40) -> None:
    """Decision regions of the SVM on the (trained) kernel over ``[-1.1, 1.1]²``, with the data.

    Regions are drawn light so that the points stay legible: training points as filled circles
    with dark edges, test points as larger hollow squares, both coloured by their true class.
    """
    with torch.no_grad():
        K = kern.gram(ds.X_train).numpy()
        svc = SVC(kernel="precomputed", C=C).fit(K, ds.y_train)
        g = np.linspace(-1.1, 1.1, grid)
        xx, yy = np.meshgrid(g, g)
        pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
        z = svc.decision_function(kern.gram(pts, ds.X_train).numpy()).reshape(xx.shape)
        test_acc = float(
            (svc.predict(kern.gram(ds.X_test, ds.X_train).numpy()) == ds.y_test).mean()
        )
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    lim = float(np.abs(z).max()) or 1.0
    ax.contourf(xx, yy, z, levels=np.linspace(-lim, lim, 21), cmap="RdBu_r", alpha=0.35)
    ax.contour(xx, yy, z, levels=[0], colors="k", linewidths=1.5)
    classes = np.unique(np.concatenate([ds.y_train, ds.y_test]))
    colours = dict(zip(classes, ("tab:blue", "tab:red"), strict=False))
    for c in classes:
        tr, te = ds.X_train[ds.y_train == c], ds.X_test[ds.y_test == c]
        col = colours.get(c, "tab:gray")
        ax.scatter(tr[:, 0], tr[:, 1], s=22, c=col, edgecolors="k", lw=0.6, label=f"train y={c:g}")
        ax.scatter(
            te[:, 0],
            te[:, 1],
            s=46,
            marker="s",
            facecolors="none",
            edgecolors=col,
            lw=1.6,
            label=f"test y={c:g}",
        )
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_title(f"{ds.name}: SVM on the kernel (test acc {test_acc:.2f})", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4, fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
