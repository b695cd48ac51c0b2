"""QP-SBGD as a ``torch.optim.Optimizer``: binary layers are updated by solving Ising problems.

Data flow of one :meth:`QPSBGD.step`, per binary layer scheduled this step::

    captured inputs X (rows, fan_in), captured dL/dpre G (rows, fan_out)   (float32)
        -> qsgd.qubo.layer_ising(X, G, eta=lr, curvature, normalize, formulation, weights,
           dtype=float32)     (every scheduled layer first; a large layer's X^T X is kept
           while its inputs do not change)
        -> one batched solve per layer (qsgd.samplers.registry.solve_batch), or ONE call for
           all layers when the sampler has ``sample_batches`` (the ``pack`` QPU composite);
           block-wise when fan_in > max_block_vars (qsgd.qubo.solve_blockwise, or
           solve_blockwise_many: block r of every layer in one call per round)
        -> update: binary_gradient: latent W <- clip(W - lr * D, -latent_clip, latent_clip)
                   projected:       W <- spins (exactly ±1)
        -> per-layer record in ``last_stats`` (a layer's share of a shared call)

Everything that is not a tagged binary weight (batch norm, full-precision first/last
layers, biases, output scales) is handed to a standard torch optimiser (Adam or SGD)
stepped in the same :meth:`~QPSBGD.step`.

This follows Krahn et al., "Projected Stochastic Gradient Descent with Quantum Annealed
Binary Gradients" (BMVC 2024), with the problems built as documented in
:mod:`qsgd.qubo` and ``docs/method.md``. Unlike the reference code, all problems of a layer
are solved before any weight of that layer changes, and each layer's update uses the
inputs and gradients of the same forward/backward pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from qsgd.binary_optim import BinaryCaseOptimizer
from qsgd.curvature import attach_sampled_fisher, kfac_curvature, per_neuron_layer_ising
from qsgd.errors import ProblemError
from qsgd.layer_solves import _block_limit, _solve_blockwise, _solve_blockwise_together
from qsgd.optimizer_options import (  # noqa: F401  (the public constants are re-exported)
    _GROUP_KEYS,
    CURVATURE_SCALES,
    LAYER_SCHEDULES,
    OTHER_OPTIMIZERS,
    _check_group_options,
    _check_init_args,
    _is_real,
    _layer_groups,
    _resolve_backend,
)
from qsgd.qubo import FORMULATIONS, layer_ising
from qsgd.samplers.registry import (
    accepted_run_options,
    solve_batch,
)
from qsgd.sign_match import check_sign_match_options, sign_match_update
from qsgd.step_records import _LayerJob, _new_record, _QPUUse, _signs, _Solved, _solved  # noqa: F401

__all__ = ["QPSBGD", "LAYER_SCHEDULES", "OTHER_OPTIMIZERS", "CURVATURE_SCALES", "fisher_curvature"]

_logger = logging.getLogger(__name__)


def fisher_curvature(grad_out: np.ndarray, curvature: float) -> float:
    """The ``curvature`` argument of :func:`qsgd.qubo.layer_ising` for ``curvature_scale="fisher"``.

    ``layer_ising`` builds ``H = c X^T X / B`` (unit output curvature per row, scaled by ``c``).
    For a batch-mean loss ``L = (1/B) sum_b l_b`` the captured gradient is ``G = dL/dz =
    l'/B``, and the empirical-Fisher (outer-product) estimate of the output curvature of row
    ``b`` and neuron ``j`` is ``(1/B) l'_bj^2 = B G_bj^2``. Averaged over rows and neurons (so
    that all neurons keep sharing one ``J``) that gives ``H = curvature * B * mean(G^2) * X^T X``,
    i.e. ``c = curvature * B^2 * mean(G^2)``. Unlike the unit scale, it follows the size of the
    gradients through depth and batch norm, so the field ``-lr g`` and the couplings stay
    commensurate in every layer.

    Shape:
        grad_out ``(B, fan_out)``.
    """
    rows = grad_out.shape[0]
    return float(curvature) * rows * rows * float(np.mean(grad_out * grad_out))


#: Layers with ``rows * fan_in**2`` at least this large keep their Gram between steps while their
#: inputs do not change (see :meth:`QPSBGD._gram`).
_GRAM_CACHE_MIN = 1 << 24


class QPSBGD(BinaryCaseOptimizer):
    """Quantum projected stochastic binary-gradient descent over a model's binary layers.

    Each binary layer (a :class:`qsgd.binary.BinaryLayer` with ``binary=True``, such as the
    layers of ``bnn.layers``) is one param group
    holding its latent weight, with its own ``lr``, ``curvature``, ``curvature_scale``,
    ``normalize``, ``formulation``, ``latent_clip`` and ``damping`` (override them through ``layer_options`` or by
    editing ``param_groups``; LR schedulers act on these groups). The optimiser sets
    ``capture=True`` on those layers so that each training forward/backward records the
    layer's inputs ``X`` and the gradient ``G`` w.r.t. its pre-activations.

    At each :meth:`step`, for each scheduled layer (all layers, or one per step in
    round-robin order), the ``fan_out`` problems of ``fan_in`` spins are built by
    :func:`qsgd.qubo.layer_ising` and solved in one batched call:

    * ``"binary_gradient"``: spins are the direction ``D``; the latent weight moves to
      ``clip(W - lr * D, -latent_clip, latent_clip)`` and the forward pass uses ``sign(W)``.
      The clip keeps every latent weight within ``latent_clip / lr`` steps of a sign flip
      (as BinaryConnect's clip to ``[-1, 1]``).
    * ``"projected"``: spins are the new binary weights; the weight is set to them
      (exactly ±1). The SGD step ``B - lr * grad`` is projected back onto ±1, so a weight
      flips only where ``lr * |grad|`` is comparable to 1 (the distance to the other binary
      value is 2): ``lr`` is on a much larger scale than in binary_gradient (e.g. 30 vs 0.05
      on the toy problem of the tests).

    Rows of ``X``/``G`` whose gradient is exactly zero (e.g. graph nodes outside the
    training mask, samples whose activations the straight-through estimator masked) carry
    no information about the loss; they are dropped before the problems are built, so the
    Gauss-Newton curvature covers the rows the loss depends on. A layer whose rows are all
    zero is skipped that step (its stats say ``"skipped": True``).

    Args:
        model: The network; must contain at least one binary layer.
        lr: Step size ``eta`` of the binary update (> 0).
        curvature: Scale of the Gauss-Newton term (>= 0; 0 gives signSGD directions).
        curvature_scale: ``"unit"`` (``H = curvature * X^T X / B``: unit output curvature per
            row) or ``"fisher"`` (the output curvature is estimated from the captured gradients,
            see :func:`fisher_curvature`; ``H = curvature * B * mean(G^2) * X^T X``). With a
            batch-mean loss through batch norm the gradients of hidden layers are orders of
            magnitude smaller than 1, so with ``"unit"`` the couplings swamp the fields and the
            solution ignores the gradient; ``"fisher"`` keeps them commensurate (docs/tuning.md).
            ``"kfac"``: one curvature per neuron, the diagonal of K-FAC's output factor from
            labels sampled from the model (the true Fisher; one extra backward per step), times
            ``curvature`` (1: no tuned factor); see :mod:`qsgd.curvature`.
        normalize: Column-normalise the layer inputs in the curvature.
        formulation: ``"binary_gradient"``, ``"projected"`` or ``"sign_match"`` (the paper's
            sign-matching problems, one per neuron: :func:`qsgd.sign_match.sign_match_update`).
        sign_match: Options of ``"sign_match"`` (``rows``, ``penalty``, ``weighted``,
            ``weight_scale``, ``resolution``; :data:`qsgd.sign_match.SIGN_MATCH_OPTIONS`).
        backend: A registry name (``"neal"``, ``"exact"``, ``"batched"``, ...) or a
            :class:`qsgd.config.AnnealerConfig` (its ``seed`` and ``max_block_vars`` are used
            when the arguments below are None).
        backend_options: Backend options such as ``num_reads``, ``num_sweeps``: constructor
            options go to :func:`~qsgd.samplers.registry.get_sampler`, run options to every
            :func:`~qsgd.samplers.registry.solve_batch` call; unknown keys and ``seed`` are
            rejected.
        max_block_vars: If set, layers with ``fan_in > max_block_vars`` are solved block-wise
            (one sweep of :func:`qsgd.qubo.solve_blockwise` over contiguous blocks, starting
            from ``sign(-h)`` for binary_gradient and from the current weights for projected).
            If None and the backend declares ``properties["max_num_variables"]`` (``"exact"``:
            24; ``"mock-dwave"``/``"dwave"``: the largest clique that embeds), larger layers
            are solved block-wise at that size, with one logged warning.
        layer_schedule: ``"all"`` or ``"round_robin"`` (one layer per step, cycling in model order).
        other_optimizer: ``"adam"``, ``"sgd"`` or None, for the non-binary parameters.
        other_lr: Learning rate of that optimiser (None: 1e-3 for Adam, 1e-2 for SGD; not
            ``lr``, whose scale depends on the formulation).
        seed: Base seed; the solver seed of layer ``i`` at step ``t`` is derived from
            ``(seed, t, i)``. None draws a base seed once (stored in the state dict).
        latent_clip: Bound of the latent weights in binary_gradient (> 0).
        damping: Relative Levenberg-Marquardt damping of the metric (>= 0; 0: none): the
            problems use ``H + lam I`` with ``lam = damping * mean(diag(H))``
            (:func:`qsgd.qubo.layer_ising`), so one value fits every layer under either
            curvature scale. For ``"projected"`` it pulls the new weights towards
            ``sign(B - lr * grad)`` in the directions the batch does not constrain
            (``damping -> inf`` is exactly that sign); for ``"binary_gradient"`` it only adds
            a constant to the energy.
        layer_options: Per-layer overrides ``{layer_name: {"lr": ..., "curvature": ...}}``.

    Attributes:
        last_stats: One dict per layer updated in the last step: ``layer``, ``step``,
            ``problems``, ``variables``, ``rows``, ``best_energy`` (mean over problems),
            ``flip_ratio``, ``wall_time``, ``backend`` (requested), ``solved_by`` (the backend
            that actually solved the layer's problems, e.g. a QPU backend's fallback; names
            joined by ``"+"`` when mixed; None when skipped), ``solved_by_counts``
            (``{name: problems}``, a block counting once per block), ``block_vars`` (the
            block size when solved block-wise, else None), ``seed``, ``skipped``, and the
            QPU's cost: ``qpu_calls``, ``problems_per_call`` (mean; None without QPU calls),
            ``qpu_access_time`` (seconds, from the solver's ``timing``) and
            ``chain_break_fraction`` (mean over problems; None off the QPU).
        qpu_totals: ``{"qpu_calls", "qpu_access_time"}`` summed over all steps (kept in the
            state dict, so a resumed run continues the count; the fit loop's QPU cap reads it).
        sampler: The backend sampler.
        run_options: Run options passed to every solve (besides the per-step ``seed``).

    Example:
        >>> from bnn.models import BinaryMLP
        >>> model = BinaryMLP(4, [3], 2)
        >>> opt = QPSBGD(model, lr=0.05, backend="exact", seed=0)
        >>> loss = nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.zeros(8, dtype=torch.long))
        >>> loss.backward(); _ = opt.step(); len(opt.last_stats)
        2
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.01,
        *,
        curvature: float = 1.0,
        curvature_scale: str = "unit",
        normalize: bool = False,
        formulation: str = "binary_gradient",
        backend: Any = "neal",
        backend_options: Mapping[str, Any] | None = None,
        max_block_vars: int | None = None,
        layer_schedule: str = "all",
        other_optimizer: str | None = "adam",
        other_lr: float | None = None,
        seed: int | None = None,
        latent_clip: float = 1.0,
        damping: float = 0.0,
        layer_options: Mapping[str, Mapping[str, Any]] | None = None,
        sign_match: Mapping[str, Any] | None = None,
    ) -> None:
        from qsgd.binary import binary_layers, is_binary_param

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module (got {type(model).__name__})")
        defaults = dict(
            lr=lr,
            curvature=curvature,
            curvature_scale=curvature_scale,
            normalize=normalize,
            formulation=formulation,
            latent_clip=latent_clip,
            damping=damping,
        )
        _check_group_options(defaults)
        _check_init_args(max_block_vars, layer_schedule, other_optimizer, other_lr, seed)

        layers = binary_layers(model)
        groups = _layer_groups(layers, layer_options)
        super().__init__(groups, defaults)

        self.model = model
        self._layers: list[Any] = [layer for _, layer in layers]
        for layer in self._layers:
            layer.capture = True
        self._sampled_fisher = attach_sampled_fisher(self)  # None unless a layer uses "kfac"

        self.backend_name, self.sampler, self.run_options, cfg_seed, cfg_block = _resolve_backend(
            backend, backend_options
        )
        self._seed_accepted = "seed" in accepted_run_options(self.sampler)
        if seed is None:
            seed = cfg_seed
        self.max_block_vars = max_block_vars if max_block_vars is not None else cfg_block
        self._auto_block: int | None | bool = False  # False: not looked up yet
        self.layer_schedule = layer_schedule
        self.sign_match_options = check_sign_match_options(sign_match)
        self.other_optimizer_name = other_optimizer
        if other_lr is None:
            other_lr = 1e-3 if other_optimizer == "adam" else 1e-2
        self.other_lr = float(other_lr)
        self.base_seed = (
            int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
        )
        self.step_count = 0
        self.last_stats: list[dict[str, Any]] = []
        self._gram_cache: dict[int, tuple[torch.Tensor, np.ndarray]] = {}
        self.qpu_totals: dict[str, Any] = {"qpu_calls": 0, "qpu_access_time": 0.0}

        binary_ids = {id(p) for p in model.parameters() if is_binary_param(p)}
        others = [p for p in model.parameters() if id(p) not in binary_ids and p.requires_grad]
        # the inner optimizer of qsgd.binary_optim.BinaryCaseOptimizer (also self.other_optimizer)
        self._set_inner(
            other_optimizer,
            [{"params": others, "lr": self.other_lr}] if others else [],
            what="other_optimizer",
        )

    # ------------------------------------------------------------------ schedule and seeds

    def scheduled_groups(self, step: int | None = None) -> list[int]:
        """Indices of the param groups (layers) updated at ``step`` (default: the next step)."""
        t = self.step_count if step is None else step
        if self.layer_schedule == "all":
            return list(range(len(self.param_groups)))
        return [t % len(self.param_groups)]

    def step_seed(self, step: int, group_index: int) -> int:
        """The solver seed of layer ``group_index`` at ``step`` (a uint32 derived from ``seed``)."""
        ss = np.random.SeedSequence([self.base_seed, int(step), int(group_index)])
        return int(ss.generate_state(1, dtype=np.uint32)[0])

    # ------------------------------------------------------------------ the step

    def _captured(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self._layers[index]
        name = self.param_groups[index]["name"]
        X, G = layer.captured_inputs, layer.captured_grad_out
        if X is None:
            raise RuntimeError(
                f"layer {name!r} has no captured inputs: run forward and backward before step()"
            )
        if G is None:
            raise RuntimeError(
                f"layer {name!r} has no captured gradient: run backward on the loss before step()"
            )
        if X.shape[0] != G.shape[0]:  # pragma: no cover - guarded by the capture tokens
            raise ProblemError(
                f"layer {name!r}: captured inputs have {X.shape[0]} rows but gradients {G.shape[0]}"
            )
        for what, t in (("inputs", X), ("gradients", G)):
            # one reduction without a mask tensor; a non-finite sum (NaN/inf, or an overflow
            # of finite values) is checked element by element
            if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise ProblemError(
                    f"layer {name!r}: captured {what} contain {bad} non-finite value(s) "
                    f"(NaN or inf) out of {t.numel()}; expected all finite"
                )
        return X, G

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update the scheduled binary layers and step the standard optimiser.

        Args:
            closure: Optional callable that zeroes gradients, runs forward and backward and
                returns the loss; it is called with gradients enabled.

        Returns:
            The closure's loss, or None.

        Raises:
            ProblemError: the loss or a captured input/gradient is not finite.
            RuntimeError: a scheduled layer has no capture (forward/backward not run).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
            value = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
            if not math.isfinite(value):
                raise ProblemError(
                    f"closure returned a non-finite loss (got {value}); expected a finite number"
                )
        scheduled = self.scheduled_groups()
        captured = {i: self._captured(i) for i in scheduled}  # validate all before updating any
        t = self.step_count
        stats = self._update_layers(scheduled, captured, t)
        if self.inner is not None:
            self.inner.step()
        for layer in self._layers:
            layer.clear_capture()
        self.step_count += 1
        self._finish_step(stats)
        return loss

    def _update_layer(
        self, index: int, X: torch.Tensor, G: torch.Tensor, *, step: int
    ) -> dict[str, Any]:
        if self.param_groups[index]["formulation"] == "sign_match":
            return sign_match_update(self, index, X, G, step=step)
        job = self._prepare_layer(index, X, G, step=step)
        if isinstance(job, dict):  # skipped: no row carries a gradient
            return job
        return self._apply_update(job, self._solve_layers([job])[0])

    def _update_layers(
        self,
        scheduled: list[int],
        captured: Mapping[int, tuple[torch.Tensor, torch.Tensor]],
        step: int,
    ) -> list[dict[str, Any]]:
        """Update the scheduled layers: build every layer's problems, solve them, then update.

        Layers whose formulation :func:`qsgd.qubo.layer_ising` builds are prepared first and
        solved together by :meth:`_solve_layers` (one solver call for all of them when the
        sampler offers ``sample_batches``); any other formulation goes through
        :meth:`_update_layer`. Every layer's problems use the inputs and gradients of the same
        forward/backward pass and its own seed, so the order changes no result.
        """
        records: dict[int, dict[str, Any]] = {}
        jobs: list[_LayerJob] = []
        for i in scheduled:
            if self.param_groups[i]["formulation"] not in FORMULATIONS:
                records[i] = self._update_layer(i, *captured[i], step=step)
                continue
            job = self._prepare_layer(i, *captured[i], step=step)
            if isinstance(job, dict):
                records[i] = job
            else:
                jobs.append(job)
        for job, solved in zip(jobs, self._solve_layers(jobs), strict=True):
            records[job.index] = self._apply_update(job, solved)
        return [records[i] for i in scheduled]

    def _prepare_layer(
        self, index: int, X: torch.Tensor, G: torch.Tensor, *, step: int
    ) -> _LayerJob | dict[str, Any]:
        """The layer's problems (float32, built by :func:`qsgd.qubo.layer_ising`) and what the
        update needs; the layer's record alone when no row carries a gradient (skipped)."""
        group = self.param_groups[index]
        layer = self._layers[index]
        p: torch.Tensor = group["params"][0]
        name = group["name"]
        m, n = layer.fan_out, layer.fan_in
        state = self.state[p]
        if not state:
            state.update(steps=0, flips=0, solver_time=0.0, skipped=0)
        seed = self.step_seed(step, index)
        record = _new_record(name, step, m, n, seed, self.backend_name)
        keep = (G != 0).any(dim=1)
        rows = int(keep.sum())
        if rows == 0:
            record["skipped"] = True
            state["skipped"] += 1
            return record
        if rows < G.shape[0]:
            X, G = X[keep], G[keep]
        # float32: the precision torch captured them in (no float64 copies); see layer_ising
        Xn = X.detach().to("cpu", torch.float32).numpy()
        Gn = G.detach().to("cpu", torch.float32).numpy()
        lr, formulation = float(group["lr"]), group["formulation"]
        old = p.detach().reshape(m, n)
        old_pos = old >= 0  # the sign before the update: +1 where True
        curvature = float(group["curvature"])
        if group.get("curvature_scale", "unit") == "fisher":
            curvature = fisher_curvature(Gn.astype(np.float64), curvature)
        build = layer_ising
        if group.get("curvature_scale") == "kfac":  # per neuron, qsgd.curvature
            curvature, build = kfac_curvature(self, index, curvature), per_neuron_layer_ising
        batch = build(
            Xn,
            Gn,
            eta=lr,
            curvature=curvature,
            normalize=bool(group["normalize"]),
            formulation=formulation,
            weights=_signs(old_pos) if formulation == "projected" else None,
            damping=float(group.get("damping", 0.0)),
            name=name,
            dtype=np.float32,
            gram=self._gram(index, X, Xn, keep, rows),
            check=False,  # _captured checked X and G
        )
        record["rows"] = rows
        return _LayerJob(index, p, old, old_pos, batch, record, lr, formulation, seed)

    def _gram(
        self, index: int, X: torch.Tensor, Xn: np.ndarray, keep: torch.Tensor, rows: int
    ) -> np.ndarray | None:
        """``Xn^T Xn`` of a large layer, reused while its kept inputs do not change.

        A graph layer trained full-batch sees the same aggregated features every step (the
        first GCN layer: ``A_norm @ features``), and its ``rows x n^2`` Gram is then the most
        expensive part of the step (Cora: 2708 x 1433^2). For layers with ``rows * n^2 >=``
        :data:`_GRAM_CACHE_MIN` the Gram is always computed here (one formula, so a resumed run
        builds the same problems), and reused when the kept rows are equal to the last step's
        (checked exactly, ``O(rows * n)``). Small layers return None: ``layer_ising`` computes it.
        """
        n = Xn.shape[1]
        if rows * n * n < _GRAM_CACHE_MIN:
            return None
        hit = self._gram_cache.get(index)
        if (
            hit is not None
            and hit[0].shape == X.shape
            and hit[0].dtype == X.dtype
            and torch.equal(hit[0], X.detach())
        ):
            return hit[1]
        gram = Xn.T @ Xn
        self._gram_cache[index] = (X.detach(), gram)
        return gram

    def _solve_layers(self, jobs: list[_LayerJob]) -> list[_Solved]:
        """Solve the problems of ``jobs``: block-wise where a layer is too large for the backend,
        else in one call for all layers when the sampler has ``sample_batches``, else one
        :func:`~qsgd.samplers.registry.solve_batch` per layer (each with the layer's seed).

        ``sample_batches(batches, *, seeds, **run_options) -> list[BatchResult]`` solves batches
        of any sizes (several layers) in one call; result ``k`` holds the samples of batch ``k``
        sorted by energy and an ``info`` with that batch's share of the call: ``wall_time``,
        ``solved_by`` (or ``solved_by_counts``), and for a QPU ``qpu_calls`` (each call counted
        for one batch only, so the layers' counts add up to the calls made),
        ``problems_per_call`` (over those calls), ``qpu_access_time`` (a share) and
        ``chain_break_fraction`` (over the batch's problems).
        """
        out: list[_Solved | None] = [None] * len(jobs)
        direct: list[int] = []
        blocked: dict[int, list[int]] = {}  # block size -> jobs solved block-wise
        for k, job in enumerate(jobs):
            limit = _block_limit(self, job.record["layer"], job.batch.num_variables)
            if limit is not None and job.batch.num_variables > limit:
                blocked.setdefault(int(limit), []).append(k)
            else:
                direct.append(k)
        many = getattr(self.sampler, "sample_batches", None)
        for limit, ks in blocked.items():
            if len(ks) > 1 and callable(many):  # block r of every layer in one call per round
                solved = _solve_blockwise_together(
                    self, [jobs[k] for k in ks], limit, many, solve_batch
                )
                for k, one in zip(ks, solved, strict=True):
                    out[k] = one
            else:
                for k in ks:
                    out[k] = _solve_blockwise(self, jobs[k], limit, solve_batch)
        if len(direct) > 1 and callable(many):
            seeds = [jobs[k].seed if self._seed_accepted else None for k in direct]
            results = many([jobs[k].batch for k in direct], seeds=seeds, **self.run_options)
            for k, res in zip(direct, results, strict=True):
                out[k] = _solved(res, jobs[k].batch.num_problems, self.backend_name, shared=True)
            return out  # type: ignore[return-value]
        for k in direct:
            run = dict(self.run_options)
            if self._seed_accepted:
                run["seed"] = jobs[k].seed
            res = solve_batch(self.sampler, jobs[k].batch, **run)
            out[k] = _solved(res, jobs[k].batch.num_problems, self.backend_name)
        return out  # type: ignore[return-value]

    def _apply_update(self, job: _LayerJob, solved: _Solved) -> dict[str, Any]:
        """Move the layer's weights to the solution and complete its record."""
        group = self.param_groups[job.index]
        p = job.param
        record = job.record
        record["solved_by"] = "+".join(sorted(solved.counts))
        record["solved_by_counts"] = solved.counts
        record["block_vars"] = solved.block_vars
        record.update(solved.qpu)
        self.qpu_totals["qpu_calls"] += int(record["qpu_calls"])
        self.qpu_totals["qpu_access_time"] += float(record["qpu_access_time"])
        d = torch.from_numpy(np.ascontiguousarray(solved.spins)).to(device=p.device, dtype=p.dtype)
        if job.formulation == "binary_gradient":
            clip = float(group["latent_clip"])
            new = (job.old - job.lr * d).clamp_(-clip, clip)
        else:
            new = d
        flips = int(((new >= 0) != job.old_pos).sum())
        p.copy_(new.reshape(p.shape))
        m, n = job.old.shape
        state = self.state[p]
        state["steps"] += 1
        state["flips"] += flips
        state["solver_time"] += solved.wall
        record.update(
            best_energy=float(np.mean(solved.energies)),
            flip_ratio=flips / float(m * n),
            num_flipped=flips,
            wall_time=solved.wall,
        )
        return record

    # ------------------------------------------------------------------ torch contract

    @property
    def other_optimizer(self) -> torch.optim.Optimizer | None:
        """The standard optimiser of the non-binary parameters (``inner``; None without one)."""
        return self.inner

    def state_dict(self) -> dict[str, Any]:
        """Torch's state dict, ``"inner"`` (the standard optimiser's state, the layout of
        :class:`qsgd.binary_optim.BinaryCaseOptimizer`) and ``"qpsbgd"``: step count, QPU
        totals and base seed."""
        sd = super().state_dict()
        sd["qpsbgd"] = {
            "step_count": self.step_count,
            "qpu_totals": dict(self.qpu_totals),
            "base_seed": self.base_seed,
        }
        return sd

    def _pop_inner_state(self, sd: dict[str, Any]) -> tuple[bool, Any]:
        """``"inner"``, or the layout before the shared base: ``sd["qpsbgd"]["other_optimizer"]``."""
        extra = sd.get("qpsbgd")
        if "inner" not in sd and isinstance(extra, Mapping) and "other_optimizer" in extra:
            sd["qpsbgd"] = {k: v for k, v in extra.items() if k != "other_optimizer"}
            return True, extra["other_optimizer"]
        return super()._pop_inner_state(sd)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (also one saved before the shared base, whose standard
        optimiser state sits in ``"qpsbgd"``); the trajectory then continues as it would have."""
        sd = dict(state_dict)
        extra = sd.get("qpsbgd")
        if extra is None:
            raise ValueError(
                "state_dict has no 'qpsbgd' entry: it was not saved by QPSBGD.state_dict()"
            )
        _found, inner = self._pop_inner_state(sd)
        extra = sd.pop("qpsbgd")
        super().load_state_dict({**sd, "inner": inner})
        self.step_count = int(extra["step_count"])
        totals = extra.get("qpu_totals") or {}
        self.qpu_totals = {
            "qpu_calls": int(totals.get("qpu_calls", 0)),
            "qpu_access_time": float(totals.get("qpu_access_time", 0.0)),
        }
        self.base_seed = int(extra["base_seed"])

    def __repr__(self) -> str:
        return (
            f"QPSBGD(layers={[g['name'] for g in self.param_groups]}, lr={self.defaults['lr']}, "
            f"formulation={self.defaults['formulation']!r}, backend={self.backend_name!r}, "
            f"layer_schedule={self.layer_schedule!r})"
        )
