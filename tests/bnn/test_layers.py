"""Tests of bnn.layers: sign STE, exact ±1 forward weights, capture shapes and values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bnn.layers import (
    BinaryConv2d,
    BinaryGraphConv,
    BinaryLinear,
    SignSTE,
    binary_layers,
    binary_parameters,
    binary_sign,
    is_binary_param,
    normalized_adjacency,
    sign_ste,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only contend on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_sign_ste_forward_is_exact_pm1_with_sign0_plus1() -> None:
    x = torch.tensor([-2.0, -0.3, 0.0, 0.4, 3.0])
    assert sign_ste(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    assert binary_sign(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def test_sign_ste_gradient_is_hardtanh_mask() -> None:
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    g = torch.arange(1.0, 8.0)
    SignSTE.apply(x).backward(g)
    expected = g * torch.tensor([0.0, 1, 1, 1, 1, 1, 0])
    assert torch.equal(x.grad, expected)


def test_sign_ste_gradcheck_against_hardtanh() -> None:
    x = (torch.rand(50) * 4 - 2).requires_grad_(True)
    y = x.detach().clone().requires_grad_(True)
    g = torch.randn(50)
    sign_ste(x).backward(g)
    F.hardtanh(y).backward(g)
    assert torch.allclose(x.grad, y.grad)


@pytest.mark.parametrize(
    "layer",
    [
        BinaryLinear(5, 3),
        BinaryConv2d(2, 3, 3, padding=1),
        BinaryGraphConv(4, 2),
    ],
    ids=["linear", "conv", "graph"],
)
def test_binary_tag_and_full_precision_option(layer) -> None:
    assert is_binary_param(layer.weight)
    assert binary_parameters(layer) == [layer.weight]
    assert binary_layers(layer) == [("", layer)]
    w = layer.binary_weight_matrix()
    assert w.shape == (layer.fan_out, layer.fan_in)
    assert set(w.unique().tolist()) <= {-1.0, 1.0}
    fp = type(layer)(*_args(layer), binary=False)
    assert not is_binary_param(fp.weight)
    assert binary_layers(fp) == []


def _args(layer) -> tuple:
    if isinstance(layer, BinaryConv2d):
        return (layer.in_channels, layer.out_channels, layer.kernel_size)
    return (layer.in_features, layer.out_features)


def test_linear_forward_uses_exact_sign_weights() -> None:
    layer = BinaryLinear(6, 4, bias=True)
    with torch.no_grad():
        layer.weight[0, 0] = 0.0  # sign(0) = +1
        layer.bias.fill_(0.25)
    x = torch.randn(3, 6)
    expected = x @ torch.where(layer.weight >= 0, 1.0, -1.0).T + 0.25
    assert torch.allclose(layer(x), expected)
    fp = BinaryLinear(6, 4, binary=False)
    assert torch.allclose(fp(x), x @ fp.weight.T)


def test_linear_capture_inputs_and_grad_out() -> None:
    layer = BinaryLinear(5, 3)
    layer.capture = True
    x = torch.randn(2, 4, 5)  # leading dims are flattened into rows
    y = layer(x)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    assert layer.captured_inputs.shape == (8, 5)
    assert torch.equal(layer.captured_inputs, x.reshape(8, 5))
    assert torch.equal(layer.captured_grad_out, w.reshape(8, 3))
    # The gradient w.r.t. the effective weights is G^T X (weights inside [-1, 1]: STE passes).
    assert torch.allclose(layer.weight.grad, layer.captured_grad_out.T @ layer.captured_inputs)


def test_no_capture_when_disabled_eval_or_no_grad() -> None:
    layer = BinaryLinear(3, 2)
    layer(torch.randn(4, 3)).sum().backward()
    assert layer.captured_inputs is None
    layer.capture = True
    layer.eval()
    layer(torch.randn(4, 3))
    assert layer.captured_inputs is None
    layer.train()
    with torch.no_grad():
        layer(torch.randn(4, 3))
    assert layer.captured_inputs is None


def test_stale_backward_does_not_overwrite_newer_capture() -> None:
    layer = BinaryLinear(3, 2)
    layer.capture = True
    y_old = layer(torch.randn(4, 3))
    x_new = torch.randn(5, 3)
    layer(x_new)
    y_old.sum().backward()
    assert torch.equal(layer.captured_inputs, x_new)
    assert layer.captured_grad_out is None
    layer.clear_capture()
    assert layer.captured_inputs is None


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1)])
def test_conv_capture_matches_direct_conv(stride: int, padding: int) -> None:
    conv = BinaryConv2d(2, 3, 3, stride=stride, padding=padding)
    conv.capture = True
    x = torch.randn(4, 2, 7, 7)
    y = conv(x)
    b, c, ho, wo = y.shape
    w_out = torch.randn_like(y)
    (y * w_out).sum().backward()
    X = conv.captured_inputs
    G = conv.captured_grad_out
    assert X.shape == (b * ho * wo, 2 * 9)
    assert G.shape == (b * ho * wo, 3)
    direct = F.conv2d(
        x, conv.binary_weight_matrix().reshape(3, 2, 3, 3), stride=stride, padding=padding
    )
    via_unfold = (X @ conv.binary_weight_matrix().T).reshape(b, ho, wo, c).permute(0, 3, 1, 2)
    assert torch.allclose(via_unfold, direct, atol=1e-5)
    assert torch.allclose(y, direct, atol=1e-5)
    assert torch.equal(G, w_out.permute(0, 2, 3, 1).reshape(-1, c))
    # G^T X is the gradient w.r.t. the effective (flattened) weights.
    assert torch.allclose(conv.weight.grad.reshape(3, -1), G.T @ X, atol=1e-4)


def test_normalized_adjacency_values() -> None:
    # path 0-1-2 given with a duplicate edge and one reversed edge
    edges = torch.tensor([[0, 1, 1], [1, 2, 0]])
    adj = normalized_adjacency(edges, 3)
    assert adj.is_sparse
    a = torch.tensor([[1.0, 1, 0], [1, 1, 1], [0, 1, 1]])
    d = a.sum(1).rsqrt()
    assert torch.allclose(adj.to_dense(), d[:, None] * a * d[None, :])
    assert torch.allclose(adj.to_dense(), adj.to_dense().T)


def test_graph_conv_aggregates_then_binary_map() -> None:
    edges = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    adj = normalized_adjacency(edges, 5)  # node 4 isolated: only its self loop
    layer = BinaryGraphConv(3, 2)
    layer.capture = True
    x = torch.randn(5, 3)
    y = layer(x, adj)
    agg = adj.to_dense() @ x
    assert torch.allclose(y, agg @ layer.binary_weight_matrix().T, atol=1e-6)
    assert torch.allclose(y[4], x[4] @ layer.binary_weight_matrix().T, atol=1e-6)
    y.sum().backward()
    assert torch.allclose(layer.captured_inputs, agg, atol=1e-6)
    assert layer.captured_grad_out.shape == (5, 2)
    assert torch.allclose(layer(x, adj.to_dense()), y, atol=1e-6)


def test_extra_repr() -> None:
    assert repr(BinaryLinear(4, 3, bias=True)) == (
        "BinaryLinear(in_features=4, out_features=3, bias=True, binary=True, capture=False)"
    )
    assert "kernel_size=(3, 3), stride=(2, 2), padding=(1, 1)" in repr(
        BinaryConv2d(1, 2, 3, stride=2, padding=1)
    )
    assert "binary=False" in repr(BinaryGraphConv(2, 2, binary=False))


def test_reset_parameters_bounds() -> None:
    layer = BinaryLinear(16, 8, bias=True)
    with torch.no_grad():
        layer.weight.fill_(5.0)
        layer.bias.fill_(5.0)
    layer.reset_parameters()
    assert layer.weight.abs().max() <= 0.25
    assert torch.equal(layer.bias, torch.zeros(8))


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: BinaryLinear(0, 3), r"in_features must be a positive int \(got 0\)"),
        (lambda: BinaryLinear(3, 2.5), r"out_features must be a positive int \(got 2.5\)"),
        (lambda: BinaryConv2d(1, 2, 0), r"kernel_size must be an int >= 1"),
        (lambda: BinaryConv2d(1, 2, 3, padding=-1), r"padding must be an int >= 0"),
        (lambda: BinaryLinear(3, 2, binary="yes"), r"binary must be a bool \(got 'yes'\)"),
        (lambda: BinaryLinear(3, 2)(torch.ones(2, 4)), r"in_features=3 \(got shape \(2, 4\)\)"),
        (lambda: BinaryConv2d(2, 2, 3)(torch.ones(2, 3, 5, 5)), r"in_channels=2"),
        (
            lambda: BinaryGraphConv(2, 2)(torch.ones(3, 2), torch.eye(4)),
            r"adj_norm must have shape \(3, 3\)",
        ),
        (
            lambda: normalized_adjacency(torch.tensor([[0, 5], [1, 0]]), 3),
            r"edge_index entries must lie in \[0, num_nodes=3\)",
        ),
        (
            lambda: normalized_adjacency(torch.tensor([0, 1]), 3),
            r"edge_index must have shape \(2, E\)",
        ),
    ],
)
def test_bad_input(make, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        make()
