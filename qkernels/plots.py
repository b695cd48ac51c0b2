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


def gram_heatmaps(K_before: np.ndarray, K_after: np.ndarray, y: np.ndarray, path: Path) -> None:
    """Side-by-side heatmaps of the training Gram matrix before and after training, rows sorted by label."""
    order = np.argsort(y, kind="stable")
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, K, title in zip(axes, (K_before, K_after), ("untrained", "trained"), strict=True):
        im = ax.imshow(K[np.ix_(order, order)], vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"Gram, {title}")
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def alignment_curve(alignment: list[float], path: Path) -> None:
    """Batch alignment per training step."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(np.arange(1, len(alignment) + 1), alignment, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("batch alignment")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def decision_boundary(kern: Any, ds: Any, C: float, path: Path, grid: int = 30) -> None:
    """Decision regions of the SVM on the (trained) kernel over ``[-1.1, 1.1]²``, with the data."""
    with torch.no_grad():
        K = kern.gram(ds.X_train).numpy()
        svc = SVC(kernel="precomputed", C=C).fit(K, ds.y_train)
        g = np.linspace(-1.1, 1.1, grid)
        xx, yy = np.meshgrid(g, g)
        pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
        z = svc.decision_function(kern.gram(pts, ds.X_train).numpy()).reshape(xx.shape)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.contourf(xx, yy, z, levels=20, cmap="coolwarm", alpha=0.6)
    ax.contour(xx, yy, z, levels=[0], colors="k", linewidths=1)
    for X, y, marker in ((ds.X_train, ds.y_train, "o"), (ds.X_test, ds.y_test, "x")):
        ax.scatter(
            X[:, 0],
            X[:, 1],
            c=y,
            cmap="coolwarm",
            marker=marker,
            s=14,
            edgecolors="k" if marker == "o" else None,
        )
    ax.set_title(f"{ds.name}: train o, test x")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
