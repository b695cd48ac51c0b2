"""Binary models built from :mod:`bnn.layers`: an MLP, a GCN and a small CNN.

Conventions shared by the three models:

* **Block order.** Each hidden block is ``binary layer -> batch norm -> activation``:
  batch norm sits *before* the sign, as usual for BNNs (Courbariaux et al., 2016;
  Rastegari et al., 2016), so that the sign thresholds a centred pre-activation.
  Batch-norm parameters are real and go to the standard optimiser.
* **Activations.** ``"sign"`` is :func:`bnn.layers.sign_ste` (±1 activations,
  hardtanh straight-through gradient); ``"htanh"`` is ``hardtanh`` (real
  activations in ``[-1, 1]``). The default (``None``) is ``"sign"`` for a binary
  model and ``"htanh"`` for the full-precision reference (``binary=False``).
* **Output scale.** A ±1 output layer produces logits of size ``O(sqrt(fan_in))``
  (up to ``fan_in``), which saturates the softmax. When the last layer is binary its
  output is multiplied by a learnable scalar ``output_scale`` initialised to
  ``1/sqrt(fan_in)`` (a real parameter for the standard optimiser); a
  full-precision last layer gets no scale.
* **Precision options.** ``binary=False`` makes every layer full precision;
  otherwise ``first_layer_binary`` / ``last_layer_binary`` choose whether the first
  and last layers are binary (many BNNs keep them real). ``bias`` adds real biases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bnn.layers import BinaryConv2d, BinaryGraphConv, BinaryLinear, sign_ste

__all__ = [
    "SignActivation",
    "OutputScale",
    "BinaryMLP",
    "BinaryGCN",
    "BinaryCNN",
    "make_activation",
]

_ACTIVATIONS = ("sign", "htanh")


class SignActivation(nn.Module):
    """Sign activation with the hardtanh straight-through gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sign_ste(x)


def make_activation(name: str | None, binary: bool) -> nn.Module:
    """``"sign"`` -> sign STE, ``"htanh"`` -> ``nn.Hardtanh``; None -> ``"sign"`` if ``binary`` else ``"htanh"``."""
    if name is None:
        name = "sign" if binary else "htanh"
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS} or None (got {name!r})")
    return SignActivation() if name == "sign" else nn.Hardtanh()


class OutputScale(nn.Module):
    """Multiply by a learnable scalar, initialised to ``init``.

    Shape:
        any input; output has the same shape.
    """

    def __init__(self, init: float) -> None:
        super().__init__()
        self.init = float(init)
        self.scale = nn.Parameter(torch.tensor(self.init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"init={self.init:.4g}"


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int (got {value!r})")
    return value


def _check_hidden(hidden: int | Sequence[int]) -> list[int]:
    widths = [hidden] if isinstance(hidden, int) and not isinstance(hidden, bool) else hidden
    if not isinstance(widths, Sequence) or isinstance(widths, str):
        raise ValueError(f"hidden must be an int or a sequence of positive ints (got {hidden!r})")
    return [_check_int("hidden width", w) for w in widths]


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (got {value!r})")
    return value


class BinaryMLP(nn.Module):
    """Multilayer perceptron with ±1 weights (and ±1 activations with ``activation="sign"``).

    Architecture: ``[BinaryLinear -> BatchNorm1d -> activation] * len(hidden) ->
    BinaryLinear -> OutputScale`` (see the module docstring for each choice).

    Args:
        in_features: Input size.
        hidden: Hidden widths (an empty sequence gives a single linear layer).
        num_classes: Output size (logits).
        binary: False gives the full-precision reference of the same architecture.
        first_layer_binary: Whether the first layer is binary (when ``binary``).
        last_layer_binary: Whether the last layer is binary (when ``binary``).
        batchnorm: Batch norm before each hidden activation.
        activation: ``"sign"``, ``"htanh"`` or None (``"sign"`` if binary else ``"htanh"``).
        bias: Real biases in the linear layers.

    Shape:
        Input ``(B, in_features)``; output ``(B, num_classes)``.

    Example:
        >>> BinaryMLP(6, [5], 2)(torch.ones(3, 6)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] | int,
        num_classes: int,
        *,
        binary: bool = True,
        first_layer_binary: bool = True,
        last_layer_binary: bool = True,
        batchnorm: bool = True,
        activation: str | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        _check_int("in_features", in_features)
        _check_int("num_classes", num_classes)
        widths = _check_hidden(hidden)
        for name, v in [
            ("binary", binary),
            ("first_layer_binary", first_layer_binary),
            ("last_layer_binary", last_layer_binary),
            ("batchnorm", batchnorm),
            ("bias", bias),
        ]:
            _check_bool(name, v)
        sizes = [in_features, *widths, num_classes]
        n_layers = len(sizes) - 1
        self.binary = binary
        layers: list[nn.Module] = []
        for i in range(n_layers):
            is_binary = binary and not (
                (i == 0 and not first_layer_binary) or (i == n_layers - 1 and not last_layer_binary)
            )
            layers.append(BinaryLinear(sizes[i], sizes[i + 1], bias, binary=is_binary))
            if i < n_layers - 1:
                if batchnorm:
                    layers.append(nn.BatchNorm1d(sizes[i + 1]))
                layers.append(make_activation(activation, binary))
        if is_binary:  # the last layer's precision
            layers.append(OutputScale(1.0 / math.sqrt(sizes[-2])))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BinaryGCN(nn.Module):
    """Graph convolutional network (Kipf & Welling, 2017) with ±1 weights.

    Architecture: ``[BinaryGraphConv -> BatchNorm1d -> activation -> dropout] * len(hidden)
    -> BinaryGraphConv -> OutputScale``; batch norm normalises over nodes (full-batch training).

    Args:
        in_features: Node feature size.
        hidden: Hidden width(s).
        num_classes: Output size (logits per node).
        binary, first_layer_binary, last_layer_binary, batchnorm, activation, bias:
            as in :class:`BinaryMLP`.
        dropout: Dropout probability on hidden features (0 disables it).

    Shape:
        ``x`` ``(N, in_features)``, ``adj`` ``(N, N)`` normalised adjacency (sparse or dense,
        see :func:`bnn.layers.normalized_adjacency`); output ``(N, num_classes)``.

    Example:
        >>> from bnn.layers import normalized_adjacency
        >>> adj = normalized_adjacency(torch.tensor([[0, 1], [1, 2]]), 3)
        >>> BinaryGCN(4, 8, 2)(torch.ones(3, 4), adj).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] | int,
        num_classes: int,
        *,
        binary: bool = True,
        first_layer_binary: bool = True,
        last_layer_binary: bool = True,
        batchnorm: bool = True,
        activation: str | None = None,
        bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_int("in_features", in_features)
        _check_int("num_classes", num_classes)
        widths = _check_hidden(hidden)
        for name, v in [
            ("binary", binary),
            ("first_layer_binary", first_layer_binary),
            ("last_layer_binary", last_layer_binary),
            ("batchnorm", batchnorm),
            ("bias", bias),
        ]:
            _check_bool(name, v)
        if not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a float in [0, 1) (got {dropout!r})")
        sizes = [in_features, *widths, num_classes]
        n_layers = len(sizes) - 1
        self.binary = binary
        self.dropout = float(dropout)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.acts = nn.ModuleList()
        for i in range(n_layers):
            is_binary = binary and not (
                (i == 0 and not first_layer_binary) or (i == n_layers - 1 and not last_layer_binary)
            )
            self.convs.append(BinaryGraphConv(sizes[i], sizes[i + 1], bias, binary=is_binary))
            if i < n_layers - 1:
                self.norms.append(nn.BatchNorm1d(sizes[i + 1]) if batchnorm else nn.Identity())
                self.acts.append(make_activation(activation, binary))
        self.output_scale = (
            OutputScale(1.0 / math.sqrt(sizes[-2])) if self.convs[-1].binary else nn.Identity()
        )

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        for conv, norm, act in zip(self.convs[:-1], self.norms, self.acts, strict=True):
            x = act(norm(conv(x, adj)))
            if self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
        return self.output_scale(self.convs[-1](x, adj))


class BinaryCNN(nn.Module):
    """Small binary CNN for 8x8 images (scikit-learn digits).

    Architecture: ``BinaryConv2d(in, c1, 3, padding=1) -> BN -> act ->
    BinaryConv2d(c1, c2, 3, stride=2, padding=1) -> BN -> act -> flatten ->
    BinaryLinear(c2 * (H/2) * (W/2), num_classes) -> OutputScale``.

    Args:
        num_classes: Output size.
        in_channels: Input channels.
        channels: ``(c1, c2)``.
        image_size: Side of the square input (even).
        binary, first_layer_binary, last_layer_binary, batchnorm, activation, bias:
            as in :class:`BinaryMLP`.

    Shape:
        Input ``(B, in_channels, image_size, image_size)``, or ``(B, image_size**2)`` when
        ``in_channels == 1`` (reshaped); output ``(B, num_classes)``.

    Example:
        >>> BinaryCNN()(torch.ones(2, 64)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_channels: int = 1,
        channels: tuple[int, int] = (16, 32),
        image_size: int = 8,
        binary: bool = True,
        first_layer_binary: bool = True,
        last_layer_binary: bool = True,
        batchnorm: bool = True,
        activation: str | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        _check_int("num_classes", num_classes)
        _check_int("in_channels", in_channels)
        _check_int("image_size", image_size)
        if image_size % 2:
            raise ValueError(f"image_size must be even (got {image_size!r})")
        if len(channels) != 2:
            raise ValueError(f"channels must be a pair (c1, c2) (got {channels!r})")
        c1, c2 = (_check_int("channels entry", c) for c in channels)
        for name, v in [
            ("binary", binary),
            ("first_layer_binary", first_layer_binary),
            ("last_layer_binary", last_layer_binary),
            ("batchnorm", batchnorm),
            ("bias", bias),
        ]:
            _check_bool(name, v)
        self.in_channels = in_channels
        self.image_size = image_size
        self.binary = binary
        side = image_size // 2
        fc_in = c2 * side * side
        self.features = nn.Sequential(
            BinaryConv2d(
                in_channels, c1, 3, padding=1, bias=bias, binary=binary and first_layer_binary
            ),
            nn.BatchNorm2d(c1) if batchnorm else nn.Identity(),
            make_activation(activation, binary),
            BinaryConv2d(c1, c2, 3, stride=2, padding=1, bias=bias, binary=binary),
            nn.BatchNorm2d(c2) if batchnorm else nn.Identity(),
            make_activation(activation, binary),
            nn.Flatten(),
        )
        last_binary = binary and last_layer_binary
        self.classifier = BinaryLinear(fc_in, num_classes, bias, binary=last_binary)
        self.output_scale = OutputScale(1.0 / math.sqrt(fc_in)) if last_binary else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2 and self.in_channels == 1 and x.shape[1] == self.image_size**2:
            x = x.reshape(-1, 1, self.image_size, self.image_size)
        return self.output_scale(self.classifier(self.features(x)))
