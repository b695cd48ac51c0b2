"""Tests of qsgd.optimizer.QPSBGD: exact ±1 weights, brute-force optimality, loss decrease,
state_dict round trip, round-robin schedule, stats and bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn.layers import BinaryLinear, binary_layers, normalized_adjacency
from bnn.models import BinaryCNN, BinaryGCN, BinaryMLP
from qsgd.errors import ConfigError, ProblemError, UnknownBackendError
from qsgd.optimizer import QPSBGD
from qsgd.qubo import brute_force, layer_ising, solve_blockwise
from qsgd.samplers.registry import get_sampler, solve_batch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only contend on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FORMULATIONS = ["binary_gradient", "projected"]
# Step sizes that move weights on the toy problem: the projected step compares lr * grad with
# the distance 2 between binary values, so it needs a larger lr (see the QPSBGD docstring).
TOY_LR = {"binary_gradient": 0.05, "projected": 30.0}
FAST_NEAL = {"num_reads": 4, "num_sweeps": 50}


def toy_data(n: int = 10, rows: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A linearly separable ±1 data set: labels are sign(X w*) for a hidden ±1 vector w*."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randint(0, 2, (rows, n), generator=g).float() * 2 - 1
    w = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    return X, (X @ w > 0).long()


def make_closure(model: nn.Module, opt: QPSBGD, X: torch.Tensor, y: torch.Tensor):
    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        return loss.detach()

    return closure


def mlp(seed: int = 1, **kw) -> BinaryMLP:
    torch.manual_seed(seed)
    return BinaryMLP(10, kw.pop("hidden", [6, 5]), 2, **kw)


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_weights_exactly_pm1_after_many_steps(formulation: str) -> None:
    X, y = toy_data()
    model = mlp()
    opt = QPSBGD(
        model,
        lr=TOY_LR[formulation],
        formulation=formulation,
        backend="neal",
        backend_options=FAST_NEAL,
        seed=0,
    )
    closure = make_closure(model, opt, X, y)
    for _ in range(8):
        opt.step(closure)
        for _, layer in binary_layers(model):
            eff = layer.effective_weight().detach()
            assert set(eff.unique().tolist()) <= {-1.0, 1.0}
            if formulation == "projected":  # the weights themselves are the binary weights
                assert set(layer.weight.detach().unique().tolist()) <= {-1.0, 1.0}
            else:
                assert layer.weight.detach().abs().max() <= 1.0  # latent clip
    # the forward pass really is the ±1 network
    layer = model.net[0]
    assert torch.equal(F.linear(X, layer.binary_weight_matrix()), model.net[0](X).detach())


@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_exact_backend_picks_brute_force_best(formulation: str) -> None:
    torch.manual_seed(3)
    model = nn.Sequential(BinaryLinear(8, 3), nn.Tanh())
    lr = 0.1 if formulation == "binary_gradient" else 4.0
    opt = QPSBGD(model, lr=lr, curvature=0.7, formulation=formulation, backend="exact", seed=0)
    x = torch.randn(6, 8)
    target = torch.randn(6, 3)
    F.mse_loss(model(x), target).backward()
    layer = model[0]
    Xc, Gc = layer.captured_inputs.clone(), layer.captured_grad_out.clone()
    old = layer.weight.detach().clone()
    opt.step()

    W = torch.where(old >= 0, 1.0, -1.0)
    batch = layer_ising(
        Xc.double().numpy(),
        Gc.double().numpy(),
        eta=lr,
        curvature=0.7,
        formulation=formulation,
        weights=W.double().numpy() if formulation == "projected" else None,
    )
    best, best_e = brute_force(batch)
    best_t = torch.as_tensor(best, dtype=torch.float32)
    if formulation == "binary_gradient":
        expected = (old - lr * best_t).clamp(-1.0, 1.0)
    else:
        expected = best_t
    assert torch.equal(layer.weight.detach(), expected)
    stats = opt.last_stats[0]
    # the optimiser builds its problems in float32 (tests/qsgd/test_qubo_precision.py)
    assert stats["best_energy"] == pytest.approx(float(best_e.mean()), rel=1e-6, abs=1e-9)
    assert stats["flip_ratio"] == pytest.approx(
        float((torch.where(expected >= 0, 1.0, -1.0) != W).float().mean())
    )
    assert (stats["problems"], stats["variables"], stats["rows"]) == (3, 8, 6)
    assert stats["backend"] == "exact" and not stats["skipped"]


@pytest.mark.parametrize("backend", ["exact", "neal"])
@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_loss_decreases_on_separable_toy_set(formulation: str, backend: str) -> None:
    X, y = toy_data()
    torch.manual_seed(1)
    model = BinaryMLP(10, [], 2, batchnorm=False)  # one binary layer with a fixed output scale
    opt = QPSBGD(
        model,
        lr=TOY_LR[formulation],
        formulation=formulation,
        backend=backend,
        seed=0,
        other_optimizer=None,  # only the binary update can lower the loss
    )
    closure = make_closure(model, opt, X, y)
    acc0 = float((model(X).argmax(1) == y).float().mean())
    losses = [float(opt.step(closure)) for _ in range(8)]
    final = float(closure())
    assert final < 0.5 * losses[0]
    acc = float((model(X).argmax(1) == y).float().mean())
    assert acc >= 0.8 and acc > acc0 + 0.2


# --------------------------------------------------------------------------- state dict


def _train(model: nn.Module, opt: QPSBGD, steps: int, start: int) -> None:
    for t in range(start, start + steps):
        X, y = toy_data(seed=100 + t, rows=32)
        opt.step(make_closure(model, opt, X, y))


@pytest.mark.parametrize(
    "formulation, backend, options",
    [
        ("binary_gradient", "neal", FAST_NEAL),
        ("projected", "neal", FAST_NEAL),
        ("binary_gradient", "batched", {**FAST_NEAL, "device": "cpu"}),
        ("projected", "batched", {**FAST_NEAL, "device": "cpu", "warm_start": True}),
    ],
)
def test_state_dict_round_trip_reproduces_trajectory(
    formulation: str, backend: str, options: dict
) -> None:
    """Everything random in a step comes from (seed, step, layer) and the state dict: a
    reloaded optimiser continues bit for bit, for the numba annealer too."""
    kw = dict(
        lr=TOY_LR[formulation], formulation=formulation, backend=backend, backend_options=options
    )
    model = mlp(seed=5)
    opt = QPSBGD(model, seed=11, **kw)
    _train(model, opt, 3, 0)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    _train(model, opt, 3, 3)

    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    model2 = mlp(seed=99)  # a different init: everything must come from the checkpoint
    opt2 = QPSBGD(model2, seed=None, **kw)
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    assert opt2.step_count == 3 and opt2.base_seed == 11
    _train(model2, opt2, 3, 3)

    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert opt.state_dict()["qpsbgd"]["step_count"] == opt2.step_count == 6
    for p, p2 in zip(opt.param_groups, opt2.param_groups, strict=True):
        s1, s2 = opt.state[p["params"][0]], opt2.state[p2["params"][0]]
        assert (s1["steps"], s1["flips"]) == (s2["steps"], s2["flips"])  # wall times differ


def test_same_seed_same_trajectory_different_seed_differs() -> None:
    runs = []
    for seed in (4, 4, 5):
        model = mlp(seed=2, hidden=[40])
        opt = QPSBGD(
            model,
            lr=0.05,
            backend="neal",
            backend_options={"num_reads": 2, "num_sweeps": 5},
            seed=seed,
        )
        _train(model, opt, 3, 0)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert opt.step_seed(0, 0) != QPSBGD(mlp(), seed=4).step_seed(0, 0)


# --------------------------------------------------------------------------- schedule, stats


def test_round_robin_updates_one_layer_per_step() -> None:
    X, y = toy_data()
    model = mlp()
    opt = QPSBGD(model, lr=0.5, backend="exact", layer_schedule="round_robin", seed=0)
    names = [n for n, _ in binary_layers(model)]
    assert names == ["net.0", "net.3", "net.6"]
    closure = make_closure(model, opt, X, y)
    for t in range(5):
        before = {n: layer.weight.detach().clone() for n, layer in binary_layers(model)}
        opt.step(closure)
        assert [s["layer"] for s in opt.last_stats] == [names[t % 3]]
        for n, layer in binary_layers(model):
            changed = not torch.equal(before[n], layer.weight.detach())
            assert changed == (n == names[t % 3])  # lr=0.5 moves every latent weight


def test_per_layer_overrides_and_cumulative_state() -> None:
    X, y = toy_data()
    model = mlp()
    opt = QPSBGD(model, lr=0.05, backend="exact", seed=0, layer_options={"net.3": {"lr": 0.25}})
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.25, 0.05]
    w0 = model.net[3].weight.detach().clone()
    closure = make_closure(model, opt, X, y)
    sign0 = torch.sign(model.net[0].weight.detach())
    opt.step(closure)
    flips = int((torch.sign(model.net[0].weight.detach()) != sign0).sum())
    step = (model.net[3].weight.detach() - w0).abs()
    assert torch.allclose(step[w0.abs() < 0.7], torch.tensor(0.25))  # away from the clip
    for _ in range(2):
        sign0 = torch.sign(model.net[0].weight.detach())
        opt.step(closure)
        flips += int((torch.sign(model.net[0].weight.detach()) != sign0).sum())
    state = opt.state[model.net[0].weight]
    assert state["steps"] == 3 and state["flips"] == flips
    assert state["solver_time"] > 0
    assert set(opt.last_stats[0]) >= {
        "layer", "problems", "variables", "best_energy", "flip_ratio", "wall_time", "backend",
    }  # fmt: skip


def test_non_binary_parameters_go_to_inner_optimizer() -> None:
    X, y = toy_data()
    model = mlp(bias=True)
    opt = QPSBGD(model, lr=0.05, backend="exact", other_optimizer="sgd", other_lr=0.1, seed=0)
    bn_w = model.net[1].weight.detach().clone()
    bias = model.net[0].bias.detach().clone()
    inner_params = {id(p) for g in opt.other_optimizer.param_groups for p in g["params"]}
    assert id(model.net[0].bias) in inner_params and id(model.net[0].weight) not in inner_params
    opt.step(make_closure(model, opt, X, y))
    assert not torch.equal(bn_w, model.net[1].weight.detach())
    assert not torch.equal(bias, model.net[0].bias.detach())
    assert QPSBGD(mlp(), other_optimizer=None).other_optimizer is None
    assert QPSBGD(mlp(), lr=30.0).other_optimizer.param_groups[0]["lr"] == 1e-3  # not lr


def test_lr_scheduler_drives_binary_step_size() -> None:
    X, y = toy_data()
    model = nn.Sequential(BinaryLinear(10, 2))
    opt = QPSBGD(model, lr=0.2, backend="exact", seed=0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for expected in (0.2, 0.1):
        w0 = model[0].weight.detach().clone()
        opt.step(make_closure(model, opt, X, y))
        sched.step()
        moved = (model[0].weight.detach() - w0).abs()
        assert torch.allclose(moved[w0.abs() < 0.5], torch.tensor(expected))


def test_block_decomposition_matches_solve_blockwise() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(BinaryLinear(12, 2))
    opt = QPSBGD(model, lr=0.1, backend="exact", max_block_vars=4, seed=0)
    x, t = torch.randn(5, 12), torch.randn(5, 2)
    F.mse_loss(model(x), t).backward()
    layer = model[0]
    Xc, Gc, old = (
        layer.captured_inputs.clone(),
        layer.captured_grad_out.clone(),
        layer.weight.detach().clone(),
    )
    opt.step()
    batch = layer_ising(Xc.numpy(), Gc.numpy(), eta=0.1)
    sampler = get_sampler("exact")
    spins, energies = solve_blockwise(
        batch, lambda b: solve_batch(sampler, b), 4, np.where(batch.h <= 0, 1, -1)
    )
    expected = (old - 0.1 * torch.as_tensor(spins, dtype=torch.float32)).clamp(-1, 1)
    assert torch.equal(layer.weight.detach(), expected)
    assert opt.last_stats[0]["best_energy"] == pytest.approx(float(energies.mean()))
    assert energies.mean() <= batch.energies(np.where(batch.h <= 0, 1, -1)).mean()


def test_gcn_drops_rows_without_gradient_and_cnn_steps() -> None:
    torch.manual_seed(0)
    n = 12
    edges = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    adj = normalized_adjacency(edges, n)
    model = BinaryGCN(5, 4, 2, batchnorm=False)  # batch norm over nodes would couple all rows
    opt = QPSBGD(model, lr=0.05, backend="neal", seed=0)
    x, labels = torch.randn(n, 5), torch.randint(0, 2, (n,))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[:3] = True  # nodes 0..2 are labelled: last layer rows 0..2, hidden layer their neighbours
    F.cross_entropy(model(x, adj)[mask], labels[mask]).backward()
    opt.step()
    rows = {s["layer"]: s["rows"] for s in opt.last_stats}
    assert rows["convs.1"] == 3
    assert 3 < rows["convs.0"] <= 5  # nodes 0..2 and their neighbours 11 and 3 (fewer if masked)

    cnn = BinaryCNN(num_classes=3, channels=(2, 3))
    opt = QPSBGD(cnn, lr=0.05, backend="neal", seed=0)
    F.cross_entropy(cnn(torch.randn(4, 64)), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    shapes = [(s["problems"], s["variables"], s["rows"]) for s in opt.last_stats]
    assert shapes[0][:2] == (2, 9) and shapes[1][:2] == (3, 18) and shapes[2] == (3, 48, 4)


def test_layer_with_zero_gradient_is_skipped() -> None:
    model = nn.Sequential(BinaryLinear(4, 2))
    opt = QPSBGD(model, lr=0.1, backend="exact", seed=0)
    (model(torch.randn(3, 4)) * 0.0).sum().backward()
    w0 = model[0].weight.detach().clone()
    opt.step()
    assert opt.last_stats[0]["skipped"] and torch.equal(model[0].weight.detach(), w0)


# --------------------------------------------------------------------------- bad input

BAD_CONFIGS = [
    (dict(lr=-1), ValueError, r"Invalid learning rate: lr must be a finite number > 0 \(got -1\)"),
    (dict(lr=0.0), ValueError, r"Invalid learning rate.*\(got 0.0\)"),
    (dict(curvature=-0.5), ValueError, r"curvature must be a finite number >= 0 \(got -0.5\)"),
    (dict(normalize="yes"), TypeError, r"normalize must be a bool \(got 'yes'\)"),
    (dict(formulation="sign"), ValueError, r"formulation must be one of .*\(got 'sign'\)"),
    (dict(latent_clip=0), ValueError, r"latent_clip must be a finite number > 0 \(got 0\)"),
    (dict(max_block_vars=0), ValueError, r"max_block_vars must be a positive int or None \(got 0\)"),
    (dict(layer_schedule="random"), ValueError, r"layer_schedule must be one of .*\(got 'random'\)"),
    (dict(other_optimizer="rmsprop"), ValueError, r"other_optimizer must be one of .*\(got 'rmsprop'\)"),
    (dict(other_lr=-0.1), ValueError, r"other_lr must be a finite number > 0 or None \(got -0.1\)"),
    (dict(seed=-3), ValueError, r"seed must be a non-negative int or None \(got -3\)"),
    (dict(backend="annealo"), UnknownBackendError, r"unknown annealer backend 'annealo'; known backends: neal"),
    (dict(backend=3), TypeError, r"backend must be a backend name \(str\), an AnnealerConfig or a dimod.Sampler \(got int\)"),
    (dict(backend_options={"bogus": 1}), ConfigError, r"unknown option 'bogus' for backend 'neal'; accepted options: "),
    (dict(backend_options={"seed": 1}), ConfigError, r"backend_options must not contain 'seed' \(got seed=1\)"),
    (dict(backend_options=[1]), TypeError, r"backend_options must be a mapping or None \(got \[1\]\)"),
    (dict(layer_options={"fc9": {}}), ValueError, r"layer_options names unknown layer 'fc9'; binary layers: net.0"),
    (dict(layer_options={"net.0": {"momentum": 1}}), ValueError, r"unknown key 'momentum'"),
    (dict(layer_options={"net.0": {"lr": -2}}), ValueError, r"learning rate of layer 'net.0'.*\(got -2\)"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs,exc,match", BAD_CONFIGS)
def test_bad_config(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        QPSBGD(mlp(), **kwargs)


def test_annealer_config_and_run_options() -> None:
    from qsgd.config import AnnealerConfig

    cfg = AnnealerConfig(backend="exact", num_reads=2, seed=3, max_block_vars=4)
    opt = QPSBGD(mlp(), backend=cfg)
    assert (opt.backend_name, opt.base_seed, opt.max_block_vars) == ("exact", 3, 4)
    assert opt.run_options == {"num_reads": 2}  # the seed is derived per step, not passed as is
    X, y = toy_data()
    opt.step(make_closure(opt.model, opt, X, y))
    assert [s["backend"] for s in opt.last_stats] == ["exact"] * 3
    assert QPSBGD(mlp(), backend=cfg, seed=8).base_seed == 8  # the argument wins
    # options the constructor does not take become run options of every solve
    opt = QPSBGD(mlp(), backend="batched", backend_options={"num_reads": 3, "num_sweeps": 7})
    assert opt.run_options == {"num_reads": 3, "num_sweeps": 7}


def test_model_without_binary_layer() -> None:
    with pytest.raises(ValueError, match=r"model has no binary layer"):
        QPSBGD(BinaryMLP(4, [3], 2, binary=False))
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module \(got list\)"):
        QPSBGD([torch.zeros(2, requires_grad=True)])


def test_step_without_capture() -> None:
    model = mlp()
    opt = QPSBGD(model, backend="exact")
    with pytest.raises(
        RuntimeError,
        match=r"layer 'net.0' has no captured inputs: run forward and backward before step\(\)",
    ):
        opt.step()
    model(toy_data()[0])
    with pytest.raises(RuntimeError, match=r"layer 'net.0' has no captured gradient"):
        opt.step()
    X, y = toy_data()
    opt.step(make_closure(model, opt, X, y))
    with pytest.raises(RuntimeError, match=r"no captured inputs"):  # captures are used once
        opt.step()


def test_non_finite_loss_inputs_and_gradients() -> None:
    model = mlp()
    opt = QPSBGD(model, backend="exact")
    X, y = toy_data()
    with pytest.raises(ProblemError, match=r"closure returned a non-finite loss \(got nan\)"):
        opt.step(lambda: torch.tensor(float("nan")))
    Xbad = X.clone()
    Xbad[0, 0] = float("nan")
    F.cross_entropy(model(Xbad), y).backward()
    with pytest.raises(ProblemError, match=r"layer 'net.0': captured inputs contain 1 non-finite"):
        opt.step()
    opt.zero_grad()
    (model(X) * float("inf")).sum().backward()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ProblemError, match=r"captured gradients contain .* non-finite"):
        opt.step()
    # a failed step changes nothing
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True))
    assert opt.step_count == 0


def test_capture_check_accepts_finite_values_whose_sum_overflows() -> None:
    # the check reduces with one sum first; an overflowing sum of finite values is not an error
    model = mlp()
    opt = QPSBGD(model, backend="exact")
    X, y = toy_data()
    F.cross_entropy(model(X), y).backward()
    layer = opt._layers[0]
    layer.captured_inputs = torch.full_like(layer.captured_inputs, 3e38)
    assert not torch.isfinite(layer.captured_inputs.sum())
    got, _ = opt._captured(0)
    assert got is layer.captured_inputs
    layer.captured_inputs[1, 2] = float("inf")
    with pytest.raises(ProblemError, match=r"captured inputs contain 1 non-finite"):
        opt._captured(0)


def test_load_state_dict_rejects_foreign_dict() -> None:
    model = mlp()
    opt = QPSBGD(model)
    plain = torch.optim.SGD(
        [p for _, layer in binary_layers(model) for p in [layer.weight]], lr=0.1
    )
    with pytest.raises(ValueError, match=r"state_dict has no 'qpsbgd' entry"):
        opt.load_state_dict(plain.state_dict())


# --------------------------------------------------------------------------- damping


def test_damping_reaches_layer_ising_and_per_layer_override() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(BinaryLinear(8, 3), nn.Tanh())
    opt = QPSBGD(
        model,
        lr=4.0,
        curvature=0.7,
        curvature_scale="fisher",
        formulation="projected",
        damping=0.5,
        backend="exact",
        seed=0,
    )
    assert opt.param_groups[0]["damping"] == 0.5
    x = torch.randn(3, 8)  # 3 rows < 8 inputs: undamped metric is rank-deficient
    F.mse_loss(model(x), torch.randn(3, 3)).backward()
    layer = model[0]
    Xc = layer.captured_inputs.double().numpy().copy()
    Gc = layer.captured_grad_out.double().numpy().copy()
    W = torch.where(layer.weight.detach() >= 0, 1.0, -1.0)
    opt.step()
    from qsgd.optimizer import fisher_curvature

    batch = layer_ising(
        Xc,
        Gc,
        eta=4.0,
        curvature=fisher_curvature(Gc, 0.7),
        formulation="projected",
        weights=W.double().numpy(),
        damping=0.5,
    )
    best, _ = brute_force(batch)
    assert torch.equal(layer.weight.detach(), torch.as_tensor(best, dtype=torch.float32))
    big = QPSBGD(mlp(), formulation="projected", layer_options={"net.0": {"damping": 10.0}})
    assert [g["damping"] for g in big.param_groups][:2] == [10.0, 0.0]


def test_damping_bad_values() -> None:
    with pytest.raises(ValueError, match=r"damping must be a finite number >= 0 \(got -1\)"):
        QPSBGD(mlp(), damping=-1)
    with pytest.raises(ValueError, match=r"damping of layer 'net.0' must be"):
        QPSBGD(mlp(), layer_options={"net.0": {"damping": float("nan")}})
