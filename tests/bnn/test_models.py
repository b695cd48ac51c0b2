"""Tests of bnn.models: architecture options, ±1 effective weights, shapes, output scale."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bnn.layers import BinaryLinear, binary_layers, binary_parameters, normalized_adjacency
from bnn.models import BinaryCNN, BinaryGCN, BinaryMLP, OutputScale, SignActivation


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


def test_mlp_structure_and_output_shape() -> None:
    model = BinaryMLP(6, [5, 4], 2)
    names = [n for n, _ in binary_layers(model)]
    assert names == ["net.0", "net.3", "net.6"]
    kinds = [type(m) for m in model.net]
    assert kinds == [
        BinaryLinear,
        nn.BatchNorm1d,
        SignActivation,
        BinaryLinear,
        nn.BatchNorm1d,
        SignActivation,
        BinaryLinear,
        OutputScale,
    ]
    assert model.net[-1].scale.item() == pytest.approx(1 / math.sqrt(4))
    out = model(torch.randn(7, 6))
    assert out.shape == (7, 2)


def test_mlp_hidden_activations_are_pm1() -> None:
    model = BinaryMLP(6, [5], 3)
    x = torch.randn(9, 6)
    hidden = model.net[:3](x)
    assert set(hidden.unique().tolist()) <= {-1.0, 1.0}


def test_mlp_precision_options() -> None:
    model = BinaryMLP(6, [5, 5], 2, first_layer_binary=False, last_layer_binary=False)
    assert [n for n, _ in binary_layers(model)] == ["net.3"]
    assert not isinstance(model.net[-1], OutputScale)  # real last layer: no scale
    fp = BinaryMLP(6, [5], 2, binary=False)
    assert binary_parameters(fp) == []
    assert isinstance(fp.net[2], nn.Hardtanh)  # default activation of the reference
    nobn = BinaryMLP(6, [5], 2, batchnorm=False, activation="htanh", bias=True)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in nobn.modules())
    assert isinstance(nobn.net[1], nn.Hardtanh)
    assert nobn.net[0].bias is not None


def test_mlp_logits_are_scaled() -> None:
    model = BinaryMLP(64, [64], 2, batchnorm=False)
    x = torch.sign(torch.randn(32, 64))
    raw = model.net[:-1](x)
    assert raw.abs().max() > 8  # a ±1 layer over ±1 inputs: logits of size up to fan_in
    assert torch.allclose(model(x), raw / 8.0)


def test_mlp_gradients_reach_latent_weights() -> None:
    model = BinaryMLP(6, [5], 2)
    loss = nn.functional.cross_entropy(model(torch.randn(8, 6)), torch.randint(0, 2, (8,)))
    loss.backward()
    for p in binary_parameters(model):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_gcn_forward_and_binary_layers() -> None:
    edges = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 0]])
    adj = normalized_adjacency(edges, 6)
    model = BinaryGCN(4, [8], 3, dropout=0.5)
    assert [n for n, _ in binary_layers(model)] == ["convs.0", "convs.1"]
    out = model(torch.randn(6, 4), adj)
    assert out.shape == (6, 3)
    model.eval()
    a, b = model(torch.ones(6, 4), adj), model(torch.ones(6, 4), adj)
    assert torch.equal(a, b)  # dropout off in eval
    fp = BinaryGCN(4, 8, 3, binary=False)
    assert binary_parameters(fp) == [] and isinstance(fp.output_scale, nn.Identity)


def test_cnn_digits_shapes() -> None:
    model = BinaryCNN()
    assert [n for n, _ in binary_layers(model)] == ["features.0", "features.3", "classifier"]
    assert model(torch.randn(5, 64)).shape == (5, 10)
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    fp = BinaryCNN(num_classes=3, binary=False, channels=(4, 8))
    assert fp(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert binary_parameters(fp) == []


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: BinaryMLP(0, [4], 2), r"in_features must be a positive int \(got 0\)"),
        (lambda: BinaryMLP(3, [4, 0], 2), r"hidden width must be a positive int \(got 0\)"),
        (lambda: BinaryMLP(3, [4], 2, activation="relu"), r"activation must be one of"),
        (lambda: BinaryMLP(3, [4], 2, binary=1), r"binary must be a bool \(got 1\)"),
        (lambda: BinaryGCN(3, 4, 2, dropout=1.5), r"dropout must be a float in \[0, 1\)"),
        (lambda: BinaryCNN(image_size=7), r"image_size must be even \(got 7\)"),
    ],
)
def test_bad_config(make, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        make()
