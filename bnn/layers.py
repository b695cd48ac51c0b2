"""Binary layers: ±1 weights in the forward pass, latent real weights for the optimisers.

Every binary layer is a linear map ``pre = X @ sign(W).T (+ bias)`` applied to
some *effective 2-D inputs* ``X`` of shape ``(rows, fan_in)``:

* :class:`BinaryLinear`: ``X`` is the input itself (leading dimensions flattened).
* :class:`BinaryConv2d`: ``X`` are the unfolded patches (``F.unfold``), one row per
  (image, output position), ``fan_in = in_channels * kh * kw``.
* :class:`BinaryGraphConv`: ``X = A_norm @ x``, the aggregated node features, one row per node.

The weight is a real ``nn.Parameter`` (the *latent* weight) tagged
``weight._bnn_binary = True``; the forward pass uses ``sign(W)`` with
``sign(0) = +1``, so the effective weights are exactly ±1, and gradients reach
the latent weight through a straight-through estimator with the hardtanh
derivative (``grad * 1{|w| <= 1}``, Courbariaux et al., 2016). Optimisers find
binary parameters through that tag (:func:`is_binary_param`,
:func:`binary_parameters`) and binary layers through :func:`binary_layers`.

With ``binary=False`` the same layer is an ordinary full-precision layer (no
sign, no tag): the full-precision reference uses the same architecture.

The sign, the straight-through estimator, the tag and the capture protocol live in
:mod:`qsgd.binary` (re-exported here); this module adds the concrete layers.

**Capture** (used by :class:`qsgd.optimizer.QPSBGD`): when ``layer.capture`` is
True and the layer runs in training mode with autograd enabled, the forward
pass stores ``captured_inputs`` (``X``, detached, ``(rows, fan_in)``) and hooks
the pre-activation so that the backward pass stores ``captured_grad_out``
(``dL/dpre``, ``(rows, fan_out)``). A later forward pass replaces both (and a
backward pass of an older graph does not overwrite the newer capture), and
:meth:`BinaryLayer.clear_capture` drops them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qsgd.binary import (
    BinaryLayer,
    SignSTE,
    binary_layers,
    binary_parameters,
    binary_sign,
    is_binary_param,
    sign_ste,
)
from qsgd.checks import positive_int

__all__ = [
    "SignSTE",
    "sign_ste",
    "binary_sign",
    "is_binary_param",
    "binary_parameters",
    "binary_layers",
    "BinaryLayer",
    "BinaryLinear",
    "BinaryConv2d",
    "BinaryGraphConv",
    "normalized_adjacency",
]


class BinaryLinear(BinaryLayer):
    """Linear layer with ±1 weights: ``y = x @ sign(W).T (+ b)``.

    Args:
        in_features: Size of each input sample (``fan_in``).
        out_features: Size of each output sample (``fan_out``).
        bias: Add a real-valued learnable bias (not binary; goes to the standard optimiser).
        binary: If False, a full-precision ``nn.Linear`` equivalent.

    Shape:
        Input ``(*, in_features)``; output ``(*, out_features)``. Captured inputs are
        ``(prod(*), in_features)``, captured gradients ``(prod(*), out_features)``.

    Example:
        >>> layer = BinaryLinear(4, 2)
        >>> layer(torch.ones(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = False, *, binary: bool = True
    ) -> None:
        super().__init__(binary)
        positive_int("in_features", in_features)
        positive_int("out_features", out_features)
        self.in_features = in_features
        self.out_features = out_features
        self._init_weight(out_features, in_features)
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    @property
    def fan_in(self) -> int:
        return self.in_features

    @property
    def fan_out(self) -> int:
        return self.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"input must have last dimension in_features={self.in_features} (got shape {tuple(x.shape)})"
            )
        pre = F.linear(x, self.effective_weight(), self.bias)
        out_features = self.out_features
        self._capture(x.reshape(-1, self.in_features), pre, lambda g: g.reshape(-1, out_features))
        return pre

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, " + super().extra_repr()
        )


class BinaryConv2d(BinaryLayer):
    """2-D convolution with ±1 weights; its QUBO uses the unfolded patches as inputs.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (``fan_out``).
        kernel_size: Square kernel size ``k`` or ``(kh, kw)``.
        stride: Stride (int or pair).
        padding: Zero padding (int or pair).
        bias: Real-valued learnable bias per output channel.
        binary: If False, a full-precision ``nn.Conv2d`` equivalent.

    Shape:
        Input ``(B, in_channels, H, W)``; output ``(B, out_channels, H', W')``.
        Captured inputs are ``F.unfold`` patches ``(B * H' * W', in_channels * kh * kw)``
        (row ``b * H'W' + p``, columns channel-major as in ``weight.reshape(out_channels, -1)``);
        captured gradients ``(B * H' * W', out_channels)`` in the same row order, so
        ``captured_inputs @ binary_weight_matrix().T`` reshaped is the convolution output.

    Example:
        >>> conv = BinaryConv2d(1, 4, 3, padding=1)
        >>> conv(torch.ones(2, 1, 8, 8)).shape
        torch.Size([2, 4, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = False,
        *,
        binary: bool = True,
    ) -> None:
        super().__init__(binary)
        positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair("kernel_size", kernel_size, minimum=1)
        self.stride = _pair("stride", stride, minimum=1)
        self.padding = _pair("padding", padding, minimum=0)
        self._init_weight(out_channels, in_channels, *self.kernel_size)
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    @property
    def fan_out(self) -> int:
        return self.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"input must have shape (B, in_channels={self.in_channels}, H, W) (got shape {tuple(x.shape)})"
            )
        pre = F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding)
        if self.capture and self.training and torch.is_grad_enabled():
            patches = F.unfold(
                x.detach(), self.kernel_size, padding=self.padding, stride=self.stride
            )
            inputs_2d = patches.transpose(1, 2).reshape(-1, self.fan_in)
            c = self.out_channels
            self._capture(inputs_2d, pre, lambda g: g.permute(0, 2, 3, 1).reshape(-1, c))
        return pre

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}, "
            + super().extra_repr()
        )


class BinaryGraphConv(BinaryLinear):
    """Graph convolution (Kipf & Welling, 2017) with ±1 weights: ``y = (A_norm @ x) @ sign(W).T (+ b)``.

    Aggregation comes first, then the binary linear map, so the QUBO inputs are the
    aggregated features ``A_norm @ x``.

    Args:
        in_features: Node feature size (``fan_in``).
        out_features: Output feature size (``fan_out``).
        bias: Real-valued learnable bias.
        binary: If False, a full-precision GCN layer.

    Shape:
        ``x`` ``(N, in_features)``; ``adj_norm`` ``(N, N)`` (sparse or dense, e.g. from
        :func:`normalized_adjacency`); output ``(N, out_features)``. Captured inputs
        ``(N, in_features)``, captured gradients ``(N, out_features)``.

    Example:
        >>> adj = normalized_adjacency(torch.tensor([[0, 1], [1, 2]]), 3)
        >>> BinaryGraphConv(4, 2)(torch.ones(3, 4), adj).shape
        torch.Size([3, 2])
    """

    def forward(self, x: torch.Tensor, adj_norm: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"x must have shape (N, in_features={self.in_features}) (got shape {tuple(x.shape)})"
            )
        n = x.shape[0]
        if tuple(adj_norm.shape) != (n, n):
            raise ValueError(
                f"adj_norm must have shape ({n}, {n}) to match x (got shape {tuple(adj_norm.shape)})"
            )
        agg = torch.sparse.mm(adj_norm, x) if adj_norm.is_sparse else adj_norm @ x
        return super().forward(agg)  # the binary linear map; captures the aggregated features


def normalized_adjacency(
    edge_index: torch.Tensor, num_nodes: int, *, add_self_loops: bool = True
) -> torch.Tensor:
    """Symmetric-normalised adjacency ``D^-1/2 (A + I) D^-1/2`` as a sparse COO tensor.

    Edges are treated as undirected (both directions are added) and duplicates count once.

    Args:
        edge_index: Integer tensor ``(2, E)`` of node pairs.
        num_nodes: Number of nodes ``N``; every index must be in ``[0, N)``.
        add_self_loops: Add ``I`` before normalising (Kipf & Welling's renormalisation trick).

    Shape:
        ``edge_index`` ``(2, E)``; returns a coalesced sparse ``(N, N)`` float tensor.
    """
    positive_int("num_nodes", num_nodes)
    edge_index = torch.as_tensor(edge_index)
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E) (got shape {tuple(edge_index.shape)})")
    if edge_index.dtype.is_floating_point or edge_index.dtype == torch.bool:
        raise TypeError(f"edge_index must be an integer tensor (got dtype {edge_index.dtype})")
    edge_index = edge_index.long()
    if edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        raise ValueError(
            f"edge_index entries must lie in [0, num_nodes={num_nodes}) "
            f"(got min {int(edge_index.min())}, max {int(edge_index.max())})"
        )
    rows = torch.cat([edge_index[0], edge_index[1]])
    cols = torch.cat([edge_index[1], edge_index[0]])
    keep = rows != cols
    rows, cols = rows[keep], cols[keep]
    if add_self_loops:
        loops = torch.arange(num_nodes)
        rows = torch.cat([rows, loops])
        cols = torch.cat([cols, loops])
    # coalesce() merges duplicate edges; the values are then reset to 1 below.
    adj = torch.sparse_coo_tensor(
        torch.stack([rows, cols]),
        torch.ones(rows.numel()),
        (num_nodes, num_nodes),
        check_invariants=True,
    ).coalesce()
    idx = adj.indices()
    vals = torch.ones(idx.shape[1])
    deg = torch.zeros(num_nodes).index_add_(0, idx[0], vals)
    dinv = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    vals = dinv[idx[0]] * vals * dinv[idx[1]]
    return torch.sparse_coo_tensor(
        idx, vals, (num_nodes, num_nodes), check_invariants=True
    ).coalesce()


def _pair(name: str, value: int | tuple[int, int], *, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in pair)
    ):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them (got {value!r})")
    return (int(pair[0]), int(pair[1]))
