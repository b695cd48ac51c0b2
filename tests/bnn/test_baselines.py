"""Tests of bnn.baselines on tiny seeded models with tagged binary parameters."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bnn.baselines import (
    BinaryConnect,
    Bop,
    ProxQuant,
    SignSGD,
    available_optimizers,
    full_precision,
    is_binary_param,
    latent_forward,
    make_optimizer,
    prox_binary,
)
from qsgd.errors import ConfigError


class _SignSTE(torch.autograd.Function):
    """sign with sign(0) = +1 and an identity straight-through gradient."""

    @staticmethod
    def forward(ctx, w):  # noqa: ANN001
        return torch.where(w >= 0, 1.0, -1.0)

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001
        return g


class Tiny(nn.Module):
    """``x @ sign(W).T + b`` with a tagged binary ``W`` and a real ``b``."""

    def __init__(self, d: int = 8, k: int = 2, seed: int = 0, binary: bool = True) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(0.1 * torch.randn(k, d, generator=gen))
        self.weight._bnn_binary = True
        self.bias = nn.Parameter(torch.zeros(k))
        self.binary = binary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = _SignSTE.apply(self.weight) if self.binary else self.weight
        return x @ w.T + self.bias


def _toy(seed: int = 0, n: int = 64, d: int = 8, k: int = 2):
    gen = torch.Generator().manual_seed(seed)
    x = torch.where(torch.rand(n, d, generator=gen) < 0.5, -1.0, 1.0)
    w_true = torch.where(torch.rand(k, d, generator=gen) < 0.5, -1.0, 1.0)
    return x, x @ w_true.T + 0.5, w_true


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model(x), y)


def _train(model, opt, x, y, steps):
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = _loss(model, x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


CONFIGS = [
    ("binaryconnect", {"lr": 0.05}),
    ("binaryconnect", {"lr": 0.5, "inner": "sgd", "inner_options": {"momentum": 0.5}}),
    ("signsgd", {"lr": 0.05}),
    ("signsgd", {"lr": 0.05, "momentum": 0.9}),
    ("proxquant", {"lr": 0.05, "reg_rate": 0.05}),
    ("proxquant", {"lr": 0.05, "reg_rate": 0.01, "reg_schedule": "exponential", "reg_growth": 1.1}),
    ("bop", {"lr": 0.05, "threshold": 1e-3, "gamma": 0.1}),
    ("adam", {"lr": 0.05}),
]


@pytest.mark.parametrize(("name", "options"), CONFIGS)
def test_loss_decreases_on_seeded_toy(name, options):
    x, y, w_true = _toy()
    model = Tiny(binary=name != "adam")
    opt = make_optimizer(name, model, **options)
    initial = _loss(model, x, y).item()
    _train(model, opt, x, y, 60)
    if hasattr(opt, "binarize_"):
        opt.binarize_()
        assert torch.equal(model.weight.abs(), torch.ones_like(model.weight))
    final = _loss(model, x, y).item()
    assert final < 0.5 * initial
    if name != "signsgd" or options.get("momentum"):
        # everything but plain signSGD (whose latent weights oscillate near 0) finds the teacher
        assert torch.equal(torch.where(model.weight >= 0, 1.0, -1.0), w_true)


def test_binaryconnect_clips_latent_weights():
    x, y, _ = _toy()
    model = Tiny()
    opt = BinaryConnect(model, lr=0.3, inner="sgd", clip=0.5)
    hit = False
    for _ in range(10):
        _train(model, opt, x, y, 1)
        assert model.weight.abs().max().item() <= 0.5
        hit = hit or bool((model.weight.abs() == 0.5).any())
    assert hit
    # the real bias is not clipped
    model2 = Tiny()
    opt2 = BinaryConnect(model2, lr=5.0, inner="sgd")
    _train(model2, opt2, x, y, 1)
    assert model2.weight.abs().max().item() <= 1.0
    assert model2.bias.abs().max().item() > 1.0


def test_binaryconnect_sgd_step_is_clipped_gradient_step():
    model = Tiny()
    w0 = model.weight.detach().clone()
    opt = BinaryConnect(model, lr=0.2, inner="sgd")
    x, y, _ = _toy()
    _loss(model, x, y).backward()
    g = model.weight.grad.clone()
    opt.step()
    assert torch.allclose(model.weight, (w0 - 0.2 * g).clamp(-1, 1))


def test_signsgd_step_equals_lr_sign_grad():
    model = Tiny()
    w0 = model.weight.detach().clone()
    opt = SignSGD(model, lr=0.03)
    model.weight.grad = torch.tensor([[0.5, -2.0, 0.0, 1e-8] * 2, [-1.0, 3.0, -1e-9, 0.0] * 2])
    model.bias.grad = torch.zeros(2)
    opt.step()
    sign = torch.sign(model.weight.grad)
    assert torch.allclose(model.weight, w0 - 0.03 * sign, rtol=0, atol=1e-7)
    assert torch.equal(model.weight[sign == 0], w0[sign == 0])
    assert torch.allclose((model.weight - w0).abs()[sign != 0], torch.tensor(0.03), atol=1e-7)


def test_signum_uses_momentum_buffer():
    model = Tiny()
    w0 = model.weight.detach().clone()
    opt = SignSGD(model, lr=0.1, momentum=0.5)
    g1 = torch.ones(2, 8)
    g2 = -3 * torch.ones(2, 8)
    for g in (g1, g2):
        model.weight.grad = g.clone()
        opt.step()
    m1 = 0.5 * g1
    m2 = 0.5 * m1 + 0.5 * g2  # -1.25: the sign flips on step 2
    expected = w0 - 0.1 * torch.sign(m1) - 0.1 * torch.sign(m2)
    assert torch.allclose(model.weight, expected)
    assert torch.allclose(opt.state[model.weight]["momentum_buffer"], m2)


def test_non_binary_params_follow_plain_adam():
    x, y, _ = _toy()
    model = Tiny()
    ref = copy.deepcopy(model)
    opt = SignSGD(model, lr=0.02, inner_options={"betas": (0.8, 0.9)})
    ref_opt = torch.optim.Adam([ref.bias], lr=0.02, betas=(0.8, 0.9))
    for _ in range(5):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            _loss(m, x, y).backward()
        ref.weight.grad = None
        # keep the reference's binary weight on the same trajectory
        opt.step()
        ref_opt.step()
        with torch.no_grad():
            ref.weight.copy_(model.weight)
    assert torch.allclose(model.bias, ref.bias)
    assert opt.inner is not None and len(opt.inner.param_groups[0]["params"]) == 1


def test_scheduler_lr_reaches_inner_optimizer():
    model = Tiny()
    opt = BinaryConnect(model, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, y, _ = _toy()
    _train(model, opt, x, y, 1)
    sched.step()
    _train(model, opt, x, y, 1)
    assert opt.inner.param_groups[0]["lr"] == pytest.approx(0.05)


def test_proxquant_lambda_grows_and_weights_reach_pm1():
    x, y, _ = _toy()
    model = Tiny()
    opt = ProxQuant(model, lr=0.05, reg_rate=0.1)
    lams, dist = [], []
    for _ in range(40):
        _train(model, opt, x, y, 1)
        lams.append(opt.last_stats[0]["reg_lambda"])
        dist.append((model.weight.abs() - 1).abs().max().item())
    # the regulariser grows (the reference code's stays constant): lambda_t = reg_rate * t
    assert lams == pytest.approx([0.1 * t for t in range(1, 41)])
    assert all(b > a for a, b in zip(lams, lams[1:], strict=False))
    # latent weights end exactly on ±1 before any hard binarisation
    assert dist[-1] == 0.0
    assert dist[0] > 0.5


def test_proxquant_schedules_and_cap():
    g = {"reg_rate": 0.5, "reg_schedule": "exponential", "reg_growth": 2.0, "reg_max": None}
    assert ProxQuant.reg_strength(g, 3) == pytest.approx(4.0)
    assert ProxQuant.reg_strength({**g, "reg_max": 1.0}, 3) == 1.0
    lin = {**g, "reg_schedule": "linear"}
    assert ProxQuant.reg_strength(lin, 0) == 0.0 < ProxQuant.reg_strength(lin, 7) == 3.5


def test_prox_binary_is_the_proximal_map():
    """prox(w) minimises 0.5 (u - w)^2 + thr * min(|u - 1|, |u + 1|): check on a fine grid."""
    w = torch.linspace(-2.5, 2.5, 41, dtype=torch.float64)
    u = torch.linspace(-3.5, 3.5, 70001, dtype=torch.float64)
    for thr in (0.0, 0.3, 0.8):
        obj = 0.5 * (u[None, :] - w[:, None]) ** 2 + thr * torch.minimum(
            (u - 1).abs(), (u + 1).abs()
        )
        best = u[obj.argmin(dim=1)]
        p = prox_binary(w, thr)
        # where two minimisers tie (|w| == thr, both signs), compare the objective instead
        val = 0.5 * (p - w) ** 2 + thr * torch.minimum((p - 1).abs(), (p + 1).abs())
        assert torch.allclose(val, obj.min(dim=1).values, atol=1e-8)
        assert torch.allclose(p[w.abs() > thr + 1e-9], best[w.abs() > thr + 1e-9], atol=2e-4)
    assert prox_binary(torch.tensor([0.0]), 5.0).item() == 1.0


@pytest.mark.parametrize(("name", "options"), CONFIGS[:-1])
def test_flip_ratio_counts_sign_changes(name, options):
    x, y, _ = _toy()
    model = Tiny()
    opt = make_optimizer(name, model, **options)
    before = model.weight.detach() >= 0
    _train(model, opt, x, y, 1)
    flipped = int(((model.weight.detach() >= 0) != before).sum())
    assert flipped > 0
    (record,) = opt.last_stats
    assert record["layer"] == "weight" and record["step"] == 1 and not record["skipped"]
    assert record["num_flipped"] == flipped and record["variables"] == 16
    assert record["flip_ratio"] == pytest.approx(flipped / 16)
    assert opt.last_flip_ratio == pytest.approx(flipped / 16)
    assert record["wall_time"] >= 0.0


@pytest.mark.parametrize(("name", "options"), CONFIGS)
def test_state_dict_round_trip_reproduces_trajectory(name, options):
    x, y, _ = _toy()
    model = Tiny(binary=name != "adam")
    opt = make_optimizer(name, model, **options)
    _train(model, opt, x, y, 5)
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    _train(model, opt, x, y, 6)

    resumed = Tiny(binary=name != "adam")
    resumed.load_state_dict(saved_model)
    opt2 = make_optimizer(name, resumed, **options)
    opt2.load_state_dict(saved_opt)
    _train(resumed, opt2, x, y, 6)
    assert torch.equal(resumed.weight, model.weight)
    assert torch.equal(resumed.bias, model.bias)

    # without the optimiser state the trajectory differs (Adam moments, step counts, momentum)
    fresh = Tiny(binary=name != "adam")
    fresh.load_state_dict(saved_model)
    _train(fresh, make_optimizer(name, fresh, **options), x, y, 6)
    if not (name == "signsgd" and not options.get("momentum")):  # plain signSGD: stateless
        assert not (torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias))


def test_all_binary_model_has_no_inner_for_signsgd():
    model = Tiny()
    model.bias.requires_grad_(False)
    opt = SignSGD([model.weight], lr=0.1)
    assert opt.inner is None
    x, y, _ = _toy()
    _train(model, opt, x, y, 2)
    assert set(opt.state_dict()) >= {"state", "param_groups", "inner"}


def test_add_param_group_reaches_inner():
    model = Tiny()
    extra = nn.Parameter(torch.ones(3))
    opt = SignSGD([model.weight], lr=0.1)
    opt.add_param_group({"params": [model.bias, extra], "lr": 0.01})
    assert opt.inner is not None and opt.inner.param_groups[0]["params"][1] is extra
    extra.grad = torch.ones(3)
    model.bias.grad = torch.ones(2)
    model.weight.grad = torch.ones(2, 8)
    opt.step()
    assert torch.allclose(extra, torch.full((3,), 0.99))


def test_binarize_gives_exact_pm1_and_leaves_real_params():
    model = Tiny()
    with torch.no_grad():
        model.weight[0, 0] = 0.0
        model.bias.fill_(0.3)
    opt = ProxQuant(model, lr=0.1)
    opt.binarize_()
    assert set(model.weight.flatten().tolist()) <= {-1.0, 1.0}
    assert model.weight[0, 0].item() == 1.0
    assert torch.equal(model.bias, torch.full((2,), 0.3))


def test_nan_gradient_is_reported():
    model = Tiny()
    opt = BinaryConnect(model, lr=0.1)
    model.weight.grad = torch.full((2, 8), float("nan"))
    with pytest.raises(ValueError, match=r"binary parameter of shape \(2, 8\) is not finite"):
        opt.step()


def test_closure_loss_is_returned():
    x, y, _ = _toy()
    model = Tiny()
    opt = SignSGD(model, lr=0.01)

    def closure():
        opt.zero_grad()
        loss = _loss(model, x, y)
        loss.backward()
        return loss

    before = _loss(model, x, y).item()
    loss = opt.step(closure)
    assert loss is not None and loss.item() == before
    assert _loss(model, x, y).item() != before
    assert model.weight.grad is not None


BAD = [
    (BinaryConnect, {"lr": 0}, r"lr must be a positive float \(got 0\)"),
    (BinaryConnect, {"lr": -1.0}, r"lr must be a positive float \(got -1.0\)"),
    (BinaryConnect, {"lr": True}, r"lr must be a positive float \(got True\)"),
    (BinaryConnect, {"clip": 0.0}, r"clip must be a positive float \(got 0.0\)"),
    (
        BinaryConnect,
        {"inner": "rmsprop"},
        r"inner must be one of \['adam', 'sgd'\] \(got 'rmsprop'\)",
    ),
    (BinaryConnect, {"inner_options": {"nesterov": 3}}, "inner_options .* rejected by adam"),
    (BinaryConnect, {"inner_options": [1]}, r"inner_options must be a dict or None \(got \[1\]\)"),
    (SignSGD, {"momentum": 1.0}, r"momentum must be a float in \[0, 1\) \(got 1.0\)"),
    (SignSGD, {"momentum": -0.1}, r"momentum must be a float in \[0, 1\)"),
    (SignSGD, {"clip": -1}, r"clip must be a positive float or None \(got -1\)"),
    (ProxQuant, {"reg_rate": 0}, r"reg_rate must be a positive float \(got 0\)"),
    (
        ProxQuant,
        {"reg_schedule": "constant"},
        r"reg_schedule must be one of \['linear', 'exponential'\]",
    ),
    (ProxQuant, {"reg_growth": 1.0}, r"reg_growth must be a float > 1 \(got 1.0\)"),
    (ProxQuant, {"reg_max": 0}, r"reg_max must be a positive float or None \(got 0\)"),
    (Bop, {"threshold": -1e-3}, r"threshold must be a float >= 0 \(got -0.001\)"),
    (Bop, {"gamma": 0.0}, r"gamma must be a float in \(0, 1\] \(got 0.0\)"),
    (Bop, {"gamma": 1.5}, r"gamma must be a float in \(0, 1\] \(got 1.5\)"),
]


@pytest.mark.parametrize(("cls", "kwargs", "match"), BAD)
def test_bad_options(cls, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        cls(Tiny(), **kwargs)


def test_factory_names_and_errors():
    assert available_optimizers() == [
        "adam",
        "binaryconnect",
        "bop",
        "proxquant",
        "qpsbgd",
        "signsgd",
    ]
    with pytest.raises(ConfigError, match=r"unknown optimizer 'lamb'; known optimizers: \['adam'"):
        make_optimizer("lamb", Tiny())
    with pytest.raises(ConfigError, match="'qpsbgd' needs the model"):
        make_optimizer("qpsbgd", list(Tiny().parameters()))
    with pytest.raises(ConfigError, match="lr must be a positive float"):
        full_precision(Tiny(), lr=-1)
    assert isinstance(make_optimizer("adam", Tiny(), lr=0.1), torch.optim.Adam)
    assert isinstance(make_optimizer("SignSGD", Tiny().parameters()), SignSGD)
    assert is_binary_param(Tiny().weight) and not is_binary_param(Tiny().bias)


def test_with_bnn_layers_weights_exactly_pm1():
    models = pytest.importorskip("bnn.models")
    torch.manual_seed(0)
    x, _, _ = _toy(n=32)
    labels = (x[:, 0] * x[:, 1] > 0).long()
    for name, options in CONFIGS[:-1]:
        model = models.BinaryMLP(8, [6], 2)
        opt = make_optimizer(name, model, **options)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), labels).backward()
            opt.step()
        assert [s["layer"] for s in opt.last_stats] == ["net.0", "net.3"]
        assert [s["variables"] for s in opt.last_stats] == [8 * 6, 6 * 2]
        assert all(0.0 <= s["flip_ratio"] <= 1.0 for s in opt.last_stats)
        opt.binarize_()
        binary = [p for p in model.parameters() if is_binary_param(p)]
        assert len(binary) == 2
        assert all(set(p.flatten().tolist()) <= {-1.0, 1.0} for p in binary)


def test_factory_builds_qpsbgd_from_the_model():
    models = pytest.importorskip("bnn.models")
    qopt = pytest.importorskip("qsgd.optimizer")
    model = models.BinaryMLP(4, [3], 2)
    opt = make_optimizer("qpsbgd", model, lr=0.1, backend="exact")
    assert isinstance(opt, qopt.QPSBGD)


def test_latent_forward_switches_binary_layers_and_restores():
    x, y, _ = _toy()
    model = Tiny()
    with torch.no_grad():
        model.weight.mul_(0.1)
    binary_out = model(x)
    with latent_forward(model) as switched:
        assert switched == [model] and model.binary is False
        assert torch.allclose(model(x), x @ model.weight.T + model.bias)
    assert model.binary is True and torch.equal(model(x), binary_out)
    with pytest.raises(RuntimeError), latent_forward(model):
        raise RuntimeError("restored even on error")
    assert model.binary is True
    models = pytest.importorskip("bnn.models")
    mlp = models.BinaryMLP(8, [6], 2)
    mlp.eval()
    with latent_forward(mlp) as switched:
        assert len(switched) == 2
        real_out = mlp(x)
    assert not torch.equal(real_out, mlp(x))


def test_proxquant_paper_mode_on_latent_forward():
    x, y, w_true = _toy()
    model = Tiny()
    opt = ProxQuant(model, lr=0.05, reg_rate=0.05)
    initial = _loss(model, x, y).item()
    with latent_forward(model):
        _train(model, opt, x, y, 80)
    opt.binarize_()
    assert _loss(model, x, y).item() < 0.1 * initial
    assert torch.equal(model.weight, w_true)


def test_stats_per_layer_with_skipped_and_unnamed_params():
    a = nn.Parameter(torch.tensor([0.5, -0.5]))
    b = nn.Parameter(torch.tensor([0.1]))
    a._bnn_binary = b._bnn_binary = True
    opt = SignSGD([a, b], lr=0.6)
    a.grad = torch.tensor([1.0, 1.0])
    opt.step()
    first, second = opt.last_stats
    assert (first["layer"], second["layer"]) == ("param0", "param1")
    assert first["num_flipped"] == 1 and first["flip_ratio"] == 0.5 and first["step"] == 1
    assert second["skipped"] and second["step"] == 0 and second["num_flipped"] == 0
    assert opt.last_flip_ratio == 0.5


# -- the papers' update rules, step by step on tiny cases -----------------------------------


def test_proxquant_is_algorithm_1_of_bai_wang_liberty():
    """theta_{t+1} = prox_{eta lambda_t R}(theta_t - eta grad L(theta_t)), gradient at the real
    theta (latent forward pass), lambda_t = reg_rate * t, SGD as the inner rule; then sign."""
    x, y, _ = _toy(n=16, d=4, k=1)
    model = Tiny(d=4, k=1, seed=3)
    opt = ProxQuant(model, lr=0.1, reg_rate=0.5, inner="sgd")
    theta = model.weight.detach().clone().double()
    bias = model.bias.detach().clone().double()
    xd, yd = x.double(), y.double()
    for t in range(1, 6):
        # by hand: the MSE gradient at the real weights
        r = xd @ theta.T + bias - yd
        g_theta = 2 * r.T @ xd / r.numel()
        g_bias = 2 * r.sum(0) / r.numel()
        z = theta - 0.1 * g_theta
        thr = 0.1 * 0.5 * t
        s = torch.where(z >= 0, 1.0, -1.0).double()
        theta = s + torch.sign(z - s) * torch.clamp((z - s).abs() - thr, min=0.0)
        bias = bias - 0.1 * g_bias
        with latent_forward(model):
            _train(model, opt, x, y, 1)
        assert opt.last_stats[0]["reg_lambda"] == pytest.approx(0.5 * t)
        torch.testing.assert_close(model.weight.detach().double(), theta, atol=1e-6, rtol=0)
        torch.testing.assert_close(model.bias.detach().double(), bias, atol=1e-6, rtol=0)
    opt.binarize_()
    assert torch.equal(model.weight.detach(), torch.where(theta >= 0, 1.0, -1.0).float())


def test_bop_is_algorithm_1_of_helwegen_et_al():
    """m_t = (1-gamma) m + gamma g; flip w where |m_t| > tau and sign(m_t) == sign(w)."""
    w = nn.Parameter(torch.tensor([0.3, -0.2, 0.7, -0.9, 0.0]))
    w._bnn_binary = True
    opt = Bop([w], lr=0.1, threshold=0.25, gamma=0.5)
    grads = [
        torch.tensor([1.0, 1.0, -1.0, -0.2, 0.4]),
        torch.tensor([0.2, -1.0, -1.0, -1.0, 1.0]),
        torch.tensor([-2.0, 0.0, 0.0, -1.0, 1.0]),
    ]
    w_ref = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0])  # binarised on the first step
    m_ref = torch.zeros(5)
    flips = []
    for g in grads:
        m_ref = 0.5 * m_ref + 0.5 * g
        flip = (m_ref.abs() > 0.25) & (torch.sign(m_ref) == torch.sign(w_ref))
        w_ref = torch.where(flip, -w_ref, w_ref)
        w.grad = g.clone()
        opt.step()
        assert torch.equal(w.detach(), w_ref)
        assert torch.equal(opt.state[w]["exp_avg"], m_ref)
        flips.append(int(flip.sum()))
        assert opt.last_stats[0]["num_flipped"] == flips[-1]
    # by hand: step 1 flips w0 (m=.5, w=+1); step 2 flips w3 (m=-.55, w=-1) and w4 (m=.6,
    # w=+1), not w1 (|m| = .25 is not above tau); step 3 flips w0 again (m=-.825, w=-1)
    assert flips == [1, 2, 1]
    assert set(w.detach().tolist()) <= {-1.0, 1.0}


def test_bop_keeps_weights_exactly_pm1_and_leaves_real_params_to_inner():
    x, y, _ = _toy()
    model = Tiny()
    opt = Bop(model, lr=0.05, threshold=1e-3, gamma=0.1)
    b0 = model.bias.detach().clone()
    _train(model, opt, x, y, 5)
    assert set(model.weight.detach().flatten().tolist()) <= {-1.0, 1.0}
    assert not torch.equal(model.bias.detach(), b0)
    assert opt.inner is not None
    assert all(not is_binary_param(p) for g in opt.inner.param_groups for p in g["params"])


def test_proxquant_trains_on_latent_weights_in_the_training_loop():
    """fit() runs ProxQuant's training forward passes on the real weights (the paper's mode);
    evaluation sees the hard-binarised network. latent=False is BinaryConnect plus the prox."""
    from bnn.data import get_dataset
    from bnn.models import BinaryMLP
    from bnn.training import _train_step

    ds = get_dataset("breast_cancer", seed=0, spins=True)
    torch.manual_seed(0)
    model = BinaryMLP(ds.num_features, [8], ds.num_classes)
    x, y = ds.x_train[:16], ds.y_train[:16]
    with torch.no_grad():  # latent weights well inside (-1, 1), so sign and real forward differ
        for p in model.parameters():
            if is_binary_param(p):
                p.mul_(0.3)

    class _Data:
        def forward_train(self, m, index):
            return m(x[index]), y[index]

    seen = []
    hook = model.net[0].register_forward_hook(lambda m, i, o: seen.append(m.binary))
    for latent, expected in ((True, False), (False, True)):
        seen.clear()
        opt = ProxQuant(model, lr=0.01, reg_rate=0.01, latent=latent)
        assert opt.trains_latent is latent
        _train_step(model, opt, _Data(), slice(0, 16), nn.functional.cross_entropy, {}, [])
        assert seen == [expected]
    hook.remove()
    assert model.net[0].binary is True  # switched back for evaluation
    with pytest.raises(ConfigError, match=r"latent must be True or False \(got 1\)"):
        ProxQuant(model, latent=1)
