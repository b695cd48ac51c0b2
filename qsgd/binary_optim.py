"""One base for "a binary rule for the binary weights, a standard optimizer for the rest".

QP-SBGD (:class:`qsgd.optimizer.QPSBGD`) and the binary baselines (:mod:`bnn.baselines`:
BinaryConnect, signSGD, ProxQuant, Bop) all split a model the same way, as larq's
``CaseOptimizer`` does: parameters tagged binary (:func:`qsgd.binary.is_binary_param`) get the
method's *binary rule*; every other parameter (biases, batch norm, full-precision layers) goes
to a standard torch optimizer, the **inner** optimizer. :class:`BinaryCaseOptimizer` holds what
they share, under one vocabulary:

* ``inner``: the inner :class:`torch.optim.Optimizer` (None when there is nothing for it to
  update or none was asked for); ``inner_name``: ``"adam"``, ``"sgd"`` or None
  (:data:`INNER_OPTIMIZERS`); ``inner_options``: its extra keyword arguments;
* ``state_dict()``: torch's state dict plus ``"inner"``, the inner optimizer's state dict (None
  without one). :meth:`BinaryCaseOptimizer.load_state_dict` refuses a state whose inner part
  does not match, and a subclass can read an older layout through
  :meth:`BinaryCaseOptimizer._pop_inner_state`;
* ``zero_grad()`` clears the inner optimizer's gradients too;
* ``last_stats``: one record per binary layer of the last step, with at least ``layer``,
  ``step``, ``num_weights``, ``num_flipped``, ``flip_ratio`` (``num_flipped / num_weights``),
  ``wall_time`` and ``skipped``; ``last_flip_ratio``: the flipped fraction over all binary
  weights updated in that step.

The **flip ratio** is defined once, by :func:`flip_ratio`: the fraction of weights whose sign
(``sign(0) = +1``, :func:`qsgd.binary.binary_sign`) changed. The training loop's per-layer
``flip_ratio`` and the optimizers' records both use it.

Example:
    >>> import torch
    >>> class SignRule(BinaryCaseOptimizer):
    ...     def __init__(self, params):
    ...         super().__init__(params, {"lr": 0.1})
    ...         binary = [p for g in self.param_groups for p in g["params"] if is_binary_param(p)]
    ...         rest = [p for g in self.param_groups for p in g["params"] if not is_binary_param(p)]
    ...         self._set_inner("sgd", [{"params": rest, "lr": 0.1}] if rest else [])
    >>> lin = torch.nn.Linear(3, 2)
    >>> lin.weight._bnn_binary = True
    >>> opt = SignRule(lin.parameters())
    >>> opt.inner_name, sorted(opt.state_dict())
    ('sgd', ['inner', 'param_groups', 'state'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from qsgd.binary import is_binary_param
from qsgd.errors import ConfigError

__all__ = ["INNER_OPTIMIZERS", "BinaryCaseOptimizer", "count_flips", "flip_ratio", "make_inner"]

#: The inner optimizers by name.
INNER_OPTIMIZERS: dict[str, type[Optimizer]] = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def count_flips(before: torch.Tensor, after: torch.Tensor) -> int:
    """Number of entries whose sign differs between two snapshots (see :func:`flip_ratio`)."""
    if before.shape != after.shape:
        raise ValueError(
            f"after must have the shape of before {tuple(before.shape)} (got {tuple(after.shape)})"
        )
    b = before if before.dtype == torch.bool else before >= 0
    a = after if after.dtype == torch.bool else after >= 0
    return int((b != a).sum())


def flip_ratio(before: torch.Tensor, after: torch.Tensor) -> float:
    """Fraction of entries whose sign differs between two snapshots of a weight.

    The sign is :func:`qsgd.binary.binary_sign`'s (``sign(0) = +1``): a snapshot may be the
    weight itself or its ``w >= 0`` mask. The fraction is the exact ratio
    ``count_flips / numel`` (0 for an empty weight). This is the one flip-ratio definition of
    the project: the fit loop's per-layer ``flip_ratio`` and the optimizers' step records.

    Shape:
        ``before`` and ``after``: the same shape (any).

    Example:
        >>> flip_ratio(torch.tensor([1.0, -2.0, 0.0, 3.0]), torch.tensor([1.0, 2.0, -1.0, 3.0]))
        0.5
    """
    flips = count_flips(before, after)
    return flips / before.numel() if before.numel() else 0.0


def make_inner(
    name: str | None,
    groups: Sequence[Mapping[str, Any]],
    options: Mapping[str, Any] | None = None,
    *,
    what: str = "inner",
) -> Optimizer | None:
    """The inner optimizer ``name`` over ``groups``; None when ``name`` is None or ``groups``
    is empty.

    Args:
        name: ``"adam"``, ``"sgd"`` or None.
        groups: Torch param groups (``{"params": [...], "lr": ...}``).
        options: Extra keyword arguments of the optimizer (``betas``, ``momentum``, ...).
        what: The argument's name in error messages (``"inner"``, ``"other_optimizer"``).

    Raises:
        ConfigError: an unknown name, or options the optimizer rejects.
    """
    if name is not None and (not isinstance(name, str) or name not in INNER_OPTIMIZERS):
        raise ConfigError(f"{what} must be one of {sorted(INNER_OPTIMIZERS)} (got {name!r})")
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"{what}_options must be a dict or None (got {options!r})")
    if name is None or not groups:
        return None
    try:
        return INNER_OPTIMIZERS[name]([dict(g) for g in groups], **dict(options or {}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{what}_options {dict(options or {})!r} rejected by {name}: {exc}"
        ) from exc


class BinaryCaseOptimizer(Optimizer):
    """Base class: a binary rule on the tagged parameters, an inner optimizer on the others.

    A subclass calls ``super().__init__(params, defaults)`` (torch's contract), then
    :meth:`_set_inner` with the param groups of its inner optimizer, implements ``step`` and
    ends it with :meth:`_finish_step`. The module docstring lists the shared vocabulary.
    """

    inner: Optimizer | None = None
    inner_name: str | None = None
    inner_options: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance by _set_inner
    last_flip_ratio: float = 0.0

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)
        self.last_stats: list[dict[str, Any]] = []

    def _set_inner(
        self,
        name: str | None,
        groups: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
        *,
        what: str = "inner",
    ) -> None:
        """Build ``self.inner`` (:func:`make_inner`) and record its name and options."""
        self.inner = make_inner(name, groups, options, what=what)
        self.inner_name = name
        self.inner_options = dict(options or {})

    def binary_params(self) -> list[torch.Tensor]:
        """The binary parameters of the param groups, in order."""
        return [p for g in self.param_groups for p in g["params"] if is_binary_param(p)]

    def _finish_step(self, records: list[dict[str, Any]]) -> None:
        """Store the step's per-layer ``records`` and their overall flip ratio
        (``num_flipped`` over ``num_weights`` of the layers not ``skipped``; a record without
        ``num_weights`` is left out)."""
        self.last_stats = records
        done = [r for r in records if not r.get("skipped") and "num_weights" in r]
        total = sum(int(r["num_weights"]) for r in done)
        flipped = sum(int(r.get("num_flipped", 0)) for r in done)
        self.last_flip_ratio = flipped / total if total else 0.0

    # -- torch contract -----------------------------------------------------------------

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients of the param groups and of the inner optimizer's parameters."""
        super().zero_grad(set_to_none=set_to_none)
        if self.inner is not None:
            self.inner.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """Torch's state dict plus ``"inner"``: the inner optimizer's state dict, or None."""
        sd = super().state_dict()
        sd["inner"] = self.inner.state_dict() if self.inner is not None else None
        return sd

    def _pop_inner_state(self, sd: dict[str, Any]) -> tuple[bool, Any]:
        """Remove the inner optimizer's state from ``sd``: ``(found, state)``.

        Subclasses override it to read an older layout as well.
        """
        if "inner" not in sd:
            return False, None
        return True, sd.pop("inner")

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`, the inner optimizer's state included.

        Raises:
            ConfigError: the saved inner state does not match (one is absent, or it is missing).
        """
        sd = dict(state_dict)
        found, inner_sd = self._pop_inner_state(sd)
        if self.inner is not None and inner_sd is None:
            raise ConfigError(
                "state_dict has no 'inner' entry for the inner optimiser"
                if not found
                else "state_dict's inner optimiser does not match this optimiser "
                "(saved: none, here: present)"
            )
        if self.inner is None and inner_sd is not None:
            raise ConfigError(
                "state_dict's inner optimiser does not match this optimiser "
                "(saved: present, here: none)"
            )
        super().load_state_dict(sd)
        if self.inner is not None:
            self.inner.load_state_dict(inner_sd)
