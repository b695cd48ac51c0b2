"""The shared "binary rule + inner optimizer" base: vocabulary, state_dict layout, flip ratio."""

from __future__ import annotations

import copy

import pytest
import torch

from qsgd.binary_optim import BinaryCaseOptimizer, count_flips, flip_ratio, make_inner
from qsgd.errors import ConfigError


def test_flip_ratio_counts_sign_changes_with_sign_zero_plus_one():
    before = torch.tensor([1.0, -1.0, 0.0, -0.0, 2.0])
    after = torch.tensor([-1.0, -1.0, -1.0, 1.0, 0.0])
    # 1 -> -1 flips, -1 stays, 0 (+1) -> -1 flips, -0 (+1) -> 1 stays, 2 -> 0 (+1) stays
    assert count_flips(before, after) == 2
    assert flip_ratio(before, after) == 2 / 5
    assert flip_ratio(before >= 0, after >= 0) == 2 / 5  # masks give the same
    assert flip_ratio(torch.empty(0), torch.empty(0)) == 0.0
    with pytest.raises(
        ValueError, match=r"after must have the shape of before \(2,\) \(got \(3,\)\)"
    ):
        flip_ratio(torch.ones(2), torch.ones(3))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("rmsprop", None, r"inner must be one of \['adam', 'sgd'\] \(got 'rmsprop'\)"),
        ("adam", {"nesterov": 3}, r"inner_options \{'nesterov': 3\} rejected by adam"),
        ("sgd", [1], r"inner_options must be a dict or None \(got \[1\]\)"),
    ],
)
def test_make_inner_refuses_bad_names_and_options(name, options, message):
    with pytest.raises(ConfigError, match=message):
        make_inner(name, [{"params": [torch.nn.Parameter(torch.ones(2))], "lr": 0.1}], options)


def test_make_inner_is_none_without_a_name_or_parameters():
    assert make_inner(None, [{"params": [torch.nn.Parameter(torch.ones(2))]}]) is None
    assert make_inner("adam", []) is None


class _Rule(BinaryCaseOptimizer):
    """A minimal subclass: signSGD on the binary weights, the inner optimizer on the rest."""

    def __init__(self, model: torch.nn.Module, inner: str | None = "adam") -> None:
        super().__init__(model.parameters(), {"lr": 0.1})
        rest = [p for p in model.parameters() if not getattr(p, "_bnn_binary", False)]
        self._set_inner(inner, [{"params": rest, "lr": 0.01}] if rest else [])

    @torch.no_grad()
    def step(self, closure=None):
        records = []
        for p in self.binary_params():
            before = p >= 0
            p.add_(torch.sign(p.grad), alpha=-self.defaults["lr"])
            n = count_flips(before, p)
            records.append(
                {
                    "layer": "w",
                    "num_weights": p.numel(),
                    "num_flipped": n,
                    "flip_ratio": n / p.numel(),
                    "skipped": False,
                }
            )
        if self.inner is not None:
            self.inner.step()
        self._finish_step(records)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(4, 3)
    lin.weight._bnn_binary = True
    return lin


def _train(opt: _Rule, model: torch.nn.Module, steps: int) -> None:
    x = torch.linspace(-1, 1, 20).reshape(5, 4)
    for _ in range(steps):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()


def test_state_dict_carries_the_inner_state_and_the_trajectory_continues():
    model = _model()
    opt = _Rule(model)
    _train(opt, model, 3)
    sd = copy.deepcopy(opt.state_dict())  # as a checkpoint would (torch shares tensors)
    assert set(sd) == {"state", "param_groups", "inner"} and sd["inner"]["state"]
    twin = _model(seed=1)
    twin.load_state_dict(model.state_dict())
    opt2 = _Rule(twin)
    opt2.load_state_dict(sd)
    _train(opt, model, 2)
    _train(opt2, twin, 2)
    assert torch.equal(model.weight, twin.weight) and torch.equal(model.bias, twin.bias)
    assert 0.0 <= opt.last_flip_ratio <= 1.0 and opt.last_stats[0]["layer"] == "w"


def test_a_state_without_the_matching_inner_part_is_refused():
    model = _model()
    sd = _Rule(model).state_dict()
    with pytest.raises(ConfigError, match="no 'inner' entry"):
        _Rule(model).load_state_dict({k: v for k, v in sd.items() if k != "inner"})
    with pytest.raises(ConfigError, match=r"saved: present, here: none"):
        _Rule(model, inner=None).load_state_dict(sd)


def test_zero_grad_clears_the_inner_optimizers_parameters():
    model = _model()
    opt = _Rule(model)
    model(torch.ones(1, 4)).sum().backward()
    opt.zero_grad()
    assert model.weight.grad is None and model.bias.grad is None


def test_qpsbgd_shares_the_base_and_loads_a_state_saved_in_the_old_layout():
    """QP-SBGD's standard optimiser is the base's ``inner``; a state dict written before the
    shared base (the inner state under ``state_dict()["qpsbgd"]["other_optimizer"]``) still
    loads, and the run continues exactly as from the new layout."""
    from bnn.models import BinaryMLP
    from qsgd.optimizer import QPSBGD

    def setup(seed):
        torch.manual_seed(seed)
        model = BinaryMLP(4, [6], 2)
        return model, QPSBGD(model, lr=0.05, backend="exact", seed=3, other_optimizer="adam")

    def train(model, opt, steps):
        x = torch.linspace(-1, 1, 32).reshape(8, 4)
        y = torch.tensor([0, 1] * 4)
        for _ in range(steps):
            opt.step(lambda: _loss(model, opt, x, y))

    def _loss(model, opt, x, y):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    model, opt = setup(0)
    assert isinstance(opt, BinaryCaseOptimizer) and opt.other_optimizer is opt.inner
    train(model, opt, 2)
    new = copy.deepcopy(opt.state_dict())
    weights = copy.deepcopy(model.state_dict())
    assert new["inner"] is not None and "other_optimizer" not in new["qpsbgd"]
    old = {k: v for k, v in new.items() if k != "inner"}
    old["qpsbgd"] = {**new["qpsbgd"], "other_optimizer": new["inner"]}
    train(model, opt, 2)
    for layout in (new, old):
        twin, opt2 = setup(1)
        twin.load_state_dict(weights)
        opt2.load_state_dict(copy.deepcopy(layout))
        train(twin, opt2, 2)
        for a, b in zip(model.state_dict().values(), twin.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert 0.0 <= opt.last_flip_ratio <= 1.0
