"""The binary-layer protocol that QP-SBGD and the binary baselines rely on.

A *binary layer* is a linear map ``pre = X @ sign(W).T (+ bias)`` applied to some effective
2-D inputs ``X`` of shape ``(rows, fan_in)``. Its weight is a real ``nn.Parameter`` (the
*latent* weight) tagged ``weight._bnn_binary = True``; the forward pass uses ``sign(W)`` with
``sign(0) = +1`` (:func:`binary_sign`), so the effective weights are exactly ±1, and gradients
reach the latent weight through a straight-through estimator with the hardtanh derivative
(``grad * 1{|w| <= 1}``, Courbariaux et al., 2016; :class:`SignSTE`). Optimisers find binary
parameters through that tag (:func:`is_binary_param`, :func:`binary_parameters`) and binary
layers through :func:`binary_layers`.

**Capture** (what :class:`qsgd.optimizer.QPSBGD` needs): when ``layer.capture`` is True and the
layer runs in training mode with autograd enabled, the forward pass stores ``captured_inputs``
(``X``, detached, ``(rows, fan_in)``) and hooks the pre-activation so that the backward pass
stores ``captured_grad_out`` (``dL/dpre``, ``(rows, fan_out)``). A later forward pass replaces
both (and a backward pass of an older graph does not overwrite the newer capture), and
:meth:`BinaryLayer.clear_capture` drops them.

:class:`BinaryLayer` implements all of this; concrete layers (``bnn.layers``: linear, conv,
graph conv) subclass it, define ``fan_in`` / ``fan_out`` and call :meth:`BinaryLayer._capture`
in ``forward``. This module depends on torch only, so the core never imports the application.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "SignSTE",
    "sign_ste",
    "binary_sign",
    "is_binary_param",
    "binary_parameters",
    "binary_layers",
    "BinaryLayer",
]


def binary_sign(x: torch.Tensor) -> torch.Tensor:
    """Sign with ``sign(0) = +1``: every entry of the result is exactly ``+1`` or ``-1``.

    Shape:
        any; the output has the shape and dtype of ``x``.
    """
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class SignSTE(torch.autograd.Function):
    """Sign in the forward pass, straight-through hardtanh gradient in the backward pass.

    ``forward(x) = sign(x)`` with ``sign(0) = +1``; ``backward(g) = g * 1{|x| <= 1}``
    (the derivative of ``hardtanh``), the estimator of Courbariaux et al. (2016).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return binary_sign(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output * (x.abs() <= 1).to(grad_output.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """Apply :class:`SignSTE`: exact ±1 forward, hardtanh straight-through gradient.

    Shape:
        any; the output has the shape of ``x``.

    Example:
        >>> sign_ste(torch.tensor([-0.5, 0.0, 2.0])).tolist()
        [-1.0, 1.0, 1.0]
    """
    return SignSTE.apply(x)


def is_binary_param(p: torch.Tensor) -> bool:
    """True if ``p`` is the latent weight of a binary layer (tagged ``_bnn_binary = True``)."""
    return bool(getattr(p, "_bnn_binary", False))


def binary_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The tagged binary (latent) weights of ``model``, in ``model.parameters()`` order."""
    return [p for p in model.parameters() if is_binary_param(p)]


def binary_layers(model: nn.Module) -> list[tuple[str, BinaryLayer]]:
    """``(name, layer)`` for each binary layer of ``model`` (``binary=True``), in module order.

    The name is the one of ``model.named_modules()`` (``""`` if ``model`` itself is the layer).
    """
    return [
        (name, m) for name, m in model.named_modules() if isinstance(m, BinaryLayer) and m.binary
    ]


class BinaryLayer(nn.Module):
    """Base class of binary layers: a latent weight, ±1 forward weights, and capture for QP-SBGD.

    Subclasses set ``self.weight`` (created through :meth:`_init_weight`), define
    :attr:`fan_in` / :attr:`fan_out`, and call :meth:`_capture` in ``forward``.

    Attributes:
        binary: If False, the layer is full precision (no sign, no tag).
        capture: If True, the training-mode forward/backward store ``captured_inputs``
            and ``captured_grad_out`` (see the module docstring).
        captured_inputs: Effective 2-D inputs of the last captured forward, ``(rows, fan_in)``, or None.
        captured_grad_out: Gradient w.r.t. the pre-activations of that forward, ``(rows, fan_out)``, or None.
    """

    weight: nn.Parameter
    bias: nn.Parameter | None

    def __init__(self, binary: bool = True) -> None:
        super().__init__()
        if not isinstance(binary, bool):
            raise TypeError(f"binary must be a bool (got {binary!r})")
        self.binary = binary
        self.capture = False
        self.captured_inputs: torch.Tensor | None = None
        self.captured_grad_out: torch.Tensor | None = None
        self._capture_id = 0

    def _init_weight(self, *shape: int) -> None:
        self.weight = nn.Parameter(torch.empty(*shape))
        if self.binary:
            self.weight._bnn_binary = True  # type: ignore[attr-defined]

    @property
    def fan_in(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def fan_out(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def effective_weight(self) -> torch.Tensor:
        """The weight used in the forward pass: ``sign_ste(W)`` if binary, else ``W``.

        Shape:
            the shape of ``weight``.
        """
        return sign_ste(self.weight) if self.binary else self.weight

    def binary_weight_matrix(self) -> torch.Tensor:
        """The ±1 weights as a detached ``(fan_out, fan_in)`` matrix (rows match ``captured_inputs`` columns).

        For a full-precision layer this is ``sign(W)``, for convenience.
        """
        return binary_sign(self.weight.detach()).reshape(self.fan_out, self.fan_in)

    def weight_matrix(self) -> torch.Tensor:
        """The latent weights as a ``(fan_out, fan_in)`` view (shares storage with ``weight``)."""
        return self.weight.reshape(self.fan_out, self.fan_in)

    def reset_parameters(self) -> None:
        """Latent weights ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (as ``nn.Linear``); bias zero."""
        bound = 1.0 / math.sqrt(self.fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def clear_capture(self) -> None:
        """Forget the captured inputs and gradient (the optimiser calls this after each step)."""
        self.captured_inputs = None
        self.captured_grad_out = None
        self._capture_id += 1

    def _capture(self, inputs_2d: torch.Tensor, pre: torch.Tensor, to_rows) -> None:
        """Store ``inputs_2d`` and hook ``pre`` so that ``to_rows(grad)`` is stored on backward."""
        if not (self.capture and self.training and torch.is_grad_enabled() and pre.requires_grad):
            return
        self._capture_id += 1
        token = self._capture_id
        self.captured_inputs = inputs_2d.detach()
        self.captured_grad_out = None

        def hook(grad: torch.Tensor) -> None:
            if token == self._capture_id:
                self.captured_grad_out = to_rows(grad.detach())

        pre.register_hook(hook)

    def extra_repr(self) -> str:
        return f"binary={self.binary}, capture={self.capture}"
