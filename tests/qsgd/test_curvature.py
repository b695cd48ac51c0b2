"""``curvature_scale="kfac"`` (qsgd.curvature): the per-neuron K-FAC output factor from labels
sampled from the model, its per-problem Ising batches, and its place in QPSBGD's step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn.layers import BinaryLinear
from bnn.models import BinaryCNN, BinaryMLP
from qsgd.curvature import (
    SampledFisher,
    kfac_output_factor,
    per_neuron_layer_ising,
)
from qsgd.optimizer import CURVATURE_SCALES, QPSBGD
from qsgd.qubo import brute_force, layer_ising


def _data(rows: int = 12, n: int = 6, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randint(0, 2, (rows, n), generator=g).float() * 2 - 1
    y = torch.randint(0, classes, (rows,), generator=g)
    return X, y


def test_output_factor_formula_and_bad_values() -> None:
    gs = np.array([[1.0, -2.0], [3.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(kfac_output_factor(gs, 2), [5.0, 2.5])
    np.testing.assert_allclose(kfac_output_factor(torch.tensor(gs), 1), [10.0, 5.0])
    with pytest.raises(ValueError, match=r"examples must be a positive int \(got 0\)"):
        kfac_output_factor(gs, 0)
    with pytest.raises(ValueError, match=r"sampled_grad_out must have shape \(rows, fan_out\)"):
        kfac_output_factor(np.ones(3), 1)


@pytest.mark.parametrize("formulation", ["binary_gradient", "projected"])
def test_per_neuron_batch_has_each_neurons_own_minimiser(formulation) -> None:
    rng = np.random.default_rng(0)
    X = rng.choice([-1.0, 1.0], size=(5, 7))
    G = rng.normal(size=(5, 4))
    c = np.array([0.01, 0.5, 3.0, 40.0])
    W = rng.choice([-1.0, 1.0], size=(4, 7)) if formulation == "projected" else None
    eta = 0.3 if formulation == "binary_gradient" else 2.0
    batch = per_neuron_layer_ising(X, G, eta=eta, curvature=c, formulation=formulation, weights=W)
    best, energies = brute_force(batch)
    c_ref = c.mean()
    for j in range(4):
        own = layer_ising(X, G, eta=eta, curvature=c[j], formulation=formulation, weights=W)
        own_best, own_e = brute_force(own.problem(j))
        np.testing.assert_array_equal(best[j], own_best[0])
        # problem j is its own quadratic model times c_ref / c_j
        assert energies[j] == pytest.approx(own_e[0] * c_ref / c[j], rel=1e-9, abs=1e-12)
    # the curvatures differ enough that one shared curvature would not give these minimisers
    shared, _ = brute_force(layer_ising(X, G, eta=eta, curvature=c_ref, formulation=formulation, weights=W))
    if formulation == "binary_gradient":
        assert np.any(shared != best)


def test_per_neuron_batch_limits_and_bad_values() -> None:
    X = np.array([[1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
    G = np.array([[0.5, -1.0], [0.2, 0.3]])
    zero = per_neuron_layer_ising(X, G, eta=0.1, curvature=np.zeros(2))
    ref = layer_ising(X, G, eta=0.1, curvature=0.0)
    np.testing.assert_allclose(zero.h, ref.h)
    np.testing.assert_allclose(zero.J, ref.J)
    # a zero entry next to a positive one is floored: that neuron gets sign(-h) (signSGD)
    b = per_neuron_layer_ising(X, G, eta=0.1, curvature=np.array([0.0, 1e3]))
    best, _ = brute_force(b)
    np.testing.assert_array_equal(best[0], np.where((-0.1 * G.T @ X)[0] > 0, -1, 1))
    with pytest.raises(ValueError, match=r"curvature of 'L' must have shape \(2,\)"):
        per_neuron_layer_ising(X, G, eta=0.1, curvature=np.ones(3), name="L")
    with pytest.raises(ValueError, match=r"curvature must be finite and >= 0"):
        per_neuron_layer_ising(X, G, eta=0.1, curvature=np.array([1.0, -1.0]))


def _sampled_gradients(model: nn.Module, layer: BinaryLinear, X, seed: int):
    """What the hook should compute, by hand: labels drawn from softmax(logits) with
    torch.Generator().manual_seed(seed), the gradient of the summed cross-entropy at them."""
    logits = model(X).detach()
    probs = torch.softmax(logits.double(), dim=1)
    labels = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(seed)).squeeze(1)
    pre = X @ torch.where(layer.weight.detach() >= 0, 1.0, -1.0).T  # the layer is the model
    pre.requires_grad_(True)
    F.cross_entropy(pre, labels, reduction="sum").backward()
    return pre.grad.double().numpy(), labels


def test_kfac_step_is_the_brute_force_optimum_of_the_sampled_fisher_problems() -> None:
    torch.manual_seed(0)
    layer = BinaryLinear(6, 3)
    X, y = _data()
    lr, factor = 0.2, 2.0
    opt = QPSBGD(layer, lr=lr, curvature=factor, curvature_scale="kfac", backend="exact", seed=5)
    gs, _ = _sampled_gradients(layer, layer, X, opt.step_seed(0, 1))
    opt.zero_grad()
    F.cross_entropy(layer(X), y).backward()
    Xc = layer.captured_inputs.double().numpy().copy()
    Gc = layer.captured_grad_out.double().numpy().copy()
    # the training backward still records the true gradient (not the sampled one)
    true_pre = (X @ layer.binary_weight_matrix().T).requires_grad_(True)
    F.cross_entropy(true_pre, y).backward()
    np.testing.assert_allclose(Gc, true_pre.grad.double().numpy(), rtol=1e-6, atol=1e-9)
    before = layer.weight.detach().clone()
    opt.step()
    c = factor * (gs**2).sum(axis=0) / X.shape[0]  # S_jj = sum_rows gs^2 / B
    assert len(set(np.round(c, 9))) == 3  # one curvature per neuron
    best, _ = brute_force(per_neuron_layer_ising(Xc, Gc, eta=lr, curvature=c))
    for j in range(3):  # each neuron's own quadratic model
        own, _ = brute_force(layer_ising(Xc, Gc, eta=lr, curvature=c[j]).problem(j))
        np.testing.assert_array_equal(best[j], own[0])
    expected = (before - lr * torch.as_tensor(best, dtype=before.dtype)).clamp(-1, 1)
    torch.testing.assert_close(layer.weight.detach(), expected)


def test_sampled_backward_leaves_grads_and_captures_of_the_training_backward_alone() -> None:
    torch.manual_seed(1)
    model = BinaryMLP(6, [5], 3)
    X, y = _data()
    plain = QPSBGD(model, lr=0.01, backend="exact", seed=0)
    plain.zero_grad()
    F.cross_entropy(model(X), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    captured = [layer.captured_grad_out.clone() for layer in plain._layers]
    kfac = QPSBGD(model, lr=0.01, curvature_scale="kfac", backend="exact", seed=0)
    kfac.zero_grad()
    F.cross_entropy(model(X), y).backward()
    for p, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g)
    for layer, g in zip(kfac._layers, captured, strict=True):
        torch.testing.assert_close(layer.captured_grad_out, g)
        gs, examples = kfac._sampled_fisher.take(kfac._layers.index(layer))
        assert examples == X.shape[0] and gs.shape == g.shape and not torch.equal(gs, g)


def test_sampled_output_factor_matches_the_true_fisher_in_expectation() -> None:
    """For a layer whose outputs are the logits, E_y[(p - e_y)_k^2] = p_k (1 - p_k), the
    diagonal of the softmax Fisher diag(p) - p p^T: the mean over many sampled steps agrees."""
    torch.manual_seed(2)
    layer = BinaryLinear(6, 3)
    layer.capture = True
    X, y = _data(rows=64)
    seeds = iter(range(10_000))
    sf = SampledFisher(layer, [layer], lambda: next(seeds))
    draws = []
    for _ in range(100):
        F.cross_entropy(layer(X), y).backward()
        gs, examples = sf.take(0)
        draws.append(kfac_output_factor(gs, examples))
    p = torch.softmax(layer(X).detach().double(), dim=1).numpy()
    np.testing.assert_allclose(np.mean(draws, axis=0), (p * (1 - p)).mean(axis=0), rtol=0.1)
    sf.remove()
    F.cross_entropy(layer(X), y).backward()
    assert sf.take(0) is None  # detached: nothing sampled for the new capture


def test_only_rows_the_loss_depends_on_are_sampled() -> None:
    """A masked loss (the training nodes of a graph): the other rows get no sampled gradient
    and do not count as examples."""
    torch.manual_seed(3)
    layer = BinaryLinear(6, 3)
    X, y = _data(rows=10)
    opt = QPSBGD(layer, lr=0.1, curvature_scale="kfac", backend="exact", seed=0)
    mask = torch.zeros(10, dtype=torch.bool)
    mask[:4] = True
    F.cross_entropy(layer(X)[mask], y[mask]).backward()
    gs, examples = opt._sampled_fisher.take(0)
    assert examples == 4
    assert torch.all(gs[~mask] == 0) and torch.all(gs[mask].abs().sum(dim=1) > 0)


def test_kfac_trains_a_conv_net_reproducibly() -> None:
    def run():
        torch.manual_seed(4)
        model = BinaryCNN(2, channels=(2, 3))
        X = torch.randint(0, 2, (8, 64)).float() * 2 - 1
        y = torch.arange(8) % 2
        opt = QPSBGD(model, lr=0.05, curvature_scale="kfac", backend="batched", seed=3)
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(model(X), y).backward()
            opt.step()
        assert len(opt.last_stats) == 3 and all(r["rows"] > 0 for r in opt.last_stats)
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(run(), run(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_kfac_needs_its_sampled_backward_and_logits() -> None:
    assert "kfac" in CURVATURE_SCALES
    torch.manual_seed(0)
    model = BinaryMLP(6, [5], 2)
    X, y = _data(classes=2)
    opt = QPSBGD(model, lr=0.01, backend="exact", seed=0)
    opt.param_groups[0]["curvature_scale"] = "kfac"  # switched on after construction
    F.cross_entropy(model(X), y).backward()
    with pytest.raises(RuntimeError, match=r"'net.0': curvature_scale='kfac' has no sampled"):
        opt.step()
    single = BinaryLinear(6, 1)
    QPSBGD(single, lr=0.01, curvature_scale="kfac", backend="exact", seed=0)
    with pytest.raises(ValueError, match=r"class logits of shape \(rows, classes >= 2\)"):
        single(X).sum().backward()
    # per layer through layer_options: only that layer's problems use it
    opt = QPSBGD(
        model, lr=0.01, backend="exact", seed=0, layer_options={"net.3": {"curvature_scale": "kfac"}}
    )
    opt.zero_grad()
    F.cross_entropy(model(X), y).backward()
    opt.step()
    assert [r["skipped"] for r in opt.last_stats] == [False, False]
