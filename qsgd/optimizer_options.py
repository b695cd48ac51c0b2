"""The constructor options of :class:`qsgd.optimizer.QPSBGD`: their accepted values, their
checks, and the backend they name (all importable from :mod:`qsgd.optimizer` too).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from qsgd.errors import ConfigError
from qsgd.qubo import FORMULATIONS
from qsgd.samplers.registry import get_sampler

#: Accepted values of ``layer_schedule``.
LAYER_SCHEDULES: tuple[str, ...] = ("all", "round_robin")
#: Accepted values of ``other_optimizer`` (None: non-binary parameters are not updated).
OTHER_OPTIMIZERS: tuple[str | None, ...] = ("adam", "sgd", None)

_GROUP_KEYS = (
    "lr",
    "curvature",
    "curvature_scale",
    "normalize",
    "formulation",
    "latent_clip",
    "damping",
)
#: Accepted values of ``curvature_scale``.
CURVATURE_SCALES: tuple[str, ...] = ("unit", "fisher", "kfac")  # kfac: qsgd.curvature


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_group_options(opts: Mapping[str, Any], where: str = "") -> None:
    """Validate the per-layer hyperparameters (constructor defaults or a layer override)."""
    if "lr" in opts:
        lr = opts["lr"]
        if not _is_real(lr) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(
                f"Invalid learning rate{where}: lr must be a finite number > 0 (got {lr!r})"
            )
    if "curvature" in opts:
        c = opts["curvature"]
        if not _is_real(c) or not math.isfinite(c) or c < 0:
            raise ValueError(f"curvature{where} must be a finite number >= 0 (got {c!r})")
    if "curvature_scale" in opts and opts["curvature_scale"] not in CURVATURE_SCALES:
        raise ValueError(
            f"curvature_scale{where} must be one of {', '.join(map(repr, CURVATURE_SCALES))} "
            f"(got {opts['curvature_scale']!r})"
        )
    if "damping" in opts:
        dmp = opts["damping"]
        if not _is_real(dmp) or not math.isfinite(dmp) or dmp < 0:
            raise ValueError(f"damping{where} must be a finite number >= 0 (got {dmp!r})")
    if "normalize" in opts and not isinstance(opts["normalize"], bool):
        raise TypeError(f"normalize{where} must be a bool (got {opts['normalize']!r})")
    if "formulation" in opts and opts["formulation"] not in (*FORMULATIONS, "sign_match"):
        raise ValueError(
            f"formulation{where} must be one of "
            f"{', '.join(map(repr, (*FORMULATIONS, 'sign_match')))} "
            f"(got {opts['formulation']!r})"
        )
    if "latent_clip" in opts:
        c = opts["latent_clip"]
        if not _is_real(c) or not math.isfinite(c) or c <= 0:
            raise ValueError(f"latent_clip{where} must be a finite number > 0 (got {c!r})")


def _check_init_args(
    max_block_vars: Any, layer_schedule: Any, other_optimizer: Any, other_lr: Any, seed: Any
) -> None:
    """Check the optimiser-wide constructor arguments of :class:`~qsgd.optimizer.QPSBGD`.

    Raises:
        ValueError: naming the argument, its value and what is accepted.
    """
    if max_block_vars is not None and (
        isinstance(max_block_vars, bool)
        or not isinstance(max_block_vars, int)
        or max_block_vars < 1
    ):
        raise ValueError(f"max_block_vars must be a positive int or None (got {max_block_vars!r})")
    if layer_schedule not in LAYER_SCHEDULES:
        raise ValueError(
            f"layer_schedule must be one of {', '.join(map(repr, LAYER_SCHEDULES))} "
            f"(got {layer_schedule!r})"
        )
    if other_optimizer not in OTHER_OPTIMIZERS:
        raise ValueError(
            f"other_optimizer must be one of 'adam', 'sgd' or None (got {other_optimizer!r})"
        )
    if other_lr is not None and (
        not _is_real(other_lr) or not math.isfinite(other_lr) or other_lr <= 0
    ):
        raise ValueError(f"other_lr must be a finite number > 0 or None (got {other_lr!r})")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None (got {seed!r})")


def _layer_groups(layers: list[tuple[str, Any]], layer_options: Any) -> list[dict[str, Any]]:
    """One param group per binary layer ``(name, layer)``, with its ``layer_options`` overrides.

    Raises:
        ValueError: no binary layer, an unknown layer name or key, or a bad override.
    """
    if not layers:
        raise ValueError(
            "model has no binary layer (no BinaryLayer with binary=True, i.e. no weight "
            "tagged _bnn_binary): QPSBGD needs at least one"
        )
    overrides = dict(layer_options or {})
    names = [name or "<model>" for name, _ in layers]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(
            f"layer_options names unknown layer {unknown[0]!r}; binary layers: {', '.join(names)}"
        )
    groups = []
    for name, (_, layer) in zip(names, layers, strict=True):
        opts = dict(overrides.get(name, {}))
        bad = sorted(set(opts) - set(_GROUP_KEYS))
        if bad:
            raise ValueError(
                f"layer_options[{name!r}] has unknown key {bad[0]!r}; accepted: {', '.join(_GROUP_KEYS)}"
            )
        _check_group_options(opts, f" of layer {name!r}")
        groups.append({"params": [layer.weight], "name": name, **opts})
    return groups


def _resolve_backend(
    backend: Any, backend_options: Mapping[str, Any] | None
) -> tuple[str, Any, dict[str, Any], int | None, int | None]:
    """Sampler and run options from a backend name + options, an ``AnnealerConfig`` or a sampler.

    A name's options are split by :func:`qsgd.config.split_options` (the one option check, as
    for a config): constructor options go to :func:`get_sampler`, run options (the sampler's
    dimod ``parameters``) to every :func:`solve_batch` call. A ready sampler (e.g.
    ``compose(get_sampler("neal"), ["dask"])``) takes ``backend_options`` as run options.
    ``seed`` is not an option here: the optimiser derives one seed per step and layer from its
    own ``seed``.

    Returns:
        ``(name, sampler, run_options, config_seed, config_max_block_vars)``.
    """
    import dimod

    from qsgd.config import AnnealerConfig, packed_name, split_options
    from qsgd.samplers.base import backend_label, check_options

    if backend_options is not None and not isinstance(backend_options, Mapping):
        raise TypeError(f"backend_options must be a mapping or None (got {backend_options!r})")
    extra = dict(backend_options or {})
    if isinstance(backend, AnnealerConfig):
        if extra:
            backend = AnnealerConfig.from_dict(
                {**backend.model_dump(), "options": {**backend.options, **extra}}
            )
        run = backend.run_options()
        run.pop("seed", None)
        return (
            backend.sampler_backend,
            backend.make_sampler(),
            run,
            backend.seed,
            backend.max_block_vars,
        )
    if "seed" in extra:
        raise ConfigError(
            "backend_options must not contain 'seed' (got seed="
            f"{extra['seed']!r}): pass QPSBGD(seed=...), which seeds every step and layer"
        )
    if isinstance(backend, dimod.Sampler):
        name = backend_label(backend)
        check_options(extra, backend.parameters, backend=name, kind="run option")
        return name, backend, extra, None, None
    if not isinstance(backend, str):
        raise TypeError(
            "backend must be a backend name (str), an AnnealerConfig or a dimod.Sampler "
            f"(got {type(backend).__name__})"
        )
    pack = extra.pop("pack", False)
    backend = packed_name(backend, pack, key="backend_options['pack']", true="True")
    init, run = split_options(backend, extra)
    return backend, get_sampler(backend, **init), run, None, None
