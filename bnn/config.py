"""One validated run configuration for ``bnn train``: load, override, check, save.

A run config is a TOML file (YAML too when ``pyyaml`` happens to be installed) with the
sections ``data``, ``model``, ``optimizer``, ``annealer``, ``train`` and ``output``.
It is validated once, at load, with pydantic (``extra="forbid"``, strict types): an
unknown key, a wrong type or an out-of-range value raises :class:`qsgd.errors.ConfigError`
whose message names the dotted path of the key, the value and what was expected.

Example:
    >>> cfg = RunConfig.from_file("examples/configs/default.toml",
    ...                           overrides=["annealer.backend=tabu", "train.epochs=2"])
    >>> cfg.annealer.backend, cfg.train.epochs
    ('tabu', 2)

The schema with one full example is documented in ``docs/training.md``. Reading files,
``--set`` overrides and the error messages live in :mod:`bnn.config_io`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bnn.config_io import (
    _drop_empty,
    _read_file,
    _set_path,
    apply_overrides,
    format_validation_error,
    parse_override,
)
from qsgd.config import AnnealerConfig  # the [annealer] section, owned by qsgd
from qsgd.errors import ConfigError

__all__ = [
    "RunConfig",
    "DataConfig",
    "ModelConfig",
    "QPSBGDConfig",
    "BinaryConnectConfig",
    "SignSGDConfig",
    "ProxQuantConfig",
    "BopConfig",
    "AdamConfig",
    "OptimizerConfig",
    "TrainConfig",
    "OutputConfig",
    "AnnealerConfig",
    "KNOWN_DATASETS",
    "KNOWN_OPTIMIZERS",
    "SCHEDULES",
    "COMPATIBLE_RESUME_KEYS",
    "load_config",
    "parse_override",
    "apply_overrides",
    "format_validation_error",
    "incompatible_changes",
]

#: Dataset names accepted in ``data.name`` (``bnn.data.available_datasets()`` when importable).
KNOWN_DATASETS: tuple[str, ...] = ("a1a", "cora", "citeseer", "karate", "breast_cancer", "digits")
#: Optimizer names accepted in ``optimizer.name``.
KNOWN_OPTIMIZERS: tuple[str, ...] = (
    "qpsbgd",
    "binaryconnect",
    "signsgd",
    "proxquant",
    "bop",
    "adam",
)
#: Layer-wise schedules accepted in ``train.schedule``.
SCHEDULES: tuple[str, ...] = ("all", "round_robin", "greedy")
#: Dotted key prefixes that may change between a run and its resumption.
COMPATIBLE_RESUME_KEYS: tuple[str, ...] = (
    "name",
    "description",
    "train.epochs",
    "train.eval_interval",
    "train.num_threads",
    "train.hyperparameters",
    "output",
)

_OptionValue = Union[bool, int, float, str, list, dict]  # noqa: UP007 - pydantic needs a runtime union


class _Section(BaseModel):
    """Base of every config section: unknown keys rejected, values not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, frozen=True)


def _available_datasets() -> tuple[str, ...]:
    try:
        from bnn.data import available_datasets
    except ImportError:
        return KNOWN_DATASETS
    return tuple(available_datasets())


class DataConfig(_Section):
    """``[data]``: which dataset to load and how.

    Attributes:
        name: One of ``a1a``, ``cora``, ``citeseer``, ``karate``, ``breast_cancer``, ``digits``.
        root: Folder holding the dataset files (``a1a``, ``cora``, ``citeseer``); relative paths
            are resolved against the config file's folder. ``None``: the loader's default
            (``$QSGD_DATA_ROOT`` if set, else the copies shipped in the package, ``bnn/datasets/``).
        options: Extra keyword arguments of ``bnn.data.get_dataset`` (e.g. ``features``,
            ``val_fraction``).
    """

    name: str
    root: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str) -> str:
        known = _available_datasets()
        if value not in known:
            raise ValueError(f"must be one of {', '.join(map(repr, known))} (got {value!r})")
        return value


class ModelConfig(_Section):
    """``[model]``: the network architecture.

    Attributes:
        arch: ``mlp`` (tabular data), ``gcn`` (graph data) or ``cnn`` (image data).
        hidden: Widths of the hidden layers, e.g. ``[64, 64]``.
        binary: ``false`` builds the same architecture with real weights (full-precision reference).
        first_layer_binary: Whether the first layer has ±1 weights.
        last_layer_binary: Whether the last (classifier) layer has ±1 weights.
        batchnorm: Batch-norm after each hidden layer.
        options: Extra keyword arguments of the model class.
    """

    arch: Literal["mlp", "gcn", "cnn"] = "mlp"
    hidden: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [32])
    binary: bool = True
    first_layer_binary: bool = True
    last_layer_binary: bool = True
    batchnorm: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class _OptimizerBase(_Section):
    name: str
    lr: float = Field(default=0.01, gt=0)

    def constructor_options(self) -> dict[str, Any]:
        """Keyword arguments of the optimizer's constructor (``bnn.baselines.make_optimizer``)."""
        return self.model_dump(exclude={"name"}, exclude_none=True)


class QPSBGDConfig(_OptimizerBase):
    """``[optimizer]`` with ``name = "qpsbgd"``: the annealer-based binary optimizer
    (:class:`qsgd.optimizer.QPSBGD`).

    Attributes:
        lr: Step size ``eta`` of the binary update.
        curvature: Scale of the Gauss-Newton curvature ``X^T X`` (0 gives signSGD directions).
        curvature_scale: ``unit``, ``fisher`` (scale by the empirical Fisher of the layer's
            output gradients; see :class:`qsgd.optimizer.QPSBGD`) or ``kfac`` (one curvature
            per output neuron from labels sampled from the model, :mod:`qsgd.curvature`).
        normalize: Column-normalise the layer inputs in the curvature.
        formulation: ``binary_gradient`` (latent weights), ``projected`` (weights stay ±1) or
            ``sign_match`` (the paper's sign-matching problems, one per neuron, latent weights).
        sign_match: Options of ``sign_match``: ``rows`` (mini-batch rows per problem, default
            8; the problems have ``fan_in + rows * (1 + K)`` spins), ``penalty``, ``weighted``,
            ``weight_scale``, ``resolution``, ``decode`` (:data:`qsgd.sign_match.SIGN_MATCH_OPTIONS`).
        max_block_vars: Split layers with a larger fan-in into blocks of at most this many
            variables (QPU size limit).
        latent_clip: Bound of the latent weights (``binary_gradient``).
        damping: Relative Levenberg-Marquardt damping of the metric, ``H + damping *
            mean(diag(H)) I`` (0: none; matters for ``projected`` only).
        other_optimizer: Optimizer of the non-binary parameters: ``adam``, ``sgd`` or ``none``.
        other_lr: Its learning rate (default: QPSBGD's, 1e-3 for adam).
        layer_options: Per-layer overrides ``{layer_name = {lr = ..., curvature = ...}}``.

    The annealer is the ``[annealer]`` section; the layer schedule is ``train.schedule``.
    """

    name: Literal["qpsbgd"]
    curvature: float = Field(default=1.0, ge=0)
    curvature_scale: Literal["unit", "fisher", "kfac"] = "unit"
    normalize: bool = False
    formulation: Literal["binary_gradient", "projected", "sign_match"] = "binary_gradient"
    sign_match: dict[str, Any] = Field(default_factory=dict)
    max_block_vars: Annotated[int, Field(gt=0)] | None = None
    latent_clip: float = Field(default=1.0, gt=0)
    damping: float = Field(default=0.0, ge=0)
    other_optimizer: Literal["adam", "sgd", "none"] = "adam"
    other_lr: Annotated[float, Field(gt=0)] | None = None
    layer_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("sign_match")
    @classmethod
    def _sign_match_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        from qsgd.sign_match import check_sign_match_options

        try:
            check_sign_match_options(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return value

    def constructor_options(self) -> dict[str, Any]:
        opts = super().constructor_options()
        if opts.get("other_optimizer") == "none":
            opts["other_optimizer"] = None
        if not opts.get("layer_options"):
            opts.pop("layer_options", None)
        if not opts.get("sign_match"):
            opts.pop("sign_match", None)
        return opts


class _BaselineBase(_OptimizerBase):
    inner: Literal["adam", "sgd"] = "adam"
    inner_options: dict[str, Any] = Field(default_factory=dict)


class BinaryConnectConfig(_BaselineBase):
    """``[optimizer]`` with ``name = "binaryconnect"``: latent weights clipped to ``[-clip, clip]``;
    non-binary parameters go to the ``inner`` optimizer (``adam``/``sgd``, same ``lr``)."""

    name: Literal["binaryconnect"]
    clip: float = Field(default=1.0, gt=0)


class SignSGDConfig(_BaselineBase):
    """``[optimizer]`` with ``name = "signsgd"`` (``momentum > 0``: Signum)."""

    name: Literal["signsgd"]
    lr: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    clip: Annotated[float, Field(gt=0)] | None = None


class ProxQuantConfig(_BaselineBase):
    """``[optimizer]`` with ``name = "proxquant"``: prox to ±1 with a growing regulariser;
    ``latent = true`` (default) trains on the latent real weights as in the paper."""

    name: Literal["proxquant"]
    reg_rate: float = Field(default=1e-2, gt=0)
    latent: bool = True
    reg_schedule: Literal["linear", "exponential"] = "linear"
    reg_growth: float = Field(default=1.01, gt=1)
    reg_max: Annotated[float, Field(gt=0)] | None = None


class BopConfig(_BaselineBase):
    """``[optimizer]`` with ``name = "bop"``: latent-free flips of ±1 weights (Helwegen et al.
    2019) when the gradient's moving average (rate ``gamma``) exceeds ``threshold``; ``lr`` is
    the ``inner`` optimizer's learning rate for the non-binary parameters."""

    name: Literal["bop"]
    lr: float = Field(default=1e-3, gt=0)
    threshold: float = Field(default=1e-8, ge=0)
    gamma: float = Field(default=1e-4, gt=0, le=1)


class AdamConfig(_OptimizerBase):
    """``[optimizer]`` with ``name = "adam"``: the full-precision reference (use it with
    ``model.binary = false``)."""

    name: Literal["adam"]
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)


OptimizerConfig = Annotated[
    Union[  # noqa: UP007
        QPSBGDConfig,
        BinaryConnectConfig,
        SignSGDConfig,
        ProxQuantConfig,
        BopConfig,
        AdamConfig,
    ],
    Field(discriminator="name"),
]


class TrainConfig(_Section):
    """``[train]``: the fit loop.

    Attributes:
        epochs: Number of epochs (at least 1).
        batch_size: Mini-batch size (tabular data; graph data train full-batch).
        seed: Seeds torch, numpy, ``random``, the data order and the annealer.
        schedule: ``all`` layers every step, ``round_robin`` one binary layer per step, or
            ``greedy`` layer by layer (each binary layer trained alone for
            ``greedy_epochs_per_layer`` epochs, then frozen; remaining epochs train all layers).
        greedy_epochs_per_layer: Epochs per layer in the ``greedy`` schedule.
        eval_interval: Evaluate on validation and test data every this many epochs (and always
            after the last one).
        max_batches_per_epoch: Cap the mini-batches per epoch (quick runs); ``None``: all.
        num_threads: Torch CPU threads (``torch.set_num_threads``); ``None`` keeps torch's
            default. Small binary networks run fastest with 1 on a busy machine.
        hyperparameters: Free-form values recorded verbatim in ``summary.json`` (e.g. a sweep id).
    """

    epochs: int = Field(default=10, gt=0)
    batch_size: int = Field(default=32, gt=0)
    seed: int = Field(default=0, ge=0)
    schedule: Literal["all", "round_robin", "greedy"] = "all"
    greedy_epochs_per_layer: int = Field(default=1, gt=0)
    eval_interval: int = Field(default=1, gt=0)
    max_batches_per_epoch: Annotated[int, Field(gt=0)] | None = None
    num_threads: Annotated[int, Field(gt=0)] | None = None
    hyperparameters: dict[str, _OptionValue] = Field(default_factory=dict)


class OutputConfig(_Section):
    """``[output]``: where and what to write.

    Attributes:
        run_dir: Run directory (relative paths: to the current directory).
        overwrite: Allow a fresh run into a directory that already holds one.
        plots: Write PNG plots at the end of the run.
        tensorboard: Also log to TensorBoard (needs the ``tensorboard`` package).
        log_steps: Write one ``metrics.jsonl`` line per optimizer step (not only per epoch).
    """

    run_dir: str = "runs/default"
    overwrite: bool = False
    plots: bool = True
    tensorboard: bool = False
    log_steps: bool = True


class RunConfig(_Section):
    """A whole, validated run configuration.

    Attributes:
        name: A short label of the run (used in tables and plots).
        description: Free text.
        data, model, optimizer, annealer, train, output: The sections above; ``annealer`` is
            :class:`qsgd.config.AnnealerConfig` (backend name and its run options).
    """

    name: str = "run"
    description: str = ""
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig
    annealer: AnnealerConfig = Field(default_factory=AnnealerConfig)  # type: ignore[valid-type]
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        overrides: Iterable[str] = (),
        *,
        source: str | None = None,
        updates: Mapping[str, Any] | None = None,
    ) -> RunConfig:
        """Validate a nested mapping (as read from TOML), after applying ``--set`` overrides.

        Args:
            data: The nested tables.
            overrides: ``KEY=VALUE`` strings (see :func:`parse_override`), applied in order.
            source: Where ``data`` came from, for messages.
            updates: Dotted keys set to Python values after the overrides (not parsed),
                e.g. ``{"output.run_dir": "runs/x"}`` from ``--run-dir``.

        Raises:
            ConfigError: an override or a value is invalid; the message names the dotted key.
        """
        raw = apply_overrides(data, overrides)
        for key, value in (updates or {}).items():
            _set_path(raw, tuple(key.split(".")), value, f"{key}={value!r}")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            where = f" {source}" if source else ""
            raise ConfigError(f"invalid config{where}: {format_validation_error(exc)}") from None

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        overrides: Iterable[str] = (),
        *,
        updates: Mapping[str, Any] | None = None,
    ) -> RunConfig:
        """Read, override and validate a config file (``updates`` as in :meth:`from_dict`).

        Relative ``data.root`` paths are resolved against the file's folder.

        Raises:
            ConfigError: missing file, bad TOML (with line and column) or invalid values.
        """
        path = Path(path)
        raw = _read_file(path)
        root = raw.get("data", {}).get("root") if isinstance(raw.get("data"), dict) else None
        if isinstance(root, str) and not Path(root).is_absolute():
            raw = {**raw, "data": {**raw["data"], "root": str((path.parent / root).resolve())}}
        return cls.from_dict(raw, overrides, source=str(path), updates=updates)

    # ----------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain TOML-able data (``None`` values left out)."""
        return _drop_empty(self.model_dump(mode="json", exclude_none=True))

    def to_toml(self) -> str:
        """The resolved config as TOML text; ``RunConfig.from_dict(tomllib.loads(text))`` round-trips."""
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_toml` to ``path`` atomically; returns the path."""
        from bnn.checkpoint import atomic_write_bytes

        return atomic_write_bytes(Path(path), self.to_toml().encode())


def load_config(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> RunConfig:
    """Shorthand for :meth:`RunConfig.from_file`."""
    return RunConfig.from_file(path, overrides)


# --------------------------------------------------------------------- resume
def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def incompatible_changes(old: RunConfig, new: RunConfig) -> list[str]:
    """Dotted keys whose change makes resuming ``old`` as ``new`` impossible.

    Only :data:`COMPATIBLE_RESUME_KEYS` (epochs, eval interval, output, labels) may differ;
    ``train.epochs`` must not go below the epochs already done (checked by the trainer).
    """
    a, b = _flatten(old.to_dict()), _flatten(new.to_dict())
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return [
        k
        for k in changed
        if not any(k == p or k.startswith(p + ".") for p in COMPATIBLE_RESUME_KEYS)
    ]
