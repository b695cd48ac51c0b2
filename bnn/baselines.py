"""Baseline optimisers for binary networks: BinaryConnect, signSGD, ProxQuant, Bop, full precision.

Each baseline is a :class:`torch.optim.Optimizer` over *all* parameters of a model. Binary
parameters are recognised by the tag ``p._bnn_binary = True`` (set by the binary layers,
which binarise with ``sign(w)``, ``sign(0) = +1``, in the forward pass); they receive the
method's binary rule. Every other parameter (biases, batch-norm, full-precision first/last
layers) is updated by a standard inner optimiser (``"adam"`` by default, or ``"sgd"``).

The split into a binary rule and an inner optimiser is
:class:`qsgd.binary_optim.BinaryCaseOptimizer`, the base QP-SBGD shares: the inner optimiser
is ``opt.inner`` (``opt.inner_name``), its state is ``state_dict()["inner"]``. Every step
records ``last_stats``, one dict per binary parameter ("layer") with the keys of QP-SBGD's
per-layer record where they apply (``layer``, ``step``, ``variables``, ``num_weights``,
``num_flipped``, ``flip_ratio``, ``wall_time``, ``skipped``), so that logs compare;
``flip_ratio`` is :func:`qsgd.binary_optim.flip_ratio`, the fraction of that layer's binary
weights whose sign (``sign(0) = +1``) changed in the step, and ``wall_time`` the seconds of its
update (its binary rule, plus its share by size of the inner step where the inner optimiser
moves the latent weights). ``last_flip_ratio`` is the flip fraction over all binary weights.

Example:
    >>> model = torch.nn.Linear(3, 1)
    >>> model.weight._bnn_binary = True
    >>> opt = make_optimizer("binaryconnect", model, lr=0.01)
    >>> model(torch.ones(2, 3)).sum().backward()
    >>> _ = opt.step()
    >>> [s["layer"] for s in opt.last_stats], opt.last_stats[0]["variables"]
    (['weight'], 3)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from numbers import Real
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from qsgd.binary import is_binary_param
from qsgd.binary_optim import (
    INNER_OPTIMIZERS,
    BinaryCaseOptimizer,
    count_flips,
    flip_ratio,
    make_inner,
)
from qsgd.errors import ConfigError

__all__ = [
    "is_binary_param",
    "BinaryConnect",
    "SignSGD",
    "ProxQuant",
    "Bop",
    "full_precision",
    "latent_forward",
    "prox_binary",
    "make_optimizer",
    "available_optimizers",
]

ParamsT = Iterable[torch.Tensor] | Iterable[dict[str, Any]] | nn.Module


def _check_lr(lr: Any) -> float:
    if isinstance(lr, bool) or not isinstance(lr, Real) or not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a positive float (got {lr!r})")
    return float(lr)


def _layer_name(param_name: str) -> str:
    """``"net.0.weight"`` -> ``"net.0"`` (the module name QP-SBGD uses); ``"weight"`` stays."""
    head, _, tail = param_name.rpartition(".")
    return head if head and tail == "weight" else param_name


def _spin(t: torch.Tensor) -> torch.Tensor:
    """Boolean sign with ``sign(0) = +1``: True where ``t >= 0``."""
    return t >= 0


def prox_binary(w: torch.Tensor, threshold: float) -> torch.Tensor:
    """Proximal map of ``threshold * R`` with the W-shaped ``R(w) = sum min(|w - 1|, |w + 1|)``.

    Soft-thresholds every entry towards the nearer of ``±1`` (``0`` goes towards ``+1``)::

        prox(w) = s + sign(w - s) * max(|w - s| - threshold, 0),   s = sign(w)

    Shape:
        w: any shape; returns the same shape.

    Example:
        >>> prox_binary(torch.tensor([0.25, -0.5, 1.75]), 0.25).tolist()
        [0.5, -0.75, 1.5]
    """
    s = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
    d = w - s
    return s + torch.sign(d) * torch.clamp(d.abs() - threshold, min=0.0)


class _BinaryCaseOptimizer(BinaryCaseOptimizer):
    """Base of the baselines: :class:`qsgd.binary_optim.BinaryCaseOptimizer` over *all* params.

    The param groups hold every parameter; the inner optimiser (``inner``, ``"adam"`` or
    ``"sgd"``) mirrors them, with the non-binary parameters only, or with the binary ones too
    when ``_inner_takes_binary`` (the binary rule is "inner step, then a post-processing of the
    binary weights", as in BinaryConnect and ProxQuant). Its learning rate follows the group's
    ``lr`` (so schedulers work); its state travels in :meth:`state_dict` under ``"inner"``.
    Subclasses implement :meth:`_binary_update`.
    """

    _inner_takes_binary: bool = False

    def __init__(
        self,
        params: ParamsT,
        defaults: dict[str, Any],
        inner: str,
        inner_options: dict[str, Any] | None,
    ) -> None:
        names: dict[int, str] = {}
        if isinstance(params, nn.Module):
            names = {id(p): _layer_name(n) for n, p in params.named_parameters()}
            params = params.parameters()
        make_inner(inner, [], inner_options)  # validate the name and options first
        if inner is None:
            raise ConfigError(f"inner must be one of {sorted(INNER_OPTIMIZERS)} (got None)")
        super().__init__(params, defaults)
        binary = self.binary_params()
        self._names = {id(p): names.get(id(p), f"param{i}") for i, p in enumerate(binary)}
        groups, self._inner_index = [], []
        for g in self.param_groups:
            ps = [p for p in g["params"] if self._inner_takes_binary or not is_binary_param(p)]
            self._inner_index.append(len(groups) if ps else None)
            if ps:
                groups.append({"params": ps, "lr": g["lr"]})
        self._set_inner(inner, groups, inner_options)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if not hasattr(self, "_inner_index"):
            return  # still in __init__: the inner optimiser is built from all groups afterwards
        g = self.param_groups[-1]
        for p in g["params"]:
            if is_binary_param(p) and id(p) not in self._names:
                self._names[id(p)] = f"param{len(self._names)}"
        ps = [p for p in g["params"] if self._inner_takes_binary or not is_binary_param(p)]
        if not ps:
            self._inner_index.append(None)
        elif self.inner is None:
            self.inner = make_inner(
                self.inner_name, [{"params": ps, "lr": g["lr"]}], self.inner_options
            )
            self._inner_index.append(0)
        else:
            self.inner.add_param_group({"params": ps, "lr": g["lr"]})
            self._inner_index.append(len(self.inner.param_groups) - 1)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update; ``closure`` re-evaluates the loss (returned)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        binary = [(g, p) for g in self.param_groups for p in g["params"] if is_binary_param(p)]
        for _, p in binary:
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                raise ValueError(
                    f"gradient of a binary parameter of shape {tuple(p.shape)} is not finite "
                    "(NaN/inf loss?)"
                )
        before = [_spin(p) for _, p in binary]
        t0 = time.perf_counter()
        if self.inner is not None:
            for g, idx in zip(self.param_groups, self._inner_index, strict=True):
                if idx is not None:
                    self.inner.param_groups[idx]["lr"] = g["lr"]
            self.inner.step()
        inner_time = time.perf_counter() - t0
        records: list[dict[str, Any]] = []
        for (g, p), b in zip(binary, before, strict=True):
            state = self.state[p]
            record: dict[str, Any] = {
                "layer": self._names.get(id(p), f"param{len(self._names)}"),
                "step": int(state["step"]) if "step" in state else 0,
                "variables": p.numel(),
                "num_weights": p.numel(),
                "flip_ratio": 0.0,
                "num_flipped": 0,
                "wall_time": 0.0,
                "optimizer": type(self).__name__,
                "skipped": p.grad is None,
            }
            if p.grad is not None:
                t1 = time.perf_counter()
                if "step" not in state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                state["step"] += 1
                record.update(self._binary_update(g, p, state) or {})
                record.update(
                    step=int(state["step"]),
                    num_flipped=count_flips(b, p),
                    flip_ratio=flip_ratio(b, p),
                    wall_time=time.perf_counter() - t1,
                )
            records.append(record)
        total = sum(r["variables"] for r in records if not r["skipped"])
        if total and self._inner_takes_binary:
            for r in records:  # the latent update itself ran inside the inner step
                if not r["skipped"]:
                    r["wall_time"] += inner_time * r["variables"] / total
        self._finish_step(records)
        return loss

    def _binary_update(
        self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]
    ) -> dict[str, Any] | None:
        raise NotImplementedError

    @torch.no_grad()
    def binarize_(self) -> None:
        """Hard-binarise every binary parameter in place: ``w <- sign(w)``, ``sign(0) = +1``."""
        for g in self.param_groups:
            for p in g["params"]:
                if is_binary_param(p):
                    p.copy_(torch.where(p >= 0, 1.0, -1.0).to(p.dtype))


class BinaryConnect(_BinaryCaseOptimizer):
    """BinaryConnect (Courbariaux, Bengio & David, NeurIPS 2015).

    The forward pass uses ``w_b = sign(w)``; the gradient of the loss w.r.t. ``w_b`` (passed
    to the latent real weights ``w`` by the straight-through estimator of the layer) updates
    ``w``, which is then clipped (Algorithm 1 of the paper)::

        w_{t+1} = clip(w_t - eta * u(dC/dw_b), -clip, clip)

    where ``u`` is the inner rule: plain SGD (``u(g) = g``) or Adam, as in the paper's
    experiments. The inner optimiser also updates the non-binary parameters.

    Args:
        params: Model parameters (or a module, or param groups).
        lr: Learning rate ``eta`` (> 0).
        inner: ``"adam"`` or ``"sgd"``.
        clip: Clip bound for the latent weights (> 0), ``1.0`` in the paper.
        inner_options: Extra keyword arguments of the inner optimiser (``betas``, ``momentum``, ...).
    """

    _inner_takes_binary = True

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        *,
        inner: str = "adam",
        clip: float = 1.0,
        inner_options: dict[str, Any] | None = None,
    ) -> None:
        lr = _check_lr(lr)
        if isinstance(clip, bool) or not isinstance(clip, Real) or not clip > 0:
            raise ConfigError(f"clip must be a positive float (got {clip!r})")
        super().__init__(params, {"lr": lr, "clip": float(clip)}, inner, inner_options)

    def _binary_update(
        self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]
    ) -> dict[str, Any]:
        p.clamp_(-group["clip"], group["clip"])
        return {}


class SignSGD(_BinaryCaseOptimizer):
    """signSGD / Signum (Bernstein, Wang, Azizzadenesheli & Anandkumar, ICML 2018).

    On the latent real weights ``w`` of the binary parameters (the layer binarises them in the
    forward pass)::

        signSGD:  w_{t+1} = w_t - eta * sign(g_t)
        Signum:   m_t = beta * m_{t-1} + (1 - beta) * g_t,   w_{t+1} = w_t - eta * sign(m_t)

    with ``torch.sign`` (``sign(0) = 0``: a zero gradient leaves the weight unchanged) and
    ``m_0 = 0``. Non-binary parameters go to the inner optimiser.

    Args:
        params: Model parameters (or a module, or param groups).
        lr: Step size ``eta`` (> 0).
        momentum: ``beta`` in ``[0, 1)``; 0 is plain signSGD.
        clip: Optional clip bound of the latent weights (``None``: no clipping, as in the paper).
        inner: Optimiser of the non-binary parameters, ``"adam"`` or ``"sgd"``.
        inner_options: Extra keyword arguments of the inner optimiser.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0.0,
        *,
        clip: float | None = None,
        inner: str = "adam",
        inner_options: dict[str, Any] | None = None,
    ) -> None:
        lr = _check_lr(lr)
        if isinstance(momentum, bool) or not isinstance(momentum, Real) or not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be a float in [0, 1) (got {momentum!r})")
        if clip is not None and (
            isinstance(clip, bool) or not isinstance(clip, Real) or not clip > 0
        ):
            raise ConfigError(f"clip must be a positive float or None (got {clip!r})")
        defaults = {"lr": lr, "momentum": float(momentum), "clip": clip}
        super().__init__(params, defaults, inner, inner_options)

    def _binary_update(
        self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]
    ) -> dict[str, Any]:
        g = p.grad
        beta = group["momentum"]
        if beta > 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.mul_(beta).add_(g, alpha=1 - beta)
            g = buf
        p.add_(torch.sign(g), alpha=-group["lr"])
        if group["clip"] is not None:
            p.clamp_(-group["clip"], group["clip"])
        return {}


_SCHEDULES = ("linear", "exponential")


class ProxQuant(_BinaryCaseOptimizer):
    """ProxQuant (Bai, Wang & Liberty, ICLR 2019) with the binary W-shaped regulariser.

    Algorithm 1 of the paper, a proximal gradient step with an increasing regularisation
    strength ``lambda_t``::

        w_{t+1} = prox_{eta * lambda_t * R}(w_t - eta * u(grad L(w_t))),
        R(w) = sum_i min(|w_i - 1|, |w_i + 1|)

    where the prox soft-thresholds each entry towards the nearer of ``±1`` by
    ``eta * lambda_t`` (:func:`prox_binary`) and ``u`` is the inner rule (Adam in the
    paper's experiments, or SGD). The strength grows with the step count ``t``:

    * ``"linear"``: ``lambda_t = reg_rate * t`` (the paper's schedule);
    * ``"exponential"``: ``lambda_t = reg_rate * reg_growth ** t``;

    capped at ``reg_max`` if given. (The reference QP-SBGD code keeps it constant; this class
    does not allow that.) Call :meth:`binarize_` at the end of training for the paper's final
    hard quantisation. The paper evaluates the loss and its gradient at the real ``w`` during
    training: with ``latent=True`` (the default) :attr:`trains_latent` tells the training loop
    (:func:`bnn.training.fit`) to run every training forward pass inside
    :func:`latent_forward`, while evaluation runs the hard-binarised network ``sign(w)``. With
    ``latent=False`` the forward pass binarises and the gradient is the straight-through one
    (BinaryConnect plus the prox step).

    Args:
        params: Model parameters (or a module, or param groups).
        lr: Step size ``eta`` (> 0).
        reg_rate: ``lambda`` growth rate (> 0).
        reg_schedule: ``"linear"`` or ``"exponential"``.
        reg_growth: Factor (> 1) of the exponential schedule.
        reg_max: Optional cap of ``lambda_t`` (> 0).
        latent: Train on the latent real weights (the paper's ProxQuant); ``False`` trains
            with the binarised forward pass.
        inner: ``"adam"`` or ``"sgd"``; also updates the non-binary parameters.
        inner_options: Extra keyword arguments of the inner optimiser.
    """

    _inner_takes_binary = True

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        *,
        reg_rate: float = 1e-2,
        reg_schedule: str = "linear",
        reg_growth: float = 1.01,
        reg_max: float | None = None,
        latent: bool = True,
        inner: str = "adam",
        inner_options: dict[str, Any] | None = None,
    ) -> None:
        lr = _check_lr(lr)
        if not isinstance(latent, bool):
            raise ConfigError(f"latent must be True or False (got {latent!r})")
        self.trains_latent = latent
        if isinstance(reg_rate, bool) or not isinstance(reg_rate, Real) or not reg_rate > 0:
            raise ConfigError(f"reg_rate must be a positive float (got {reg_rate!r})")
        if reg_schedule not in _SCHEDULES:
            raise ConfigError(
                f"reg_schedule must be one of {list(_SCHEDULES)} (got {reg_schedule!r})"
            )
        if isinstance(reg_growth, bool) or not isinstance(reg_growth, Real) or not reg_growth > 1:
            raise ConfigError(f"reg_growth must be a float > 1 (got {reg_growth!r})")
        if reg_max is not None and (
            isinstance(reg_max, bool) or not isinstance(reg_max, Real) or not reg_max > 0
        ):
            raise ConfigError(f"reg_max must be a positive float or None (got {reg_max!r})")
        defaults = {
            "lr": lr,
            "reg_rate": float(reg_rate),
            "reg_schedule": reg_schedule,
            "reg_growth": float(reg_growth),
            "reg_max": None if reg_max is None else float(reg_max),
        }
        super().__init__(params, defaults, inner, inner_options)

    @staticmethod
    def reg_strength(group: dict[str, Any], t: int | float) -> float:
        """``lambda_t`` of a param group after ``t`` steps."""
        if group["reg_schedule"] == "linear":
            lam = group["reg_rate"] * t
        else:
            lam = group["reg_rate"] * group["reg_growth"] ** t
        if group["reg_max"] is not None:
            lam = min(lam, group["reg_max"])
        return float(lam)

    def _binary_update(
        self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]
    ) -> dict[str, Any]:
        lam = self.reg_strength(group, float(state["step"]))
        p.copy_(prox_binary(p, group["lr"] * lam))
        return {"reg_lambda": lam}


class Bop(_BinaryCaseOptimizer):
    """Bop, the latent-free binary optimiser (Helwegen et al., NeurIPS 2019; ``larq``'s ``Bop``).

    Binary weights are kept at exactly ``±1`` (they are binarised on their first step) and have
    no latent real value. Each keeps an exponential moving average of its gradient and flips
    when that average is strong enough and points the same way as the weight (Algorithm 1 of
    the paper)::

        m_t = (1 - gamma) * m_{t-1} + gamma * g_t,            m_0 = 0
        w_t = -w_{t-1}  if |m_t| > threshold and sign(m_t) = sign(w_{t-1}),  else w_{t-1}

    ``gamma`` (the adaptivity rate) and ``threshold`` play the role of the binary step size.
    Non-binary parameters go to the inner optimiser with learning rate ``lr``.

    Args:
        params: Model parameters (or a module, or param groups).
        lr: Learning rate of the inner optimiser (non-binary parameters only).
        threshold: Flip threshold ``tau`` (>= 0).
        gamma: Adaptivity rate in ``(0, 1]``.
        inner: ``"adam"`` or ``"sgd"``.
        inner_options: Extra keyword arguments of the inner optimiser.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        *,
        threshold: float = 1e-8,
        gamma: float = 1e-4,
        inner: str = "adam",
        inner_options: dict[str, Any] | None = None,
    ) -> None:
        lr = _check_lr(lr)
        if isinstance(threshold, bool) or not isinstance(threshold, Real) or not threshold >= 0:
            raise ConfigError(f"threshold must be a float >= 0 (got {threshold!r})")
        if isinstance(gamma, bool) or not isinstance(gamma, Real) or not 0 < gamma <= 1:
            raise ConfigError(f"gamma must be a float in (0, 1] (got {gamma!r})")
        defaults = {"lr": lr, "threshold": float(threshold), "gamma": float(gamma)}
        super().__init__(params, defaults, inner, inner_options)

    def _binary_update(
        self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]
    ) -> dict[str, Any]:
        if "exp_avg" not in state:
            p.copy_(torch.where(p >= 0, 1.0, -1.0).to(p.dtype))  # sign(0) = +1, as the layers
            state["exp_avg"] = torch.zeros_like(p)
        m = state["exp_avg"]
        m.mul_(1 - group["gamma"]).add_(p.grad, alpha=group["gamma"])
        flip = (m.abs() > group["threshold"]) & (torch.sign(m) == torch.sign(p))
        p.mul_(torch.where(flip, -1.0, 1.0).to(p.dtype))
        return {}


@contextmanager
def latent_forward(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Temporarily run binary layers on their latent real weights (ProxQuant's training mode).

    Every submodule that owns a tagged binary ``weight`` and a boolean ``binary`` attribute
    (the convention of :mod:`bnn.layers`) gets ``binary = False`` inside the block and its
    previous value back on exit; the tags stay, so the optimiser still treats the weights as
    binary. Yields the switched modules.

    Example:
        >>> lin = torch.nn.Linear(2, 1)
        >>> lin.weight._bnn_binary, lin.binary = True, True
        >>> with latent_forward(lin) as switched:
        ...     lin.binary, len(switched)
        (False, 1)
        >>> lin.binary
        True
    """
    switched = [
        m
        for m in model.modules()
        if isinstance(getattr(m, "binary", None), bool)
        and isinstance(getattr(m, "weight", None), torch.Tensor)
        and is_binary_param(m.weight)
        and m.binary
    ]
    for m in switched:
        m.binary = False
    try:
        yield switched
    finally:
        for m in switched:
            m.binary = True


def full_precision(params: ParamsT, lr: float = 1e-3, **adam_options: Any) -> torch.optim.Adam:
    """The full-precision reference: plain Adam (Kingma & Ba 2015) over all parameters.

    Use it with the same architecture in real-weight mode; binary tags are ignored.
    """
    if isinstance(params, nn.Module):
        params = params.parameters()
    return torch.optim.Adam(params, lr=_check_lr(lr), **adam_options)


def _make_qpsbgd(model: Any, **options: Any) -> Optimizer:
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"optimizer 'qpsbgd' needs the model (an nn.Module) to hook its layers "
            f"(got {type(model).__name__})"
        )
    from qsgd.optimizer import QPSBGD

    return QPSBGD(model, **options)


_FACTORY: dict[str, Callable[..., Optimizer]] = {
    "binaryconnect": BinaryConnect,
    "signsgd": SignSGD,
    "proxquant": ProxQuant,
    "bop": Bop,
    "adam": full_precision,
    "qpsbgd": _make_qpsbgd,
}


def available_optimizers() -> list[str]:
    """Names accepted by :func:`make_optimizer`."""
    return sorted(_FACTORY)


def make_optimizer(name: str, model_or_params: ParamsT, **options: Any) -> Optimizer:
    """Build an optimiser by name: ``"binaryconnect"``, ``"signsgd"``, ``"proxquant"``, ``"bop"``,
    ``"adam"`` (full precision) or ``"qpsbgd"`` (:class:`qsgd.optimizer.QPSBGD`, which needs
    the model itself). ``options`` go to the constructor.

    Raises:
        ConfigError: unknown name (lists the known ones) or invalid options.
    """
    key = str(name).lower()
    if key not in _FACTORY:
        raise ConfigError(f"unknown optimizer {name!r}; known optimizers: {available_optimizers()}")
    return _FACTORY[key](model_or_params, **options)
