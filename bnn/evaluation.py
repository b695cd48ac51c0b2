"""Uniform views of tabular and graph datasets for training, and their evaluation.

:class:`_Data` hides the difference between a :class:`bnn.data.TabularDataset` (shuffled
mini-batches, seeded per epoch) and a :class:`bnn.data.GraphDataset` (full batch on the
training mask, normalised adjacency); :func:`evaluate` gives the loss and accuracy of a split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bnn.build import _is_graph
from qsgd.errors import ConfigError

__all__ = ["evaluate"]


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The data-order generator of ``epoch`` (independent of how many epochs ran before)."""
    child = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(child[0]) << 32 | int(child[1]))


class _Data:
    """Uniform access to tabular and graph datasets (graphs train full-batch)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.graph = _is_graph(dataset)
        if self.graph:
            from bnn.layers import normalized_adjacency

            self.adj = normalized_adjacency(dataset.edge_index, dataset.num_nodes)
            valid = getattr(dataset, "label_valid", None)
            valid = torch.ones_like(dataset.train_mask) if valid is None else valid
            self.masks = {
                s: getattr(dataset, f"{s}_mask") & valid for s in ("train", "val", "test")
            }
            self.num_train = int(self.masks["train"].sum())
            y_train = dataset.y[self.masks["train"]]
        else:
            self.num_train = int(dataset.x_train.shape[0])
            y_train = dataset.y_train
        if self.num_train == 0:
            raise ConfigError(f"dataset {getattr(dataset, 'name', '?')!r} has no training examples")
        labels, counts = torch.unique(y_train, return_counts=True)
        self.majority_class = int(labels[torch.argmax(counts)])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Inputs and labels of a tabular split (None when empty)."""
        x, y = getattr(self.dataset, f"x_{name}"), getattr(self.dataset, f"y_{name}")
        return None if y.numel() == 0 else (x, y)

    def majority_rate(self, split: str) -> float | None:
        if self.graph:
            y = self.dataset.y[self.masks[split]]
        else:
            y = getattr(self.dataset, f"y_{split}")
        if y.numel() == 0:
            return None
        # accuracy of the best constant prediction on this split (its most frequent class);
        # the training majority class is arbitrary when the training labels are balanced (Cora)
        return float(torch.unique(y, return_counts=True)[1].max()) / y.numel()

    def batches(self, seed: int, epoch: int, batch_size: int, cap: int | None) -> list[Any]:
        """Index tensors of the mini-batches of ``epoch`` (graphs: one full batch)."""
        if self.graph:
            return [None]
        order = torch.randperm(self.num_train, generator=_epoch_generator(seed, epoch))
        chunks = list(torch.split(order, batch_size))
        if len(chunks) > 1 and chunks[-1].numel() < 2:  # batch norm needs 2 rows
            chunks = chunks[:-1]
        return chunks[:cap] if cap is not None else chunks

    def forward_train(self, model: nn.Module, index: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels of the training batch ``index``."""
        if self.graph:
            out = model(self.dataset.x, self.adj)
            mask = self.masks["train"]
            return out[mask], self.dataset.y[mask]
        return model(self.dataset.x_train[index]), self.dataset.y_train[index]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Any,
    split: str,
    *,
    loss_fn: Callable[..., torch.Tensor] | None = None,
) -> dict[str, float] | None:
    """Loss and accuracy of ``model`` (in eval mode) on ``split`` (``"train"``, ``"val"``, ``"test"``).

    Returns:
        ``{"loss": ..., "accuracy": ...}``, or None if the split is empty.
    """
    data = dataset if isinstance(dataset, _Data) else _Data(dataset)
    loss_fn = loss_fn or F.cross_entropy
    was_training = model.training
    model.eval()
    try:
        if data.graph:
            mask = data.masks[split]
            if not bool(mask.any()):
                return None
            out = model(data.dataset.x, data.adj)[mask]
            y = data.dataset.y[mask]
        else:
            xy = data.split(split)
            if xy is None:
                return None
            out, y = model(xy[0]), xy[1]
        return {
            "loss": float(loss_fn(out, y)),
            "accuracy": float((out.argmax(dim=1) == y).float().mean()),
        }
    finally:
        model.train(was_training)


def evaluation(
    model: nn.Module, data: _Data, loss_fn: Callable[..., torch.Tensor]
) -> dict[str, Any]:
    """``{val,test}_{loss,accuracy}`` of ``model`` (splits that are empty are left out)."""
    out: dict[str, Any] = {}
    for split in ("val", "test"):
        result = evaluate(model, data, split, loss_fn=loss_fn)
        if result is not None:
            out[f"{split}_loss"] = result["loss"]
            out[f"{split}_accuracy"] = result["accuracy"]
    return out
