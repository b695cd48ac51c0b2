"""A principled curvature for QP-SBGD: per-neuron K-FAC factors from labels sampled from the model.

QP-SBGD's problem for output neuron ``j`` of a binary layer is the quadratic model
``-eta g_j.d + (eta^2/2) d^T H_j d`` of the loss (:func:`qsgd.qubo.layer_ising`). With the
Fisher information as the metric and K-FAC's Kronecker factorisation (Martens & Grosse,
2015; Grosse & Martens, 2016 for convolutions), the block of the layer's Fisher is
``A (x) S``: the input factor ``A`` is the layer-input second moment that the QUBO already
uses (``X^T X / B``), and the output factor ``S`` is the second moment of the per-example
gradients w.r.t. the layer's pre-activations, **with the labels sampled from the model's own
predictive distribution** (the true Fisher; the empirical Fisher uses the data labels
instead, and is a poor curvature estimate away from a minimum). Keeping the diagonal of ``S``
gives every neuron its own curvature::

    H_j = S_jj X^T X / B,    S_jj = (1/B) sum_rows gs[row, j]^2

where ``gs`` is the gradient of the *sum* over the ``B`` examples of the cross-entropy at the
sampled labels (rows are examples for a linear layer, example x position for a conv layer,
nodes for a graph convolution). This is ``curvature_scale="kfac"`` of
:class:`qsgd.optimizer.QPSBGD`, with ``curvature`` a plain multiplier: ``curvature = 1`` is the
K-FAC quadratic model itself, with no tuned factor (the ``"fisher"`` scale instead averages
the *empirical* Fisher over rows and neurons and relies on a searched factor).

How the sampled gradients are obtained: :class:`SampledFisher` hooks the model's output (class
logits, ``(rows, classes)``). When the training loss's backward reaches the logits, the hook
samples ``y ~ softmax(logits)`` for every row the loss depends on (rows whose logit gradient
is not all zero, e.g. the training nodes of a graph), and back-propagates ``softmax - onehot(y)``
through the same graph once (``torch.autograd.grad``, nothing is accumulated into ``.grad``);
the layers' capture hooks record ``gs``, which is moved aside before the training backward
goes on and records the true gradient. One extra backward pass per step; any training loop
that runs ``loss.backward()`` after a training-mode forward works unchanged. Assumed: the
model outputs the logits of a softmax classifier and the loss is the batch mean of the
cross-entropy (the fit loop's loss).

Per-problem curvature with shared couplings: an :class:`~qsgd.ising.IsingBatch` shares one
``J`` between the ``m`` problems of a layer. Problem ``j`` with curvature ``c_j`` equals
``c_j / c_ref`` times the problem built at the shared ``c_ref = mean(c)`` with its field scaled
by ``c_ref / c_j`` (binary_gradient), or with nothing changed (projected, whose energy is
proportional to the curvature), so :func:`per_neuron_layer_ising` builds exactly those
problems: the minimiser of each is the one of its own quadratic model, and its energy is that
model's times ``c_ref / c_j``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from qsgd.ising import IsingBatch
from qsgd.qubo import layer_ising

__all__ = ["SampledFisher", "kfac_output_factor", "per_neuron_layer_ising", "kfac_curvature"]

#: Smallest per-neuron curvature, relative to the layer's mean: a neuron whose sampled
#: gradients all vanish gets this floor (its problem tends to the signSGD direction).
_FLOOR = 1e-6


def kfac_output_factor(sampled_grad_out: Any, examples: int) -> np.ndarray:
    """Diagonal of K-FAC's output factor: ``S_jj = sum_rows gs[row, j]^2 / examples``.

    Args:
        sampled_grad_out: Gradients ``gs`` of the summed sampled-label loss w.r.t. the layer's
            pre-activations, shape ``(rows, fan_out)``.
        examples: Number of examples ``B`` of the loss (rows of the model's output).

    Returns:
        ``S_jj`` per output neuron, shape ``(fan_out,)``.

    Raises:
        ValueError: ``examples`` is not a positive int, or ``sampled_grad_out`` is not 2-D.

    Example:
        >>> kfac_output_factor(np.array([[1.0, 0.0], [1.0, 2.0]]), 2).tolist()
        [1.0, 2.0]
    """
    if isinstance(examples, bool) or not isinstance(examples, (int, np.integer)) or examples < 1:
        raise ValueError(f"examples must be a positive int (got {examples!r})")
    gs = np.asarray(
        sampled_grad_out.detach().cpu().double().numpy()
        if torch.is_tensor(sampled_grad_out)
        else sampled_grad_out,
        dtype=np.float64,
    )
    if gs.ndim != 2:
        raise ValueError(
            f"sampled_grad_out must have shape (rows, fan_out) (got shape {gs.shape})"
        )
    return np.einsum("rj,rj->j", gs, gs) / float(examples)


def per_neuron_layer_ising(
    inputs: Any,
    grad_out: Any,
    *,
    eta: float,
    curvature: Any,
    formulation: str = "binary_gradient",
    name: str | None = None,
    **options: Any,
) -> IsingBatch:
    """:func:`qsgd.qubo.layer_ising` with one curvature ``c_j`` per output neuron (problem).

    Problem ``j`` has the minimiser of ``layer_ising``'s problem ``j`` at curvature ``c_j``
    and that problem's energy times ``c_ref / c_j`` (``c_ref = mean(c)``; see the module
    docstring). Entries below ``1e-6 * max(c)`` are raised to it; all-zero ``c`` is
    ``layer_ising`` at curvature 0.

    Args:
        curvature: ``c_j >= 0``, shape ``(fan_out,)``.
        formulation, name, options: as in ``layer_ising`` (``options``: ``normalize``,
            ``weights``, ``damping``, ``dtype``, ``gram``, ``check``), passed on.

    Raises:
        ValueError: ``curvature`` is not a finite, non-negative ``(fan_out,)`` array.

    Example:
        >>> X = np.array([[1.0, 1.0], [1.0, -1.0]]); G = np.array([[1.0, 0.2], [0.5, 0.1]])
        >>> b = per_neuron_layer_ising(X, G, eta=1.0, curvature=np.array([0.1, 10.0]))
        >>> b.num_problems, b.h.shape
        (2, (2, 2))
    """
    c = np.asarray(curvature, dtype=np.float64)
    m = int(np.shape(grad_out)[1]) if np.ndim(grad_out) == 2 else None
    if c.ndim != 1 or (m is not None and c.shape[0] != m):
        raise ValueError(
            f"curvature{'' if name is None else f' of {name!r}'} must have shape ({m},) "
            f"(one per output neuron) (got shape {c.shape})"
        )
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError(
            f"curvature{'' if name is None else f' of {name!r}'} must be finite and >= 0 "
            f"(got min {float(np.min(c))!r})"
        )
    common = dict(eta=eta, formulation=formulation, name=name, **options)
    top = float(c.max(initial=0.0))
    if top == 0.0:
        return layer_ising(inputs, grad_out, curvature=0.0, **common)
    c = np.maximum(c, _FLOOR * top)
    c_ref = float(c.mean())
    if formulation == "binary_gradient":
        if torch.is_tensor(grad_out):
            grad_out = grad_out.detach().cpu().numpy()
        grad_out = np.asarray(grad_out)
        if grad_out.dtype.kind != "f":
            grad_out = grad_out.astype(np.float64)
        grad_out = grad_out * (c_ref / c).astype(grad_out.dtype)[None, :]
    return layer_ising(inputs, grad_out, curvature=c_ref, **common)


class SampledFisher:
    """Sampled-label gradients of a model's binary layers, taken during the training backward.

    Registers a forward hook on ``model``; see the module docstring for what it does. The
    gradients of layer ``i`` are kept with the layer's capture token, so :meth:`take` returns
    them only for the forward/backward that produced the layer's current capture.

    Args:
        model: The network; its output must be class logits ``(rows, classes)``.
        layers: Its binary layers (capture on), in the optimiser's group order.
        seed: Callable returning the sampling seed of the current step (an int).
    """

    def __init__(self, model: nn.Module, layers: list[Any], seed: Any) -> None:
        self.layers = list(layers)
        self._seed = seed
        self._busy = False
        self._grads: dict[int, tuple[int, torch.Tensor, int]] = {}
        self._handle = model.register_forward_hook(self._on_forward)

    def remove(self) -> None:
        """Detach from the model (no more sampling)."""
        self._handle.remove()

    def _on_forward(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not (
            module.training
            and torch.is_grad_enabled()
            and torch.is_tensor(output)
            and output.requires_grad
        ):
            return
        tokens = [layer._capture_id for layer in self.layers]
        output.register_hook(lambda grad: self._on_logits_grad(output, grad, tokens))

    def _on_logits_grad(self, logits: torch.Tensor, grad: torch.Tensor, tokens: list[int]) -> None:
        if self._busy:  # our own sampled backward passes through the logits too
            return
        if logits.ndim != 2 or logits.shape[1] < 2:
            raise ValueError(
                "curvature_scale='kfac' needs a model whose output is class logits of shape "
                f"(rows, classes >= 2) (got output shape {tuple(logits.shape)})"
            )
        active = (grad != 0).any(dim=1)
        examples = int(active.sum())
        if examples == 0:
            return
        with torch.no_grad():
            probs = torch.softmax(logits.detach()[active].double(), dim=1)
            gen = torch.Generator().manual_seed(int(self._seed()))
            labels = torch.multinomial(probs, 1, generator=gen).squeeze(1)
            g = probs.clone()
            g[torch.arange(examples), labels] -= 1.0
            grad_logits = torch.zeros_like(logits)
            grad_logits[active] = g.to(logits.dtype)
        targets = [layer.weight for layer in self.layers if layer.weight.requires_grad]
        if not targets:
            return
        saved = [layer.captured_grad_out for layer in self.layers]
        self._busy = True
        try:
            torch.autograd.grad(
                logits, targets, grad_outputs=grad_logits, retain_graph=True, allow_unused=True
            )
        finally:
            self._busy = False
        self._grads = {}
        for i, (layer, old, token) in enumerate(zip(self.layers, saved, tokens, strict=True)):
            gs = layer.captured_grad_out
            if gs is not None and layer._capture_id == token:
                self._grads[i] = (token, gs, examples)
            layer.captured_grad_out = old  # the training backward goes on and records G

    def take(self, index: int) -> tuple[torch.Tensor, int] | None:
        """``(sampled gradients (rows, fan_out), examples)`` of layer ``index`` for its current
        capture, or None when there are none (no sampled backward since that forward)."""
        entry = self._grads.get(index)
        if entry is None or entry[0] != self.layers[index]._capture_id:
            return None
        return entry[1], entry[2]


def kfac_curvature(optimizer: Any, index: int, factor: float) -> np.ndarray:
    """Per-neuron curvature ``factor * S_jj`` of layer ``index`` of a QPSBGD optimiser.

    Raises:
        RuntimeError: no sampled-label gradient for the layer's current capture.
    """
    sampler = getattr(optimizer, "_sampled_fisher", None)
    name = optimizer.param_groups[index]["name"]
    got = None if sampler is None else sampler.take(index)
    if got is None:
        why = (
            "the optimiser was built without a 'kfac' layer (set curvature_scale='kfac' in "
            "the constructor or layer_options, not later in param_groups)"
            if sampler is None
            else "the model's output (class logits) was not back-propagated after the "
            "training-mode forward that captured the layer"
        )
        raise RuntimeError(
            f"layer {name!r}: curvature_scale='kfac' has no sampled-label gradient: {why}"
        )
    gs, examples = got
    return float(factor) * kfac_output_factor(gs, examples)


def attach_sampled_fisher(optimizer: Any) -> SampledFisher | None:
    """A :class:`SampledFisher` on the optimiser's model if any layer uses ``"kfac"``, else None."""
    groups = optimizer.param_groups
    if not any(g.get("curvature_scale") == "kfac" for g in groups):
        return None
    step_seed = optimizer.step_seed
    return SampledFisher(
        optimizer.model,
        optimizer._layers,
        lambda: step_seed(optimizer.step_count, len(groups)),
    )
