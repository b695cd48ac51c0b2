"""QPSBGD's ``curvature_scale="fisher"``: the layer problem equals layer_ising with the
empirical-Fisher curvature, the direction equals the brute-force optimum, the fields and
couplings stay commensurate under a rescaled loss, and bad values are rejected."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnn.layers import BinaryLinear
from qsgd.optimizer import QPSBGD, fisher_curvature
from qsgd.qubo import brute_force, layer_ising


def _setup(scale: float = 1.0, seed: int = 0):
    torch.manual_seed(seed)
    layer = BinaryLinear(8, 3)
    g = torch.Generator().manual_seed(seed)
    X = torch.randint(0, 2, (20, 8), generator=g).float() * 2 - 1
    y = torch.randint(0, 3, (20,), generator=g)
    return layer, X, y, scale


def _captured_step(opt: QPSBGD, layer: BinaryLinear, X, y, scale: float):
    opt.zero_grad()
    (scale * F.cross_entropy(layer(X), y)).backward()
    Xc = layer.captured_inputs.double().numpy().copy()
    Gc = layer.captured_grad_out.double().numpy().copy()
    before = layer.weight.detach().clone()
    opt.step()
    return Xc, Gc, before


def test_fisher_curvature_formula() -> None:
    G = np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]])
    assert fisher_curvature(G, 2.0) == pytest.approx(2.0 * 9 * np.mean(G**2))
    assert fisher_curvature(G, 0.0) == 0.0


def test_fisher_step_is_brute_force_optimum_of_fisher_problem() -> None:
    layer, X, y, scale = _setup()
    lr, c = 0.05, 50.0
    opt = QPSBGD(layer, lr=lr, curvature=c, curvature_scale="fisher", backend="exact", seed=0)
    Xc, Gc, before = _captured_step(opt, layer, X, y, scale)
    batch = layer_ising(Xc, Gc, eta=lr, curvature=c * 20 * 20 * np.mean(Gc**2))
    best, _ = brute_force(batch)
    expected = (before - lr * torch.as_tensor(best, dtype=before.dtype)).clamp(-1, 1)
    torch.testing.assert_close(layer.weight.detach(), expected)
    # the couplings are not negligible here: the optimum differs from sign(-h) somewhere
    assert np.any(best != np.where(batch.h > 0, -1, 1))


def test_fisher_direction_invariant_to_gradient_scale_with_matched_lr() -> None:
    """Scaling the loss by k scales h by k and the Fisher couplings by k^2: with lr / k the
    Ising problem is the original one times k^0 (fields and couplings both scale by 1), so
    the chosen directions agree; with the unit scale they do not in general."""
    dirs = []
    for k in (1.0, 1000.0):
        layer, X, y, _ = _setup()
        opt = QPSBGD(
            layer, lr=0.05 / k, curvature=50.0, curvature_scale="fisher", backend="exact", seed=0
        )
        _, _, before = _captured_step(opt, layer, X, y, k)
        dirs.append(torch.sign(before - layer.weight.detach()))
    torch.testing.assert_close(dirs[0], dirs[1])


@pytest.mark.parametrize("bad", ["gauss", 1, None])
def test_bad_curvature_scale(bad) -> None:
    layer = BinaryLinear(4, 2)
    with pytest.raises(ValueError, match=r"curvature_scale must be one of 'unit', 'fisher', 'kfac' \(got"):
        QPSBGD(layer, curvature_scale=bad, backend="exact")


def test_bad_curvature_scale_in_layer_options() -> None:
    layer = BinaryLinear(4, 2)
    with pytest.raises(ValueError, match=r"curvature_scale of layer '<model>' must be one of"):
        QPSBGD(layer, backend="exact", layer_options={"<model>": {"curvature_scale": "x"}})
